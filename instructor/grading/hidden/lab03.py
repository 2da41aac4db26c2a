"""Hidden tests of Lab 3 (positional encodings): the self-checks on other inputs, then the cases of the old hidden
tests (hand-made values and properties), computed from data made here."""
from __future__ import annotations

import math

import torch

from instructor.grading.hidden import hidden_test
from labsupport import positional as ref
from labsupport.checks import lab03 as checks
from labsupport.checks.core import build, call, compare, expect, expect_number, method, probe


@hidden_test("test_permutation_gap")
def test_permutation_gap(student, seed):
    checks.check_permutation_gap(student.permutation_gap, seed=seed)
    pg = student.permutation_gap
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 5, 3, generator=g)
    perm = torch.tensor([4, 2, 0, 1, 3])
    gap = expect_number("permutation_gap(2 * t, x, perm)",
                        call(pg, "permutation_gap", build(pg, checks.fixture_function, "double"), x, perm))
    expect(gap < 1e-6, f"permutation_gap(f, x, perm) for the element-wise f(t) = 2 * t is {gap:.3g}; an element-wise "
                       "function is permutation-equivariant, so it should be 0.")
    gap = expect_number("permutation_gap(t.cumsum(1), x, perm)",
                        call(pg, "permutation_gap", build(pg, checks.fixture_function, "running_sum"), x, perm))
    want = (checks.running_sum(x[:, perm]) - checks.running_sum(x)[:, perm]).abs().max().item()
    compare("permutation_gap(f, x, perm) for the running sum f(t) = t.cumsum(1)", gap, want, atol=1e-5)
    expect(want > 1e-3, "internal: the running sum depends on order")
    expect_number("permutation_gap(identity, x, arange(5))",
                  call(pg, "permutation_gap", build(pg, checks.fixture_function, "identity"), x, torch.arange(5)))


@hidden_test("test_sinusoidal",
             twins=["labsupport.positional:sinusoidal_encoding", "labsupport.positional:frequencies"])
def test_sinusoidal(student, seed):
    checks.check_sinusoidal_encoding(student.sinusoidal_encoding, seed=seed)
    pe = call(student.sinusoidal_encoding, "sinusoidal_encoding", 20, 6)
    compare("sinusoidal_encoding(20, 6)", pe, ref.sinusoidal_encoding(20, 6), atol=1e-5)
    compare("row 0 of sinusoidal_encoding(20, 6) (sin 0 = 0, cos 0 = 1)", pe[0],
            torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 1.0]), atol=1e-6)
    expect(abs(pe[3, 0].item() - math.sin(3)) < 1e-6 and abs(pe[3, 3].item() - math.cos(3 / 10000 ** (2 / 6))) < 1e-6,
           "sinusoidal_encoding(20, 6)[3] does not hold sin(3) in column 0 and cos(3 / 10000^(2/6)) in column 3.")
    compare("sin^2 + cos^2 of every pair of sinusoidal_encoding(20, 6) (each pair lies on the unit circle)",
            pe[:, 0::2] ** 2 + pe[:, 1::2] ** 2, torch.ones(20, 3), atol=1e-5)


@hidden_test("test_offset_matrix", twins=["labsupport.positional:offset_rotation"])
def test_offset_matrix(student, seed):
    checks.check_offset_matrix(student.offset_matrix, seed=seed)
    M5 = call(student.offset_matrix, "offset_matrix", 5, 10)
    compare("offset_matrix(5, 10)", M5, ref.offset_rotation(5, 10), atol=1e-5)
    compare("offset_matrix(5, 10) @ its transpose (a rotation is orthogonal)", M5 @ M5.T, torch.eye(10), atol=1e-5)
    M2, M3 = (call(student.offset_matrix, "offset_matrix", k, 10) for k in (2, 3))
    compare("offset_matrix(2, 10)", M2, ref.offset_rotation(2, 10), atol=1e-5)
    compare("offset_matrix(3, 10)", M3, ref.offset_rotation(3, 10), atol=1e-5)
    compare("offset_matrix(2, 10) @ offset_matrix(3, 10) (it should be offset_matrix(5, 10))", M2 @ M3, M5, atol=1e-5)
    pe = ref.sinusoidal_encoding(30, 10)
    compare("PE[pos + 5] computed as offset_matrix(5, 10) @ PE[pos]", pe[:-5] @ M5.T, pe[5:], atol=1e-4)


@hidden_test("test_learned", twins=["labsupport.positional:LearnedPositionalEncoding"])
def test_learned(student, seed):
    checks.check_learned_positions(student.LearnedPositions, seed=seed)
    m = call(student.LearnedPositions, "LearnedPositions", 7, 3)
    n = sum(p.numel() for p in probe(m, "parameters").values())
    expect(n == 21, f"LearnedPositions(7, 3) has {n} parameters; expected 7 x 3 = 21.")
    out = method(m, "forward", "LearnedPositions.forward", torch.zeros(2, 4, 3))
    expect(isinstance(out, torch.Tensor) and tuple(out.shape) == (2, 4, 3),
           "LearnedPositions(7, 3)(x) for x of shape (2, 4, 3) should be a tensor of the same shape.")
    compare("the second sequence of LearnedPositions(7, 3)(zeros) (every sequence gets the same positions)", out[1],
            out[0])
    expect(not torch.allclose(out[0, 0], out[0, 1]),
           "LearnedPositions(7, 3) gives positions 0 and 1 the same vector: each position has its own row.")


@hidden_test("test_sinusoidal_2d", twins=["labsupport.positional:sinusoidal_encoding_2d"])
def test_sinusoidal_2d(student, seed):
    checks.check_sinusoidal_2d(student.sinusoidal_2d, seed=seed)
    t = call(student.sinusoidal_2d, "sinusoidal_2d", 2, 3, 4)
    compare("sinusoidal_2d(2, 3, 4)", t, ref.sinusoidal_encoding_2d(2, 3, 4), atol=1e-5)
    compare("patch 4 = (row 1, column 1) of sinusoidal_2d(2, 3, 4)", t[4],
            torch.cat([ref.sinusoidal_encoding(2, 2)[1], ref.sinusoidal_encoding(3, 2)[1]]), atol=1e-5)
    compare("patch (0, 0) of sinusoidal_2d(2, 3, 4) (sin 0 = 0, cos 0 = 1 in both halves)", t[0],
            torch.tensor([0.0, 1.0, 0.0, 1.0]), atol=1e-6)
