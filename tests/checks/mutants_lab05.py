"""Mutants of Lab 5's solutions (translation with an encoder-decoder Transformer): realistic wrong answers, each
with what the self-check must say. The documented mistakes of ``labsupport.checks.lab05.MISTAKES`` are run too
(test_mutants)."""
from mutation import Mutant

LAB = "lab05"
#: check name of MISTAKES -> (the student's name it stands for, the solution cell whose test must catch it)
TABLE = {name: (name, name) for name in ("shift_target", "make_src_mask", "make_tgt_mask", "noam_lr",
                                         "label_smoothed_loss", "greedy_decode")}

SHIFT = "return tgt[:, :-1], tgt[:, 1:]"
SRC = "return (src != pad_id)[:, None, None, :]"
CAUSAL = "causal = causal_mask(Lt, device=tgt.device)[None, None]"
KEYS = "keys = (tgt != pad_id)[:, None, None, :]"
NOAM = "return d_model ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)"
LOSS = "loss = (1 - smoothing) * nll + smoothing * uniform"
LOGP = "logp = F.log_softmax(logits.reshape(-1, V), dim=-1)"
DECODE = "logits = model.decode(ys, memory, memory_mask=src_mask)"

MUTANTS = [
    # shift_target
    Mutant("shift_target", "not_shifted", ("Neither part is shifted",), why="step missing",
           replace=((SHIFT, "return tgt, tgt"),)),
    Mutant("shift_target", "swapped", ("Input and labels are swapped",), why="swapped return values",
           replace=((SHIFT, "return tgt[:, 1:], tgt[:, :-1]"),)),
    Mutant("shift_target", "batch_axis", ("batch axis",), why="batched vs unbatched slices",
           replace=((SHIFT, "return tgt[:-1], tgt[1:]"),)),
    Mutant("shift_target", "only_input", ("should return a pair",), why="wrong return",
           replace=((SHIFT, "return tgt[:, :-1]"),)),
    Mutant("shift_target", "same_slice", ("the same tensor",), why="copy-paste slip",
           replace=((SHIFT, "return tgt[:, :-1], tgt[:, :-1]"),)),
    Mutant("shift_target", "labels_two_ahead", ("wrong shape",), why="off by one",
           replace=((SHIFT, "return tgt[:, :-1], tgt[:, 2:]"),)),
    Mutant("shift_target", "length_from_batch", ("wrong shape",), why="wrong axis size",
           replace=((SHIFT, "L = tgt.shape[0]\n    return tgt[:, :L - 1], tgt[:, 1:L]"),)),
    Mutant("shift_target", "list_pair", why="another way", replace=((SHIFT, "return [tgt[:, :-1], tgt[:, 1:]]"),),
           equivalent="a list of the two tensors unpacks like the tuple"),
    Mutant("shift_target", "narrow", why="another way", replace=(
        (SHIFT, "n = tgt.shape[1] - 1\n    return tgt.narrow(1, 0, n), tgt.narrow(1, 1, n)"),),
           equivalent="narrow(1, 0, n) and narrow(1, 1, n) are the two slices"),
    # make_src_mask
    Mutant("make_src_mask", "inverted", ("polarity is inverted",), why="mask polarity",
           replace=(("src != pad_id", "src == pad_id"),)),
    Mutant("make_src_mask", "no_axes", ("Add two singleton axes",), why="shape/broadcasting",
           replace=((SRC, "return src != pad_id"),)),
    Mutant("make_src_mask", "query_axis", ("QUERIES",), why="batched vs unbatched axes",
           replace=(("[:, None, None, :]", "[:, None, :, None]"),)),
    Mutant("make_src_mask", "one_axis", ("line B up with the heads",), why="shape/broadcasting",
           replace=(("[:, None, None, :]", "[:, None, :]"),)),
    Mutant("make_src_mask", "pad_hard_coded", ("ignores the pad_id argument",), why="argument ignored for a default",
           replace=(("src != pad_id", "src != 0"),)),
    Mutant("make_src_mask", "float_mask", ("should be a boolean mask",), why="dtype",
           replace=((SRC, "return (src != pad_id).float()[:, None, None, :]"),)),
    Mutant("make_src_mask", "numpy_mask", ("should be a torch.Tensor",), why="numpy vs torch return",
           replace=((SRC, "return (src.numpy() != pad_id)[:, None, None, :]"),)),
    Mutant("make_src_mask", "greater_than_pad", ("differs from the expected mask",), why="wrong comparison",
           replace=(("src != pad_id", "src > pad_id"),)),
    Mutant("make_src_mask", "unsqueeze", why="another way",
           replace=((SRC, "return src.ne(pad_id).unsqueeze(1).unsqueeze(2)"),),
           equivalent="two unsqueezes add the same two axes"),
    # make_tgt_mask
    Mutant("make_tgt_mask", "inverted", ("polarity is inverted",), why="mask polarity",
           replace=(("return causal & keys", "return ~(causal & keys)"),)),
    Mutant("make_tgt_mask", "causal_only", ("only the causal mask",), why="step missing",
           replace=(("return causal & keys", "return causal"),)),
    Mutant("make_tgt_mask", "padding_only", ("causal part is missing",), why="step missing",
           replace=(("return causal & keys", "return keys"),)),
    Mutant("make_tgt_mask", "upper", ("FUTURE",), why="wrong triangle",
           replace=((CAUSAL, "causal = torch.ones(Lt, Lt, dtype=torch.bool).triu()[None, None]"),)),
    Mutant("make_tgt_mask", "no_diagonal", ("diagonal is missing",), why="off by one",
           replace=((CAUSAL, "causal = torch.ones(Lt, Lt, dtype=torch.bool).tril(-1)[None, None]"),)),
    Mutant("make_tgt_mask", "query_padding", ("applied to the QUERIES",), why="batched vs unbatched axes",
           replace=((KEYS, "keys = (tgt != pad_id)[:, None, :, None]"),)),
    Mutant("make_tgt_mask", "both_padding", ("applied to the QUERIES",), why="extra step",
           replace=(("return causal & keys", "return causal & keys & (tgt != pad_id)[:, None, :, None]"),)),
    Mutant("make_tgt_mask", "or", ("`|` (or)",), why="wrong operation", replace=(("causal & keys", "causal | keys"),)),
    Mutant("make_tgt_mask", "pad_hard_coded", ("ignores the pad_id argument",), why="argument ignored for a default",
           replace=(("tgt != pad_id", "tgt != 0"),)),
    Mutant("make_tgt_mask", "length_from_batch", ("Lt = tgt.shape[1]",), why="wrong axis size",
           replace=(("Lt = tgt.shape[1]", "Lt = tgt.shape[0]"),)),
    Mutant("make_tgt_mask", "float_mask", ("should be a boolean mask",), why="dtype",
           replace=(("return causal & keys", "return (causal & keys).float()"),)),
    Mutant("make_tgt_mask", "no_head_axis", ("needs the head axis",), why="shape/broadcasting",
           replace=(("[None, None]", "[None]"), ("[:, None, None, :]", "[:, None, :]"))),
    Mutant("make_tgt_mask", "tril_ones", why="another way",
           replace=((CAUSAL, "causal = torch.tril(torch.ones(Lt, Lt, dtype=torch.bool))[None, None]"),),
           equivalent="the same lower triangle"),
    # noam_lr
    Mutant("noam_lr", "no_warmup", ("no warm-up",), why="step missing",
           replace=((NOAM, "return d_model ** -0.5 * step ** -0.5"),)),
    Mutant("noam_lr", "no_factor", ("d_model ** -0.5 is missing",), why="step missing",
           replace=(("d_model ** -0.5 * ", ""),)),
    Mutant("noam_lr", "positive_factor", ("not d_model ** 0.5",), why="sign of an exponent",
           replace=(("d_model ** -0.5", "d_model ** 0.5"),)),
    Mutant("noam_lr", "warmup_exponent", ("warmup ** -1.5",), why="wrong constant",
           replace=(("warmup ** -1.5", "warmup ** -0.5"),)),
    Mutant("noam_lr", "max", ("max of the two branches",), why="wrong operation", replace=(("min(", "max("),)),
    Mutant("noam_lr", "step_plus_one", ("off by one",), why="off by one",
           replace=((NOAM, "step = step + 1\n    " + NOAM),)),
    Mutant("noam_lr", "step_minus_one", ("use `step` as given",), why="off by one",
           replace=((NOAM, "step = step - 1\n    " + NOAM),)),
    Mutant("noam_lr", "swapped", ("swapped",), why="swapped arguments",
           replace=((NOAM, "return warmup ** -0.5 * min(step ** -0.5, step * d_model ** -1.5)"),)),
    Mutant("noam_lr", "d_model_hard_coded", ("ignores the d_model argument",), why="argument ignored for a default",
           replace=(("d_model ** -0.5", "512 ** -0.5"),)),
    Mutant("noam_lr", "warmup_hard_coded", ("ignores the warmup argument",), why="argument ignored for a default",
           replace=(("warmup ** -1.5", "4000 ** -1.5"),)),
    Mutant("noam_lr", "zero_d_tensor", ("should be a Python number", ".item()"), why="0-d tensor instead of a number",
           replace=((NOAM, "return torch.tensor(d_model) ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)"),)),
    Mutant("noam_lr", "math_sqrt", why="another way", replace=(
        (NOAM, "return min(1 / math.sqrt(step), step / warmup ** 1.5) / math.sqrt(d_model)"),),
           equivalent="the same formula with square roots (equal within 1e-6)"),
    # label_smoothed_loss
    Mutant("label_smoothed_loss", "spread_over_others", ("V - 1",), why="wrong constant",
           replace=(("uniform = -logp.mean(dim=-1)", "uniform = (-logp.sum(dim=-1) - nll) / (V - 1)"),)),
    Mutant("label_smoothed_loss", "padding_counted", ("not ignored",), why="mask missing",
           replace=(("return loss[keep].mean()", "return loss.mean()"),)),
    Mutant("label_smoothed_loss", "mean_over_all", ("still counts them",), why="wrong denominator",
           replace=(("return loss[keep].mean()", "return (loss * keep).sum() / keep.numel()"),)),
    Mutant("label_smoothed_loss", "no_smoothing", ("no smoothing",), why="step missing",
           replace=((LOSS, "loss = nll"),)),
    Mutant("label_smoothed_loss", "true_not_down_weighted", ("not down-weighted",), why="wrong weight",
           replace=(("(1 - smoothing) * nll", "nll"),)),
    Mutant("label_smoothed_loss", "log_of_softmax", ("underflows for large logits",), why="numerical stability",
           replace=((LOGP, "logp = torch.log(torch.softmax(logits.reshape(-1, V), dim=-1))"),)),
    Mutant("label_smoothed_loss", "probabilities", ("probabilities",), why="wrong function",
           replace=(("F.log_softmax", "F.softmax"),)),
    Mutant("label_smoothed_loss", "sum", ("SUM",), why="wrong reduction",
           replace=(("loss[keep].mean()", "loss[keep].sum()"),)),
    Mutant("label_smoothed_loss", "uniform_sum", ("MEAN of -log p",), why="wrong reduction",
           replace=(("uniform = -logp.mean(dim=-1)", "uniform = -logp.sum(dim=-1)"),)),
    Mutant("label_smoothed_loss", "pad_hard_coded", ("ignores the pad_id argument",), why="argument ignored",
           replace=(("keep = target != pad_id", "keep = target != 0"),)),
    Mutant("label_smoothed_loss", "smoothing_hard_coded", ("ignores the smoothing argument",),
           why="argument ignored for a default", replace=((LOSS, "loss = (1 - 0.1) * nll + 0.1 * uniform"),)),
    Mutant("label_smoothed_loss", "item", ("Python number", ".item()"), why="0-d tensor vs number",
           replace=(("return loss[keep].mean()", "return loss[keep].mean().item()"),)),
    Mutant("label_smoothed_loss", "detached", ("autograd",), why="gradient cut",
           replace=(("logits.reshape(-1, V)", "logits.detach().reshape(-1, V)"),)),
    Mutant("label_smoothed_loss", "not_reduced", ("scalar",), why="wrong reduction",
           replace=(("return loss[keep].mean()", "return loss[keep]"),)),
    Mutant("label_smoothed_loss", "wrong_axis", ("wrong axis",), why="wrong axis",
           replace=((LOGP, "logp = F.log_softmax(logits.reshape(-1, V), dim=0)"),)),
    Mutant("label_smoothed_loss", "in_place_shift", ("changed its argument `logits` in place",),
           why="in-place modification", replace=(
               ("V = logits.shape[-1]",
                "V = logits.shape[-1]\n    logits -= logits.max(dim=-1, keepdim=True).values"),)),
    Mutant("label_smoothed_loss", "float64", ("dtype torch.float64; expected torch.float32",), why="dtype",
           replace=((LOGP, "logp = F.log_softmax(logits.reshape(-1, V).double(), dim=-1)"),)),
    Mutant("label_smoothed_loss", "cross_entropy", why="the library's loss", replace=(
        ("return loss[keep].mean()", "return F.cross_entropy(logits.reshape(-1, V), target, ignore_index=pad_id, "
                                     "label_smoothing=smoothing)"),),
           equivalent="F.cross_entropy with label_smoothing is this loss (the lab asks for log_softmax, but the "
                      "result is the same)"),
    # greedy_decode
    Mutant("greedy_decode", "first_position", ("FIRST position",), why="off-by-one index",
           replace=(("logits[:, -1]", "logits[:, 0]"),)),
    Mutant("greedy_decode", "last_token_only", ("only the last generated token",), why="wrong input used",
           replace=((DECODE, "logits = model.decode(ys[:, -1:], memory, memory_mask=src_mask)"),)),
    Mutant("greedy_decode", "decode_without_mask", ("without memory_mask",), why="argument forgotten",
           replace=((DECODE, "logits = model.decode(ys, memory)"),)),
    Mutant("greedy_decode", "bos_hard_coded", ("use the bos_id argument",), why="argument ignored for a default",
           replace=(("torch.full((src.shape[0], 1), bos_id", "torch.full((src.shape[0], 1), 1"),)),
    Mutant("greedy_decode", "stop_at_first_eos", ("until EVERY row",), why="wrong stopping rule",
           replace=(("if done.all():", "if done.any():"),)),
    Mutant("greedy_decode", "without_bos", ("should start with <bos>",), why="off-by-one slice",
           replace=(("    return ys", "    return ys[:, 1:]"),)),
    Mutant("greedy_decode", "one_too_many", ("at most max_len",), why="off by one",
           replace=(("range(max_len)", "range(max_len + 1)"),)),
    Mutant("greedy_decode", "one_too_few", ("differs from the reference in row",), why="off by one",
           replace=(("range(max_len)", "range(max_len - 1)"),)),
    Mutant("greedy_decode", "float_ids", ("dtype=torch.long",), why="dtype", replace=(
        ("ys = torch.full((src.shape[0], 1), bos_id, dtype=torch.long, device=src.device)",
         "ys = torch.ones(src.shape[0], 1) * bos_id"),)),
    Mutant("greedy_decode", "argmax_over_batch", ("one id per row",), why="wrong axis",
           replace=(("argmax(dim=-1)", "argmax(dim=0)"),)),
    Mutant("greedy_decode", "src_mask_pad_zero", ("model.src_pad_id",), why="argument ignored for a default",
           replace=(("make_src_mask(src, model.src_pad_id)", "make_src_mask(src, 0)"),)),
    Mutant("greedy_decode", "no_early_stop", why="another way", replace=(
        ("        done |= next_token == eos_id\n        if done.all():\n            break\n", ""),),
           equivalent="what follows a row's <eos> does not matter and n <= max_len is allowed: decoding to max_len "
                      "gives the same translations, only slower"),
    Mutant("greedy_decode", "done_not_accumulated", why="stopping rule", replace=(
        ("done |= next_token == eos_id", "done = next_token == eos_id"),),
           equivalent="it stops only when every row emits <eos> at the same step, so no row is cut before its <eos>"),
    Mutant("greedy_decode", "encode_without_mask", why="another way", replace=(
        ("memory = model.encode(src, src_mask)", "memory = model.encode(src)"),),
           equivalent="encode builds the same source padding mask from model.src_pad_id when none is given"),
]
