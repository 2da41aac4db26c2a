"""Mutants of Lab 1's solutions (attention from scratch in NumPy): realistic wrong answers, each with what the
self-check must say. The documented mistakes of ``labsupport.checks.lab01.MISTAKES`` are run too (test_mutants)."""
from mutation import Mutant

LAB = "lab01"
#: check name of MISTAKES -> (the student's name it stands for, the solution cell whose test must catch it)
TABLE = {"softmax": ("softmax", "softmax"), "attention_scores": ("attention_scores", "attention_scores"),
         "apply_mask": ("apply_mask", "apply_mask"), "scaled_dot_product_attention": (
             "scaled_dot_product_attention", "sdpa"), "causal_mask": ("causal_mask", "masks"),
         "padding_mask": ("padding_mask", "masks"), "masked_attention": ("scaled_dot_product_attention", "masks")}

SHIFT = "shifted = x - np.max(x, axis=axis, keepdims=True)"
SCORES = "return Q @ np.swapaxes(K, -1, -2) / np.sqrt(d_k)"
WHERE = "return np.where(mask, scores, -np.inf)"
SDPA = "weights = softmax(apply_mask(attention_scores(Q, K), mask), axis=-1)"
PAD = "return np.arange(max_len)[None, :] < np.asarray(lengths)[:, None]"

