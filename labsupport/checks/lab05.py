"""Self-checks of Lab 5, translation with an encoder-decoder Transformer.

Each check runs the student's function on fresh inputs, compares it with the reference (:mod:`labsupport.training`,
:class:`labsupport.models.Seq2SeqTransformer`, ``F.cross_entropy``) and recognises the usual mistakes:

* shift_target: the target not shifted (the decoder would see the answer), input and labels swapped, only one of
  the two shifted, a single tensor returned instead of ``(decoder_input, labels)``;
* make_src_mask: inverted polarity (``True`` at padding), the shape ``(B, Ls)`` without the two broadcast axes,
  the padding applied to queries ``(B, 1, Ls, 1)`` instead of keys, a non-boolean dtype;
* make_tgt_mask: inverted polarity, only the causal part or only the padding part, the upper triangle (looking
  at the future), the diagonal left out (a token may not see itself), padding applied to the queries;
* noam_lr: the warm-up missing, the schedule off by one step (peak at ``warmup - 1`` or ``warmup + 1``), the
  ``d_model ** -0.5`` factor missing, ``warmup ** -0.5`` instead of ``warmup ** -1.5`` in the warm-up branch,
  ``max`` instead of ``min``;
* label_smoothed_loss: the smoothing mass spread over the ``V - 1`` wrong classes only, padding not ignored,
  padding ignored but the mean taken over all positions, no smoothing at all, the true class not down-weighted
  (``nll + eps * uniform``), probabilities instead of log-probabilities, a sum instead of a mean;
* greedy_decode: the output not starting with ``<bos>``, only the last token fed back, the argmax taken at the
  first position instead of the last, the source padding mask forgotten, more than ``max_len`` tokens generated.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from labsupport.attention import causal_mask
from labsupport.checks import CheckFailed, call, compare, describe_value, expect, one_thread, passed
from labsupport.training import greedy_decode as ref_greedy_decode
from labsupport.training import warmup_inverse_sqrt

__all__ = ["check_shift_target", "check_make_src_mask", "check_make_tgt_mask", "check_noam_lr",
           "check_label_smoothed_loss", "check_greedy_decode", "example_target", "tiny_model"]



PAD, BOS, EOS = 0, 1, 2


def example_target(seed: int = 0) -> torch.Tensor:
    """A ``(3, 7)`` batch of target sequences ``<bos> words <eos> <pad>...`` of different lengths."""
    g = torch.Generator().manual_seed(seed)
    lengths = [5, 3, 7]
    out = torch.full((3, 7), PAD, dtype=torch.long)
    for b, n in enumerate(lengths):
        words = torch.randint(5, 30, (n - 2,), generator=g)
        out[b, :n] = torch.cat([torch.tensor([BOS]), words, torch.tensor([EOS])])
    return out


def _pair(got, name: str):
    __tracebackhide__ = True
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise CheckFailed(f"`{name}` should return a pair (decoder_input, labels), but it returned a "
                          f"{describe_value(got)}.")
    return got


# ------------------------------------------------------------------------------------------------------------
@one_thread
def check_shift_target(shift_target) -> None:
    """Check ``shift_target(tgt) -> (decoder_input, labels)`` = ``(tgt[:, :-1], tgt[:, 1:])``."""
    __tracebackhide__ = True
    tgt = example_target(1)
    got = _pair(call(shift_target, "shift_target", tgt.clone()), "shift_target")
    dec_in, labels = got
    want_in, want_lab = tgt[:, :-1], tgt[:, 1:]
    for part in (dec_in, labels):
        expect(isinstance(part, torch.Tensor), f"shift_target should return two tensors, got {describe_value(got)}.")
    if dec_in.shape == tgt.shape and labels.shape == tgt.shape:
        raise CheckFailed("Neither part is shifted: both have the full length. The decoder must read "
                          "<bos> y1 ... y_{n-1} (drop the last token) and learn to predict y1 ... y_n <eos> (drop the "
                          "first): otherwise the label at each position is the very token it reads, and it learns to copy.")
    if torch.equal(dec_in, want_lab) and torch.equal(labels, want_in):
        raise CheckFailed("Input and labels are swapped: the decoder input starts with <bos> (tgt[:, :-1]), the "
                          "labels are the same sequence one step ahead (tgt[:, 1:]).")
    if dec_in.shape == want_in.shape and torch.equal(dec_in, labels):
        raise CheckFailed("decoder_input and labels are the same tensor: the labels must be one position ahead of "
                          "the input, so that position t learns to predict the token after the one it reads.")
    compare("decoder_input (first returned value)", dec_in, want_in, hints=[
        (tgt[:, 1:], "The decoder input should start with <bos>: drop the LAST token (tgt[:, :-1]), not the first."),
    ])
    compare("labels (second returned value)", labels, want_lab, hints=[
        (tgt[:, :-1], "The labels should be the target without its first token (<bos>): tgt[:, 1:]."),
    ])
    passed("shift_target")


# ------------------------------------------------------------------------------------------------------------
@one_thread
def check_make_src_mask(make_src_mask) -> None:
    """Check ``make_src_mask(src, pad_id) -> (B, 1, 1, Ls)`` boolean, ``True`` at real tokens."""
    __tracebackhide__ = True
    src = example_target(2)[:, 1:]  # any ids with padding at the end
    got = call(make_src_mask, "make_src_mask", src.clone(), PAD)
    want = (src != PAD)[:, None, None, :]
    expect(got is not None, "make_src_mask returned None. Did you forget the `return` statement?")
    expect(isinstance(got, torch.Tensor), f"make_src_mask should return a torch.Tensor, got {describe_value(got)}.")
    if got.shape == src.shape:
        hint = " (and its polarity is inverted: True must mean 'may attend')" if torch.equal(got.bool(), src == PAD) else ""
        raise CheckFailed(f"make_src_mask returned shape {tuple(got.shape)} (B, Ls){hint}. Add two singleton axes, "
                          "(B, 1, 1, Ls), so the mask broadcasts over the heads and the query positions of the "
                          "(B, H, Lq, Ls) scores: src_mask[:, None, None, :].")
    if got.shape == (src.shape[0], 1, src.shape[1], 1):
        raise CheckFailed("make_src_mask has shape (B, 1, Ls, 1): that masks the padded QUERIES (rows). Padding "
                          "must be hidden as KEYS, the last axis: shape (B, 1, 1, Ls).")
    if got.dtype != torch.bool and got.shape == want.shape:
        raise CheckFailed(f"make_src_mask should be a boolean mask (dtype torch.bool), but its dtype is {got.dtype}. "
                          "A comparison such as `src != pad_id` gives booleans.")
    compare("make_src_mask(src, pad_id)", got, want, hints=[
        (~want, "The polarity is inverted: True must mark the tokens that MAY be attended to (src != pad_id), "
                "False the padding."),
    ])
    passed("make_src_mask")


# ------------------------------------------------------------------------------------------------------------
def _broadcast(got: torch.Tensor, shape) -> torch.Tensor | None:
    try:
        return torch.broadcast_to(got, shape)
    except RuntimeError:
        return None


@one_thread
def check_make_tgt_mask(make_tgt_mask) -> None:
    """Check ``make_tgt_mask(tgt, pad_id) -> (B, 1, Lt, Lt)``: causal AND target padding (on the keys)."""
    __tracebackhide__ = True
    tgt = example_target(3)
    B, Lt = tgt.shape
    got = call(make_tgt_mask, "make_tgt_mask", tgt.clone(), PAD)
    expect(got is not None, "make_tgt_mask returned None. Did you forget the `return` statement?")
    expect(isinstance(got, torch.Tensor), f"make_tgt_mask should return a torch.Tensor, got {describe_value(got)}.")
    causal = causal_mask(Lt)[None, None]
    keys = (tgt != PAD)[:, None, None, :]
    want = causal & keys
    full = _broadcast(got.bool() if got.dtype != torch.bool else got, (B, 1, Lt, Lt))
    if full is not None:
        queries = (tgt != PAD)[:, None, :, None]
        for cand, msg in [
            (~want, "The polarity is inverted: True must mean 'may attend' (the past and present real tokens)."),
            (causal.expand(B, 1, Lt, Lt), "It is only the causal mask: also hide the padded target positions "
                                          "(as keys), e.g. `causal & (tgt != pad_id)[:, None, None, :]`."),
            (keys.expand(B, 1, Lt, Lt), "It only hides padding: the causal part is missing, so position t could "
                                        "read the tokens after it (the answer). Combine with a lower-triangular mask."),
            (torch.ones(Lt, Lt, dtype=torch.bool).triu()[None, None] & keys,
             "It lets each position see the FUTURE (upper triangle, triu): use the lower triangle (tril)."),
            (torch.ones(Lt, Lt, dtype=torch.bool).tril(-1)[None, None] & keys,
             "The diagonal is missing: a position must be allowed to attend to itself (tril with diagonal=0); "
             "otherwise the first row is all False and its softmax gives NaN."),
            (causal & queries, "The padding is applied to the QUERIES (rows): hide padded positions as keys "
                               "(the last axis), (tgt != pad_id)[:, None, None, :]."),
        ]:
            if torch.equal(full, cand.expand(B, 1, Lt, Lt)) and not torch.equal(full, want.expand(B, 1, Lt, Lt)):
                raise CheckFailed(f"make_tgt_mask is not right yet. {msg}")
    if got.dtype != torch.bool:
        raise CheckFailed(f"make_tgt_mask should be a boolean mask (dtype torch.bool), got {got.dtype}.")
    if got.shape != want.shape and full is not None and torch.equal(full, want):
        raise CheckFailed(f"make_tgt_mask has the right values but the shape {tuple(got.shape)}; return "
                          f"(B, 1, Lt, Lt) = {tuple(want.shape)} (one mask per sequence, broadcast over heads).")
    compare("make_tgt_mask(tgt, pad_id)", got, want)
    passed("make_tgt_mask")


# ------------------------------------------------------------------------------------------------------------
@one_thread
def check_noam_lr(noam_lr) -> None:
    """Check ``noam_lr(step, d_model, warmup)`` = ``d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)``."""
    __tracebackhide__ = True
    d, w = 64, 40
    steps = list(range(1, 4 * w))
    got = []
    for s in steps:
        v = call(noam_lr, "noam_lr", s, d, w)
        if isinstance(v, torch.Tensor):
            v = v.item()
        expect(isinstance(v, (int, float)), f"noam_lr should return a number, got {describe_value(v)} for step {s}.")
        expect(math.isfinite(v), f"noam_lr({s}, {d}, {w}) returned {v}.")
        got.append(float(v))
    got = torch.tensor(got, dtype=torch.float64)
    want = torch.tensor([warmup_inverse_sqrt(s, d, w) for s in steps], dtype=torch.float64)
    S = torch.tensor(steps, dtype=torch.float64)
    peak = int(torch.argmax(got)) + 1
    hints = [
        (d ** -0.5 * S ** -0.5, "There is no warm-up: the rate starts at its largest value and only decays. For "
                                "step < warmup it must grow linearly, step * warmup**-1.5 (take the min of both)."),
        (want * d ** 0.5, "The factor d_model ** -0.5 is missing."),
        (d ** -0.5 * torch.minimum(S ** -0.5, S * w ** -0.5), "The warm-up branch uses warmup ** -0.5; it must be "
                                                              "step * warmup ** -1.5 so both branches meet at step == warmup."),
        (d ** -0.5 * torch.maximum(S ** -0.5, S * w ** -1.5), "It takes the max of the two branches; the schedule is "
                                                              "their min (the smaller of the linear warm-up and the decay)."),
    ]
    for cand, msg in hints:
        if torch.allclose(got, cand, rtol=1e-6, atol=0, equal_nan=False):
            raise CheckFailed(f"noam_lr is not right yet. {msg}")
    if peak in (w - 1, w + 1):
        raise CheckFailed(f"noam_lr is off by one: it peaks at step {peak} instead of step == warmup ({w}). Use "
                          "`step` as given (the first update is step 1), without adding or subtracting 1.")
    compare(f"noam_lr(step, d_model={d}, warmup={w}) for steps 1..{len(steps)}", got, want, atol=0, rtol=1e-6)
    expect(peak == w, f"noam_lr should peak at step == warmup ({w}); yours peaks at step {peak}.")
    passed("noam_lr", f"peak {float(want[w - 1]):.5f} at step {w}")


# ------------------------------------------------------------------------------------------------------------
def _ls_candidates(logits, target, eps, pad):
    V = logits.shape[-1]
    lg, tg = logits.reshape(-1, V), target.reshape(-1)
    keep = tg != pad
    logp = F.log_softmax(lg, -1)
    nll = -logp.gather(1, tg.clamp(min=0)[:, None]).squeeze(1)
    uni = -logp.mean(-1)
    other = (-logp.sum(-1) + logp.gather(1, tg[:, None]).squeeze(1)) / (V - 1)
    p = torch.softmax(lg, -1)
    nll_p = -p.gather(1, tg[:, None]).squeeze(1)
    per = (1 - eps) * nll + eps * uni
    n = keep.sum()
    return [
        ((((1 - eps) * nll + eps * other) * keep).sum() / n,
         "The smoothing mass is spread over the V - 1 wrong classes only. In this course (and in PyTorch's "
         "label_smoothing) the uniform part covers ALL V classes: the target distribution is "
         "(1 - eps) * one_hot + eps / V, so the true class gets 1 - eps + eps / V."),
        (per.mean(), "Padding positions are not ignored: leave out the positions whose label is pad_id and average "
                     "over the real tokens only."),
        ((per * keep).sum() / keep.numel(), "The padding positions are zeroed but the mean still counts them: divide "
                                           "by the number of real (non-padding) tokens."),
        ((nll * keep).sum() / n, "There is no smoothing: this is plain cross-entropy. Mix in eps times the "
                                 "cross-entropy against the uniform distribution."),
        (((nll + eps * uni) * keep).sum() / n, "The true class is not down-weighted: use (1 - eps) * nll + eps * "
                                              "uniform_part, so the target distribution sums to 1."),
        ((((1 - eps) * nll_p + eps * (-p.mean(-1))) * keep).sum() / n,
         "It uses probabilities (softmax) where log-probabilities (log_softmax) are needed."),
        ((per * keep).sum(), "It returns the SUM over tokens; return the mean over the real tokens."),
    ]


@one_thread
def check_label_smoothed_loss(label_smoothed_loss) -> None:
    """Check ``label_smoothed_loss(logits (B, L, V), target (B, L), smoothing, pad_id)`` against
    ``F.cross_entropy(..., ignore_index=pad_id, label_smoothing=smoothing)``."""
    __tracebackhide__ = True
    g = torch.Generator().manual_seed(5)
    target = example_target(5)[:, 1:]
    logits = torch.randn(*target.shape, 31, generator=g) * 2
    for eps in (0.1, 0.3):
        got = call(label_smoothed_loss, "label_smoothed_loss", logits.clone(), target.clone(), eps, PAD)
        want = F.cross_entropy(logits.reshape(-1, 31), target.reshape(-1), ignore_index=PAD, label_smoothing=eps)
        expect(isinstance(got, torch.Tensor), f"label_smoothed_loss should return a torch.Tensor (a scalar), got "
                                              f"{describe_value(got)}.")
        expect(got.dim() == 0, f"label_smoothed_loss should return a scalar (0-d tensor), got shape {tuple(got.shape)}: "
                               "average over the real tokens.")
        if not torch.allclose(got.double(), want.double(), atol=1e-5):
            for cand, msg in _ls_candidates(logits, target, eps, PAD):
                if torch.allclose(got.double(), cand.double(), atol=1e-5):
                    raise CheckFailed(f"label_smoothed_loss is not right yet (smoothing={eps}). {msg}")
        compare(f"label_smoothed_loss(..., smoothing={eps})", got, want, atol=1e-5)
    got0 = call(label_smoothed_loss, "label_smoothed_loss", logits, target, 0.0, PAD)
    compare("label_smoothed_loss with smoothing=0 (plain cross-entropy)", got0,
            F.cross_entropy(logits.reshape(-1, 31), target.reshape(-1), ignore_index=PAD), atol=1e-5)
    lg = logits.clone().requires_grad_(True)
    out = call(label_smoothed_loss, "label_smoothed_loss", lg, target, 0.1, PAD)
    expect(out.requires_grad, "The loss does not depend on the logits through autograd (was .item(), .numpy() or "
                              "torch.no_grad() used?): training needs its gradient.")
    passed("label_smoothed_loss")


# ------------------------------------------------------------------------------------------------------------
def tiny_model(seed: int = 0, vocab: int = 12):
    """A small random Seq2SeqTransformer whose greedy outputs vary (for the decoding checks)."""
    from labsupport.models import Seq2SeqTransformer

    torch.manual_seed(seed)
    m = Seq2SeqTransformer(src_vocab=vocab, tgt_vocab=vocab, d_model=32, num_heads=4, num_encoder_layers=1,
                           num_decoder_layers=1, d_ff=64, dropout=0.0, max_len=32).eval()
    with torch.no_grad():
        m.generator.weight.mul_(4.0)  # sharper, more varied predictions
    return m


def _until_eos(row: list[int], eos: int) -> list[int]:
    return row[: row.index(eos) + 1] if eos in row else row


def _variants(model, src, max_len, bos, eos):
    """Outputs of typical wrong decoders (without stopping at eos)."""
    out = {}
    with torch.no_grad():
        src_mask = model.make_src_mask(src)
        memory = model.encode(src, src_mask)
        memory_unmasked = model.encode(src, torch.ones_like(src_mask))
        for kind in ("last_only", "first_pos", "no_src_mask"):
            ys = torch.full((src.shape[0], 1), bos, dtype=torch.long)
            for _ in range(max_len):
                if kind == "last_only":
                    logits = model.decode(ys[:, -1:], memory, memory_mask=src_mask)[:, -1]
                elif kind == "first_pos":
                    logits = model.decode(ys, memory, memory_mask=src_mask)[:, 0]
                else:
                    logits = model.decode(ys, memory_unmasked, memory_mask=None)[:, -1]
                ys = torch.cat([ys, logits.argmax(-1, keepdim=True)], 1)
            out[kind] = ys
    return out


@one_thread
def check_greedy_decode(greedy_decode, seed: int = 0) -> None:
    """Check ``greedy_decode(model, src, max_len, bos_id, eos_id) -> (B, <= 1 + max_len)`` ids."""
    __tracebackhide__ = True
    model = tiny_model(seed)
    g = torch.Generator().manual_seed(seed + 1)
    src = torch.randint(5, 12, (6, 7), generator=g)
    src[1, 4:] = PAD
    src[4, 2:] = PAD
    max_len = 8
    free = ref_greedy_decode(model, src, max_len, BOS, eos=-1, pad=PAD)  # never stops: find a useful eos
    counts = torch.bincount(free[:, 2:5].reshape(-1), minlength=12)
    counts[:3] = 0
    eos = int(counts.argmax())
    want = ref_greedy_decode(model, src, max_len, BOS, eos, pad=PAD)
    got = call(greedy_decode, "greedy_decode", model, src.clone(), max_len, BOS, eos)
    expect(isinstance(got, torch.Tensor), f"greedy_decode should return a tensor of token ids, got {describe_value(got)}.")
    expect(got.dim() == 2 and got.shape[0] == src.shape[0],
           f"greedy_decode should return shape (B, n) = ({src.shape[0]}, n), got {tuple(got.shape)}.")
    expect(got.dtype in (torch.long, torch.int64, torch.int32), f"greedy_decode should return integer ids, got {got.dtype}.")
    expect(bool((got[:, 0] == BOS).all()), "Each output row should start with <bos> (the first decoder input); "
                                           f"got first column {got[:, 0].tolist()}.")
    expect(got.shape[1] <= max_len + 1, f"greedy_decode generated {got.shape[1] - 1} tokens; at most max_len="
                                        f"{max_len} (plus the leading <bos>).")
    got_rows = [_until_eos(r, eos) for r in got.tolist()]
    want_rows = [_until_eos(r, eos) for r in want.tolist()]
    if got_rows != want_rows:
        variants = _variants(model, src, max_len, BOS, eos)
        found = []
        for kind, msg in [
            ("first_pos", "It takes the prediction at the FIRST position; the next token is predicted by the LAST "
                          "position: logits[:, -1]."),
            ("last_only", "It feeds only the last generated token to the decoder; feed the whole prefix "
                          "(<bos> and every token so far) each step: the decoder's self-attention needs it."),
            ("no_src_mask", "The source padding mask is missing: pass memory_mask=src_mask to decode (and the mask "
                            "to encode) so the padded source positions are ignored."),
        ]:
            cand = [_until_eos(r, eos) for r in variants[kind].tolist()]
            if got_rows == [c[: len(gr)] for c, gr in zip(cand, got_rows)] and all(len(gr) > 1 for gr in got_rows):
                found.append(msg)
        if found:
            raise CheckFailed("greedy_decode is not right yet. " + " Or: ".join(found))
        bad = next(i for i, (a, b) in enumerate(zip(got_rows, want_rows)) if a != b)
        raise CheckFailed(f"greedy_decode differs from the reference in row {bad}: expected {want_rows[bad]} (up to "
                          f"<eos>={eos}), got {got_rows[bad]}. At each step append argmax of the last position's "
                          "logits; stop when every row has produced <eos> or after max_len tokens.")
    passed("greedy_decode")
