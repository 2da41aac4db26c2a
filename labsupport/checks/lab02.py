"""Self-checks of Lab 2, multi-head attention in PyTorch.

Each check runs the student's code on random inputs (``seed`` picks them; the notebook uses the default, grading
uses others), compares it with the reference twin in :mod:`labsupport.attention` and recognises the typical
mistakes of :data:`MISTAKES` (each one the reference *with that mistake*, plus what to tell the student). The
same checks also catch what no table lists: a result of the wrong type, shape or dtype, an argument changed in
place, a crash inside torch (explained), keys and values taken from the wrong input (the checks give
cross-attention *different* key and value tensors, of another length than the queries), ``q_len`` and ``k_len``
swapped, masks ignored or inverted, NaN for a query that may attend to nothing.

``MultiHeadAttention`` is checked as a module: it is built on the student's side, its structure is read with
:func:`~labsupport.checks.core.probe`, weights the check made are loaded into it, and its outputs are compared
with the reference module holding the same weights.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from labsupport import attention as ref
from labsupport.checks.core import (
    CheckFailed,
    Handle,
    Mistake,
    call,
    candidates,
    compare,
    describe_value,
    error_hints,
    expect,
    method,
    passed,
    probe,
)
from labsupport.checks.subject import StudentCodeError
from labsupport.device import torch_threads

__all__ = ["MISTAKES", "CHECKS", "check_split_heads", "check_merge_heads", "check_causal_mask", "check_padding_mask",
           "check_multi_head_attention", "check_to_torch_attn_mask", "reference_torch_attn_mask",
           "MistakenMultiHeadAttention"]


def _gen(seed: int, case: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, case]).generate_state(1)[0]))


def _randn(g: torch.Generator, *shape) -> torch.Tensor:
    return torch.randn(*shape, generator=g)


def reference_torch_attn_mask(mask: torch.Tensor, batch_size: int, num_heads: int, q_len: int,
                              k_len: int) -> torch.Tensor:
    """Our mask (``True`` = may attend, broadcastable to ``(B, H, Lq, Lk)``) as ``nn.MultiheadAttention``'s 3-D
    ``attn_mask``: ``(B * H, Lq, Lk)``, ``True`` = blocked, row ``b * H + h`` for batch ``b`` and head ``h``."""
    full = mask.expand(batch_size, num_heads, q_len, k_len)
    return ~full.reshape(batch_size * num_heads, q_len, k_len)


def _split(x: torch.Tensor, h: int) -> torch.Tensor:
    B, L, D = x.shape
    return x.view(B, L, h, D // h).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    B, H, L, dh = x.shape
    return x.transpose(1, 2).reshape(B, L, H * dh)


# ------------------------------------------------------------------------------------------------------------
# the typical mistakes, each as the reference with that mistake
# ------------------------------------------------------------------------------------------------------------
BOOL_MASK = ("masks must be boolean (torch.bool). A float or integer mask of 0s and 1s breaks `~mask` (bitwise "
             "not of 1 is -2) and masked_fill: build it with dtype=torch.bool or with a comparison (e.g. "
             "`arange(...) < lengths[:, None]`).")


def _mha_forward(m, query, key=None, value=None, mask=None, mistake: str = ""):
    """Multi-head attention with the projections of ``m`` (``q_proj`` ... ``out_proj``, ``num_heads``), with one
    typical mistake switched on."""
    key = query if key is None else key
    value = key if value is None else value
    B, _, D = query.shape
    H = m.num_heads
    dh = D // H

    def sp(t):
        L = t.shape[1]
        return t.reshape(B, H, L, dh) if mistake == "split_direct" else t.view(B, L, H, dh).transpose(1, 2)

    q_in = key if mistake == "query_from_key" else query
    k_in = value if mistake == "keys_from_value" else key
    v_in = key if mistake == "values_from_key" else value
    k_proj = m.v_proj if mistake == "keys_with_v_proj" else m.k_proj
    q, k, v = sp(m.q_proj(q_in)), sp(k_proj(k_in)), sp(m.v_proj(v_in))
    if mistake == "k_v_swapped":
        k, v = v, k
    scale = {"no_scale": 1.0, "scale_d_model": math.sqrt(D), "scale_d_head": float(dh)}.get(mistake, math.sqrt(dh))
    scores = q @ k.transpose(-2, -1) / scale
    use = None if mask is None or mistake == "mask_ignored" else (~mask if mistake == "mask_inverted" else mask)
    if use is not None:
        scores = scores.masked_fill(~use, -1e9 if mistake == "masked_fill_finite" else float("-inf"))
    w = torch.softmax(scores, dim=-1)
    if use is not None and mistake != "masked_fill_finite":
        w = w.nan_to_num(0.0)
    out = w @ v
    Lq = out.shape[2]
    out = out.reshape(B, Lq, D) if mistake == "merge_direct" else out.transpose(1, 2).reshape(B, Lq, D)
    return (out if mistake == "no_out_proj" else m.out_proj(out)), w


class MistakenMultiHeadAttention(nn.Module):
    """A ``MultiHeadAttention(d_model, num_heads)`` with the typical mistake ``mistake`` (a class attribute of the
    subclasses :func:`_mistaken` makes): what the documented mistakes of the module exercise are."""

    mistake = ""

    def __init__(self, d_model: int, num_heads: int):
        super().__init__()
        self.d_model, self.num_heads = d_model, num_heads
        self.q_proj, self.k_proj = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)
        self.v_proj, self.out_proj = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)

    def forward(self, query, key=None, value=None, mask=None):
        return _mha_forward(self, query, key, value, mask, self.mistake)


def _mistaken(name: str) -> type:
    return type(f"MultiHeadAttention_{name}", (MistakenMultiHeadAttention,), {"mistake": name})


MISTAKES: dict[str, list[Mistake]] = {
    "split_heads": [
        Mistake("no_transpose", "The heads are split but the head axis is still after the sequence axis, shape "
                                "(B, L, H, d_head). Add .transpose(1, 2) to get (B, H, L, d_head), so that each head "
                                "attends over the whole sequence on its own.",
                lambda x, h: x.view(x.shape[0], x.shape[1], h, x.shape[2] // h)),
        Mistake("reshape_straight", "You reshaped straight to (B, H, L, d_head). That cuts the *sequence* into H "
                                    "chunks instead of cutting each token's D features into H groups. Reshape to "
                                    "(B, L, H, d_head) first, then transpose(1, 2).",
                lambda x, h: x.reshape(x.shape[0], h, x.shape[1], x.shape[2] // h)),
        Mistake("interleaved", "The heads take interleaved features (every H-th one). Head h must get the contiguous "
                               "block of features h*d_head ... (h+1)*d_head-1: view(B, L, H, d_head), then "
                               "transpose(1, 2).",
                lambda x, h: x.view(x.shape[0], x.shape[1], x.shape[2] // h, h).permute(0, 3, 1, 2)),
    ],
    "merge_heads": [
        Mistake("reshape_straight", "You reshaped (B, H, L, d_head) straight to (B, L, D). That mixes positions of "
                                    "different tokens. Transpose to (B, L, H, d_head) first (.transpose(1, 2)), then "
                                    "reshape to (B, L, H * d_head).",
                lambda x: x.reshape(x.shape[0], x.shape[2], x.shape[1] * x.shape[3])),
        Mistake("no_reshape", "You moved the head axis back, shape (B, L, H, d_head), but did not concatenate the "
                              "heads. Reshape the last two axes into one: .reshape(B, L, H * d_head).",
                lambda x: x.transpose(1, 2)),
        Mistake("interleaved", "The features of the heads are interleaved: each head's d_head features must stay "
                               "together, head 0 first. Transpose only the head and sequence axes "
                               "(.transpose(1, 2)), then reshape.",
                lambda x: x.permute(0, 2, 3, 1).reshape(x.shape[0], x.shape[2], x.shape[1] * x.shape[3])),
    ],
    "causal_mask": [
        Mistake("inverted", "The polarity is inverted (True where attention is forbidden, as in "
                            "nn.MultiheadAttention). In this course True means *may attend*: itself and earlier "
                            "positions.", lambda n: ~ref.causal_mask(n)),
        Mistake("no_diagonal", "The diagonal is missing: every position may attend to itself.",
                lambda n: torch.ones(n, n, dtype=torch.bool).tril(-1)),
        Mistake("upper", "It lets each position see the future (upper triangle) instead of the past.",
                lambda n: torch.ones(n, n, dtype=torch.bool).triu()),
        Mistake("float", BOOL_MASK, lambda n: torch.ones(n, n).tril()),
    ],
    "padding_mask": [
        Mistake("inverted", "The polarity is inverted: True marks the real tokens (which may be attended to), False "
                            "the padding.", lambda lengths, m: ~ref.padding_mask(lengths, m)),
        Mistake("two_dims", "The mask has shape (B, max_len), but the scores it must mask have shape (B, H, Lq, Lk): "
                            "broadcasting lines shapes up from the right, so the batch axis would land on the query "
                            "axis. Return shape (B, 1, 1, max_len), e.g. keep[:, None, None, :].",
                lambda lengths, m: ref.padding_mask(lengths, m)[:, 0, 0, :]),
        Mistake("three_dims", "The mask has shape (B, 1, max_len); against (B, H, Lq, Lk) scores its batch axis would "
                              "land on the head axis. Return shape (B, 1, 1, max_len): keep[:, None, None, :].",
                lambda lengths, m: ref.padding_mask(lengths, m)[:, 0]),
        Mistake("off_by_one", "One position too many is marked real: position i is a real token when i < length "
                              "(not i <= length).",
                lambda lengths, m: (torch.arange(m)[None, :] <= torch.as_tensor(lengths)[:, None])[:, None, None]),
        Mistake("max_len_ignored", "The mask's last axis must have max_len positions, not the longest length.",
                lambda lengths, m: ref.padding_mask(lengths)),
        Mistake("float", BOOL_MASK, lambda lengths, m: ref.padding_mask(lengths, m).float()),
    ],
    "multi_head_attention": [Mistake(name, message, _mistaken(name)) for name, message in (
        ("no_scale", "The scores are not scaled: divide q @ k^T by sqrt(d_head), the width of one head."),
        ("scale_d_model", "The scores are divided by sqrt(d_model); each head works in d_head = d_model / num_heads "
                          "dimensions, so divide by sqrt(d_head)."),
        ("scale_d_head", "The scores are divided by d_head; the scale is 1 / sqrt(d_head)."),
        ("split_direct", "The heads are split with view(B, H, L, d_head) directly, which cuts the sequence instead "
                         "of the features: view(B, L, H, d_head).transpose(1, 2)."),
        ("merge_direct", "The heads are merged with reshape(B, L, D) without transposing (B, H, L, d_head) back to "
                         "(B, L, H, d_head) first."),
        ("no_out_proj", "The output projection is missing: apply out_proj to the merged heads."),
        ("values_from_key", "The values are projected from `key`: they come from the `value` input, "
                            "v = v_proj(value). (In self-attention key and value are the same tensor, so only "
                            "cross-attention shows it.)"),
        ("keys_from_value", "The keys are projected from `value`: they come from the `key` input, k = k_proj(key)."),
        ("query_from_key", "The queries are projected from `key`: they come from the `query` input, "
                           "q = q_proj(query)."),
        ("keys_with_v_proj", "The keys are computed with v_proj; each input has its own projection: "
                             "k = k_proj(key), v = v_proj(value)."),
        ("k_v_swapped", "The keys and the values are swapped: attention takes (q, k, v, mask) in this order."),
        ("mask_inverted", "The mask polarity is inverted: keep the scores where the mask is True (may attend) and "
                          "set the others to -inf: scores.masked_fill(~mask, -inf)."),
        ("mask_ignored", "The mask is ignored: pass it on to the attention (or apply it to the scores before the "
                         "softmax)."),
        ("masked_fill_finite", "A query that may attend to nothing (a row of the mask that is all False) must get "
                               "zero weights and a zero output. Filling the blocked scores with a large negative "
                               "number (-1e9) gives it uniform weights instead: use scaled_dot_product_attention "
                               "from labsupport, or -inf and then weights.nan_to_num(0.0)."),
    )],
    "to_torch_attn_mask": [
        Mistake("not_flipped", "The polarity is not flipped: nn.MultiheadAttention blocks where its mask is True, the "
                               "opposite of our convention. Return ~mask (after expanding).",
                lambda m, b, h, lq, lk: ~reference_torch_attn_mask(m, b, h, lq, lk)),
        Mistake("not_expanded", "The mask is flipped but not expanded: nn.MultiheadAttention wants a 3-D attn_mask of "
                                "shape (batch_size * num_heads, q_len, k_len): .expand(B, H, Lq, Lk) the mask, then "
                                ".reshape(B * H, Lq, Lk).", lambda m, b, h, lq, lk: ~m),
        Mistake("heads_first", "Batch and heads are in the wrong order: row b * num_heads + h must hold batch b, head "
                               "h, which is what expanding to (B, H, Lq, Lk) and reshaping gives (not (H, B, ...)).",
                lambda m, b, h, lq, lk: ~m.expand(b, h, lq, lk).transpose(0, 1).reshape(b * h, lq, lk)),
        Mistake("float", BOOL_MASK, lambda m, b, h, lq, lk: reference_torch_attn_mask(m, b, h, lq, lk).float()),
    ],
}

error_hints("split_heads", [
    (r"shape '\[.*\]' is invalid for input of size",
     "The sizes you view to must multiply to B * L * D: view(B, L, num_heads, D // num_heads), with B, L, D read "
     "from x.shape in this order and the number of heads from the argument."),
])
error_hints("merge_heads", [
    (r"shape '\[.*\]' is invalid for input of size",
     "The sizes must multiply to B * H * L * d_head: unpack x.shape as B, H, L, d_head (in this order) and reshape "
     "to (B, L, H * d_head)."),
])
error_hints("MultiHeadAttention.forward", [
    (r"shape '\[.*\]' is invalid for input of size",
     "Keys and values may have another length than the queries (cross-attention): split each tensor with its own "
     "length (key.shape[1]), not the query's."),
    (r"The size of tensor a \(\d+\) must match the size of tensor b \(\d+\)",
     "For (B, H, L, d_head) tensors transpose only the last two axes, k.transpose(-2, -1): k.T reverses all four "
     "of them."),
])
error_hints("to_torch_attn_mask", [
    (r"view size is not compatible",
     "An expanded tensor shares its memory between the copies, so `.view` cannot flatten it: use `.reshape(...)`, "
     "which copies when it must."),
    (r"shape '\[.*\]' is invalid for input of size",
     "Expand the mask to its full shape (batch_size, num_heads, q_len, k_len) with .expand before reshaping to "
     "(B * H, Lq, Lk): a (B, 1, 1, Lk) padding mask does not have B * H * Lq * Lk elements yet."),
    (r"expanded size of the tensor|must match the existing size",
     "Expand to (batch_size, num_heads, q_len, k_len), in this order: the mask's own axes (a padding mask is "
     "(B, 1, 1, Lk), a causal one (Lq, Lk)) line up with the last ones."),
])


# ------------------------------------------------------------------------------------------------------------
# the checks
# ------------------------------------------------------------------------------------------------------------
def _expect_bool(what: str, got) -> None:
    if isinstance(got, torch.Tensor) and got.dtype != torch.bool:
        raise CheckFailed(f"{what} has dtype {got.dtype}, but {BOOL_MASK}")


def check_split_heads(split_heads, *, seed: int = 0) -> None:
    """Check ``split_heads(x (B, L, D), num_heads) -> (B, H, L, D/H)``: head ``h`` gets features
    ``h*d_head ... (h+1)*d_head - 1`` of every token."""
    mistakes = MISTAKES["split_heads"]
    g = _gen(seed, 1)
    for (B, L, H, dh) in ((2, 5, 3, 4), (3, 7, 4, 2), (3, 7, 1, 8), (1, 4, 6, 2)):
        x = _randn(g, B, L, H * dh)
        what = f"split_heads(x of shape {(B, L, H * dh)}, num_heads={H})"
        compare(what, call(split_heads, "split_heads", x, H), _split(x, H), hints=candidates(mistakes, x, H))
    passed("split_heads")


def check_merge_heads(merge_heads, split_heads=None, *, seed: int = 0) -> None:
    """Check ``merge_heads(x (B, H, L, d_head)) -> (B, L, H * d_head)`` (and, if given, that it undoes
    ``split_heads``)."""
    mistakes = MISTAKES["merge_heads"]
    g = _gen(seed, 2)
    for (B, H, L, dh) in ((2, 3, 5, 4), (3, 4, 2, 3), (2, 1, 6, 5)):
        x = _randn(g, B, H, L, dh)
        what = f"merge_heads(x of shape {(B, H, L, dh)})"
        compare(what, call(merge_heads, "merge_heads", x), _merge(x), hints=candidates(mistakes, x))
    if split_heads is not None:
        y = _randn(g, 3, 6, 12)
        for h in (4, 3):
            back = call(merge_heads, "merge_heads", call(split_heads, "split_heads", y, h))
            compare(f"merge_heads(split_heads(y, {h})) for y of shape (3, 6, 12), which should give y back", back, y)
    passed("merge_heads")


def check_causal_mask(causal_mask, *, seed: int = 0) -> None:
    """Check ``causal_mask(n)``: ``(n, n)`` boolean, ``True`` on and below the diagonal."""
    for n in (4, 1, 6 + seed % 3):
        got = call(causal_mask, "causal_mask", n)
        what = f"causal_mask({n})"
        _expect_bool(what, got)
        compare(what, got, ref.causal_mask(n), hints=candidates(MISTAKES["causal_mask"], n))
    passed("causal_mask")


def check_padding_mask(padding_mask, *, seed: int = 0) -> None:
    """Check ``padding_mask(lengths, max_len)``: ``(B, 1, 1, max_len)`` boolean, ``True`` at the real tokens;
    ``lengths`` may be a tensor or a list, ``max_len`` may exceed the longest length, a length may be 0."""
    rng = np.random.default_rng([seed, 3])
    L = 5 + seed % 3
    lengths = rng.integers(1, L + 1, size=3)
    lengths[rng.integers(3)] = L
    short = [int(n) for n in rng.integers(1, L, size=2)] + [0]
    for ls, m, shown in ((torch.tensor(lengths), L, f"tensor({lengths.tolist()}), {L}"),
                         (short, L + 2, f"{short}, {L + 2} (a Python list of lengths)")):
        what = f"padding_mask({shown})"
        got = call(padding_mask, "padding_mask", ls, m)
        _expect_bool(what, got)
        compare(what, got, ref.padding_mask(ls, m), hints=candidates(MISTAKES["padding_mask"], ls, m))
    passed("padding_mask")


# ---- MultiHeadAttention ------------------------------------------------------------------------------------
_PROJ = ("q_proj", "k_proj", "v_proj", "out_proj")


def _state(D: int, g: torch.Generator) -> dict:
    """Weights for the four projections, made by the check."""
    state = {}
    for name in _PROJ:
        state[f"{name}.weight"] = _randn(g, D, D) / math.sqrt(D)
        state[f"{name}.bias"] = _randn(g, D) * 0.2
    return state


def _reference(D: int, H: int, state: dict) -> ref.MultiHeadAttention:
    with torch.random.fork_rng(devices=[]):  # leave the caller's random numbers alone
        m = ref.MultiHeadAttention(D, H)
    m.load_state_dict(state)
    return m.eval()


def _build_student(MultiHeadAttention, D: int, H: int, state: dict) -> Handle:
    what = f"MultiHeadAttention({D}, {H})"
    mod = call(MultiHeadAttention, "MultiHeadAttention", D, H)
    expect(isinstance(mod, Handle) and mod.is_module,
           f"{what} should build an nn.Module (a class deriving from nn.Module), but it gave {describe_value(mod)}.")
    params = probe(mod, "parameters")
    for name in _PROJ:
        try:
            sub = getattr(mod, name)
        except (StudentCodeError, AttributeError):
            sub = None
        if not (isinstance(sub, Handle) and sub.subclass_of("torch.nn.modules.linear.Linear")):
            raise CheckFailed(
                f"{what} has no nn.Linear attribute `{name}`. Create the four projections as self.q_proj, "
                "self.k_proj, self.v_proj and self.out_proj = nn.Linear(d_model, d_model) (one matrix for all "
                "heads; the split into heads happens afterwards).")
        w, b = params.get(f"{name}.weight"), params.get(f"{name}.bias")
        shape = tuple(w.shape) if isinstance(w, torch.Tensor) else None
        expect(shape == (D, D) and isinstance(b, torch.Tensor),
               f"`{name}` should be nn.Linear({D}, {D}) with a bias; it has weight shape {shape}"
               f"{'' if isinstance(b, torch.Tensor) else ' and no bias'}.")
    n = sum(p.numel() for p in params.values() if isinstance(p, torch.Tensor))
    expect(n == 4 * D * D + 4 * D,
           f"{what} has {n} parameters; expected 4 D^2 + 4 D = {4 * D * D + 4 * D}. Only the four projections "
           "should hold parameters (the heads share them by splitting the width).")
    method(mod, "load_state_dict", "MultiHeadAttention.load_state_dict", state, strict=False)
    probe(mod, "set_training", False)
    return mod


def _forward(mod, what: str, args, kwargs, context: str = ""):
    try:
        got = method(mod, "forward", "MultiHeadAttention.forward", *args, **kwargs)
    except CheckFailed as err:
        if not context:
            raise
        raise CheckFailed(f"{err.message}\n{context}") from None
    if not (isinstance(got, (tuple, list)) and len(got) == 2):
        raise CheckFailed(f"MultiHeadAttention.forward should return a pair (output, weights), but for {what} it "
                          f"returned {describe_value(got)}.")
    return got


def _mha_case(mod, refm, what: str, args, kwargs=None, context: str = "") -> None:
    kwargs = kwargs or {}
    mistakes = MISTAKES["multi_head_attention"]
    out, w = _forward(mod, what, args, kwargs, context)
    with torch.no_grad():
        want_out, want_w = refm(*args, **kwargs)
        cands = []
        for m in mistakes:
            try:
                cands.append((_mha_forward(refm, *args, **kwargs, mistake=m.fn.mistake), m.message))
            except RuntimeError:  # a mistake that cannot handle these shapes gives no hint
                continue
    mask = kwargs.get("mask")
    if mask is not None and isinstance(out, torch.Tensor) and torch.isnan(out).any() \
            and not (mask.expand(want_w.shape).any(-1)).all():
        raise CheckFailed(
            f"The output of {what} contains NaN. That mask has a row that is all False (a query that may attend to "
            "nothing, as happens for padded queries), and softmax over a row of -inf is 0/0. Use "
            "labsupport.attention.scaled_dot_product_attention, or replace the NaN weights by 0 "
            "(weights.nan_to_num(0.0)) after the softmax.")
    compare(f"the output of {what}", out, want_out, atol=1e-5, hints=[(c[0], msg) for c, msg in cands])
    if isinstance(w, torch.Tensor) and w.dim() == 3 and tuple(w.shape) == tuple(want_w.shape[:1] + want_w.shape[2:]):
        raise CheckFailed(f"the attention weights of {what} have shape {tuple(w.shape)}, (B, Lq, Lk): return them per "
                          f"head, shape (B, H, Lq, Lk) = {tuple(want_w.shape)}, not averaged over the heads.")
    compare(f"the attention weights (second item) of {what}", w, want_w, atol=1e-5,
            hints=[(c[1], msg) for c, msg in cands])


@torch_threads(1)
def check_multi_head_attention(MultiHeadAttention, *, seed: int = 0) -> None:
    """Check the ``MultiHeadAttention(d_model, num_heads)`` class against the reference with the same weights:
    self- and cross-attention (distinct key and value tensors of another length), the default value = key,
    causal, padding and combined masks, a query that may attend to nothing, another number of heads."""
    D, H, B, Lq, Lk = 12, 3, 2, 5, 7
    g = _gen(seed, 4)
    state = _state(D, g)
    mod, refm = _build_student(MultiHeadAttention, D, H, state), _reference(D, H, state)
    x, key, value = _randn(g, B, Lq, D), _randn(g, B, Lk, D), _randn(g, B, Lk, D)
    cross = (f"This was cross-attention: {Lq} queries, {Lk} keys and values (key and value different tensors). "
             "Keys and values may have another length than the queries: split each tensor with its own length "
             "(key.shape[1]), not the query's.")
    _mha_case(mod, refm, f"self-attention on x of shape {(B, Lq, D)} (d_model={D}, num_heads={H})", (x,))
    _mha_case(mod, refm, f"cross-attention, query {(B, Lq, D)}, key and value two different {(B, Lk, D)} tensors",
              (x, key, value), context=cross)
    _mha_case(mod, refm, "forward(query, key) (value defaults to key)", (x, key), context=cross)
    causal = ref.causal_mask(Lq)
    pad = ref.padding_mask(torch.tensor([Lq, 3]), Lq)
    for name, mask in ((f"a causal {(Lq, Lq)} mask", causal), (f"a {(B, 1, 1, Lq)} padding mask", pad),
                       ("causal & padding masks", causal & pad)):
        _mha_case(mod, refm, f"self-attention with {name}", (x,), {"mask": mask})
    key_pad = ref.padding_mask(torch.tensor([4, Lk]), Lk)
    _mha_case(mod, refm, f"cross-attention with a {(B, 1, 1, Lk)} padding mask of the keys", (x, key, value),
              {"mask": key_pad}, context=cross)
    empty = torch.ones(1, 1, Lq, Lq, dtype=torch.bool)
    empty[..., 2, :] = False
    _mha_case(mod, refm, "self-attention with a mask whose row 2 is all False", (x,), {"mask": empty})

    D2, H2, B2, Lq2, Lk2 = 16, 4, 3, 6, 4  # another number of heads: nothing hard-coded
    state2 = _state(D2, g)
    mod2, refm2 = _build_student(MultiHeadAttention, D2, H2, state2), _reference(D2, H2, state2)
    x2, key2, value2 = _randn(g, B2, Lq2, D2), _randn(g, B2, Lk2, D2), _randn(g, B2, Lk2, D2)
    _mha_case(mod2, refm2, f"self-attention for d_model={D2}, num_heads={H2}, x of shape {(B2, Lq2, D2)}", (x2,))
    _mha_case(mod2, refm2, f"cross-attention for d_model={D2}, num_heads={H2}, query {(B2, Lq2, D2)}, key and "
                           f"value two different {(B2, Lk2, D2)} tensors", (x2, key2, value2),
              {"mask": ref.causal_mask(Lq2, Lk2)}, context=cross)
    passed("MultiHeadAttention", f"same as the reference, {4 * D * D + 4 * D} parameters")


# ---- to_torch_attn_mask ------------------------------------------------------------------------------------
@torch_threads(1)
def check_to_torch_attn_mask(to_torch_attn_mask, *, seed: int = 0) -> None:
    """Check ``to_torch_attn_mask(mask, batch_size, num_heads, q_len, k_len) -> (B*H, Lq, Lk)`` bool,
    ``True`` = blocked, row ``b * H + h`` for batch ``b`` and head ``h``; also with ``q_len != k_len``."""
    mistakes = MISTAKES["to_torch_attn_mask"]
    rng = np.random.default_rng([seed, 5])
    B, H, L = 2, 3, 5
    pad = ref.padding_mask(torch.tensor([L, int(rng.integers(1, L))]), L)
    causal = ref.causal_mask(L)
    Lq, Lk = 3, 6
    cases = [(f"a {(B, 1, 1, L)} padding mask", pad, B, H, L, L), (f"a causal {(L, L)} mask", causal, B, H, L, L),
             ("causal & padding masks", causal & pad, B, H, L, L),
             (f"a {(B, 1, 1, Lk)} padding mask of the keys", ref.padding_mask(torch.tensor([Lk, 2]), Lk), B, H, Lq, Lk),
             (f"a causal {(Lq, Lk)} mask", ref.causal_mask(Lq, Lk), 3, 2, Lq, Lk)]
    for name, mask, b, h, lq, lk in cases:
        what = f"to_torch_attn_mask({name}, batch_size={b}, num_heads={h}, q_len={lq}, k_len={lk})"
        got = call(to_torch_attn_mask, "to_torch_attn_mask", mask, b, h, lq, lk)
        _expect_bool(what, got)
        want = reference_torch_attn_mask(mask, b, h, lq, lk)
        try:
            compare(what, got, want, hints=candidates(mistakes, mask, b, h, lq, lk))
        except CheckFailed as err:
            if isinstance(got, torch.Tensor) and tuple(got.shape) != tuple(want.shape) and "not right yet" \
                    not in err.message:
                raise CheckFailed(f"{what} has shape {tuple(got.shape)}; nn.MultiheadAttention wants a 3-D attn_mask "
                                  f"of shape (batch_size * num_heads, q_len, k_len) = {tuple(want.shape)}: "
                                  ".expand(B, H, Lq, Lk) the mask, then .reshape(B * H, Lq, Lk).") from None
            raise
    # and it works with nn.MultiheadAttention
    g = _gen(seed, 6)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(rng.integers(2**31)))
        mha = nn.MultiheadAttention(12, H, batch_first=True).eval()
        ours = ref.MultiHeadAttention(12, H).eval()
    ref.copy_mha_weights(mha, ours)
    x = _randn(g, B, L, 12)
    mask = causal & pad
    got = call(to_torch_attn_mask, "to_torch_attn_mask", mask, B, H, L, L)
    with torch.no_grad():
        compare("nn.MultiheadAttention with your attn_mask, against our MultiHeadAttention with our mask",
                mha(x, x, x, attn_mask=got, need_weights=False)[0], ours(x, mask=mask)[0], atol=1e-5)
    passed("to_torch_attn_mask")


#: check name -> check, the keys of :data:`MISTAKES`
CHECKS = {"split_heads": check_split_heads, "merge_heads": check_merge_heads, "causal_mask": check_causal_mask,
          "padding_mask": check_padding_mask, "multi_head_attention": check_multi_head_attention,
          "to_torch_attn_mask": check_to_torch_attn_mask}
