"""Lab 4 self-checks: the reference passes, and each typical mistake gets its own clear message."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from labsupport import blocks as ref
from labsupport.attention import MultiHeadAttention
from labsupport.checks import CheckFailed
from labsupport.checks import lab04 as L
from checkhelpers import fails_with, not_implemented


class LN(nn.Module):
    def __init__(self, d_model, eps=1e-5, mistake=None):
        super().__init__()
        self.eps, self.mistake = (1e-5 if mistake == "ignore_eps" else eps), mistake
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))
        if mistake == "names":
            self.gamma = self.weight
            del self.weight

    def forward(self, x):
        m = self.mistake
        dim = 1 if m == "dim1" else -1
        mean = x.mean(dim, keepdim=True)
        var = x.var(dim, keepdim=True, unbiased=(m == "unbiased"))
        if m == "no_eps":
            y = (x - mean) / var.sqrt()
        elif m == "eps_outside":
            y = (x - mean) / (var.sqrt() + self.eps)
        else:
            y = (x - mean) / (var + self.eps).sqrt()
        return y if m == "no_affine" else y * self.weight + self.bias


class FF(nn.Module):
    def __init__(self, d_model, d_ff, dropout=0.0, activation="relu", mistake=None):
        super().__init__()
        self.linear1, self.linear2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)
        self.act = {"relu": F.relu, "gelu": F.gelu}[activation]
        if mistake == "always_relu":
            self.act = F.relu
        if mistake == "tanh_gelu" and activation == "gelu":
            self.act = lambda h: F.gelu(h, approximate="tanh")
        self.mistake = mistake

    def forward(self, x):
        m = self.mistake
        h = self.linear1(x) if m == "no_act" else self.act(self.linear1(x))
        if m == "drop_out":
            return self.dropout(self.linear2(h))
        if m == "no_dropout":
            return self.linear2(h)
        y = self.linear2(self.dropout(h))
        return F.relu(y) if m == "act_after" else y


def sublayer(x, fn, norm, dropout, norm_first, mistake=None):
    m = mistake
    if norm_first:
        if m == "wrong_place":
            return norm(x + dropout(fn(x)))
        if m == "no_residual":
            return dropout(fn(norm(x)))
        if m == "norm_residual":
            return norm(x) + dropout(fn(norm(x)))
        if m == "no_dropout":
            return x + fn(norm(x))
        if m == "drop_sum":
            return dropout(x + fn(norm(x)))
        return x + dropout(fn(norm(x)))
    if m == "wrong_place":
        return x + dropout(fn(norm(x)))
    if m == "no_residual":
        return norm(dropout(fn(x)))
    if m == "norm_sub":
        return x + norm(dropout(fn(x)))
    if m == "no_dropout":
        return norm(x + fn(x))
    if m == "drop_sum":
        return norm(dropout(x + fn(x)))
    return norm(x + dropout(fn(x)))


class Enc(nn.Module):
    def __init__(self, d_model, num_heads, d_ff, dropout=0.1, norm_first=False, mistake=None):
        super().__init__()
        self.norm_first, self.mistake = norm_first, mistake
        self.self_attn = MultiHeadAttention(d_model, num_heads)
        self.ff = ref.FeedForward(d_model, d_ff, dropout)
        self.norm1, self.norm2 = ref.LayerNorm(d_model), ref.LayerNorm(d_model)
        self.dropout1, self.dropout2 = nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(self, x, mask=None):
        m = self.mistake
        nf = (not self.norm_first) if m == "wrong_norm" else self.norm_first
        if m == "ignore_mask":
            mask = None
        if m == "invert_mask" and mask is not None:
            mask = ~mask
        sub = (lambda x_, f, n, d, p: n(f(x_)) if not p else f(n(x_))) if m == "no_residual" else sublayer
        sa = lambda h: self.self_attn(h, h, h, mask)[0]  # noqa: E731
        n2 = self.norm1 if m == "same_norm" else self.norm2
        if m == "swap":
            x = sub(x, self.ff, self.norm1, self.dropout1, nf)
            return sub(x, sa, self.norm2, self.dropout2, nf)
        x = sub(x, sa, self.norm1, self.dropout1, nf)
        return sub(x, self.ff, n2, self.dropout2, nf)


class Dec(nn.Module):
    def __init__(self, d_model, num_heads, d_ff, dropout=0.1, norm_first=False, mistake=None):
        super().__init__()
        self.norm_first, self.mistake = norm_first, mistake
        self.self_attn = MultiHeadAttention(d_model, num_heads)
        self.cross_attn = MultiHeadAttention(d_model, num_heads)
        self.ff = ref.FeedForward(d_model, d_ff, dropout)
        self.norm1, self.norm2, self.norm3 = (ref.LayerNorm(d_model) for _ in range(3))
        self.dropout1, self.dropout2, self.dropout3 = (nn.Dropout(dropout) for _ in range(3))

    def forward(self, x, memory, self_mask=None, memory_mask=None):
        m, nf = self.mistake, self.norm_first
        if m == "wrong_norm":
            nf = not nf
        if m == "ignore_self_mask":
            self_mask = None
        if m == "ignore_memory_mask":
            memory_mask = None
        if m == "swap_masks":
            self_mask, memory_mask = memory_mask, self_mask
        x = sublayer(x, lambda h: self.self_attn(h, h, h, self_mask)[0], self.norm1, self.dropout1, nf)
        if m == "cross_on_x":
            ca = lambda h: self.cross_attn(h, h, h)[0]  # noqa: E731
        elif m == "norm_memory" and nf:
            ca = lambda h: self.cross_attn(h, self.norm2(memory), self.norm2(memory), memory_mask)[0]  # noqa: E731
        else:
            ca = lambda h: self.cross_attn(h, memory, memory, memory_mask)[0]  # noqa: E731
        x = sublayer(x, ca, self.norm2, self.dropout2, nf)
        return sublayer(x, self.ff, self.norm3, self.dropout3, nf)


def test_reference_passes_every_check(capsys):
    L.check_layer_norm(LN)
    L.check_layer_norm(ref.LayerNorm)
    L.check_feed_forward(FF)
    L.check_feed_forward(ref.FeedForward)
    L.check_sublayer(sublayer)
    L.check_encoder_block(Enc)
    L.check_encoder_block(lambda d, h, f, dropout=0.1, norm_first=False: ref.EncoderBlock(d, h, f, dropout, norm_first=norm_first))
    L.check_decoder_block(Dec)
    L.check_decoder_block(lambda d, h, f, dropout=0.1, norm_first=False: ref.DecoderBlock(d, h, f, dropout, norm_first=norm_first))
    assert capsys.readouterr().out.count("✓") == 9


@pytest.mark.parametrize("check", [L.check_layer_norm, L.check_feed_forward, L.check_sublayer, L.check_encoder_block,
                                   L.check_decoder_block])
def test_not_implemented_is_explained(check):
    fails_with(check, not_implemented, "not implemented yet")


@pytest.mark.parametrize("mistake,fragment", [
    ("unbiased", "unbiased variance"),
    ("no_eps", "Add eps inside the square root"),
    ("eps_outside", "outside the square root"),
    ("ignore_eps", "ignores the eps argument"),
    ("dim1", "sequence axis"),
    ("no_affine", "weight and bias are not applied"),
    ("names", "no parameter `weight`"),
])
def test_layer_norm_mistakes(mistake, fragment):
    fails_with(L.check_layer_norm, lambda d, eps=1e-5: LN(d, eps, mistake), fragment)


@pytest.mark.parametrize("mistake,fragment", [
    ("no_act", "activation is missing"),
    ("act_after", "after linear2"),
    ("always_relu", "ignores the activation argument"),
    ("tanh_gelu", "tanh approximation"),
    ("no_dropout", "dropout is missing"),
    ("drop_out", "applied to the output"),
])
def test_feed_forward_mistakes(mistake, fragment):
    fails_with(L.check_feed_forward, lambda d, f, dropout=0.0, activation="relu": FF(d, f, dropout, activation, mistake), fragment)


def test_feed_forward_names():
    class Bad(nn.Module):
        def __init__(self, d, f, dropout=0.0, activation="relu"):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(d, f), nn.Linear(f, d)

    fails_with(L.check_feed_forward, Bad, "no nn.Linear attribute `linear1`")


@pytest.mark.parametrize("mistake,fragment", [
    ("wrong_place", "norm is in the wrong place"),
    ("no_residual", "residual connection is missing"),
    ("norm_sub", "normalises the sub-layer's output"),
    ("no_dropout", "Dropout is not applied"),
    ("drop_sum", "whole sum"),
    ("norm_residual", "residual carries norm(x)"),
])
def test_sublayer_mistakes(mistake, fragment):
    fails_with(L.check_sublayer, lambda *a: sublayer(*a, mistake=mistake), fragment)


def test_sublayer_pre_norm_only_mistake():
    fails_with(L.check_sublayer, lambda x, f, n, d, p: sublayer(x, f, n, d, p, "norm_residual" if p else None),
               "pre-norm", "residual carries norm(x)")


@pytest.mark.parametrize("mistake,fragment", [
    ("wrong_norm", "norm is in the wrong place"),
    ("no_residual", "residual connections are missing"),
    ("swap", "wrong order"),
    ("same_norm", "its own norm2"),
    ("ignore_mask", "mask is ignored"),
    ("invert_mask", "mask is inverted"),
])
def test_encoder_mistakes(mistake, fragment):
    fails_with(L.check_encoder_block, lambda d, h, f, dropout=0.1, norm_first=False: Enc(d, h, f, dropout, norm_first, mistake), fragment)


def test_encoder_without_dropout():
    class NoDrop(Enc):
        def forward(self, x, mask=None):
            self.dropout1.p = self.dropout2.p = self.ff.dropout.p = 0.0
            return super().forward(x, mask)

    fails_with(L.check_encoder_block, NoDrop, "dropout")


@pytest.mark.parametrize("mistake,fragment", [
    ("wrong_norm", "norm is in the wrong place"),
    ("cross_on_x", "from the encoder output"),
    ("ignore_self_mask", "self_mask is ignored"),
    ("ignore_memory_mask", "memory_mask is ignored"),
    ("swap_masks", "each mask goes to its own attention"),
    ("norm_memory", "memory is normalised"),
])
def test_decoder_mistakes(mistake, fragment):
    fails_with(L.check_decoder_block, lambda d, h, f, dropout=0.1, norm_first=False: Dec(d, h, f, dropout, norm_first, mistake), fragment)


def test_decoder_attribute_names():
    class Renamed(Dec):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.mha = self.cross_attn
            del self.cross_attn

    fails_with(L.check_decoder_block, Renamed, "Keep the attribute names")
