"""Self-checks of Lab 3, positional encodings.

Each check runs the student's code on fresh inputs, compares it with the reference twin in
:mod:`labsupport.positional` and recognises the usual mistakes:

* ``sinusoidal_encoding``: sin and cos swapped; a wrong frequency exponent (``i/D`` instead of ``2i/D``, or the
  column index in the exponent so the sin and cos of a pair get different frequencies); multiplying by
  ``base^(2i/D)`` instead of dividing; all sines in the first half and all cosines in the second; a transposed
  ``(D, max_len)`` table; an integer dtype;
* ``LearnedPositions``: no learnable parameters (a plain tensor or a buffer, or a table created in ``forward``),
  a wrong number of them, returning only the positions or ``x`` unchanged, concatenating instead of adding,
  adding the whole table instead of the first ``L`` rows, positions cut off from the gradient;
* ``permutation_gap``: permuting the output with the inverse permutation, permuting the batch axis instead of the
  sequence axis, a signed maximum without the absolute value;
* ``offset_matrix``: the rotation in the wrong direction (the transpose, which maps ``PE[pos + k]`` back to
  ``PE[pos]``), a wrong frequency exponent, rotating every pair by ``k`` instead of ``k * omega_i``;
* ``sinusoidal_2d``: rows and columns swapped, column-major patch order, an unflattened ``(grid_h, grid_w, D)``
  table.
"""
from __future__ import annotations

import torch
from torch import nn

from labsupport import attention as attn_ref
from labsupport import positional as ref
from labsupport.checks import CheckFailed, call, compare, describe_value, expect, passed


def _tensor(what: str, got) -> None:
    __tracebackhide__ = True
    if got is None:
        raise CheckFailed(f"{what} returned None. Did you forget the `return` statement?")
    if not isinstance(got, torch.Tensor):
        raise CheckFailed(f"{what} should return a torch.Tensor, but it returned a {describe_value(got)}.")


def _table(max_len: int, d: int, *, swap=False, exponent="2i", op="divide", layout="interleaved", base=10000.0):
    """The sinusoidal table with one typical mistake switched on."""
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]
    j = torch.arange(d, dtype=torch.float64)
    two_i = torch.div(j, 2, rounding_mode="floor") * 2
    expo = {"2i": two_i, "i": two_i / 2, "j": j}[exponent] / d
    angle = pos * base ** (-expo) if op == "divide" else pos * base ** expo
    even = (torch.arange(d) % 2 == 0)
    if layout == "interleaved":
        sin_cols = even if not swap else ~even
        return torch.where(sin_cols, torch.sin(angle), torch.cos(angle)).float()
    # halves: the first D/2 columns sin, the last D/2 cos, frequencies 1/base^(2i/D), i = 0..D/2-1
    freq = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    return torch.cat([torch.sin(pos * freq), torch.cos(pos * freq)], dim=1)[:, :d].float()


