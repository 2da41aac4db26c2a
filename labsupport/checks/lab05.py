"""Self-checks of Lab 5, translation with an encoder-decoder Transformer.

Each check runs the student's function on inputs made from ``seed`` (the notebook uses the default, grading
uses others), with non-default arguments where an argument could be ignored (a padding id that is not 0, label
smoothing of 0.3, ``<bos>`` that is not 1), compares the result with trusted code (``F.cross_entropy``,
:func:`labsupport.training.warmup_inverse_sqrt`, :func:`labsupport.training.greedy_decode` on a tiny model built
with the same seed on both sides) and recognises the typical mistakes of :data:`MISTAKES`, each the reference
*with that mistake*. The same checks catch what no table lists: an argument changed in place, a number where a
tensor is expected (or a 0-d tensor where a number is), a loss cut off from autograd, masks of the wrong shape
or dtype.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from labsupport.checks.core import (
    CheckFailed,
    Mistake,
    build,
    call,
    call_with,
    candidates,
    compare,
    describe_value,
    error_hints,
    expect,
    expect_number,
    passed,
)
from labsupport.device import torch_threads
from labsupport.models.seq2seq import Seq2SeqTransformer
from labsupport.training import greedy_decode as ref_greedy_decode
from labsupport.training import warmup_inverse_sqrt

__all__ = ["MISTAKES", "CHECKS", "check_shift_target", "check_make_src_mask", "check_make_tgt_mask",
           "check_noam_lr", "check_label_smoothed_loss", "check_greedy_decode", "example_target", "tiny_model",
           "TinySeq2Seq"]

PAD, BOS, EOS = 0, 1, 2


def _gen(seed: int, case: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + case)


def example_target(seed: int = 0, pad: int = PAD, bos: int = BOS, eos: int = EOS, lengths=(5, 3, 7),
                   low: int = 5, high: int = 30) -> torch.Tensor:
    """A ``(len(lengths), max(lengths))`` batch ``<bos> words <eos> <pad>...`` of the given lengths; the words are
    ids in ``[low, high)``."""
    g = torch.Generator().manual_seed(seed)
    out = torch.full((len(lengths), max(lengths)), pad, dtype=torch.long)
    for b, n in enumerate(lengths):
        words = torch.randint(low, high, (n - 2,), generator=g)
        out[b, :n] = torch.cat([torch.tensor([bos]), words, torch.tensor([eos])])
    return out


def _ids(seed: int, case: int, shape, lengths, pad: int, low: int = 0, high: int = 20) -> torch.Tensor:
    """Random ids in ``[low, high)`` except ``pad``, padded with ``pad`` after ``lengths``."""
    ids = torch.randint(low, high - 1, shape, generator=_gen(seed, case))
    ids = ids + (ids >= pad).long()  # every id but pad
    for b, n in enumerate(lengths):
        ids[b, n:] = pad
    return ids


# ------------------------------------------------------------------------------------------------------------
# the typical mistakes, each as the reference with that mistake
# ------------------------------------------------------------------------------------------------------------
PAIR = "should return a pair (decoder_input, labels)"
NOT_NUMBER = "should be a Python number"
LOSS_NUMBER = ("label_smoothed_loss should return a 0-d torch.Tensor (training calls .backward() on it), but it "
               "returned a Python number: drop the `.item()` / `float(...)`.")
LOSS_SCALAR = "label_smoothed_loss should return a scalar (a 0-d tensor): average over the real tokens."
LOSS_DETACHED = ("The loss does not depend on the logits through autograd (was .item(), .detach(), .numpy() or "
                 "torch.no_grad() used?): training needs its gradient.")
NO_BOS = "Each output row should start with <bos> (the first decoder input, `bos_id`)"
TOO_LONG = "at most max_len"
STEP_ZERO = ("At step 1 it divides by zero (0 ** -0.5): the first update is step 1, so use `step` as given, without "
             "subtracting 1.")


def _causal(n):
    return torch.ones(n, n, dtype=torch.bool).tril()


def _keys(t, pad):
    return (t != pad)[:, None, None, :]


def _tgt(t, pad):
    return _causal(t.shape[1])[None, None] & _keys(t, pad)


def _ls(logits, target, eps, pad, *, spread="all", ignore=True, mean="real", weight_true=True, probs=False,
        total=False, dim=-1, uniform="mean", log_of_softmax=False):
    V = logits.shape[-1]
    lg, tg = logits.reshape(-1, V), target.reshape(-1)
    logp = torch.softmax(lg, dim) if probs else F.log_softmax(lg, dim)
    if log_of_softmax:
        logp = torch.log(torch.softmax(lg, dim))
    nll = -logp.gather(1, tg[:, None]).squeeze(1)
    if spread == "others":
        uni = (-logp.sum(-1) - nll) / (V - 1)
    else:
        uni = -logp.mean(-1) if uniform == "mean" else -logp.sum(-1)
    per = ((1 - eps) if weight_true else 1.0) * nll + eps * uni
    keep = tg != pad if ignore else torch.ones_like(tg, dtype=torch.bool)
    if total:
        return per[keep].sum()
    return per[keep].sum() / keep.numel() if mean == "all" else per[keep].mean()


def _noam(step, d, w, *, warm=True, factor=True, wexp=-1.5, op=min, shift=0):
    s = step + shift
    core = op(s ** -0.5, s * w ** wexp) if warm else s ** -0.5
    return (d ** -0.5 if factor else 1.0) * core


def _greedy(model, src, max_len, bos, eos, *, kind="ok", pad=None):
    """Typical wrong decoders (they do not stop at eos; what follows eos is not compared)."""
    with torch.no_grad():
        src_mask = model.make_src_mask(src)
        enc_mask = torch.ones_like(src_mask) if kind == "no_src_mask" else src_mask
        dec_mask = None if kind in ("no_src_mask", "decode_without_mask") else src_mask
        memory = model.encode(src, enc_mask)
        ys = torch.full((src.shape[0], 1), bos, dtype=torch.long)
        done = torch.zeros(src.shape[0], dtype=torch.bool)
        for _ in range(max_len):
            inp = ys[:, -1:] if kind == "last_only" else ys
            logits = model.decode(inp, memory, memory_mask=dec_mask)
            nxt = logits[:, 0 if kind == "first_pos" else -1].argmax(-1)
            ys = torch.cat([ys, nxt[:, None]], 1)
            done |= nxt == eos
            if kind == "stop_at_first_eos" and bool(done.any()):
                break
    return ys


MISTAKES: dict[str, list[Mistake]] = {
    "shift_target": [
        Mistake("not_shifted", "Neither part is shifted: both have the full length. The decoder must read <bos> y1 "
                               "... (drop the last token) and learn to predict y1 ... <eos> (drop the first): "
                               "otherwise the label at each position is the very token it reads, and it learns to "
                               "copy.",
                lambda t: (t, t)),
        Mistake("swapped", "Input and labels are swapped: the decoder input starts with <bos> (tgt[:, :-1]), the "
                           "labels are the same sequence one step ahead (tgt[:, 1:]).",
                lambda t: (t[:, 1:], t[:, :-1])),
        Mistake("same_input", "decoder_input and labels are the same tensor: the labels must be one position ahead "
                              "of the input, so that position t learns to predict the token after the one it reads.",
                lambda t: (t[:, :-1], t[:, :-1])),
        Mistake("same_labels", "decoder_input and labels are the same tensor: the labels must be one position ahead "
                               "of the input, so that position t learns to predict the token after the one it reads.",
                lambda t: (t[:, 1:], t[:, 1:])),
        Mistake("batch_axis", "It shifts along the batch axis (dim 0); shift along the sequence axis, dim 1: "
                              "tgt[:, :-1] and tgt[:, 1:].", lambda t: (t[:-1], t[1:])),
        Mistake("single", PAIR, lambda t: t[:, :-1]),
    ],
    "make_src_mask": [
        Mistake("inverted", "The polarity is inverted: True must mark the tokens that MAY be attended to "
                            "(src != pad_id), False the padding.", lambda s, p: (s == p)[:, None, None, :]),
        Mistake("no_axes", "Add two singleton axes, (B, 1, 1, Ls), so the mask broadcasts over the heads and the "
                           "query positions of the (B, H, Lq, Ls) scores: (src != pad_id)[:, None, None, :].",
                lambda s, p: s != p),
        Mistake("query_axis", "It has shape (B, 1, Ls, 1): that masks the padded QUERIES (rows). Padding must be "
                              "hidden as KEYS, the last axis: shape (B, 1, 1, Ls).",
                lambda s, p: (s != p)[:, None, :, None]),
        Mistake("one_axis", "It has shape (B, 1, Ls): against (B, H, Lq, Ls) scores it would line B up with the heads. "
                            "Add both singleton axes: (src != pad_id)[:, None, None, :], shape (B, 1, 1, Ls).",
                lambda s, p: (s != p)[:, None, :]),
        Mistake("pad_ignored", "It ignores the pad_id argument (it compares with 0): use src != pad_id.",
                lambda s, p: (s != 0)[:, None, None, :]),
        Mistake("not_boolean", "should be a boolean mask (dtype bool)", lambda s, p: (s != p).long()[:, None, None, :]),
    ],
    "make_tgt_mask": [
        Mistake("inverted", "The polarity is inverted: True must mean 'may attend' (the past and present real "
                            "tokens).", lambda t, p: ~_tgt(t, p)),
        Mistake("causal_only", "It is only the causal mask: also hide the padded target positions (as keys), e.g. "
                               "`causal & (tgt != pad_id)[:, None, None, :]`.",
                lambda t, p: _causal(t.shape[1])[None, None]),
        Mistake("padding_only", "It only hides padding: the causal part is missing, so position t could read the "
                                "tokens after it (the answer). Combine with a lower-triangular mask.",
                lambda t, p: _keys(t, p)),
        Mistake("upper", "It lets each position see the FUTURE (upper triangle, triu): use the lower triangle (tril).",
                lambda t, p: _causal(t.shape[1]).T[None, None] & _keys(t, p)),
        Mistake("no_diagonal", "The diagonal is missing: a position must be allowed to attend to itself (tril with "
                               "diagonal=0); otherwise the first row is all False and its softmax gives NaN.",
                lambda t, p: _causal(t.shape[1]).tril(-1)[None, None] & _keys(t, p)),
        Mistake("query_padding", "The padding is applied to the QUERIES (rows): hide padded positions as keys only "
                                 "(the last axis), (tgt != pad_id)[:, None, None, :]. (A padded query's row would be "
                                 "all False, and a softmax over nothing gives NaN.)",
                lambda t, p: _causal(t.shape[1])[None, None] & (t != p)[:, None, :, None]),
        Mistake("or", "It combines the two with `|` (or); a position may attend only where both allow it: use `&`.",
                lambda t, p: _causal(t.shape[1])[None, None] | _keys(t, p)),
        Mistake("pad_ignored", "It ignores the pad_id argument (it compares with 0): use tgt != pad_id.",
                lambda t, p: _tgt(t, 0)),
        Mistake("no_head_axis", "The mask needs the head axis: shape (B, 1, Lt, Lt), one mask per sequence that "
                                "broadcasts over the heads.", lambda t, p: _tgt(t, p)[:, 0]),
    ],
    "noam_lr": [
        Mistake("no_warmup", "There is no warm-up: the rate starts at its largest value and only decays. For step "
                             "< warmup it must grow linearly, step * warmup**-1.5 (take the min of both).",
                lambda s, d, w: _noam(s, d, w, warm=False)),
        Mistake("no_factor", "The factor d_model ** -0.5 is missing.", lambda s, d, w: _noam(s, d, w, factor=False)),
        Mistake("positive_factor", "The factor is d_model ** -0.5 (one over the square root of d_model), not "
                                   "d_model ** 0.5.", lambda s, d, w: d * _noam(s, d, w)),
        Mistake("warmup_exponent", "The warm-up branch uses warmup ** -0.5; it must be step * warmup ** -1.5 so "
                                   "both branches meet at step == warmup.", lambda s, d, w: _noam(s, d, w, wexp=-0.5)),
        Mistake("max", "It takes the max of the two branches; the schedule is their min (the smaller of the "
                       "linear warm-up and the decay).", lambda s, d, w: _noam(s, d, w, op=max)),
        Mistake("off_by_one", "It is off by one step (it uses step + 1): it peaks at step warmup - 1 instead of "
                              "step == warmup. Use `step` as given (the first update is step 1).",
                lambda s, d, w: _noam(s, d, w, shift=1)),
        Mistake("swapped", "d_model and warmup are swapped: d_model ** -0.5 * min(step ** -0.5, step * "
                           "warmup ** -1.5).", lambda s, d, w: _noam(s, w, d)),
        Mistake("d_model_ignored", "It ignores the d_model argument (it uses 512): scale by d_model ** -0.5.",
                lambda s, d, w: _noam(s, 512, w)),
        Mistake("warmup_ignored", "It ignores the warmup argument (it uses 4000): step * warmup ** -1.5.",
                lambda s, d, w: _noam(s, d, 4000)),
        Mistake("zero_step", STEP_ZERO, lambda s, d, w: _noam(s, d, w, shift=-1)),
        Mistake("tensor", NOT_NUMBER, lambda s, d, w: torch.tensor(_noam(s, d, w))),
    ],
    "label_smoothed_loss": [
        Mistake("spread_over_others", "The smoothing mass is spread over the V - 1 wrong classes only. In this "
                                      "course (and in PyTorch's label_smoothing) the uniform part covers ALL V "
                                      "classes: the target distribution is (1 - eps) * one_hot + eps / V, so the true "
                                      "class gets 1 - eps + eps / V.",
                lambda lg, t, e, p: _ls(lg, t, e, p, spread="others")),
        Mistake("padding_counted", "Padding positions are not ignored: leave out the positions whose label is pad_id "
                                   "and average over the real tokens only.",
                lambda lg, t, e, p: _ls(lg, t, e, p, ignore=False)),
        Mistake("mean_over_all", "The padding positions are zeroed but the mean still counts them: divide by the "
                                 "number of real (non-padding) tokens.",
                lambda lg, t, e, p: _ls(lg, t, e, p, mean="all")),
        Mistake("no_smoothing", "There is no smoothing: this is plain cross-entropy. Mix in eps times the "
                                "cross-entropy against the uniform distribution.",
                lambda lg, t, e, p: _ls(lg, t, 0.0, p)),
        Mistake("true_not_down_weighted", "The true class is not down-weighted: use (1 - eps) * nll + eps * "
                                          "uniform_part, so the target distribution sums to 1.",
                lambda lg, t, e, p: _ls(lg, t, e, p, weight_true=False)),
        Mistake("log_of_softmax", "log(softmax(x)) underflows for large logits: a probability rounds to 0 and its "
                                  "log is -inf. Use F.log_softmax, which computes the same thing stably.",
                lambda lg, t, e, p: _ls(lg, t, e, p, log_of_softmax=True)),
        Mistake("probabilities", "It uses probabilities (softmax) where log-probabilities (log_softmax) are needed.",
                lambda lg, t, e, p: _ls(lg, t, e, p, probs=True)),
        Mistake("sum", "It returns the SUM over tokens; return the mean over the real tokens.",
                lambda lg, t, e, p: _ls(lg, t, e, p, total=True)),
        Mistake("uniform_sum", "The uniform part is the MEAN of -log p over the V classes (the sum divided by V), "
                               "not their sum.", lambda lg, t, e, p: _ls(lg, t, e, p, uniform="sum")),
        Mistake("pad_ignored", "It ignores the pad_id argument (it leaves out label 0): leave out the positions whose "
                               "label is pad_id.", lambda lg, t, e, p: _ls(lg, t, e, 0)),
        Mistake("smoothing_ignored", "It ignores the smoothing argument (it uses 0.1): use `smoothing` as given.",
                lambda lg, t, e, p: _ls(lg, t, 0.1, p)),
        Mistake("wrong_axis", "log_softmax runs over the wrong axis: normalise over the classes, the last axis "
                              "(dim=-1).", lambda lg, t, e, p: _ls(lg, t, e, p, dim=0)),
        Mistake("number", LOSS_NUMBER, lambda lg, t, e, p: _ls(lg, t, e, p).item()),
        Mistake("not_reduced", LOSS_SCALAR,
                lambda lg, t, e, p: F.cross_entropy(lg.reshape(-1, lg.shape[-1]), t.reshape(-1), ignore_index=p,
                                                    label_smoothing=e, reduction="none")),
        Mistake("detached", LOSS_DETACHED, lambda lg, t, e, p: _ls(lg.detach(), t, e, p)),
    ],
    "greedy_decode": [
        Mistake("first_pos", "It takes the prediction at the FIRST position; the next token is predicted by the LAST "
                             "position: logits[:, -1].",
                lambda m, s, n, b, e: _greedy(m, s, n, b, e, kind="first_pos")),
        Mistake("last_only", "It feeds only the last generated token to the decoder; feed the whole prefix (<bos> "
                             "and every token so far) each step: the decoder's self-attention needs it.",
                lambda m, s, n, b, e: _greedy(m, s, n, b, e, kind="last_only")),
        Mistake("no_src_mask", "The source padding is not hidden: build the mask with the model's padding id, "
                               "make_src_mask(src, model.src_pad_id), and pass it to encode and (as memory_mask) to "
                               "decode.",
                lambda m, s, n, b, e: _greedy(m, s, n, b, e, kind="no_src_mask")),
        Mistake("decode_without_mask", "decode is called without memory_mask: pass memory_mask=src_mask, so the "
                                       "cross-attention ignores the padded source positions.",
                lambda m, s, n, b, e: _greedy(m, s, n, b, e, kind="decode_without_mask")),
        Mistake("stop_at_first_eos", "It stops as soon as one row has produced <eos>; go on until EVERY row has "
                                     "(keep a `done` flag per row), or until max_len tokens.",
                lambda m, s, n, b, e: _greedy(m, s, n, b, e, kind="stop_at_first_eos")),
        Mistake("no_bos", NO_BOS, lambda m, s, n, b, e: _greedy(m, s, n, b, e)[:, 1:]),
        Mistake("too_long", TOO_LONG, lambda m, s, n, b, e: _greedy(m, s, n + 2, b, e)),
    ],
}

error_hints("noam_lr", [(r"cannot be raised to a negative power|division by zero", STEP_ZERO)])
error_hints("make_tgt_mask", [
    (r"must match the size of tensor b", "The causal part must be (Lt, Lt) with Lt = tgt.shape[1], the sequence "
                                         "length (tgt.shape[0] is the batch size), and the padding part "
                                         "(B, 1, 1, Lt)."),
])
error_hints("greedy_decode", [
    (r"indices.*(Long|Int)|scalar types: Long, Int",
     "Token ids must be integers: the decoder's embedding looks them up. Start from torch.full(..., bos_id, "
     "dtype=torch.long) and append the argmax (an integer tensor)."),
    (r"Sizes of tensors must match|Tensors must have same number of dimensions",
     "torch.cat got tensors that do not line up: the next token must be one id per row, shape (B,), the argmax "
     "over the vocabulary (the last axis) of the last position's logits, appended as ys = torch.cat([ys, "
     "next_token[:, None]], dim=1)."),
])
error_hints("label_smoothed_loss", [
    (r"a leaf Variable that requires grad is being used in an in-place operation",
     "It changes the logits in place (`-=`, `/=`, `[...] =` or a method ending in `_`); the caller's tensor must "
     "stay as it was: write `logits = logits - ...`."),
])


# ------------------------------------------------------------------------------------------------------------
# the checks
# ------------------------------------------------------------------------------------------------------------
def _pair(got, name: str):
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise CheckFailed(f"`{name}` {PAIR}, but it returned a {describe_value(got)}.")
    return got


def _same(a, b) -> bool:
    return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and bool(
        torch.equal(a, b))


@torch_threads(1)
def check_shift_target(shift_target, *, seed: int = 0) -> None:
    """Check ``shift_target(tgt) -> (decoder_input, labels)`` = ``(tgt[:, :-1], tgt[:, 1:])``."""
    mistakes = MISTAKES["shift_target"]
    cases = [example_target(seed + 1),
             example_target(seed + 2, lengths=(4, 6, 2, 6 + seed % 3)),
             torch.tensor([[BOS, EOS], [BOS, EOS + 3 + seed % 5]])]
    for tgt in cases:
        shown = f"shift_target(tgt of shape {tuple(tgt.shape)})"
        dec_in, labels = _pair(call(shift_target, "shift_target", tgt), "shift_target")
        want = (tgt[:, :-1], tgt[:, 1:])
        for got_pair, message in candidates(mistakes, tgt):
            if isinstance(got_pair, tuple) and _same(dec_in, got_pair[0]) and _same(labels, got_pair[1]) \
                    and not (_same(dec_in, want[0]) and _same(labels, want[1])):
                raise CheckFailed(f"{shown} is not right yet. {message}")
        compare(f"decoder_input (the first returned value) of {shown}", dec_in, want[0], hints=[
            (tgt[:, 1:], "The decoder input should start with <bos>: drop the LAST token (tgt[:, :-1]), not the "
                         "first.")])
        compare(f"labels (the second returned value) of {shown}", labels, want[1], hints=[
            (tgt[:, :-1], "The labels should be the target without its first token (<bos>): tgt[:, 1:].")])
    passed("shift_target")


@torch_threads(1)
def check_make_src_mask(make_src_mask, *, seed: int = 0) -> None:
    """Check ``make_src_mask(src, pad_id) -> (B, 1, 1, Ls)`` boolean, ``True`` at real tokens (any ``pad_id``)."""
    mistakes = MISTAKES["make_src_mask"]
    for pad, lengths in ((PAD, (7, 4, 5, 2)), (3, (6, 7, 3 + seed % 4, 1))):
        src = _ids(seed, 10 + pad, (4, 7), lengths, pad)
        compare(f"make_src_mask(src of shape (4, 7), pad_id={pad})", call(make_src_mask, "make_src_mask", src, pad),
                _keys(src, pad), hints=candidates(mistakes, src, pad))
    passed("make_src_mask")


def _broadcast(x, shape):
    try:
        return torch.broadcast_to(x, shape)
    except (RuntimeError, TypeError):
        return None


@torch_threads(1)
def check_make_tgt_mask(make_tgt_mask, *, seed: int = 0) -> None:
    """Check ``make_tgt_mask(tgt, pad_id) -> (B, 1, Lt, Lt)``: causal AND not padding (on the keys), any ``pad_id``."""
    mistakes = MISTAKES["make_tgt_mask"]
    for pad, lengths in ((PAD, (5, 3, 7)), (3, (7, 4 + seed % 3, 2))):
        tgt = _ids(seed, 40 + pad, (3, 7), lengths, pad, high=30)
        B, Lt = tgt.shape
        shown = f"make_tgt_mask(tgt of shape ({B}, {Lt}), pad_id={pad})"
        got = call(make_tgt_mask, "make_tgt_mask", tgt, pad)
        want = _tgt(tgt, pad)
        hints = candidates(mistakes, tgt, pad)
        if isinstance(got, torch.Tensor):
            full = _broadcast(got, want.shape)
            if full is not None:
                for cand, message in hints:
                    c = _broadcast(cand, want.shape) if isinstance(cand, torch.Tensor) else None
                    if c is not None and torch.equal(full.bool(), c.bool()) and not torch.equal(c.bool(), want):
                        raise CheckFailed(f"{shown} is not right yet. {message}")
        compare(shown, got, want, hints=hints)
    passed("make_tgt_mask")


def _match_curve(got: torch.Tensor, cands, want: torch.Tensor) -> str | None:
    for cand, message in cands:
        if cand.shape == got.shape and torch.allclose(got, cand, rtol=1e-6, atol=0) and not torch.allclose(
                cand, want, rtol=1e-9, atol=0):
            return message
    return None


@torch_threads(1)
def check_noam_lr(noam_lr, *, seed: int = 0) -> None:
    """Check ``noam_lr(step, d_model, warmup)`` = ``d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)`` for steps
    1 .. 4 warmup, for two settings; each result a Python number."""
    mistakes = MISTAKES["noam_lr"]
    settings = [(64, 40 + 5 * (seed % 3)), (128 + 64 * (seed % 4), 25 + seed % 7)]
    for d, w in settings:
        steps = list(range(1, 4 * w))
        values = []
        for s in steps:
            v = expect_number(f"noam_lr({s}, {d}, {w})", call(noam_lr, "noam_lr", s, d, w))
            expect(math.isfinite(v), f"noam_lr({s}, {d}, {w}) returned {v}.")
            values.append(v)
        got = torch.tensor(values, dtype=torch.float64)
        want = torch.tensor([warmup_inverse_sqrt(s, d, w) for s in steps], dtype=torch.float64)
        curves = []
        for m in mistakes:
            try:
                values = [m.fn(s, d, w) for s in steps]
            except (ZeroDivisionError, OverflowError, TypeError, ValueError):
                continue
            if all(isinstance(v, (int, float)) for v in values):  # (not the mistakes of type: see expect_number)
                curves.append((torch.tensor(values, dtype=torch.float64), m.message))
        message = _match_curve(got, curves, want)
        if message:
            raise CheckFailed(f"noam_lr(step, d_model={d}, warmup={w}) is not right yet. {message}")
        peak = int(torch.argmax(got)) + 1
        if peak in (w - 1, w + 1):
            raise CheckFailed(f"noam_lr is off by one: it peaks at step {peak} instead of step == warmup ({w}). Use "
                              "`step` as given (the first update is step 1), without adding or subtracting 1.")
        compare(f"noam_lr(step, d_model={d}, warmup={w}) for steps 1..{len(steps)}", got, want, atol=0, rtol=1e-6)
    d, w = settings[0]
    passed("noam_lr", f"peak {warmup_inverse_sqrt(w, d, w):.5f} at step {w}")


@torch_threads(1)
def check_label_smoothed_loss(label_smoothed_loss, *, seed: int = 0) -> None:
    """Check ``label_smoothed_loss(logits (B, L, V), target (B, L), smoothing, pad_id)`` against
    ``F.cross_entropy(..., ignore_index=pad_id, label_smoothing=smoothing)``: smoothing 0.1, 0.3 and 0, padding
    ids 0 and 3, a 0-d tensor that carries the gradient."""
    mistakes = MISTAKES["label_smoothed_loss"]
    V = 11
    for pad, eps, scale in ((PAD, 0.1, 2.0), (3, 0.3, 2.0), (3, 0.0, 2.0), (PAD, 0.2, 200.0)):
        target = _ids(seed, 20 + pad, (3, 6), (6, 4, 2), pad, high=V)
        logits = scale * torch.randn(3, 6, V, generator=_gen(seed, 21 + pad))
        shown = (f"label_smoothed_loss(logits (3, 6, {V}){' of size ~200 (a confident model)' if scale > 10 else ''}, "
                 f"target (3, 6), smoothing={eps}, pad_id={pad})")
        got = call(label_smoothed_loss, "label_smoothed_loss", logits, target, eps, pad)
        if isinstance(got, (int, float)) and not isinstance(got, bool):
            raise CheckFailed(LOSS_NUMBER)
        if isinstance(got, torch.Tensor) and got.dim() != 0:
            raise CheckFailed(f"{LOSS_SCALAR} It returned shape {tuple(got.shape)}.")
        want = F.cross_entropy(logits.reshape(-1, V), target.reshape(-1), ignore_index=pad, label_smoothing=eps)
        compare(shown, got, want, atol=1e-5, rtol=1e-5, hints=candidates(mistakes, logits, target, eps, pad))
    lg = logits.clone().requires_grad_(True)
    out = call_with(label_smoothed_loss, "label_smoothed_loss", (lg, target, 0.1, pad), grad=True)
    expect(isinstance(out, torch.Tensor) and out.requires_grad, LOSS_DETACHED)
    passed("label_smoothed_loss")


# ------------------------------------------------------------------------------------------------------------
class TinySeq2Seq(Seq2SeqTransformer):
    """The decoding checks' model: a :class:`Seq2SeqTransformer` whose own masks are written out here, so that it
    keeps working where the grader has replaced the library's mask functions by tripwires."""

    def make_src_mask(self, src):
        return (src != self.src_pad_id)[:, None, None, :]

    def make_tgt_mask(self, tgt):
        Lt = tgt.shape[1]
        causal = torch.ones(Lt, Lt, dtype=torch.bool, device=tgt.device).tril()
        return causal[None, None] & (tgt != self.tgt_pad_id)[:, None, None, :]