MUTANTS = [
    # softmax
    Mutant("softmax", "in_place_shift", ("changed its argument `x` in place",), why="in-place modification",
           replace=((SHIFT, "x -= np.max(x, axis=axis, keepdims=True)\n    shifted = x"),)),
    Mutant("softmax", "torch_softmax", ("should be a NumPy array", "torch.Tensor"), why="numpy vs torch return",
           source="import torch\n\ndef softmax(x, axis=-1):\n    return torch.softmax(torch.as_tensor(x), dim=axis)"),
    Mutant("softmax", "max_without_keepdims", ("keepdims=True",), why="shape/broadcasting",
           replace=(("np.max(x, axis=axis, keepdims=True)", "np.max(x, axis=axis)"),)),
    Mutant("softmax", "sum_without_keepdims", ("keepdims=True",), why="shape/broadcasting",
           replace=(("np.sum(e, axis=axis, keepdims=True)", "np.sum(e, axis=axis)"),)),
    Mutant("softmax", "axis_hard_coded", ("ignores the `axis` argument",), why="argument ignored for a default",
           replace=(("axis=axis", "axis=-1"),)),
    Mutant("softmax", "no_shift", ("Subtract each row's maximum",), why="numerical stability",
           replace=((SHIFT, "shifted = x"),)),
    Mutant("softmax", "global_max", ("maximum of the whole array",), why="wrong reduction",
           replace=(("np.max(x, axis=axis, keepdims=True)", "np.max(x)"),)),
    Mutant("softmax", "global_sum", ("sum of the whole array",), why="wrong reduction",
           replace=(("np.sum(e, axis=axis, keepdims=True)", "np.sum(e)"),)),
    Mutant("softmax", "exp_only", ("without dividing",), why="step missing",
           replace=(("return e / np.sum(e, axis=axis, keepdims=True)", "return e"),)),
    Mutant("softmax", "float32", ("dtype float32",), why="dtype", replace=(("dtype=float", "dtype=np.float32"),)),
    # attention_scores
    Mutant("attention_scores", "K_dot_T", ("`K.T` reverses all the axes",), why="batched vs unbatched transpose",
           replace=(("np.swapaxes(K, -1, -2)", "K.T"),)),
    Mutant("attention_scores", "unscaled", ("raw dot products",), why="step missing",
           replace=((" / np.sqrt(d_k)", ""),)),
    Mutant("attention_scores", "divide_by_dk", ("divides by d_k",), why="wrong constant",
           replace=(("np.sqrt(d_k)", "d_k"),)),
    Mutant("attention_scores", "K_times_Q", ("transposed",), why="swapped arguments",
           replace=(("Q @ np.swapaxes(K, -1, -2)", "K @ np.swapaxes(Q, -1, -2)"),)),
    Mutant("attention_scores", "d_k_from_keys", ("number of keys",), why="wrong axis",
           replace=(("Q.shape[-1]", "K.shape[-2]"),)),
    Mutant("attention_scores", "d_k_from_queries", ("number of queries",), why="wrong axis",
           replace=(("Q.shape[-1]", "Q.shape[0]"),)),
    Mutant("attention_scores", "swap_first_axes", ("transpose only the last two axes",), why="wrong axes",
           replace=(("np.swapaxes(K, -1, -2)", "np.swapaxes(K, 0, 1)"),)),
    Mutant("attention_scores", "np_dot", ("wrong shape",), why="batched matmul", replace=(
        ("Q @ np.swapaxes(K, -1, -2)", "np.dot(Q, np.swapaxes(K, -1, -2))"),)),
    # apply_mask
    Mutant("apply_mask", "zero_fill", ("exp(0) = 1",), why="wrong fill value", replace=(("-np.inf", "0.0"),)),
    Mutant("apply_mask", "inverted", ("polarity is inverted",), why="mask polarity",
           replace=((WHERE, "return np.where(mask, -np.inf, scores)"),)),
    Mutant("apply_mask", "multiply", ("exp(0) = 1",), why="wrong operation",
           replace=((WHERE, "return scores * mask"),)),
    Mutant("apply_mask", "in_place", ("changed its argument `scores` in place",), why="in-place modification",
           replace=((WHERE, "scores[~np.broadcast_to(mask, scores.shape)] = -np.inf\n    return scores"),)),
    Mutant("apply_mask", "none_not_handled", ("mask=None",), why="default argument not handled",
           replace=(("    if mask is None:\n        return scores\n", ""),)),
    Mutant("apply_mask", "equal_zero", ("polarity is inverted",), why="mask polarity",
           replace=((WHERE, "return np.where(mask == 0, scores, -np.inf)"),)),
    Mutant("apply_mask", "not_mask_swapped", why="mask polarity",
           replace=((WHERE, "return np.where(~mask, -np.inf, scores)"),),
           equivalent="np.where(~mask, -inf, scores) selects exactly what np.where(mask, scores, -inf) does"),
    Mutant("apply_mask", "large_negative", why="fill value", replace=(("-np.inf", "-1e9"),),
           equivalent="a score of -1e9 gets exactly zero weight after the softmax, as -inf does"),
    # scaled_dot_product_attention
    Mutant("sdpa", "only_output", ("pair (output, weights)",), why="wrong return",
           replace=(("return weights @ V, weights", "return weights @ V"),)),
    Mutant("sdpa", "swapped_pair", ("wrong order",), why="swapped return values",
           replace=(("return weights @ V, weights", "return weights, weights @ V"),)),
    Mutant("sdpa", "weights_times_keys", ("applied to the keys",), why="wrong input used",
           replace=(("weights @ V", "weights @ K"),)),
    Mutant("sdpa", "softmax_over_queries", ("normalised over the queries",), why="wrong axis",
           replace=(("axis=-1", "axis=-2"),)),
    Mutant("sdpa", "unscaled", ("without the 1/sqrt(d_k)",), why="step missing",
           replace=((SDPA, "weights = softmax(apply_mask(Q @ np.swapaxes(K, -1, -2), mask), axis=-1)"),)),
    Mutant("sdpa", "output_transposed", ("wrong shape",), why="transpose",
           replace=(("return weights @ V, weights", "return (weights @ V).T, weights"),)),
    Mutant("sdpa", "mask_ignored", ("mask is ignored",), why="argument ignored", checked_by="masks",
           replace=((SDPA, "weights = softmax(attention_scores(Q, K), axis=-1)"),)),
    Mutant("sdpa", "mask_after_softmax", ("after the softmax",), why="wrong place", checked_by="masks",
           replace=((SDPA, "weights = softmax(attention_scores(Q, K), axis=-1)\n"
                           "    weights = weights if mask is None else weights * mask"),)),
    Mutant("sdpa", "mask_inverted", ("polarity is inverted",), why="mask polarity", checked_by="masks",
           replace=((SDPA, "weights = softmax(apply_mask(attention_scores(Q, K), None if mask is None else ~mask), "
                           "axis=-1)"),)),
    # causal_mask and padding_mask
    Mutant("masks", "causal_float", ("boolean mask",), why="dtype",
           replace=(("np.ones((n, n), dtype=bool)", "np.ones((n, n))"),)),
    Mutant("masks", "causal_inverted", ("polarity is inverted",), why="mask polarity",
           replace=(("return np.tril(", "return ~np.tril("),)),
    Mutant("masks", "causal_no_diagonal", ("diagonal is missing",), why="off by one",
           replace=(("np.tril(np.ones((n, n), dtype=bool))", "np.tril(np.ones((n, n), dtype=bool), -1)"),)),
    Mutant("masks", "causal_upper", ("see the future",), why="wrong triangle", replace=(("np.tril", "np.triu"),)),
    Mutant("masks", "padding_off_by_one", ("One position too many",), why="off by one",
           replace=((PAD, PAD.replace(" < ", " <= ")),)),
    Mutant("masks", "padding_list_argument", ("np.asarray(lengths)",), why="a list argument breaks indexing",
           replace=(("np.asarray(lengths)[:, None]", "lengths[:, None]"),)),
    Mutant("masks", "padding_inverted", ("polarity is inverted",), why="mask polarity",
           replace=((PAD, PAD.replace(" < ", " >= ")),)),
    Mutant("masks", "padding_max_len_ignored", ("must be max_len",), why="argument ignored",
           replace=(("np.arange(max_len)", "np.arange(max(lengths))"),)),
    Mutant("masks", "causal_tri", why="another way", replace=(("np.tril(np.ones((n, n), dtype=bool))",
                                                                "np.tri(n, dtype=bool)"),),
           equivalent="np.tri(n, dtype=bool) is the same lower triangle"),
]
