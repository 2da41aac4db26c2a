"""Self-checks of Lab 4, the transformer block.

Each check runs the student's code on fresh random inputs, compares it with PyTorch's own modules
(``nn.LayerNorm``, ``nn.TransformerEncoderLayer``, ``nn.TransformerDecoderLayer``, weights copied across) or
with the reference twins in :mod:`labsupport.blocks`, and recognises the usual mistakes:

* ``LayerNorm``: parameters not named ``weight``/``bias`` or not initialised to ones/zeros; the unbiased
  variance (dividing by ``D - 1``); ``eps`` missing (NaN on a constant row), outside the square root, or ignored
  when passed; normalising over the wrong axis; ``weight`` and ``bias`` not applied;
* ``FeedForward``: misnamed or mis-shaped layers; the activation missing, applied after the second layer too, or
  ignoring the ``activation`` argument; the tanh approximation of GELU; dropout missing in training, or applied
  to the output instead of the hidden layer;
* ``sublayer`` (residual + dropout + norm): the residual missing; the norm in the wrong place (pre- and post-norm
  mixed up, normalising the sub-layer's output instead of the sum, normalising after the sub-layer in pre-norm);
  a normalised residual; dropout missing or applied to the whole sum;
* ``EncoderBlock`` / ``DecoderBlock``: the norm placement of the other variant, a missing residual, sub-layers in
  the wrong order, one norm used twice, masks ignored or inverted (or swapped between self- and cross-attention),
  cross-attention attending to the decoder's own states instead of the encoder output, a normalised memory.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from labsupport import blocks as ref
from labsupport.attention import causal_mask, padding_mask, to_torch_mask
from labsupport.checks import CheckFailed, call, compare, describe_value, expect, passed


def _randn(*shape, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _tensor(what: str, got) -> None:
    __tracebackhide__ = True
    if got is None:
        raise CheckFailed(f"{what} returned None. Did you forget the `return` statement?")
    if not isinstance(got, torch.Tensor):
        raise CheckFailed(f"{what} should return a torch.Tensor, but it returned a {describe_value(got)}.")


def _call_ctx(fn, name, *args, context: str = "", **kwargs):
    __tracebackhide__ = True
    try:
        return call(fn, name, *args, **kwargs)
    except CheckFailed as err:
        if not context or "not implemented yet" in err.message:
            raise
        raise CheckFailed(f"{err.message}\n{context}") from None


# ---------------------------------------------------------------------------------------------------------
# Exercise 1: LayerNorm
# ---------------------------------------------------------------------------------------------------------


def _ln(x, w, b, eps=1e-5, *, unbiased=False, eps_mode="inside", dim=-1, affine=True):
    mean = x.mean(dim=dim, keepdim=True)
    var = x.var(dim=dim, keepdim=True, unbiased=unbiased)
    if eps_mode == "inside":
        y = (x - mean) / torch.sqrt(var + eps)
    elif eps_mode == "outside":
        y = (x - mean) / (torch.sqrt(var) + eps)
    else:
        y = (x - mean) / torch.sqrt(var)
    return y * w + b if affine else y


def check_layer_norm(LayerNorm) -> None:
    """Check ``LayerNorm(d_model, eps=1e-5)`` against ``nn.LayerNorm`` with the same (random) weight and bias."""
    __tracebackhide__ = True
    D = 8
    m = call(LayerNorm, "LayerNorm", D)
    expect(isinstance(m, nn.Module), f"LayerNorm({D}) should build an nn.Module, got {describe_value(m)}.")
    for name, init in (("weight", 1.0), ("bias", 0.0)):
        p = getattr(m, name, None)
        if not isinstance(p, nn.Parameter):
            raise CheckFailed(f"LayerNorm({D}) has no parameter `{name}`. Create self.weight = nn.Parameter(torch.ones(d_model)) "
                              "and self.bias = nn.Parameter(torch.zeros(d_model)) (the names nn.LayerNorm uses).")
        expect(tuple(p.shape) == (D,), f"`{name}` should have shape ({D},), it has {tuple(p.shape)}.")
        expect(torch.all(p == init).item(), f"`{name}` should start at {'ones' if init else 'zeros'}, so that a fresh "
                                            "layer norm only standardises.")
    n = sum(p.numel() for p in m.parameters())
    expect(n == 2 * D, f"LayerNorm({D}) has {n} parameters; expected 2 x {D} (weight and bias).")
    with torch.no_grad():
        w, b = 1 + 0.5 * _randn(D, seed=41), 0.5 * _randn(D, seed=42)
        m.weight.copy_(w)
        m.bias.copy_(b)
        torch_ln = nn.LayerNorm(D)
        torch_ln.weight.copy_(w)
        torch_ln.bias.copy_(b)
        x = 3 * _randn(2, 5, D, seed=43) + 1
        got = call(m, "LayerNorm.forward", x)
        what = "LayerNorm(8)(x) for x of shape (2, 5, 8), with random weight and bias"
        _tensor(what, got)
        compare(what, got, torch_ln(x), atol=1e-5, hints=[
            (_ln(x, w, b, unbiased=True), "It uses the unbiased variance (dividing by D - 1). Layer norm divides by D: "
                                          "x.var(dim=-1, unbiased=False, keepdim=True), or ((x - mean) ** 2).mean(-1, keepdim=True)."),
            (_ln(x, w, b, dim=0), "It normalises over the batch axis; layer norm normalises each position's features, the last axis (dim=-1)."),
            (_ln(x, w, b, dim=1), "It normalises over the sequence axis; layer norm normalises each position's features, the last axis (dim=-1)."),
            (_ln(x, w, b, affine=False), "weight and bias are not applied: multiply by self.weight and add self.bias at the end."),
        ])
        # a constant row: variance 0
        flat = torch.full((1, 2, D), 3.0)
        got = call(m, "LayerNorm.forward", flat)
        if not torch.isfinite(got).all():
            raise CheckFailed("For a row whose features are all equal (variance 0) the output contains NaN or inf: "
                              "the division by sqrt(var) divides by zero. Add eps inside the square root: sqrt(var + eps).")
        compare("LayerNorm on a constant row (variance 0)", got, torch_ln(flat), atol=1e-5)
        # tiny variance: where eps matters
        small = 1 + 1e-3 * _randn(2, 3, D, seed=44)
        got = call(m, "LayerNorm.forward", small)
        compare("LayerNorm(8)(x) for x with a tiny variance (1e-6), where eps matters", got, torch_ln(small), atol=1e-3, hints=[
            (_ln(small, w, b, eps_mode="outside"), "eps is added outside the square root, (x - mean) / (std + eps); "
                                                   "nn.LayerNorm adds it to the variance: (x - mean) / sqrt(var + eps)."),
            (_ln(small, w, b, eps_mode="none"), "eps is missing: divide by sqrt(var + eps), not sqrt(var)."),
        ])
        m2 = call(LayerNorm, "LayerNorm", D, eps=0.1)
        m2.weight.copy_(w)
        m2.bias.copy_(b)
        want = _ln(small, w, b, 0.1)
        compare("LayerNorm(8, eps=0.1) on x with a tiny variance", call(m2, "LayerNorm.forward", small), want, atol=1e-4, hints=[
            (_ln(small, w, b, 1e-5), "It ignores the eps argument: store it in __init__ (self.eps = eps) and use self.eps."),
        ])
    passed("LayerNorm", "equal to nn.LayerNorm")


# ---------------------------------------------------------------------------------------------------------
# Exercise 2: FeedForward
# ---------------------------------------------------------------------------------------------------------


def check_feed_forward(FeedForward) -> None:
    """Check ``FeedForward(d_model, d_ff, dropout=0.0, activation="relu")``: ``linear2(dropout(act(linear1(x))))``."""
    __tracebackhide__ = True
    torch.manual_seed(45)
    D, Dff = 8, 32
    m = call(FeedForward, "FeedForward", D, Dff)
    expect(isinstance(m, nn.Module), f"FeedForward({D}, {Dff}) should build an nn.Module, got {describe_value(m)}.")
    for name, shape in (("linear1", (Dff, D)), ("linear2", (D, Dff))):
        lin = getattr(m, name, None)
        if not isinstance(lin, nn.Linear):
            raise CheckFailed(f"FeedForward has no nn.Linear attribute `{name}`: name the layers linear1 "
                              "(d_model -> d_ff) and linear2 (d_ff -> d_model), as nn.TransformerEncoderLayer does.")
        expect(tuple(lin.weight.shape) == shape,
               f"`{name}` has weight shape {tuple(lin.weight.shape)}; expected {shape} "
               f"(nn.Linear({shape[1]}, {shape[0]})).")
    n = sum(p.numel() for p in m.parameters())
    expect(n == 2 * D * Dff + Dff + D, f"FeedForward({D}, {Dff}) has {n} parameters; expected 2*{D}*{Dff} + {Dff} + {D} = "
                                       f"{2 * D * Dff + Dff + D}.")
    m.eval()
    x = _randn(2, 5, D, seed=46)
    l1, l2 = m.linear1, m.linear2
    with torch.no_grad():
        got = call(m, "FeedForward.forward", x)
        what = "FeedForward(8, 32)(x) for x of shape (2, 5, 8)"
        _tensor(what, got)
        compare(what, got, l2(F.relu(l1(x))), atol=1e-5, hints=[
            (l2(l1(x)), "The activation is missing. Without a nonlinearity between them, two linear layers are just "
                        "one linear layer: apply the activation to the output of linear1."),
            (F.relu(l2(F.relu(l1(x)))), "The activation is also applied after linear2; it belongs only between the two layers."),
            (l2(F.gelu(l1(x))), "It uses GELU although activation='relu' (the default) was asked for."),
        ])
        m2 = call(FeedForward, "FeedForward", D, Dff, activation="gelu").eval()
        l1, l2 = m2.linear1, m2.linear2
        what = "FeedForward(8, 32, activation='gelu')(x)"
        compare(what, call(m2, "FeedForward.forward", x), l2(F.gelu(l1(x))), atol=1e-5, hints=[
            (l2(F.relu(l1(x))), "It ignores the activation argument: with activation='gelu' use F.gelu."),
            (l2(F.gelu(l1(x), approximate="tanh")), "It uses the tanh approximation of GELU; use the exact one, "
                                                    "F.gelu(h) (as torch's activation='gelu' does)."),
        ])
    m3 = call(FeedForward, "FeedForward", D, Dff, dropout=0.5)
    m3.train()
    big = _randn(4, 16, D, seed=47)
    with torch.no_grad():
        torch.manual_seed(48)
        a = call(m3, "FeedForward.forward", big)
        b = call(m3, "FeedForward.forward", big)
        expect(not torch.allclose(a, b), "FeedForward(8, 32, dropout=0.5) gives the same output twice in training mode: "
                                         "the dropout is missing. Apply self.dropout = nn.Dropout(dropout) to the hidden layer.")
        expect((a == 0).float().mean().item() < 0.2,
               "About half of the outputs are exactly 0 in training mode: dropout is applied to the output. Apply it "
               "to the hidden activations, between the activation and linear2 (the block adds its own dropout on the output).")
        m3.eval()
        compare("FeedForward(8, 32, dropout=0.5) in eval mode", call(m3, "FeedForward.forward", big),
                m3.linear2(F.relu(m3.linear1(big))), atol=1e-5)
    passed("FeedForward")


# ---------------------------------------------------------------------------------------------------------
# Exercise 3: the residual sub-layer connection
# ---------------------------------------------------------------------------------------------------------


class _FixedDropout(nn.Module):
    """A stand-in for dropout that is easy to spot: always drops the same features (and scales the rest by 2)."""

    def __init__(self, d: int):
        super().__init__()
        self.register_buffer("keep", (torch.arange(d) % 3 != 1).float() * 2.0)

    def forward(self, x):
        return x * self.keep


def check_sublayer(sublayer) -> None:
    """Check ``sublayer(x, fn, norm, dropout, norm_first)`` (post-norm ``norm(x + dropout(fn(x)))``,
    pre-norm ``x + dropout(fn(norm(x)))``)."""
    __tracebackhide__ = True
    torch.manual_seed(49)
    D = 8
    fn = nn.Linear(D, D)
    norm = nn.LayerNorm(D)
    with torch.no_grad():
        norm.weight.copy_(1 + 0.5 * _randn(D, seed=50))
        norm.bias.copy_(0.5 * _randn(D, seed=51))
    drop = _FixedDropout(D)
    x = 2 * _randn(2, 4, D, seed=52)
    with torch.no_grad():
        # post-norm
        got = call(sublayer, "sublayer", x, fn, norm, drop, False)
        what = "sublayer(x, fn, norm, dropout, norm_first=False) (post-norm)"
        _tensor(what, got)
        compare(what, got, norm(x + drop(fn(x))), atol=1e-5, hints=[
            (norm(drop(fn(x))), "The residual connection is missing: add x to the sub-layer's output before normalising."),
            (x + drop(fn(norm(x))), "The norm is in the wrong place: with norm_first=False (post-norm, the 2017 paper) "
                                    "normalise *after* adding: norm(x + dropout(fn(x)))."),
            (norm(x + fn(x)), "Dropout is not applied: norm(x + dropout(fn(x)))."),
            (norm(drop(x + fn(x))), "Dropout is applied to the whole sum, residual included; apply it to the sub-layer's "
                                    "output only: norm(x + dropout(fn(x)))."),
            (x + drop(norm(fn(x))), "It normalises the sub-layer's output and then adds x; post-norm normalises the "
                                    "sum: norm(x + dropout(fn(x)))."),
            (x + norm(drop(fn(x))), "It normalises the sub-layer's output and then adds x; post-norm normalises the "
                                    "sum: norm(x + dropout(fn(x)))."),
        ])
        # pre-norm
        got = call(sublayer, "sublayer", x, fn, norm, drop, True)
        what = "sublayer(x, fn, norm, dropout, norm_first=True) (pre-norm)"
        _tensor(what, got)
        compare(what, got, x + drop(fn(norm(x))), atol=1e-5, hints=[
            (drop(fn(norm(x))), "The residual connection is missing: add x to the sub-layer's output."),
            (norm(x + drop(fn(x))), "The norm is in the wrong place: with norm_first=True (pre-norm) normalise the "
                                    "sub-layer's *input*: x + dropout(fn(norm(x)))."),
            (norm(x) + drop(fn(norm(x))), "The residual carries norm(x); it must carry x itself, un-normalised: "
                                          "x + dropout(fn(norm(x))). That untouched path is what makes pre-norm stable."),
            (x + fn(norm(x)), "Dropout is not applied: x + dropout(fn(norm(x)))."),
            (drop(x + fn(norm(x))), "Dropout is applied to the whole sum, residual included; apply it to the "
                                    "sub-layer's output only."),
            (x + drop(norm(fn(x))), "The norm comes after the sub-layer; in pre-norm it comes before: fn(norm(x))."),
        ])
    passed("sublayer", "post-norm and pre-norm")


# ---------------------------------------------------------------------------------------------------------
# Exercise 4 and 5: the blocks
# ---------------------------------------------------------------------------------------------------------


def _step(x, f, n, pre, residual=True):
    if pre:
        y = f(n(x))
        return x + y if residual else y
    y = f(x)
    return n(x + y) if residual else n(y)


def _mask(mask, mode):
    if mask is None or mode == "ignore":
        return None
    return ~mask if mode == "invert" else mask


def _encoder_variant(blk, x, mask, *, norm_first, residual=True, swap=False, same_norm=False, mask_mode="ok"):
    m = _mask(mask, mask_mode)
    sa = lambda h: blk.self_attn(h, h, h, m)[0]  # noqa: E731
    subs = [(sa, blk.norm1), (blk.ff, blk.norm1 if same_norm else blk.norm2)]
    if swap:
        subs = [(blk.ff, blk.norm1), (sa, blk.norm2)]
    for f, n in subs:
        x = _step(x, f, n, norm_first, residual)
    return x


def _encoder_hints(blk, x, mask, norm_first):
    other = "pre-norm: x + sublayer(norm(x))" if not norm_first else "post-norm: norm(x + sublayer(x))"
    want = "post-norm: norm(x + sublayer(x))" if not norm_first else "pre-norm: x + sublayer(norm(x))"
    cands = [
        (dict(norm_first=not norm_first), f"The norm is in the wrong place: norm_first={norm_first} asks for {want}, "
                                          f"but the block computes {other}. Pass self.norm_first to sublayer."),
        (dict(norm_first=norm_first, residual=False), "The residual connections are missing (use your sublayer function for both sub-layers)."),
        (dict(norm_first=norm_first, swap=True), "The sub-layers are in the wrong order: self-attention first, then the feed-forward network."),
        (dict(norm_first=norm_first, same_norm=True), "Both sub-layers use norm1; the feed-forward sub-layer has its own norm2."),
    ]
    if mask is not None:
        cands += [
            (dict(norm_first=norm_first, mask_mode="ignore"), "The mask is ignored: pass it to self.self_attn(x, x, x, mask)."),
            (dict(norm_first=norm_first, mask_mode="invert"), "The mask is inverted: our masks are True where attention is allowed; pass it as it is."),
        ]
    with torch.no_grad():
        return [(_encoder_variant(blk, x, mask, **kw), msg) for kw, msg in cands]


def _fresh_torch_encoder(D, H, Dff, norm_first, seed):
    torch.manual_seed(seed)
    layer = nn.TransformerEncoderLayer(D, H, Dff, dropout=0.0, batch_first=True, norm_first=norm_first).eval()
    with torch.no_grad():  # layer norms with non-trivial weights, so that their placement shows
        for n in (layer.norm1, layer.norm2):
            n.weight.copy_(1 + 0.3 * torch.randn(D))
            n.bias.copy_(0.3 * torch.randn(D))
    return layer


def check_encoder_block(EncoderBlock) -> None:
    """Check ``EncoderBlock(d_model, num_heads, d_ff, dropout, norm_first)`` against ``nn.TransformerEncoderLayer``."""
    __tracebackhide__ = True
    D, H, Dff, B, L = 16, 4, 32, 2, 6
    x = _randn(B, L, D, seed=53)
    pad = padding_mask(torch.tensor([6, 4]), L)
    for norm_first in (False, True):
        layer = _fresh_torch_encoder(D, H, Dff, norm_first, 54 + norm_first)
        blk = call(EncoderBlock, "EncoderBlock", D, H, Dff, dropout=0.0, norm_first=norm_first)
        expect(isinstance(blk, nn.Module), f"EncoderBlock should build an nn.Module, got {describe_value(blk)}.")
        try:
            ref.copy_encoder_layer_weights(layer, blk)
        except (AttributeError, RuntimeError) as err:
            raise CheckFailed(f"Could not copy nn.TransformerEncoderLayer's weights into your EncoderBlock ({err}). Keep "
                              "the attribute names of the given __init__ (self_attn, ff, norm1, norm2).") from None
        blk.eval()
        refblk = ref.EncoderBlock(d_model=D, num_heads=H, d_ff=Dff, dropout=0.0, norm_first=norm_first).load_from_torch(layer).eval()
        kind = "pre-norm" if norm_first else "post-norm"
        with torch.no_grad():
            for name, mask, tmask in (("no mask", None, None), ("a padding mask", pad, to_torch_mask(pad[:, 0, 0])),):
                got = call(blk, "EncoderBlock.forward", x, mask)
                what = f"EncoderBlock(norm_first={norm_first}) ({kind}) with {name}, x of shape {(B, L, D)}"
                _tensor(what, got)
                want = layer(x, src_key_padding_mask=tmask)
                compare(what, got, want, atol=1e-4, hints=_encoder_hints(refblk, x, mask, norm_first))
            c = causal_mask(L)
            got = call(blk, "EncoderBlock.forward", x, c)
            compare(f"EncoderBlock(norm_first={norm_first}) with a causal mask", got, layer(x, src_mask=to_torch_mask(c)),
                    atol=1e-4, hints=_encoder_hints(refblk, x, c, norm_first))
    blk = call(EncoderBlock, "EncoderBlock", D, H, Dff, dropout=0.5)
    blk.train()
    with torch.no_grad():
        expect(not torch.allclose(blk(x), blk(x)), "With dropout=0.5 in training mode the block gives the same output "
                                                   "twice: pass self.dropout1 / self.dropout2 to sublayer.")
    passed("EncoderBlock", "equals PyTorch's layer, post- and pre-norm")


def _decoder_variant(blk, x, mem, self_mask, mem_mask, *, norm_first, residual=True, cross_kv="memory",
                     self_mode="ok", mem_mode="ok", norm_memory=False):
    sm, mm = _mask(self_mask, self_mode), _mask(mem_mask, mem_mode)
    sa = lambda h: blk.self_attn(h, h, h, sm)[0]  # noqa: E731

    def ca(h):
        kv = h if cross_kv == "x" else (blk.norm2(mem) if norm_memory else mem)
        return blk.cross_attn(h, kv, kv, mm if cross_kv == "memory" else None)[0]

    for f, n in ((sa, blk.norm1), (ca, blk.norm2), (blk.ff, blk.norm3)):
        x = _step(x, f, n, norm_first, residual)
    return x


def _decoder_hints(blk, x, mem, sm, mm, norm_first):
    other = "pre-norm" if not norm_first else "post-norm"
    cands = [
        (dict(norm_first=not norm_first), f"The norm is in the wrong place: the block computes {other} although "
                                          f"norm_first={norm_first}. Pass self.norm_first to sublayer."),
        (dict(norm_first=norm_first, residual=False), "The residual connections are missing (use your sublayer function for all three sub-layers)."),
        (dict(norm_first=norm_first, cross_kv="x"), "The cross-attention takes its keys and values from the decoder's own "
                                                    "states; they must come from the encoder output: "
                                                    "self.cross_attn(h, memory, memory, memory_mask)."),
        (dict(norm_first=norm_first, self_mode="ignore"), "self_mask is ignored: the self-attention must use it (a target "
                                                          "position may not see later target positions)."),
        (dict(norm_first=norm_first, mem_mode="ignore"), "memory_mask is ignored: the cross-attention must use it, so that "
                                                         "no query attends to padded source positions."),
        (dict(norm_first=norm_first, self_mode="invert"), "self_mask is inverted: our masks are True where attention is allowed."),
        (dict(norm_first=norm_first, mem_mode="invert"), "memory_mask is inverted: our masks are True where attention is allowed."),
    ]
    if norm_first:
        cands.append((dict(norm_first=True, norm_memory=True), "The memory is normalised with norm2; only the decoder's "
                                                               "own states go through the norm (the encoder normalised its output already)."))
    with torch.no_grad():
        return [(_decoder_variant(blk, x, mem, sm, mm, **kw), msg) for kw, msg in cands]


def check_decoder_block(DecoderBlock) -> None:
    """Check ``DecoderBlock(d_model, num_heads, d_ff, dropout, norm_first)`` against ``nn.TransformerDecoderLayer``."""
    __tracebackhide__ = True
    D, H, Dff, B, Lt, Ls = 16, 4, 32, 2, 5, 7
    x, mem = _randn(B, Lt, D, seed=56), _randn(B, Ls, D, seed=57)
    sm = causal_mask(Lt)
    mm = padding_mask(torch.tensor([7, 3]), Ls)
    ctx = ("The target has 5 positions and the source 7: the self-attention mask is (5, 5), the memory mask "
           "(2, 1, 1, 7). Check that each mask goes to its own attention and that the cross-attention's queries come "
           "from x and its keys and values from memory.")
    for norm_first in (False, True):
        torch.manual_seed(58 + norm_first)
        layer = nn.TransformerDecoderLayer(D, H, Dff, dropout=0.0, batch_first=True, norm_first=norm_first).eval()
        with torch.no_grad():
            for n in (layer.norm1, layer.norm2, layer.norm3):
                n.weight.copy_(1 + 0.3 * torch.randn(D))
                n.bias.copy_(0.3 * torch.randn(D))
        blk = call(DecoderBlock, "DecoderBlock", D, H, Dff, dropout=0.0, norm_first=norm_first)
        expect(isinstance(blk, nn.Module), f"DecoderBlock should build an nn.Module, got {describe_value(blk)}.")
        try:
            ref.copy_decoder_layer_weights(layer, blk)
        except (AttributeError, RuntimeError) as err:
            raise CheckFailed(f"Could not copy nn.TransformerDecoderLayer's weights into your DecoderBlock ({err}). Keep "
                              "the attribute names of the given __init__ (self_attn, cross_attn, ff, norm1..norm3).") from None
        blk.eval()
        refblk = ref.DecoderBlock(d_model=D, num_heads=H, d_ff=Dff, dropout=0.0, norm_first=norm_first).load_from_torch(layer).eval()
        kind = "pre-norm" if norm_first else "post-norm"
        with torch.no_grad():
            got = _call_ctx(blk, "DecoderBlock.forward", x, mem, sm, mm, context=ctx)
            what = (f"DecoderBlock(norm_first={norm_first}) ({kind}), x {(B, Lt, D)}, memory {(B, Ls, D)}, causal "
                    "self_mask and padding memory_mask")
            _tensor(what, got)
            want = layer(x, mem, tgt_mask=to_torch_mask(sm), memory_key_padding_mask=to_torch_mask(mm[:, 0, 0]))
            compare(what, got, want, atol=1e-4, hints=_decoder_hints(refblk, x, mem, sm, mm, norm_first))
            got = _call_ctx(blk, "DecoderBlock.forward", x, mem, context=ctx)
            compare(f"DecoderBlock(norm_first={norm_first}) without masks", got, layer(x, mem), atol=1e-4,
                    hints=_decoder_hints(refblk, x, mem, None, None, norm_first))
    passed("DecoderBlock", "equals PyTorch's layer, post- and pre-norm")
