"""Lab 3 self-checks: the reference passes, and each typical mistake gets its own clear message."""
import math

import pytest
import torch
from torch import nn

from labsupport import positional as ref
from labsupport.checks import CheckFailed
from labsupport.checks import lab03 as L
from checkhelpers import fails_with, not_implemented


# student-style solutions, with a switch for one typical mistake
def sinusoidal(max_len, d_model, mistake=None):
    pos = torch.arange(max_len, dtype=torch.float32)[:, None]
    i = torch.arange(0, d_model, 2, dtype=torch.float32)  # 2i
    if mistake == "exp_i":
        i = i / 2
    freq = 1.0 / 10000 ** (i / d_model)
    if mistake == "multiply":
        freq = 10000 ** (i / d_model)
    pe = torch.zeros(max_len, d_model)
    a, b = torch.sin(pos * freq), torch.cos(pos * freq)
    if mistake == "swap":
        a, b = b, a
    if mistake == "halves":
        return torch.cat([a, b], dim=1)
    if mistake == "exp_j":
        j = torch.arange(d_model, dtype=torch.float32)
        ang = pos / 10000 ** (j / d_model)
        return torch.where(torch.arange(d_model) % 2 == 0, torch.sin(ang), torch.cos(ang))
    pe[:, 0::2], pe[:, 1::2] = a, b
    if mistake == "transposed":
        return pe.T
    if mistake == "int":
        return pe.long()
    return pe


class Learned(nn.Module):
    def __init__(self, max_len, d_model, mistake=None):
        super().__init__()
        self.mistake = mistake
        if mistake == "buffer":
            self.register_buffer("table", torch.randn(max_len, d_model))
        elif mistake == "raw_param":
            self.table = nn.Parameter(torch.randn(max_len, d_model) * 0.02)
        elif mistake == "too_many":
            self.emb = nn.Embedding(max_len + 1, d_model)
        else:
            self.emb = nn.Embedding(max_len, d_model)

    def forward(self, x):
        L_ = x.shape[1]
        if self.mistake in ("buffer", "raw_param"):
            return x + self.table[:L_]
        pos = self.emb(torch.arange(L_))
        if self.mistake == "only_pos":
            return pos.expand_as(x)
        if self.mistake == "unchanged":
            return x
        if self.mistake == "concat":
            return torch.cat([x, pos.expand_as(x)], dim=-1)
        if self.mistake == "whole_table":
            return x + self.emb.weight
        if self.mistake == "detach":
            return x + pos.detach()
        return x + pos


def gap(f, x, perm, mistake=None):
    if mistake == "inverse":
        return (f(x[:, perm]) - f(x)[:, torch.argsort(perm)]).abs().max().item()
    if mistake == "batch":
        return (f(x[perm]) - f(x)[perm]).abs().max().item()
    if mistake == "signed":
        return (f(x[:, perm]) - f(x)[:, perm]).max().item()
    if mistake == "no_max":
        return (f(x[:, perm]) - f(x)[:, perm]).abs()
    return (f(x[:, perm]) - f(x)[:, perm]).abs().max()


def offset(k, d, mistake=None):
    i2 = torch.arange(0, d, 2, dtype=torch.float64)
    b = k / 10000 ** ((i2 / 2 if mistake == "exp" else i2) / d)
    if mistake == "no_freq":
        b = torch.full_like(b, float(k))
    m = torch.zeros(d, d, dtype=torch.float64)
    for p, (c, s) in enumerate(zip(b.cos(), b.sin())):
        m[2 * p: 2 * p + 2, 2 * p: 2 * p + 2] = torch.tensor([[c, s], [-s, c]])
    return m.T if mistake == "transpose" else m


def grid2d(gh, gw, d, mistake=None):
    rows, cols = sinusoidal(gh, d // 2), sinusoidal(gw, d // 2)
    if mistake == "swap":
        rows, cols = sinusoidal(gh, d // 2), sinusoidal(gw, d // 2)
        pe = torch.cat([cols[None, :, :].expand(gh, gw, -1), rows[:, None, :].expand(gh, gw, -1)], dim=-1)
    else:
        pe = torch.cat([rows[:, None, :].expand(gh, gw, -1), cols[None, :, :].expand(gh, gw, -1)], dim=-1)
    if mistake == "colmajor":
        return pe.transpose(0, 1).reshape(gh * gw, d)
    if mistake == "unflat":
        return pe
    return pe.reshape(gh * gw, d)


def test_reference_passes_every_check(capsys):
    L.check_sinusoidal_encoding(sinusoidal)
    L.check_sinusoidal_encoding(ref.sinusoidal_encoding)
    L.check_learned_positions(Learned)
    L.check_learned_positions(lambda n, d: Learned(n, d, "raw_param"))
    L.check_learned_positions(lambda n, d: ref.LearnedPositionalEncoding(n, d))
    L.check_permutation_gap(gap)
    L.check_offset_matrix(offset)
    L.check_offset_matrix(ref.offset_rotation)
    L.check_sinusoidal_2d(grid2d)
    L.check_sinusoidal_2d(ref.sinusoidal_encoding_2d)
    assert capsys.readouterr().out.count("✓") == 10


@pytest.mark.parametrize("check", [L.check_sinusoidal_encoding, L.check_learned_positions, L.check_permutation_gap,
                                   L.check_offset_matrix, L.check_sinusoidal_2d])
def test_not_implemented_is_explained(check):
    fails_with(check, not_implemented, "not implemented yet")


@pytest.mark.parametrize("mistake,fragment", [
    ("swap", "sin and cos are swapped"),
    ("exp_i", "you used i / d_model"),
    ("exp_j", "share a frequency"),
    ("multiply", "must be divided"),
    ("halves", "interleaves"),
    ("transposed", "transposed"),
    ("int", "floating-point"),
])
def test_sinusoidal_mistakes(mistake, fragment):
    fails_with(L.check_sinusoidal_encoding, lambda n, d: sinusoidal(n, d, mistake), fragment)


@pytest.mark.parametrize("mistake,fragment", [
    ("buffer", "no learnable parameters"),
    ("too_many", "expected one vector"),
    ("only_pos", "only the position vectors"),
    ("unchanged", "returns x unchanged"),
    ("concat", "concatenated"),
    ("whole_table", "raised RuntimeError"),
    ("detach", "No gradient"),
])
def test_learned_mistakes(mistake, fragment):
    fails_with(L.check_learned_positions, lambda n, d: Learned(n, d, mistake), fragment)


@pytest.mark.parametrize("mistake,fragment", [
    ("inverse", "inverse permutation"),
    ("batch", "not the batch"),
    ("signed", "absolute"),
    ("no_max", "one number"),
])
def test_permutation_gap_mistakes(mistake, fragment):
    fails_with(L.check_permutation_gap, lambda f, x, p: gap(f, x, p, mistake), fragment)


@pytest.mark.parametrize("mistake,fragment", [
    ("transpose", "rotates the wrong way"),
    ("exp", "frequency is wrong"),
    ("no_freq", "own frequency"),
])
def test_offset_mistakes(mistake, fragment):
    fails_with(L.check_offset_matrix, lambda k, d: offset(k, d, mistake), fragment)


@pytest.mark.parametrize("mistake,fragment", [
    ("swap", "Rows and columns are swapped"),
    ("colmajor", "column by column"),
    ("unflat", "flatten"),
])
def test_grid2d_mistakes(mistake, fragment):
    fails_with(L.check_sinusoidal_2d, lambda h, w, d: grid2d(h, w, d, mistake), fragment)
