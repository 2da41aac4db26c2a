"""Self-checks of Lab 3, positional encodings.

Each check runs the student's code on inputs that ``seed`` picks (the notebook uses the default, grading uses
others), compares it with the reference twin in :mod:`labsupport.positional` and recognises the typical mistakes
of :data:`MISTAKES` (each one the reference *with that mistake*, plus what to tell the student). The same checks
also catch what no table lists: a result of the wrong type, shape or dtype (float64 where float32 is expected, a
0-d tensor where a Python number is expected), an argument changed in place, a crash inside torch (explained).

``permutation_gap`` receives functions: they are made on the student's side from the module-level factories
:func:`fixture_function` and :class:`SelfAttentionFixture` (random weights from a seed, positions passed as data),
and the check computes the reference with its own copies of them. ``LearnedPositions`` is checked as a module: the
check loads a table it made into it, reads its parameters and the gradient that reaches them with
:func:`~labsupport.checks.core.probe`.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from labsupport import positional as ref
from labsupport.checks.core import (
    CheckFailed,
    Handle,
    Mistake,
    build,
    call,
    candidates,
    compare,
    describe_value,
    error_hints,
    expect,
    expect_number,
    method,
    passed,
    probe,
)
from labsupport.device import torch_threads

__all__ = ["MISTAKES", "CHECKS", "check_permutation_gap", "check_sinusoidal_encoding", "check_offset_matrix",
           "check_learned_positions", "check_sinusoidal_2d", "SelfAttentionFixture", "fixture_function", "double",
           "running_sum", "negated_running_sum", "identity"]


def _gen(seed: int, case: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, case]).generate_state(1)[0]))


def _rng(seed: int, case: int) -> np.random.Generator:
    return np.random.default_rng([seed, case])


# ------------------------------------------------------------------------------------------------------------
# the functions permutation_gap is given (made on the student's side)
# ------------------------------------------------------------------------------------------------------------
def double(t: torch.Tensor) -> torch.Tensor:
    """Element-wise: permutation-equivariant, exactly."""
    return 2 * t


def running_sum(t: torch.Tensor) -> torch.Tensor:
    """The running sum over the positions: it depends on their order."""
    return t.cumsum(1)


def negated_running_sum(t: torch.Tensor) -> torch.Tensor:
    """Minus the running sum: the same absolute differences as :func:`running_sum`, the other signs."""
    return -t.cumsum(1)


def identity(t: torch.Tensor) -> torch.Tensor:
    return t


def fixture_function(name: str):
    """One of :func:`double`, :func:`running_sum`, :func:`negated_running_sum`, :func:`identity`, by name (a
    factory for ``build``)."""
    return {"double": double, "running_sum": running_sum, "negated_running_sum": negated_running_sum,
            "identity": identity}[name]


class SelfAttentionFixture(nn.Module):
    """Multi-head self-attention with random weights drawn from ``seed`` (no labsupport reference involved), after
    adding ``positions[:L]`` to its input when a table is given: ``forward(x (B, L, D)) -> (B, L, D)``."""

    def __init__(self, seed: int, d_model: int, num_heads: int = 2, positions: torch.Tensor | None = None):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.num_heads = num_heads
        self.register_buffer("w", torch.randn(4, d_model, d_model, generator=g) / math.sqrt(d_model))
        self.register_buffer("positions", positions)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        H = self.num_heads
        if self.positions is not None:
            x = x + self.positions[:L]
        q, k, v = (torch.matmul(x, self.w[i]).view(B, L, H, D // H).transpose(1, 2) for i in range(3))
        w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(D // H), dim=-1)
        return torch.matmul((w @ v).transpose(1, 2).reshape(B, L, D), self.w[3])


# ------------------------------------------------------------------------------------------------------------
# the typical mistakes, each as the reference with that mistake
# ------------------------------------------------------------------------------------------------------------
def _table(max_len: int, d: int, *, swap=False, exponent="2i", op="divide", layout="interleaved", base=10000.0,
           start=0, exponent_len=None):
    """The sinusoidal table with one typical mistake switched on."""
    pos = torch.arange(start, start + max_len, dtype=torch.float64)[:, None]
    j = torch.arange(d, dtype=torch.float64)
    two_i = torch.div(j, 2, rounding_mode="floor") * 2
    expo = {"2i": two_i, "i": two_i / 2, "j": j}[exponent] / (exponent_len or d)
    angle = pos * base ** (-expo) if op == "divide" else pos * base ** expo
    even = torch.arange(d) % 2 == 0
    if layout == "interleaved":
        sin_cols = even if not swap else ~even
        return torch.where(sin_cols, torch.sin(angle), torch.cos(angle)).float()
    freq = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)  # halves: all sines, then all cosines
    return torch.cat([torch.sin(pos * freq), torch.cos(pos * freq)], dim=1)[:, :d].float()


def _rotation(k: int, d: int, *, transpose=False, exponent="2i", per_pair_angle=True, swap_cos_sin=False):
    two_i = torch.arange(0, d, 2, dtype=torch.float64)
    freq = 10000.0 ** (-(two_i if exponent == "2i" else two_i / 2) / d)
    b = k * freq if per_pair_angle else torch.full_like(freq, float(k))
    c, s = (b.sin(), b.cos()) if swap_cos_sin else (b.cos(), b.sin())
    m = torch.zeros(d, d, dtype=torch.float64)
    idx = torch.arange(0, d, 2)
    m[idx, idx], m[idx, idx + 1], m[idx + 1, idx], m[idx + 1, idx + 1] = c, s, -s, c
    return (m.T if transpose else m).float()


def _gap(f, x, perm) -> float:
    return (f(x[:, perm]) - f(x)[:, perm]).abs().max().item()


MULTIPLY = ("You multiplied pos by 10000^(2i/d_model); it must be divided: pos / 10000^(2i/d_model), i.e. slower "
            "and slower frequencies.")
NOT_FLOAT = ("it should hold floating-point numbers (float32). Build the positions with "
             "torch.arange(max_len, dtype=torch.float32) and the table with torch.zeros(max_len, d_model).")
NO_PARAMETERS = ("has no learnable parameters, so the optimiser could never train the positions. Create the table in "
                 "__init__ as nn.Embedding(max_len, d_model) (or nn.Parameter(...)) and assign it to an attribute; a "
                 "plain tensor, a buffer, or a table made inside forward is not learned.")
NO_GRADIENT = ("No gradient reaches the position table: don't use torch.no_grad(), .detach() or .data in forward, "
               "and look the positions up in the table of __init__.")


class _LearnedMistake(nn.Module):
    """``LearnedPositions(max_len, d_model)`` with the typical mistake ``mistake`` (see :func:`_learned`)."""

    mistake = ""

    def __init__(self, max_len: int, d_model: int):
        super().__init__()
        if self.mistake == "buffer":
            self.register_buffer("table", torch.randn(max_len, d_model))
        else:
            self.embedding = nn.Embedding(max_len + (self.mistake == "one_row_too_many"), d_model)

    def forward(self, x):
        L = x.size(1)
        if self.mistake == "buffer":
            return x + self.table[:L]
        pos = self.embedding(torch.arange(1, L + 1) if self.mistake == "positions_from_one" else torch.arange(L))
        if self.mistake == "detached":
            pos = pos.detach()
        if self.mistake == "only_positions":
            return pos
        if self.mistake == "unchanged":
            return x
        if self.mistake == "concatenated":
            return torch.cat([x, pos.expand_as(x)], dim=-1)
        return x + pos


def _learned(name: str) -> type:
    return type(f"LearnedPositions_{name}", (_LearnedMistake,), {"mistake": name})


_LEARNED_MESSAGES = {
    "buffer": NO_PARAMETERS,
    "one_row_too_many": "parameters; expected one vector of size d_model per position",
    "only_positions": "It returns only the position vectors; add them to x.",
    "unchanged": "It returns x unchanged; add the vectors of positions 0 .. L-1.",
    "concatenated": "The positions are concatenated to x. Add them instead (x + positions), so the width stays "
                    "d_model.",
    "positions_from_one": "The positions start at 1: the first token is position 0, so look up "
                          "torch.arange(L) = 0 .. L-1.",
    "detached": NO_GRADIENT,
}

MISTAKES: dict[str, list[Mistake]] = {
    "permutation_gap": [
        Mistake("inverse", "You compared f(x[:, perm]) with the output permuted by the inverse permutation. Permute "
                           "the output the same way as the input: f(x)[:, perm].",
                lambda f, x, perm: _gap_variant(f, x, perm, "inverse")),
        Mistake("batch_axis", "It permutes the batch axis (x[perm]), not the sequence axis: permuting whole sequences "
                              "in a batch changes nothing for any model. Use x[:, perm] and f(x)[:, perm] (dim 1).",
                lambda f, x, perm: _gap_variant(f, x, perm, "batch")),
        Mistake("signed", "permutation_gap must be the largest *absolute* difference: take .abs() before .max().",
                lambda f, x, perm: _gap_variant(f, x, perm, "signed")),
        Mistake("output_not_permuted", "It compares f(x[:, perm]) with f(x) itself; permute the output too: "
                                       "f(x)[:, perm].", lambda f, x, perm: _gap_variant(f, x, perm, "unpermuted")),
        Mistake("mean", "It returns the mean absolute difference; permutation_gap is the largest one: .abs().max().",
                lambda f, x, perm: _gap_variant(f, x, perm, "mean")),
    ],
    "sinusoidal_encoding": [
        Mistake("swapped", "sin and cos are swapped: even columns (0, 2, 4, ...) hold sin(pos * omega_i), odd columns "
                           "cos(pos * omega_i).", lambda n, d: _table(n, d, swap=True)),
        Mistake("exponent_i", "The frequency exponent is wrong: omega_i = 1 / 10000^(2i / d_model), where i numbers "
                              "the (sin, cos) pairs; you used i / d_model.", lambda n, d: _table(n, d, exponent="i")),
        Mistake("exponent_column", "The sin and the cos of one pair must share a frequency: columns 2i and 2i+1 both "
                                   "use omega_i = 1 / 10000^(2i / d_model). You put the column index in the exponent, "
                                   "so the cosine columns got the next frequency.",
                lambda n, d: _table(n, d, exponent="j")),
        Mistake("halves", "All sines are in the first half and all cosines in the second. That is a valid encoding "
                          "too, but the paper (and this course) interleaves them: column 2i is sin, column 2i+1 is cos "
                          "of the same angle. Use pe[:, 0::2] and pe[:, 1::2].",
                lambda n, d: _table(n, d, layout="halves")),
        Mistake("transposed", "It is transposed: rows are positions, columns are dimensions, shape "
                              "(max_len, d_model).", lambda n, d: _table(n, d).T),
        Mistake("positions_from_one", "The positions start at 1; the first row is position 0 (sin 0 = 0, cos 0 = 1): "
                                      "torch.arange(max_len).", lambda n, d: _table(n, d, start=1)),
        Mistake("exponent_max_len", "The exponent divides by max_len; it is 2i / d_model.",
                lambda n, d: _table(n, d, exponent_len=n)),
        Mistake("multiply", MULTIPLY, lambda n, d: _table(n, d, op="multiply")),
        Mistake("integer", NOT_FLOAT, lambda n, d: _table(n, d).long()),
    ],
    "offset_matrix": [
        Mistake("transposed", "It rotates the wrong way: this matrix maps PE[pos + k] back to PE[pos] (an offset of "
                              "-k). In each 2x2 block acting on (sin, cos), the first row is (cos b, sin b) and the "
                              "second (-sin b, cos b).", lambda k, d: _rotation(k, d, transpose=True)),
        Mistake("exponent_i", "The frequency is wrong: pair i turns by b = k / 10000^(2i / d_model).",
                lambda k, d: _rotation(k, d, exponent="i")),
        Mistake("no_frequency", "Every pair is rotated by the angle k, but pair i turns at its own frequency: "
                                "b = k * omega_i with omega_i = 1 / 10000^(2i / d_model).",
                lambda k, d: _rotation(k, d, per_pair_angle=False)),
        Mistake("cos_sin_swapped", "cos and sin are swapped in the blocks: the diagonal of each 2x2 block holds cos b, "
                                   "the off-diagonal sin b and -sin b.",
                lambda k, d: _rotation(k, d, swap_cos_sin=True)),
    ],
    "learned_positions": [Mistake(name, message, _learned(name)) for name, message in _LEARNED_MESSAGES.items()],
    "sinusoidal_2d": [
        Mistake("swapped", "Rows and columns are swapped: the first d_model/2 dimensions encode the row r, the last "
                           "d_model/2 the column c.",
                lambda h, w, d: torch.cat([ref.sinusoidal_encoding_2d(h, w, d)[:, d // 2:],
                                           ref.sinusoidal_encoding_2d(h, w, d)[:, :d // 2]], dim=1)),
        Mistake("column_major", "The patches are numbered column by column; number them row by row: patch (r, c) is "
                                "row r * grid_w + c of the table (the order of image.flatten()).",
                lambda h, w, d: ref.sinusoidal_encoding_2d(h, w, d).view(h, w, d).transpose(0, 1).reshape(h * w, d)),
        Mistake("not_flattened", "flatten the grid into one patch axis, row by row: .reshape(grid_h * grid_w, "
                                 "d_model).", lambda h, w, d: ref.sinusoidal_encoding_2d(h, w, d).view(h, w, d)),
        Mistake("stacked", "The row and column halves are interleaved (torch.stack): put them side by side with "
                           "torch.cat(..., dim=-1), the row's d_model/2 dimensions first.",
                lambda h, w, d: torch.stack(ref.sinusoidal_encoding_2d(h, w, d).split(d // 2, dim=1),
                                            dim=-1).reshape(h * w, d)),
    ],
}


def _gap_variant(f, x, perm, mistake: str) -> float:
    if mistake == "inverse":
        return (f(x[:, perm]) - f(x)[:, torch.argsort(perm)]).abs().max().item()
    if mistake == "batch":
        return (f(x[perm]) - f(x)[perm]).abs().max().item()
    if mistake == "signed":
        return (f(x[:, perm]) - f(x)[:, perm]).max().item()
    if mistake == "unpermuted":
        return (f(x[:, perm]) - f(x)).abs().max().item()
    return (f(x[:, perm]) - f(x)[:, perm]).abs().mean().item()


error_hints("LearnedPositions.forward", [
    (r"The size of tensor a \(\d+\) must match the size of tensor b \(\d+\)",
     "The position vectors must have shape (L, d_model), L = x.size(1) the sequence length: look up "
     "torch.arange(x.size(1)) in the table (not the whole table, not x.size(0))."),
    (r"index out of range",
     "A position past the end of the table was looked up: the positions of a sequence of length L are 0 .. L-1."),
])
error_hints("sinusoidal_2d", [
    (r"expanded size of the tensor",
     "Each half must be a (grid_h, grid_w, d_model // 2) tensor: the row table sinusoidal_encoding(grid_h, "
     "d_model // 2) repeated along the columns ([:, None, :]), the column table sinusoidal_encoding(grid_w, "
     "d_model // 2) along the rows ([None, :, :]), each expanded to (grid_h, grid_w, d_model // 2)."),
    (r"must be tuple of ints|'float' object cannot be interpreted as an integer|received an invalid combination",
     "d_model / 2 is a float: the half width is d_model // 2."),
])
error_hints("offset_matrix", [
    (r"index \d+ is out of bounds",
     "There are d_model // 2 blocks, block i at rows and columns 2i and 2i+1: loop over range(d_model // 2)."),
])


# ------------------------------------------------------------------------------------------------------------
# the checks
# ------------------------------------------------------------------------------------------------------------
def _perm(L: int, g: torch.Generator) -> torch.Tensor:
    """A random permutation that is not its own inverse (so the inverse-permutation mistake shows)."""
    while True:
        p = torch.randperm(L, generator=g)
        if not torch.equal(p[p], torch.arange(L)):
            return p


@torch_threads(1)
def check_permutation_gap(permutation_gap, *, seed: int = 0) -> None:
    """Check ``permutation_gap(f, x, perm)`` = ``max |f(x[:, perm]) - f(x)[:, perm]|``, a Python float, on
    self-attention with and without positions and on element-wise and running-sum functions."""
    mistakes = MISTAKES["permutation_gap"]
    D, H, L = 8, 2, 6
    g = _gen(seed, 1)
    fseed = int(torch.randint(2**31, (1,), generator=g))
    pe = ref.sinusoidal_encoding(L, D)
    perm = _perm(L, g)
    x = torch.randn(L, L, D, generator=g)  # a batch of L sequences, so that a permutation of the batch axis runs too
    cases = [("self-attention without positions (permutation-equivariant)", SelfAttentionFixture,
              (fseed, D, H), {}),
             ("self-attention with sinusoidal positions added", SelfAttentionFixture, (fseed, D, H), {"positions": pe}),
             ("f(t) = 2 * t (element-wise)", fixture_function, ("double",), {}),
             ("f(t) = t.cumsum(1) (a running sum over the positions)", fixture_function, ("running_sum",), {}),
             ("f(t) = -t.cumsum(1)", fixture_function, ("negated_running_sum",), {})]
    with torch.no_grad():
        for what, factory, args, kwargs in cases:
            f = build(permutation_gap, factory, *args, **kwargs)
            mine = factory(*args, **kwargs)
            got = call(permutation_gap, "permutation_gap", f, x, perm)
            shown = f"permutation_gap(f, x, perm) for f = {what}"
            if isinstance(got, torch.Tensor) and got.numel() > 1:
                raise CheckFailed(f"{shown} should be one number (the largest difference), but it is a "
                                  f"{describe_value(got)}: take .abs().max().item().")
            got = expect_number(shown, got)
            want = _gap(mine, x, perm)
            compare(shown, got, want, atol=1e-5 + 1e-5 * abs(want), hints=candidates(mistakes, mine, x, perm))
    passed("permutation_gap")


def check_sinusoidal_encoding(sinusoidal_encoding, *, seed: int = 0) -> None:
    """Check ``sinusoidal_encoding(max_len, d_model) -> (max_len, d_model)`` float32, sines in the even columns."""
    mistakes = MISTAKES["sinusoidal_encoding"]
    rng = _rng(seed, 2)
    L, D = int(rng.integers(40, 60)), int(rng.choice([16, 20]))
    for i, (n, d) in enumerate(((L, D), (7, 4), (1, 2), (30, 64))):
        what = f"sinusoidal_encoding({n}, {d})"
        got = call(sinusoidal_encoding, "sinusoidal_encoding", n, d)
        if isinstance(got, torch.Tensor) and not got.is_floating_point():
            raise CheckFailed(f"{what} has dtype {got.dtype}; {NOT_FLOAT}")
        want = ref.sinusoidal_encoding(n, d)
        if i == 0 and isinstance(got, torch.Tensor) and tuple(got.shape) == (n, d) and not torch.allclose(
                got.double(), want.double(), atol=1e-4) and torch.allclose(
                got[:4].double(), _table(n, d, op="multiply")[:4].double(), atol=1e-2):
            # (the first rows only: the sine of a huge angle differs between float32 and float64)
            raise CheckFailed(f"{what} is not right yet. {MULTIPLY}")
        compare(what, got, want, atol=1e-4, hints=candidates(mistakes, n, d))
    passed("sinusoidal_encoding")


def check_offset_matrix(offset_matrix, *, seed: int = 0) -> None:
    """Check ``offset_matrix(k, d_model)``: the ``(D, D)`` float32 matrix with ``PE[pos + k] = M @ PE[pos]``."""
    mistakes = MISTAKES["offset_matrix"]
    rng = _rng(seed, 3)
    k, D = int(rng.integers(2, 7)), 8
    compare(f"offset_matrix({k}, {D})", call(offset_matrix, "offset_matrix", k, D), ref.offset_rotation(k, D),
            atol=1e-5, hints=candidates(mistakes, k, D))
    pe = ref.sinusoidal_encoding(40, 16)
    for k2 in (1, int(rng.integers(5, 12))):
        M = call(offset_matrix, "offset_matrix", k2, 16)
        compare(f"offset_matrix({k2}, 16)", M, ref.offset_rotation(k2, 16), atol=1e-5,
                hints=candidates(mistakes, k2, 16))
        compare(f"PE[pos + {k2}] computed as offset_matrix({k2}, 16) @ PE[pos], for every pos",
                (pe[:-k2].double() @ M.double().T).float(), pe[k2:], atol=1e-4)
    compare("offset_matrix(0, 6) (no offset: the identity)", call(offset_matrix, "offset_matrix", 0, 6), torch.eye(6),
            atol=1e-6)
    passed("offset_matrix")


def _table_parameter(params: dict, max_len: int, D: int, what: str) -> str:
    n = sum(p.numel() for p in params.values())
    if n == 0:
        raise CheckFailed(f"{what} {NO_PARAMETERS}")
    expect(n == max_len * D, f"{what} has {n} parameters; expected one vector of size d_model per position, "
                             f"{max_len} x {D} = {max_len * D}.")
    return next(name for name, p in params.items() if p.numel() == max_len * D)


@torch_threads(1)
def check_learned_positions(LearnedPositions, *, seed: int = 0) -> None:
    """Check ``LearnedPositions(max_len, d_model)``: ``forward(x (B, L, D)) -> x + table[:L]`` with a learnable
    ``(max_len, d_model)`` table that the gradient reaches; ``x`` is left unchanged."""
    mistakes = MISTAKES["learned_positions"]
    g = _gen(seed, 4)
    for max_len, D, B, L in ((10, 8, 3, 6), (5, 4, 1, 5)):
        what = f"LearnedPositions({max_len}, {D})"
        m = call(LearnedPositions, "LearnedPositions", max_len, D)
        expect(isinstance(m, Handle) and m.is_module,
               f"{what} should build an nn.Module (a class deriving from nn.Module), but it gave {describe_value(m)}.")
        params = probe(m, "parameters")
        name = _table_parameter(params, max_len, D, what)
        table = torch.randn(max_len, D, generator=g)
        method(m, "load_state_dict", "LearnedPositions.load_state_dict",
               {name: table.reshape(params[name].shape)}, strict=False)
        x = torch.randn(B, L, D, generator=g)
        shown = f"{what}(x) for x of shape {(B, L, D)}"
        got = method(m, "forward", "LearnedPositions.forward", x)
        hints = []
        for mk in mistakes:
            with torch.random.fork_rng(devices=[]):
                twin = mk.fn(max_len, D)
            if mk.fn.mistake != "buffer" and mk.fn.mistake != "one_row_too_many":
                twin.embedding.weight.data.copy_(table)
                with torch.no_grad():
                    try:
                        hints.append((twin(x), mk.message))
                    except (IndexError, RuntimeError):
                        pass
        compare(shown, got, x + table[:L], atol=1e-6, hints=hints)
        grads = probe(m, "gradients", x.clone().requires_grad_(True))["grads"]
        grad = grads.get(name)
        expect(isinstance(grad, torch.Tensor) and grad.reshape(max_len, D)[:L].abs().sum() > 0, NO_GRADIENT)
        compare(f"the gradient that reaches the table from {shown} (the sum of the output)",
                grad.reshape(max_len, D), torch.cat([torch.full((L, D), float(B)), torch.zeros(max_len - L, D)]),
                atol=1e-5)
    passed("LearnedPositions")


def check_sinusoidal_2d(sinusoidal_2d, *, seed: int = 0) -> None:
    """Check ``sinusoidal_2d(grid_h, grid_w, d_model) -> (grid_h * grid_w, d_model)``, row-major patches, the row
    in the first half of the dimensions."""
    mistakes = MISTAKES["sinusoidal_2d"]
    rng = _rng(seed, 5)
    gh = int(rng.integers(2, 5))
    for h, w, d in ((gh, gh + 1, 8), (2, 5, 12), (4, 3, 16)):
        what = f"sinusoidal_2d({h}, {w}, {d})"
        compare(what, call(sinusoidal_2d, "sinusoidal_2d", h, w, d), ref.sinusoidal_encoding_2d(h, w, d), atol=1e-5,
                hints=candidates(mistakes, h, w, d))
    passed("sinusoidal_2d")


#: check name -> check, the keys of :data:`MISTAKES`
CHECKS = {"permutation_gap": check_permutation_gap, "sinusoidal_encoding": check_sinusoidal_encoding,
          "offset_matrix": check_offset_matrix, "learned_positions": check_learned_positions,
          "sinusoidal_2d": check_sinusoidal_2d}
