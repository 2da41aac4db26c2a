"""Mutants of Lab 7's solutions (BERT: embeddings, masking, masked-LM loss, classifier head): realistic wrong
answers, each with what the self-check must say. The documented mistakes of ``labsupport.checks.lab07.MISTAKES``
run too."""
from mutation import Mutant

LAB = "lab07"
#: check name of MISTAKES -> (the student's name it stands for, the solution cell whose test must catch it)
TABLE = {"embeddings": ("BertEmbeddings", "embeddings"), "mask_tokens": ("mask_tokens", "mask_tokens"),
         "mlm_loss": ("mlm_loss", "mlm_loss"), "classifier_head": ("ClassifierHead", "classifier_head")}

SUM = "x = self.token(tokens) + self.segment(segments) + self.position(positions)"
OUT = "return self.dropout(self.norm(x))"
NONE = "        if segments is None:\n            segments = torch.zeros_like(tokens)\n"
PICK = "picked = (torch.rand(tokens.shape, generator=generator) < mask_prob) & ~special"
U = "u = torch.rand(tokens.shape, generator=generator)"
ORD = "ordinary = torch.tensor([i for i in range(vocab_size) if i not in set(special_ids)])"
LABELS = "labels = torch.where(picked, tokens, torch.full_like(tokens, IGNORE_INDEX))"
TO_MASK = "inputs = torch.where(picked & (u < 0.8), torch.full_like(tokens, mask_id), tokens)"
TO_RANDOM = "inputs = torch.where(picked & (u >= 0.8) & (u < 0.9), random_tokens, inputs)"
CE = "loss = F.cross_entropy(logits[keep], labels[keep])"
ACC = "accuracy = (logits[keep].argmax(-1) == labels[keep]).float().mean()"
POOL = "pooled = torch.tanh(self.pooler(hidden[:, 0]))"
HEAD = "return self.classifier(self.dropout(pooled))"