def check_sinusoidal_encoding(sinusoidal_encoding) -> None:
    """Check ``sinusoidal_encoding(max_len, d_model) -> (max_len, d_model)``."""
    __tracebackhide__ = True
    L, D = 50, 16
    got = call(sinusoidal_encoding, "sinusoidal_encoding", L, D)
    what = f"sinusoidal_encoding({L}, {D})"
    _tensor(what, got)
    if tuple(got.shape) == (D, L):
        raise CheckFailed(f"{what} has shape {(D, L)}: it is transposed. Rows are positions, columns are dimensions: "
                          f"shape (max_len, d_model) = {(L, D)}.")
    expect(got.is_floating_point(), f"{what} has dtype {got.dtype}; it should hold floating-point numbers. "
                                    "Build the positions with torch.arange(max_len, dtype=torch.float32).")
    want = ref.sinusoidal_encoding(L, D)
    g = got.detach().double()
    if tuple(g.shape) == (L, D) and not torch.allclose(g, want.double(), atol=1e-4) and torch.allclose(
            g[:4], _table(L, D, op="multiply")[:4].double(), atol=1e-2):
        # (checked on the first rows only: sin of huge angles differs between float32 and float64)
        raise CheckFailed(f"{what} is not right yet. You multiplied pos by 10000^(2i/d_model); it must be divided: "
                          "pos / 10000^(2i/d_model), i.e. slower and slower frequencies.")
    compare(what, got, want, atol=1e-4, hints=[
        (_table(L, D, swap=True), "sin and cos are swapped: even columns (0, 2, 4, ...) hold sin(pos * omega_i), odd "
                                  "columns cos(pos * omega_i)."),
        (_table(L, D, exponent="i"), "The frequency exponent is wrong: omega_i = 1 / 10000^(2i / d_model), where i "
                                     "numbers the (sin, cos) pairs; you used i / d_model."),
        (_table(L, D, exponent="j"), "The sin and the cos of one pair must share a frequency: columns 2i and 2i+1 both "
                                     "use omega_i = 1 / 10000^(2i / d_model). You put the column index in the "
                                     "exponent, so the cosine columns got the next frequency."),
        (_table(L, D, layout="halves"), "All sines are in the first half and all cosines in the second. That is a "
                                        "valid encoding too, but the paper (and this course) interleaves them: column "
                                        "2i is sin, column 2i+1 is cos of the same angle. Use pe[:, 0::2] and "
                                        "pe[:, 1::2]."),
    ])
    for L2, D2 in ((7, 4), (1, 2), (30, 64)):
        compare(f"sinusoidal_encoding({L2}, {D2})", call(sinusoidal_encoding, "sinusoidal_encoding", L2, D2),
                ref.sinusoidal_encoding(L2, D2), atol=1e-4)
    passed("sinusoidal_encoding")


def check_learned_positions(LearnedPositions) -> None:
    """Check ``LearnedPositions(max_len, d_model)``: ``forward(x (B, L, D)) -> x + table[:L]`` with a learnable table."""
    __tracebackhide__ = True
    torch.manual_seed(31)
    max_len, D = 10, 8
    m = call(LearnedPositions, "LearnedPositions", max_len, D)
    expect(isinstance(m, nn.Module), f"LearnedPositions({max_len}, {D}) should build an nn.Module, got {describe_value(m)}.")
    params = list(m.parameters())
    n = sum(p.numel() for p in params)
    if n == 0:
        raise CheckFailed(
            f"LearnedPositions({max_len}, {D}) has no learnable parameters, so the optimiser could never train the "
            "positions. Create the table in __init__ as nn.Embedding(max_len, d_model) (or nn.Parameter(...)) and "
            "assign it to an attribute; a plain tensor, a buffer, or a table made inside forward is not learned."
        )
    expect(n == max_len * D, f"LearnedPositions({max_len}, {D}) has {n} parameters; expected one vector of size "
                             f"d_model per position, {max_len} x {D} = {max_len * D}.")
    tparam = next(p for p in params if p.numel() == max_len * D)
    table = tparam.view(max_len, D)
    x = torch.randn(3, 6, D, generator=torch.Generator().manual_seed(32))
    got = call(m, "LearnedPositions.forward", x)
    what = "LearnedPositions(10, 8)(x) for x of shape (3, 6, 8)"
    _tensor(what, got)
    if tuple(got.shape) == (3, 6, 2 * D):
        raise CheckFailed(f"{what} has shape (3, 6, 16): the positions are concatenated to x. Add them instead "
                          "(x + positions), so the width stays d_model.")
    with torch.no_grad():
        want = x + table[:6]
        compare(what, got, want, atol=1e-6, hints=[
            (table[:6].expand(3, 6, D), "It returns only the position vectors; add them to x."),
            (x, "It returns x unchanged; add the position vectors of positions 0 .. L-1."),
        ])
    # gradient reaches the first L rows
    if got.requires_grad:
        got.sum().backward()
    grad = tparam.grad
    expect(grad is not None and grad.view(max_len, D)[:6].abs().sum() > 0,
           "No gradient reaches the position table: don't use torch.no_grad(), .detach() or .data in forward.")
    full = torch.randn(2, max_len, D)
    compare("LearnedPositions(10, 8)(x) for x of length max_len = 10", call(m, "LearnedPositions.forward", full),
            full + table.detach(), atol=1e-6)
    passed("LearnedPositions")