def tiny_model(seed: int = 0, vocab: int = 12, pad_id: int = 0) -> TinySeq2Seq:
    """A small random encoder-decoder (one block each, width 32) whose greedy outputs vary; the same ``seed`` gives
    the same weights (the caller's random state is left alone)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        m = TinySeq2Seq(src_vocab=vocab, tgt_vocab=vocab, d_model=32, num_heads=4, num_encoder_layers=1,
                        num_decoder_layers=1, d_ff=64, dropout=0.0, max_len=32, src_pad_id=pad_id,
                        tgt_pad_id=pad_id).eval()
    with torch.no_grad():
        m.generator.weight.mul_(4.0)  # sharper, more varied predictions
    return m


def _until_eos(row: list[int], eos: int) -> list[int]:
    return row[: row.index(eos) + 1] if eos in row else row


def _decoding_case(seed: int, pad: int, bos: int, max_len: int):
    """A model seed, a source batch and an ``eos`` for which the rows end at different steps and at least one row
    never ends (so stopping early, stopping late and max_len all show)."""
    for attempt in range(20):
        mseed = 100 * seed + attempt
        model = tiny_model(mseed, 12, pad)
        src = _ids(mseed, 30, (6, 7), (7, 4, 7, 6, 2, 7), pad, low=5, high=12)
        free = ref_greedy_decode(model, src, max_len, bos, eos=-1, pad=pad)[:, 1:]
        for eos in sorted(set(free[:, 1:5].reshape(-1).tolist()) - {pad, bos}):
            ends = [row.index(eos) if eos in row else None for row in free.tolist()]
            finished = [e for e in ends if e is not None]
            if None in ends and len(set(finished)) >= 2 and min(finished) < max_len - 2:
                return model, mseed, src, eos
    raise RuntimeError("no decoding case found")  # pragma: no cover - a bug of the check


@torch_threads(1)
def check_greedy_decode(greedy_decode, *, seed: int = 0) -> None:
    """Check ``greedy_decode(model, src, max_len, bos_id, eos_id) -> (B, <= 1 + max_len)`` ids against the library's
    greedy decoding of the same tiny model (built on the student's side with the same seed), with a source padding
    id that is not 0 and a ``<bos>`` that is not 1. What follows a row's ``<eos>`` is not compared."""
    mistakes = MISTAKES["greedy_decode"]
    pad, bos, max_len = 3, 4, 8
    model, mseed, src, eos = _decoding_case(seed, pad, bos, max_len)
    model_h = build(greedy_decode, tiny_model, mseed, 12, pad)
    shown = f"greedy_decode(model, src (6, 7), max_len={max_len}, bos_id={bos}, eos_id={eos})"
    got = call(greedy_decode, "greedy_decode", model_h, src, max_len, bos, eos)
    expect(isinstance(got, torch.Tensor), f"{shown} should return a tensor of token ids, got {describe_value(got)}.")
    expect(got.dim() == 2 and got.shape[0] == src.shape[0],
           f"{shown} should return shape (B, n) = ({src.shape[0]}, n), got {tuple(got.shape)}.")
    expect(not got.is_floating_point() and got.dtype != torch.bool,
           f"{shown} should return integer ids (torch.long), got dtype {got.dtype}: start from "
           "torch.full(..., bos_id, dtype=torch.long).")
    if got.shape[1] and bool((got[:, 0] == 1).all()) and bos != 1:
        raise CheckFailed(f"{NO_BOS}: every row of {shown} starts with 1; use the bos_id argument (here {bos}), not "
                          "a fixed id.")
    expect(got.shape[1] > 0 and bool((got[:, 0] == bos).all()),
           f"{NO_BOS}; the first column of {shown} is {got[:, 0].tolist() if got.shape[1] else []}.")
    expect(got.shape[1] <= max_len + 1, f"{shown} generated {got.shape[1] - 1} tokens; {TOO_LONG}={max_len} (plus "
                                        "the leading <bos>).")
    want = ref_greedy_decode(model, src, max_len, bos, eos, pad=pad)
    got_rows = [_until_eos(r, eos) for r in got.tolist()]
    want_rows = [_until_eos(r, eos) for r in want.tolist()]
    if got_rows != want_rows:
        for cand, message in candidates(mistakes, model, src, max_len, bos, eos):
            rows = [_until_eos(r, eos) for r in cand.tolist()]
            if rows != want_rows and rows == got_rows:
                raise CheckFailed(f"{shown} is not right yet. {message}")
        bad = next(i for i, (a, b) in enumerate(zip(got_rows, want_rows)) if a != b)
        raise CheckFailed(f"{shown} differs from the reference in row {bad}: expected {want_rows[bad]} (up to "
                          f"<eos>={eos}), got {got_rows[bad]}. At each step append the argmax of the last position's "
                          "logits; stop when every row has produced <eos> or after max_len tokens.")
    passed("greedy_decode")


#: check name -> check, the keys of :data:`MISTAKES`
CHECKS = {"shift_target": check_shift_target, "make_src_mask": check_make_src_mask,
          "make_tgt_mask": check_make_tgt_mask, "noam_lr": check_noam_lr,
          "label_smoothed_loss": check_label_smoothed_loss, "greedy_decode": check_greedy_decode}
