"""Hidden tests of Lab 4 (the transformer block): the self-checks on other inputs, then the properties the old
hidden tests asserted (a fresh layer norm standardises, the feed-forward network is position-wise, the residual of
a zero sub-layer, masks that hide what they must), on the student's modules through handles."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from instructor.grading.hidden import hidden_test
from labsupport.attention import causal_mask, padding_mask
from labsupport.checks import lab04 as checks
from labsupport.checks.core import build, call, call_with, compare, describe_value, expect, method, probe


def _randn(seed: int, case: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed * 7919 + case))


def _forward(blk, name: str, shape: tuple, *args) -> torch.Tensor:
    """The block's output, which must be a tensor of ``shape``."""
    out = method(blk, "forward", f"{name}.forward", *args)
    expect(isinstance(out, torch.Tensor) and tuple(out.shape) == shape,
           f"{name}.forward should return a tensor of shape {shape} here, but it returned a {describe_value(out)}.")
    return out


@hidden_test("test_layer_norm", twins=["labsupport.blocks:LayerNorm"])
def test_layer_norm(student, seed):
    checks.check_layer_norm(student.LayerNorm, seed=seed)
    ln = call(student.LayerNorm, "LayerNorm", 6)
    x = _randn(seed, 1, 3, 4, 6) * 10 + 5
    compare("a fresh LayerNorm(6) on x of shape (3, 4, 6), entries of size ~10 around 5 (mean 0 and variance 1 "
            "per position)", method(ln, "forward", "LayerNorm", x), F.layer_norm(x, (6,)), atol=1e-5)
    r = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])
    compare("a fresh LayerNorm(6) on [[1, 2, 3, 4, 5, 6]]", method(ln, "forward", "LayerNorm", r),
            F.layer_norm(r, (6,)), atol=1e-5)
    compare("a fresh LayerNorm(6) on a constant vector (maps to the bias, 0, without NaN)",
            method(ln, "forward", "LayerNorm", torch.zeros(2, 6)), torch.zeros(2, 6), atol=0)
    ln3 = call(student.LayerNorm, "LayerNorm", 5, 1e-2)
    y = _randn(seed, 2, 4, 5) * 0.1
    compare("a fresh LayerNorm(5, 1e-2) (eps given by position) on x of variance ~0.01",
            method(ln3, "forward", "LayerNorm", y), F.layer_norm(y, (5,), eps=1e-2), atol=1e-5)


@hidden_test("test_feed_forward", twins=["labsupport.blocks:FeedForward"])
def test_feed_forward(student, seed):
    checks.check_feed_forward(student.FeedForward, seed=seed)
    ff = call(student.FeedForward, "FeedForward", 6, 24)
    probe(ff, "set_training", False)
    n = sum(p.numel() for p in probe(ff, "parameters").values())
    expect(n == 2 * 6 * 24 + 24 + 6, f"FeedForward(6, 24) has {n} parameters; expected 2*6*24 + 24 + 6 = "
                                     f"{2 * 6 * 24 + 24 + 6}.")
    x = _randn(seed, 3, 2, 5, 6)
    whole = method(ff, "forward", "FeedForward", x)
    compare("FeedForward on one position alone, x[:, 2:3] (position-wise: each position on its own)",
            method(ff, "forward", "FeedForward", x[:, 2:3]), whole[:, 2:3], atol=1e-6)
    b2 = _randn(seed, 4, 6)
    method(ff, "load_state_dict", "FeedForward.load_state_dict", {
        "linear1.weight": torch.full((24, 6), -1.0), "linear1.bias": torch.zeros(24),
        "linear2.weight": _randn(seed, 5, 6, 24), "linear2.bias": b2})
    compare("FeedForward with linear1 = -1 (all hidden values negative) on ones: ReLU cuts them to 0, so the output "
            "is linear2's bias", method(ff, "forward", "FeedForward", torch.ones(1, 1, 6)), b2.view(1, 1, 6), atol=1e-6)