def check_permutation_gap(permutation_gap) -> None:
    """Check ``permutation_gap(f, x, perm)`` = ``max |f(x[:, perm]) - f(x)[:, perm]|``."""
    __tracebackhide__ = True
    torch.manual_seed(33)
    D, L = 8, 6
    mha = attn_ref.MultiHeadAttention(D, 2).eval()
    pe = ref.sinusoidal_encoding(L, D)

    def no_positions(x):
        return mha(x)[0]

    def with_positions(x):
        return mha(x + pe)[0]

    perm = torch.tensor([1, 2, 3, 4, 5, 0])  # a cycle: not its own inverse
    x = torch.randn(L, L, D, generator=torch.Generator().manual_seed(34))  # batch of L sequences (see below)

    def value(f):
        got = call(permutation_gap, "permutation_gap", f, x, perm)
        if isinstance(got, torch.Tensor):
            expect(got.numel() == 1, f"permutation_gap should return one number (the largest difference), got a "
                                     f"tensor of shape {tuple(got.shape)}: take .abs().max().")
            got = got.item()
        expect(isinstance(got, (float, int)), f"permutation_gap should return a number, got {describe_value(got)}.")
        return float(got)

    with torch.no_grad():
        gap_eq = value(no_positions)
        a, b = no_positions(x[:, perm]), no_positions(x)
        if abs(gap_eq - (a - b[:, torch.argsort(perm)]).abs().max().item()) < 1e-5 and gap_eq > 1e-3:
            raise CheckFailed(
                f"For self-attention without positions permutation_gap returned {gap_eq:.3g}, but it should be ~0. You "
                "compared f(x[:, perm]) with the output permuted by the inverse permutation. Permute the output the "
                "same way as the input: f(x)[:, perm]."
            )
        expect(gap_eq < 1e-4, f"For self-attention without positions, which is permutation-equivariant, "
                              f"permutation_gap returned {gap_eq:.3g}; expected ~0 (below 1e-4). Compare "
                              "f(x[:, perm]) with f(x)[:, perm].")
        gap_pos = value(with_positions)
        a, b = with_positions(x[:, perm]), with_positions(x)
        want = (a - b[:, perm]).abs().max().item()
        if gap_pos < 1e-4:
            raise CheckFailed(
                f"With positional encodings added, self-attention is no longer permutation-equivariant, yet "
                f"permutation_gap returned {gap_pos:.3g}. Permute the sequence axis (x[:, perm], dim 1), not the batch "
                "axis (x[perm]): permuting whole sequences in a batch changes nothing for any model."
            )
        signed = (a - b[:, perm]).max().item()
        if abs(gap_pos - signed) < 1e-6 and abs(want - signed) > 1e-6:
            raise CheckFailed("permutation_gap must be the largest *absolute* difference: take .abs() before .max().")
        expect(abs(gap_pos - want) < 1e-4 * max(1.0, want),
               f"With positions, permutation_gap returned {gap_pos:.4g}, but max |f(x[:, perm]) - f(x)[:, perm]| is "
               f"{want:.4g}.")
    passed("permutation_gap")


def _rotation(k: int, d: int, *, transpose=False, exponent="2i", per_pair_angle=True, base=10000.0):
    two_i = torch.arange(0, d, 2, dtype=torch.float64)
    freq = base ** (-(two_i if exponent == "2i" else two_i / 2) / d)
    b = k * freq if per_pair_angle else torch.full_like(freq, float(k))
    m = torch.zeros(d, d, dtype=torch.float64)
    idx = torch.arange(0, d, 2)
    m[idx, idx], m[idx, idx + 1], m[idx + 1, idx], m[idx + 1, idx + 1] = b.cos(), b.sin(), -b.sin(), b.cos()
    return (m.T if transpose else m).float()


