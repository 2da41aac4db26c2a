"""Lab 1's references (TWINS); test_every_lab.py runs every check with them and with unfinished stubs.
(The mistakes and the mutants are in test_mutants.py.)"""

from labsupport import attention as ref

TWINS = {"softmax": ref.softmax_np, "attention_scores": ref.attention_scores_np, "apply_mask": ref.apply_mask_np,
         "scaled_dot_product_attention": ref.scaled_dot_product_attention_np, "causal_mask": ref.causal_mask_np,
         "padding_mask": ref.padding_mask_np, "masked_attention": ref.scaled_dot_product_attention_np}