@hidden_test("test_sublayer", twins=["labsupport.blocks:sublayer"])
def test_sublayer(student, seed):
    checks.check_sublayer(student.sublayer, seed=seed)
    sub = student.sublayer
    x = _randn(seed, 6, 2, 3, 4)
    zero, ident, ln4 = build(sub, checks.Zero), build(sub, nn.Identity), build(sub, nn.LayerNorm, 4)
    compare("pre-norm with a sub-layer that adds nothing (leaves x unchanged)",
            call(sub, "sublayer", x, zero, ln4, ident, True), x, atol=1e-6)
    compare("post-norm with a zero sub-layer (normalises x)", call(sub, "sublayer", x, zero, ln4, ident, False),
            F.layer_norm(x, (4,)), atol=1e-6)
    compare("post-norm, identity norm, a dropout that drops everything (leaves the residual x)",
            call(sub, "sublayer", x, ident, ident, zero, False), x, atol=1e-6)
    compare("pre-norm, identity norm, a dropout that drops everything (leaves the residual x)",
            call(sub, "sublayer", x, ident, ident, zero, True), x, atol=1e-6)


@hidden_test("test_encoder_block", twins=["labsupport.blocks:EncoderBlock"])
def test_encoder_block(student, seed):
    checks.check_encoder_block(student.EncoderBlock, seed=seed)
    blk = call_with(student.EncoderBlock, "EncoderBlock", (8, 2, 16), {"dropout": 0.0}, seed=seed)
    probe(blk, "set_training", False)
    x = _randn(seed, 7, 2, 5, 8)
    enc = lambda *args: _forward(blk, "EncoderBlock", (2, 5, 8), *args)  # noqa: E731
    enc(x)
    x2 = x.clone()
    x2[:, 4] = _randn(seed, 8, 2, 8)
    c = causal_mask(5)
    compare("the first 4 positions under a causal mask when only the last token changes (it must not affect them)",
            enc(x2, c)[:, :4], enc(x, c)[:, :4], atol=1e-5)
    p = padding_mask([5, 3], 5)
    x3 = x.clone()
    x3[1, 3:] = _randn(seed, 9, 2, 8)
    compare("the real positions of a padded sequence when only its padding changes (padding must not affect them)",
            enc(x3, p)[1, :3], enc(x, p)[1, :3], atol=1e-5)


@hidden_test("test_decoder_block", twins=["labsupport.blocks:DecoderBlock"])
def test_decoder_block(student, seed):
    checks.check_decoder_block(student.DecoderBlock, seed=seed)
    blk = call_with(student.DecoderBlock, "DecoderBlock", (8, 2, 16), {"dropout": 0.0}, seed=seed)
    probe(blk, "set_training", False)
    x, mem = _randn(seed, 10, 2, 4, 8), _randn(seed, 11, 2, 6, 8)
    dec = lambda *args: _forward(blk, "DecoderBlock", (2, 4, 8), *args)  # noqa: E731
    out = dec(x, mem)
    mem2 = mem.clone()
    mem2[:, 0] = _randn(seed, 12, 2, 8)
    expect(not torch.allclose(dec(x, mem2), out, atol=1e-6),
           "The output of DecoderBlock does not change when the memory changes: the cross-attention must read the "
           "encoder output (its keys and values come from memory).")
    pm = padding_mask([6, 2], 6)
    mem3 = mem.clone()
    mem3[1, 2:] = _randn(seed, 13, 4, 8)
    compare("a sequence whose padded source positions change (they are hidden by memory_mask)",
            dec(x, mem3, None, pm)[1], dec(x, mem, None, pm)[1], atol=1e-5)
    x4 = x.clone()
    x4[:, 3] = _randn(seed, 14, 2, 8)
    c = causal_mask(4)
    compare("the first 3 target positions under a causal self_mask when only the last target token changes",
            dec(x4, mem, c)[:, :3], dec(x, mem, c)[:, :3], atol=1e-5)