def check_offset_matrix(offset_matrix) -> None:
    """Check ``offset_matrix(k, d_model)``: the ``(D, D)`` matrix with ``PE[pos + k] = M @ PE[pos]``."""
    __tracebackhide__ = True
    k, D = 3, 8
    got = call(offset_matrix, "offset_matrix", k, D)
    what = f"offset_matrix({k}, {D})"
    _tensor(what, got)
    want = ref.offset_rotation(k, D)
    compare(what, got, want, atol=1e-5, hints=[
        (_rotation(k, D, transpose=True),
         "It rotates the wrong way: this matrix maps PE[pos + k] back to PE[pos] (an offset of -k). In each 2x2 block "
         "acting on (sin, cos), the first row is (cos b, sin b) and the second (-sin b, cos b)."),
        (_rotation(k, D, exponent="i"), "The frequency is wrong: pair i turns by b = k / 10000^(2i / d_model)."),
        (_rotation(k, D, per_pair_angle=False),
         "Every pair is rotated by the angle k, but pair i turns at its own frequency: b = k * omega_i with "
         "omega_i = 1 / 10000^(2i / d_model)."),
    ])
    # the property itself, on the reference table
    pe = ref.sinusoidal_encoding(40, 16)
    for k2 in (1, 7):
        M = call(offset_matrix, "offset_matrix", k2, 16)
        compare(f"PE[pos + {k2}] computed as offset_matrix({k2}, 16) @ PE[pos], for every pos",
                (pe[:-k2].double() @ M.double().T).float(), pe[k2:], atol=1e-4)
    compare("offset_matrix(0, 6) (no offset: the identity)", call(offset_matrix, "offset_matrix", 0, 6), torch.eye(6), atol=1e-6)
    passed("offset_matrix")


def check_sinusoidal_2d(sinusoidal_2d) -> None:
    """Check ``sinusoidal_2d(grid_h, grid_w, d_model) -> (grid_h * grid_w, d_model)``, row-major patches."""
    __tracebackhide__ = True
    gh, gw, D = 3, 4, 8
    got = call(sinusoidal_2d, "sinusoidal_2d", gh, gw, D)
    what = f"sinusoidal_2d({gh}, {gw}, {D})"
    _tensor(what, got)
    if tuple(got.shape) == (gh, gw, D):
        raise CheckFailed(f"{what} has shape {(gh, gw, D)}: flatten the grid into one patch axis, row by row: "
                          f".reshape(grid_h * grid_w, d_model).")
    want = ref.sinusoidal_encoding_2d(gh, gw, D)
    half = D // 2
    swapped = torch.cat([want[:, half:], want[:, :half]], dim=1)
    colmajor = want.view(gh, gw, D).transpose(0, 1).reshape(gh * gw, D)
    compare(what, got, want, atol=1e-5, hints=[
        (swapped, "Rows and columns are swapped: the first d_model/2 dimensions encode the row r, the last "
                  "d_model/2 the column c."),
        (ref.sinusoidal_encoding_2d(gw, gh, D).view(gw, gh, D).transpose(0, 1).reshape(gh * gw, D),
         "Rows and columns are swapped: the first d_model/2 dimensions encode the row r, the last d_model/2 the column c."),
        (colmajor, "The patches are numbered column by column; number them row by row: patch (r, c) is row "
                   "r * grid_w + c of the table (the order of image.flatten())."),
    ])
    compare("sinusoidal_2d(2, 5, 12)", call(sinusoidal_2d, "sinusoidal_2d", 2, 5, 12), ref.sinusoidal_encoding_2d(2, 5, 12), atol=1e-5)
    passed("sinusoidal_2d")
