"""Self-checks of Lab 2, multi-head attention in PyTorch.

Each check runs the student's code on fresh random inputs, compares it with the reference twin in
:mod:`labsupport.attention` and recognises the usual mistakes:

* ``split_heads``: reshaping to ``(B, L, H, d_head)`` without ``transpose(1, 2)``; reshaping straight to
  ``(B, H, L, d_head)`` (cuts the sequence instead of each token's vector); interleaved (strided) heads;
* ``merge_heads``: reshaping ``(B, H, L, d_head)`` to ``(B, L, D)`` without transposing back; transposing
  without reshaping; ``.view`` on a non-contiguous tensor;
* masks: a float or integer mask instead of a boolean one; inverted polarity (``True`` = blocked, torch's
  ``nn.MultiheadAttention`` convention); a missing diagonal; a ``(B, L)`` padding mask that does not broadcast
  over heads and queries;
* ``MultiHeadAttention``: missing or misnamed projections, a parameter count other than ``4 D^2 + 4 D``, a
  missing ``1/sqrt(d_head)`` scale (or scaling by ``sqrt(D)``), transposed heads, no output projection, masks
  ignored or inverted, key/value length tied to the query length, NaN for a query that may attend to nothing,
  returning only the output;
* ``to_torch_attn_mask``: polarity not flipped, not expanded to ``(B * H, Lq, Lk)``, heads and batch in the
  wrong order, a non-boolean dtype.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from labsupport import attention as ref
from labsupport.checks import CheckFailed, call, compare, describe_value, expect, passed


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=_gen(seed))


def _is_tensor(what: str, got, name: str) -> None:
    __tracebackhide__ = True
    if got is None:
        raise CheckFailed(f"{what} returned None. Did you forget the `return` statement in `{name}`?")
    if not isinstance(got, torch.Tensor):
        raise CheckFailed(f"{what} should return a torch.Tensor, but it returned a {describe_value(got)}.")


def _call(fn, name, *args, **kwargs):
    """:func:`call`, with an extra hint for the classic ``.view`` after ``.transpose`` error."""
    __tracebackhide__ = True
    try:
        return call(fn, name, *args, **kwargs)
    except CheckFailed as err:
        if "view size is not compatible" in err.message:
            raise CheckFailed(
                err.message + "\nAfter transpose() the tensor is no longer contiguous in memory, so .view() cannot "
                "reshape it: use .reshape(...) (or .contiguous().view(...)) instead."
            ) from None
        raise


# ---------------------------------------------------------------------------------------------------------
# Exercise 1 and 2: split and merge heads
# ---------------------------------------------------------------------------------------------------------


def check_split_heads(split_heads) -> None:
    """Check ``split_heads(x (B, L, D), num_heads) -> (B, H, L, D/H)``."""
    __tracebackhide__ = True
    B, L, H, dh = 2, 5, 3, 4
    x = _randn(B, L, H * dh, seed=21)
    got = _call(split_heads, "split_heads", x, H)
    what = f"split_heads(x of shape {(B, L, H * dh)}, num_heads={H})"
    _is_tensor(what, got, "split_heads")
    want = x.view(B, L, H, dh).transpose(1, 2)
    if tuple(got.shape) == (B, L, H, dh):
        raise CheckFailed(
            f"{what} has shape {tuple(got.shape)}, i.e. (B, L, H, d_head): the heads are split but the head axis is "
            "still after the sequence axis. Add .transpose(1, 2) to get (B, H, L, d_head), so that each head "
            "attends over the whole sequence on its own."
        )
    compare(what, got, want, hints=[
        (x.reshape(B, H, L, dh),
         "You reshaped straight to (B, H, L, d_head). That cuts the *sequence* into H chunks instead of cutting each "
         "token's D features into H groups. Reshape to (B, L, H, d_head) first, then transpose(1, 2)."),
        (x.view(B, L, dh, H).permute(0, 3, 1, 2),
         "The heads take interleaved features (every H-th one). Head h must get the contiguous block of features "
         "h*d_head ... (h+1)*d_head-1: view(B, L, H, d_head), then transpose(1, 2)."),
    ])
    # another number of heads, and a single head
    x2 = _randn(3, 7, 8, seed=22)
    compare("split_heads(x of shape (3, 7, 8), num_heads=4)", _call(split_heads, "split_heads", x2, 4),
            x2.view(3, 7, 4, 2).transpose(1, 2))
    compare("split_heads(x of shape (3, 7, 8), num_heads=1)", _call(split_heads, "split_heads", x2, 1), x2[:, None])
    passed("split_heads")


def check_merge_heads(merge_heads, split_heads=None) -> None:
    """Check ``merge_heads(x (B, H, L, d_head)) -> (B, L, H * d_head)`` (and, if given, that it undoes ``split_heads``)."""
    __tracebackhide__ = True
    B, H, L, dh = 2, 3, 5, 4
    x = _randn(B, H, L, dh, seed=23)
    got = _call(merge_heads, "merge_heads", x)
    what = f"merge_heads(x of shape {(B, H, L, dh)})"
    _is_tensor(what, got, "merge_heads")
    if tuple(got.shape) == (B, L, H, dh):
        raise CheckFailed(
            f"{what} has shape {tuple(got.shape)}: you moved the head axis back but did not concatenate the heads. "
            "Reshape the last two axes into one: .reshape(B, L, H * d_head)."
        )
    want = x.transpose(1, 2).reshape(B, L, H * dh)
    compare(what, got, want, hints=[
        (x.reshape(B, L, H * dh),
         "You reshaped (B, H, L, d_head) straight to (B, L, D). That mixes positions of different tokens. "
         "Transpose to (B, L, H, d_head) first (.transpose(1, 2)), then reshape to (B, L, H * d_head)."),
    ])
    if split_heads is not None:
        y = _randn(3, 6, 12, seed=24)
        back = _call(merge_heads, "merge_heads", _call(split_heads, "split_heads", y, 4))
        compare("merge_heads(split_heads(y, 4)), which should give y back", back, y)
    passed("merge_heads")


# ---------------------------------------------------------------------------------------------------------
# Exercise 3: masks in torch
# ---------------------------------------------------------------------------------------------------------


def _expect_bool(what: str, got) -> None:
    __tracebackhide__ = True
    if isinstance(got, torch.Tensor) and got.dtype != torch.bool:
        raise CheckFailed(
            f"{what} has dtype {got.dtype}, but masks must be boolean (torch.bool). A float or integer mask of 0s and "
            "1s breaks `~mask` (bitwise not of 1 is -2) and masked_fill; build it with dtype=torch.bool or compare "
            "(e.g. `arange(...) < lengths[:, None]`)."
        )


def check_causal_mask(causal_mask) -> None:
    """Check ``causal_mask(n)``: ``(n, n)`` boolean, ``True`` on and below the diagonal."""
    __tracebackhide__ = True
    for n in (4, 1, 6):
        got = _call(causal_mask, "causal_mask", n)
        what = f"causal_mask({n})"
        _is_tensor(what, got, "causal_mask")
        _expect_bool(what, got)
        want = ref.causal_mask(n)
        compare(what, got, want, hints=[
            (~want, "The polarity is inverted (True where attention is forbidden, as in nn.MultiheadAttention). "
                    "In this course True means *may attend*: itself and earlier positions."),
            (torch.ones(n, n, dtype=torch.bool).tril(-1), "The diagonal is missing: every position may attend to itself."),
            (torch.ones(n, n, dtype=torch.bool).triu(), "It lets each position see the future (upper triangle) instead of the past."),
        ])
    passed("causal_mask")


def check_padding_mask(padding_mask) -> None:
    """Check ``padding_mask(lengths, max_len)``: ``(B, 1, 1, max_len)`` boolean, ``True`` at real tokens."""
    __tracebackhide__ = True
    lengths, L = torch.tensor([3, 1, 5]), 5
    got = _call(padding_mask, "padding_mask", lengths, L)
    what = "padding_mask(tensor([3, 1, 5]), 5)"
    _is_tensor(what, got, "padding_mask")
    _expect_bool(what, got)
    want = ref.padding_mask(lengths, L)
    if tuple(got.shape) in ((3, 5), (3, 1, 5)):
        raise CheckFailed(
            f"{what} has shape {tuple(got.shape)}, but the scores it must mask have shape (B, H, Lq, Lk). Right-aligned "
            "broadcasting would line the batch axis up with the heads or queries. Return shape (B, 1, 1, max_len), "
            "e.g. mask[:, None, None, :], so it broadcasts over heads and queries."
        )
    compare(what, got, want, hints=[
        (~want, "The polarity is inverted: True marks the real tokens (which may be attended to), False the padding."),
    ])
    got = _call(padding_mask, "padding_mask", [2, 4], 6)
    compare("padding_mask([2, 4], 6) (a Python list of lengths)", got, ref.padding_mask([2, 4], 6))
    passed("padding_mask")


# ---------------------------------------------------------------------------------------------------------
# Exercise 4: the module
# ---------------------------------------------------------------------------------------------------------

_PROJ = ("q_proj", "k_proj", "v_proj", "out_proj")


def _mha_variant(m: ref.MultiHeadAttention, query, key, value, mask=None, *, scale="ok", split="ok", merge="ok",
                 out_proj=True, mask_mode="ok"):
    """The reference computation with one typical mistake switched on (for the hints)."""
    B, Lq, D = query.shape
    Lk = key.shape[1]
    H, dh = m.num_heads, m.d_head

    def sp(t, L):
        if split == "direct":
            return t.reshape(B, H, L, dh)
        return t.view(B, L, H, dh).transpose(1, 2)

    q, k, v = sp(m.q_proj(query), Lq), sp(m.k_proj(key), Lk), sp(m.v_proj(value), Lk)
    scores = q @ k.transpose(-2, -1)
    if scale == "ok":
        scores = scores / math.sqrt(dh)
    elif scale == "d_model":
        scores = scores / math.sqrt(D)
    elif scale == "d_head":
        scores = scores / dh
    use = None if mask is None or mask_mode == "ignore" else (~mask if mask_mode == "invert" else mask)
    if use is not None:
        scores = scores.masked_fill(~use, float("-inf"))
    w = torch.softmax(scores, dim=-1)
    if use is not None:
        w = w.nan_to_num(0.0)
    out = w @ v
    out = out.reshape(B, Lq, D) if merge == "direct" else out.transpose(1, 2).reshape(B, Lq, D)
    return (m.out_proj(out) if out_proj else out), w


def _hints(m, q, k, v, mask=None):
    """(candidate output, message) pairs for the usual mistakes."""
    with torch.no_grad():
        cands = [
            (dict(scale="none"), "The scores are not scaled: divide q @ k^T by sqrt(d_head), the width of one head."),
            (dict(scale="d_model"), "The scores are divided by sqrt(d_model); each head works in d_head = d_model / "
                                    "num_heads dimensions, so divide by sqrt(d_head)."),
            (dict(scale="d_head"), "The scores are divided by d_head; the scale is 1 / sqrt(d_head)."),
            (dict(split="direct"), "The heads are split with view(B, H, L, d_head) directly, which cuts the sequence "
                                   "instead of the features: view(B, L, H, d_head).transpose(1, 2)."),
            (dict(merge="direct"), "The heads are merged with reshape(B, L, D) without transposing (B, H, L, d_head) "
                                   "back to (B, L, H, d_head) first."),
            (dict(out_proj=False), "The output projection is missing: apply out_proj to the merged heads."),
        ]
        if mask is not None:
            cands += [
                (dict(mask_mode="invert"), "The mask polarity is inverted: keep the scores where the mask is True "
                                           "(may attend) and set the others to -inf: scores.masked_fill(~mask, -inf)."),
                (dict(mask_mode="ignore"), "The mask is ignored: pass it on to the attention (or apply it to the "
                                           "scores before the softmax)."),
            ]
        return [(_mha_variant(m, q, k, v, mask, **kw)[0], msg) for kw, msg in cands]


def _build_student(MultiHeadAttention, D, H):
    __tracebackhide__ = True
    mod = call(MultiHeadAttention, "MultiHeadAttention", D, H)
    expect(isinstance(mod, nn.Module), f"MultiHeadAttention({D}, {H}) should build an nn.Module, got {describe_value(mod)}.")
    for name in _PROJ:
        lin = getattr(mod, name, None)
        if not isinstance(lin, nn.Linear):
            raise CheckFailed(
                f"MultiHeadAttention({D}, {H}) has no nn.Linear attribute `{name}`. Create the four projections as "
                f"self.q_proj, self.k_proj, self.v_proj and self.out_proj = nn.Linear(d_model, d_model) (one matrix "
                "for all heads; the split into heads happens afterwards)."
            )
        expect(tuple(lin.weight.shape) == (D, D) and lin.bias is not None,
               f"`{name}` should be nn.Linear({D}, {D}) with a bias; it has weight shape {tuple(lin.weight.shape)}"
               f"{'' if lin.bias is not None else ' and no bias'}.")
    n = sum(p.numel() for p in mod.parameters())
    expect(n == 4 * D * D + 4 * D,
           f"MultiHeadAttention({D}, {H}) has {n} parameters; expected 4 D^2 + 4 D = {4 * D * D + 4 * D}. "
           "Only the four projections should hold parameters (the heads share them by splitting the width).")
    mod.eval()
    return mod


def _run(mod, what, *args, context: str = "", **kwargs):
    __tracebackhide__ = True
    try:
        got = _call(mod, "MultiHeadAttention.forward", *args, **kwargs)
    except CheckFailed as err:
        if not context:
            raise
        raise CheckFailed(f"{err.message}\n{context}") from None
    if not (isinstance(got, tuple) and len(got) == 2):
        raise CheckFailed(f"{what} should return a pair (output, weights), but it returned {describe_value(got)}.")
    return got


def check_multi_head_attention(MultiHeadAttention) -> None:
    """Check the ``MultiHeadAttention(d_model, num_heads)`` class against the reference with the same weights."""
    __tracebackhide__ = True
    torch.manual_seed(25)
    B, L, D, H = 2, 5, 12, 3
    mod = _build_student(MultiHeadAttention, D, H)
    refm = ref.MultiHeadAttention(D, H).eval()
    with torch.no_grad():
        for name in _PROJ:
            getattr(mod, name).load_state_dict(getattr(refm, name).state_dict())
    x = _randn(B, L, D, seed=26)

    with torch.no_grad():
        out, w = _run(mod, "MultiHeadAttention(12, 3)(x)", x)
        want_out, want_w = refm(x)
        what = f"the output of self-attention on x of shape {(B, L, D)} (d_model={D}, num_heads={H})"
        _is_tensor(what, out, "forward")
        compare(what, out, want_out, atol=1e-5, hints=_hints(refm, x, x, x))
        _is_tensor("the attention weights", w, "forward")
        if tuple(w.shape) == (B, L, L):
            raise CheckFailed("the attention weights have shape (B, L, L); return them per head, shape (B, H, L, L).")
        compare("the attention weights (second item)", w, want_w, atol=1e-5)

        # cross-attention: keys and values of another length
        mem = _randn(B, 7, D, seed=27)
        what = "the output of cross-attention, query (2, 5, 12), key = value (2, 7, 12)"
        out, w = _run(mod, what, x, mem, mem, context=(
            "This was cross-attention: 5 queries, 7 keys and values. Keys and values may have another length than the "
            "queries: split each tensor with its own length (key.shape[1]), not the query's."))
        compare(what, out, refm(x, mem, mem)[0], atol=1e-5, hints=_hints(refm, x, mem, mem))

        # masks: causal, padding, both
        causal = ref.causal_mask(L)
        pad = ref.padding_mask(torch.tensor([5, 3]), L)
        for name, mask in (("a causal (5, 5) mask", causal), ("a (2, 1, 1, 5) padding mask", pad),
                           ("causal & padding", causal & pad)):
            what = f"the output with {name}"
            out, w = _run(mod, what, x, mask=mask)
            compare(what, out, refm(x, mask=mask)[0], atol=1e-5, hints=_hints(refm, x, x, x, mask))
            compare(f"the weights with {name}", w, refm(x, mask=mask)[1], atol=1e-5)

        # a query that may attend to nothing must give zeros, not NaN
        empty = torch.ones(1, 1, L, L, dtype=torch.bool)
        empty[..., 2, :] = False
        out, w = _run(mod, "with a fully masked row", x, mask=empty)
        if isinstance(out, torch.Tensor) and torch.isnan(out).any():
            raise CheckFailed(
                "With a mask whose row 2 is all False (query 2 may attend to nothing, as happens for padded queries) "
                "the output contains NaN: softmax over a row of -inf is 0/0. Use "
                "labsupport.attention.scaled_dot_product_attention, or replace the NaN weights by 0 "
                "(weights.nan_to_num(0.0)) after the softmax."
            )
        compare("the output with a fully masked row", out, refm(x, mask=empty)[0], atol=1e-5)

    # a different number of heads: nothing hard-coded
    mod2 = _build_student(MultiHeadAttention, 16, 4)
    refm2 = ref.MultiHeadAttention(16, 4).eval()
    with torch.no_grad():
        for name in _PROJ:
            getattr(mod2, name).load_state_dict(getattr(refm2, name).state_dict())
        x2 = _randn(3, 6, 16, seed=28)
        what = "the output for d_model=16, num_heads=4, x of shape (3, 6, 16)"
        compare(what, _run(mod2, what, x2)[0], refm2(x2)[0], atol=1e-5, hints=_hints(refm2, x2, x2, x2))
    passed("MultiHeadAttention", f"same as the reference, {4 * D * D + 4 * D} parameters")


# ---------------------------------------------------------------------------------------------------------
# Exercise 5: masks for nn.MultiheadAttention
# ---------------------------------------------------------------------------------------------------------


def reference_torch_attn_mask(mask: torch.Tensor, batch_size: int, num_heads: int, q_len: int, k_len: int) -> torch.Tensor:
    """Our mask (``True`` = may attend, broadcastable to ``(B, H, Lq, Lk)``) as ``nn.MultiheadAttention``'s 3-D
    ``attn_mask``: ``(B * H, Lq, Lk)``, ``True`` = blocked, row ``b * H + h`` for batch ``b`` and head ``h``."""
    full = mask.expand(batch_size, num_heads, q_len, k_len)
    return ~full.reshape(batch_size * num_heads, q_len, k_len)


def check_to_torch_attn_mask(to_torch_attn_mask) -> None:
    """Check ``to_torch_attn_mask(mask, batch_size, num_heads, q_len, k_len) -> (B*H, Lq, Lk)`` bool, True = blocked."""
    __tracebackhide__ = True
    B, H, L = 2, 3, 5
    pad = ref.padding_mask(torch.tensor([5, 2]), L)
    causal = ref.causal_mask(L)
    for name, mask in (("a (2, 1, 1, 5) padding mask", pad), ("a causal (5, 5) mask", causal),
                       ("causal & padding", causal & pad)):
        got = _call(to_torch_attn_mask, "to_torch_attn_mask", mask, B, H, L, L)
        what = f"to_torch_attn_mask({name}, batch_size={B}, num_heads={H}, q_len={L}, k_len={L})"
        _is_tensor(what, got, "to_torch_attn_mask")
        _expect_bool(what, got)
        want = reference_torch_attn_mask(mask, B, H, L, L)
        if tuple(got.shape) != (B * H, L, L):
            raise CheckFailed(
                f"{what} has shape {tuple(got.shape)}; nn.MultiheadAttention wants a 3-D attn_mask of shape "
                f"(batch_size * num_heads, q_len, k_len) = {(B * H, L, L)}: .expand(B, H, Lq, Lk) the mask, then "
                ".reshape(B * H, Lq, Lk)."
            )
        full = mask.expand(B, H, L, L)
        compare(what, got, want, hints=[
            (~want, "The polarity is not flipped: nn.MultiheadAttention blocks where its mask is True, the opposite "
                    "of our convention. Return ~mask (after expanding)."),
            (~full.transpose(0, 1).reshape(B * H, L, L),
             "Batch and heads are in the wrong order: row b * num_heads + h must hold batch b, head h, which is what "
             "expanding to (B, H, Lq, Lk) and reshaping gives (not (H, B, ...))."),
        ])
    # it must work with nn.MultiheadAttention
    torch.manual_seed(29)
    mha = nn.MultiheadAttention(12, H, batch_first=True).eval()
    ours = ref.MultiHeadAttention(12, H).eval()
    ref.copy_mha_weights(mha, ours)
    x = _randn(B, L, 12, seed=30)
    mask = causal & pad
    with torch.no_grad():
        got = mha(x, x, x, attn_mask=_call(to_torch_attn_mask, "to_torch_attn_mask", mask, B, H, L, L),
                  need_weights=False)[0]
        compare("nn.MultiheadAttention with your attn_mask, against our MultiHeadAttention with our mask",
                got, ours(x, mask=mask)[0], atol=1e-5)
    passed("to_torch_attn_mask")