MUTANTS = [
    # BertEmbeddings.forward
    Mutant("embeddings", "no_segment", ("segment embedding is missing",), why="step missing",
           replace=((" + self.segment(segments)", ""),)),
    Mutant("embeddings", "no_position", ("position embedding is missing",), why="step missing",
           replace=((" + self.position(positions)", ""),)),
    Mutant("embeddings", "positions_by_token", ("token ids",), why="wrong input used",
           replace=(("self.position(positions)", "self.position(tokens)"),)),
    Mutant("embeddings", "positions_from_batch_axis", ("tokens.shape[1]",), why="wrong axis",
           replace=(("torch.arange(tokens.shape[1]", "torch.arange(tokens.shape[0]"),)),
    Mutant("embeddings", "no_norm", ("LayerNorm is missing",), why="step missing",
           replace=((OUT, "return self.dropout(x)"),)),
    Mutant("embeddings", "norm_before_positions", ("before the positions",), why="wrong order",
           replace=((SUM, "x = self.norm(self.token(tokens) + self.segment(segments)) + self.position(positions)"),
                    (OUT, "return self.dropout(x)"))),
    Mutant("embeddings", "segments_none_not_handled", ("segments=None",), why="default argument not handled",
           replace=((NONE, ""),)),
    Mutant("embeddings", "segments_none_as_ones", ("segments=None",), why="wrong default",
           replace=(("torch.zeros_like(tokens)", "torch.ones_like(tokens)"),)),
    Mutant("embeddings", "no_dropout", ("dropout is missing",), why="dropout forgotten",
           replace=((OUT, "return self.norm(x)"),)),
    Mutant("embeddings", "dropout_before_norm", ("before the LayerNorm",), why="dropout misplaced",
           replace=((OUT, "return self.norm(self.dropout(x))"),)),
    Mutant("embeddings", "dropout_rate_hard_coded", ("training mode",), why="argument ignored for a default",
           replace=(("nn.Dropout(dropout)", "nn.Dropout(0.1)"),)),
    Mutant("embeddings", "functional_dropout", ("eval mode",), why="eval vs train behaviour",
           replace=((OUT, "return F.dropout(self.norm(x), 0.1)"),)),
    Mutant("embeddings", "positions_on_default_device", why="another way",
           replace=(("torch.arange(tokens.shape[1], device=tokens.device)", "torch.arange(tokens.shape[1])"),),
           equivalent="the checks run on the CPU, where device=tokens.device changes nothing"),
    # mask_tokens
    Mutant("mask_tokens", "specials_picked", ("Special tokens were picked",), why="mask missing",
           replace=((" & ~special", ""),)),
    Mutant("mask_tokens", "specials_as_small_ids", ("Special tokens were picked",),
           why="argument ignored for a default",
           replace=(("special = torch.zeros_like(tokens, dtype=torch.bool)\n    for s in special_ids:\n"
                     "        special |= tokens == s", "special = tokens < 5"),)),
    Mutant("mask_tokens", "mask_prob_fixed", ("mask_prob argument",), why="argument ignored for a default",
           replace=(("< mask_prob)", "< 0.15)"),)),
    Mutant("mask_tokens", "mask_id_fixed", ("mask_id argument",), why="argument ignored for a default",
           replace=(("torch.full_like(tokens, mask_id)", "torch.full_like(tokens, 4)"),)),
    Mutant("mask_tokens", "no_random_tokens", ("shares of the picked tokens are off",), why="step missing",
           replace=(("    " + TO_RANDOM + "\n", ""),)),
    Mutant("mask_tokens", "no_unchanged_tokens", ("shares of the picked tokens are off",), why="off-by-one range",
           replace=(("(u >= 0.8) & (u < 0.9)", "(u >= 0.8)"),)),
    Mutant("mask_tokens", "random_any_id", ("random replacements are special tokens",), why="wrong range",
           replace=((ORD, "ordinary = torch.arange(vocab_size)"),)),
    Mutant("mask_tokens", "random_after_specials", ("random replacements are special tokens",),
           why="argument ignored for a default",
           replace=((ORD, "ordinary = torch.arange(len(special_ids), vocab_size)"),)),
    Mutant("mask_tokens", "random_up_to_batch_max", ("never use the ordinary ids",), why="wrong range",
           replace=(("range(vocab_size)", "range(int(tokens.max()) + 1)"),)),
    Mutant("mask_tokens", "label_all", ("Every position has a label",), why="mask missing",
           replace=((LABELS, "labels = tokens.clone()"),)),
    Mutant("mask_tokens", "labels_from_inputs", ("original token",), why="wrong input used",
           replace=(("return inputs, labels", "return inputs, torch.where(picked, inputs, labels)"),)),
    Mutant("mask_tokens", "in_place", ("changed its argument `tokens` in place",), why="in-place modification",
           replace=((TO_MASK, "inputs = tokens\n    inputs[picked & (u < 0.8)] = mask_id"),)),
    Mutant("mask_tokens", "generator_ignored", ("generator",), why="generator ignored",
           replace=((PICK, PICK.replace(", generator=generator", "")),)),
    Mutant("mask_tokens", "rand_like", ("generator",), why="generator ignored",
           replace=((U, "u = torch.rand_like(tokens, dtype=torch.float)"),)),
    Mutant("mask_tokens", "own_generator", ("seeded differently",), why="generator replaced",
           replace=(("    special = torch.zeros_like", "    generator = torch.Generator().manual_seed(0)\n"
                                                       "    special = torch.zeros_like"),)),
    Mutant("mask_tokens", "draws_in_another_order", why="another way",
           replace=((PICK + "\n    " + U, U + "\n    " + PICK),),
           equivalent="drawing u before the picks changes which tokens are picked, not how they are picked"),
    Mutant("mask_tokens", "mask_overwritten_by_random", why="another way",
           replace=(("picked & (u < 0.8)", "picked & (u < 0.9)"),),
           equivalent="the random replacement then overwrites [MASK] for 0.8 <= u < 0.9, which gives 80/10/10 again"),
    # mlm_loss
    Mutant("mlm_loss", "loss_all_positions", ("averaged over all positions",), why="mask missing",
           replace=((CE, "loss = F.cross_entropy(logits, labels.clamp(min=0))"),)),
    Mutant("mlm_loss", "accuracy_all_positions", ("accuracy is computed over all positions",), why="mask missing",
           replace=((ACC, "accuracy = (logits.argmax(-1) == labels).float().mean()"),)),
    Mutant("mlm_loss", "sum", ("take the mean",), why="wrong reduction",
           replace=((CE, "loss = F.cross_entropy(logits[keep], labels[keep], reduction='sum')"),)),
    Mutant("mlm_loss", "softmax_first", ("softmax is applied before",), why="extra step",
           replace=(("F.cross_entropy(logits[keep]", "F.cross_entropy(logits[keep].softmax(-1)"),)),
    Mutant("mlm_loss", "label_zero_dropped", ("labelled 0",), why="off-by-one comparison",
           replace=(("keep = labels != IGNORE_INDEX", "keep = labels > 0"),)),
    Mutant("mlm_loss", "loss_item", ("Python number",), why="0-d tensor vs number",
           replace=(("return loss, accuracy", "return loss.item(), accuracy"),)),
    Mutant("mlm_loss", "accuracy_item", ("Python number",), why="0-d tensor vs number",
           replace=(("return loss, accuracy", "return loss, accuracy.item()"),)),
    Mutant("mlm_loss", "only_loss", ("pair (loss, accuracy)",), why="wrong return",
           replace=(("return loss, accuracy", "return loss"),)),
    Mutant("mlm_loss", "accuracy_count", ("number of right predictions",), why="wrong reduction",
           replace=((".float().mean()", ".float().sum()"),)),
    Mutant("mlm_loss", "bool_mean", ("into floats",), why="dtype", replace=((".float().mean()", ".mean()"),)),
    Mutant("mlm_loss", "logits_not_flattened", ("flatten the logits",), why="batched shapes",
           replace=(("logits, labels = logits.reshape(-1, V), labels.reshape(-1)", "labels = labels.reshape(-1)"),)),
    Mutant("mlm_loss", "detached", ("does not carry gradients",), why="no gradients",
           replace=((CE, CE + ".detach()"),)),
    Mutant("mlm_loss", "ignore_index_of_cross_entropy", why="another way",
           replace=((CE, "loss = F.cross_entropy(logits, labels)"),),
           equivalent="F.cross_entropy skips the label -100 by default (ignore_index=-100)"),
    Mutant("mlm_loss", "not_flattened", why="another way",
           replace=(("    logits, labels = logits.reshape(-1, V), labels.reshape(-1)\n", ""),),
           equivalent="indexing (B, L, V) logits with a (B, L) boolean mask gathers the same (N, V) rows"),
    # ClassifierHead.forward
    Mutant("classifier_head", "last_position", ("last position",), why="off-by-one index",
           replace=(("hidden[:, 0]", "hidden[:, -1]"),)),
    Mutant("classifier_head", "mean_pool", ("mean over positions",), why="wrong reduction",
           replace=(("hidden[:, 0]", "hidden.mean(1)"),)),
    Mutant("classifier_head", "batch_axis", ("one row per position",), why="batched vs unbatched indexing",
           replace=(("hidden[:, 0]", "hidden[0]"),)),
    Mutant("classifier_head", "no_tanh", ("tanh after the pooler is missing",), why="step missing",
           replace=((POOL, "pooled = self.pooler(hidden[:, 0])"),)),
    Mutant("classifier_head", "relu", ("ReLU",), why="wrong function", replace=(("torch.tanh", "torch.relu"),)),
    Mutant("classifier_head", "no_pooler", ("dense layer is skipped",), why="step missing",
           replace=((POOL, "pooled = torch.tanh(hidden[:, 0])"),)),
    Mutant("classifier_head", "softmax", ("probabilities",), why="extra step",
           replace=((HEAD, HEAD + ".softmax(-1)"),)),
    Mutant("classifier_head", "no_dropout", ("dropout is missing",), why="dropout forgotten",
           replace=((HEAD, "return self.classifier(pooled)"),)),
    Mutant("classifier_head", "dropout_before_pooler", ("before the pooler",), why="dropout misplaced",
           replace=((POOL, "pooled = torch.tanh(self.pooler(self.dropout(hidden[:, 0])))"),
                    (HEAD, "return self.classifier(pooled)"))),
    Mutant("classifier_head", "dropout_rate_hard_coded", ("training mode",), why="argument ignored for a default",
           replace=(("nn.Dropout(dropout)", "nn.Dropout(0.1)"),)),
    Mutant("classifier_head", "functional_dropout", ("eval mode",), why="eval vs train behaviour",
           replace=(("self.dropout(pooled)", "F.dropout(pooled, 0.1)"),)),
    Mutant("classifier_head", "pooler_detached", ("gradient",), why="no gradients",
           replace=((POOL, POOL + ".detach()"),)),
]
