"""The self-check core: run a student's code, compare it with the reference, say exactly what is wrong.

Every lab's checks (``labsupport.checks.labNN``) are written with these few pieces:

* :func:`call` runs the student's function or class through a handle (:mod:`labsupport.checks.subject`): the
  arguments are copies, the result comes back as plain data, and a crash, an unfinished
  ``raise NotImplementedError()`` or an argument changed in place becomes a :class:`CheckFailed` whose message
  says what happened, where (the student's line, or which library raised), and what it usually means;
* :func:`compare` checks a result against the reference: type (NumPy or PyTorch), shape, dtype, NaN and
  infinities, values, and recognises typical mistakes from ``hints``;
* :class:`Mistake` declares a typical mistake as *the reference with this mistake* plus the message; a check
  turns a table of them into hints with :func:`candidates`, and the tests run every check on every mistake
  of its table, so each mistake is written once;
* :func:`build` makes a helper object (a layer norm, a tiny model, a generator) on the side where the student's
  code runs, :func:`probe` reads a module's parameters or gradients there.

Checks written this way run unchanged on the student's objects in a notebook and on handles to another
process. A failed check raises :class:`CheckFailed` (an ``AssertionError``); in IPython it shows only its
message, never a traceback of this package.
"""
from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch

from labsupport.checks import subject as _subject
from labsupport.checks.subject import Handle, ModifiedArgument, StudentCodeError, as_handle

__all__ = ["CheckFailed", "Mistake", "call", "call_with", "error_hints", "method", "build", "probe", "compare",
           "candidates",
           "expect", "expect_number", "passed", "describe_value", "to_numpy", "explain_error",
           "as_handle", "Handle"]


class CheckFailed(AssertionError):
    """A self-check failed; the message is written for the student."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:  # keep the message as written, on its own lines
        return "\n" + self.message

    def _render_traceback_(self) -> list[str]:
        """What IPython shows instead of a traceback: the message alone (with its first line in red)."""
        first, _, rest = self.message.partition("\n")
        return ["\x1b[0;31m✗ " + first + "\x1b[0m"] + ([rest] if rest else [])


@dataclasses.dataclass(frozen=True)
class Mistake:
    """A typical mistake: the exercise's reference *with this mistake* (``fn``, same signature) and what to tell
    a student whose result matches it (``message``). ``name`` identifies it in the tests."""

    name: str
    message: str
    fn: Callable = dataclasses.field(repr=False, compare=False)


# ------------------------------------------------------------------------------------------------------------
# describing values
# ------------------------------------------------------------------------------------------------------------
def describe_value(x) -> str:
    """A short description of a value: type, shape and dtype for arrays and tensors; modules by class and size."""
    if isinstance(x, Handle):
        return repr(x).strip("<>")
    if isinstance(x, torch.Tensor):
        return f"torch.Tensor of shape {tuple(x.shape)}, dtype {x.dtype}"
    if isinstance(x, np.ndarray):
        return f"numpy array of shape {x.shape}, dtype {x.dtype}"
    if isinstance(x, (tuple, list)):
        inner = ", ".join(describe_value(v) for v in x[:4])
        return f"{type(x).__name__} of {len(x)} item(s) ({inner}{', ...' if len(x) > 4 else ''})"
    if isinstance(x, torch.nn.Module):
        n = sum(p.numel() for p in x.parameters())
        return f"{type(x).__name__} module with {n:,} parameters"
    return f"{type(x).__name__} ({x!r:.60})"


def to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
        return (t.float() if t.dtype == torch.bfloat16 else t).numpy()
    return np.asarray(x)


# ------------------------------------------------------------------------------------------------------------
# running the student's code
# ------------------------------------------------------------------------------------------------------------
#: What common errors raised inside a library usually mean in these labs: (pattern of the message, hint).
LIBRARY_HINTS: list[tuple[str, str]] = [
    (r"must be Tensor, not tuple",
     "A tuple reached a function that expects a tensor. Attention returns a pair (output, weights): take the "
     "output, e.g. `out, _ = self.self_attn(...)` or `self.self_attn(...)[0]`."),
    (r"only implemented on integer and Boolean(-type)? tensors|bitwise_not_cpu.*Float|not implemented for 'Float'",
     "A mask is a float tensor here. Masks are boolean (dtype torch.bool): build them with comparisons or "
     "`dtype=torch.bool`, and combine them with `&`, `|` and `~`."),
    (r"mat1 and mat2 shapes cannot be multiplied",
     "A Linear layer got an input of the wrong width: the last dimension of its input must equal its "
     "in_features. Print the shapes going into each nn.Linear."),
    (r"matmul: Input operand \d has a mismatch in its core dimension|shapes .* not aligned",
     "The shapes do not line up in a matrix product `@`. For batched inputs transpose only the last two axes "
     "(`np.swapaxes(K, -1, -2)` or `K.transpose(-2, -1)`): `K.T` reverses all the axes."),
    (r"The size of tensor a \(\d+\) must match the size of tensor b \(\d+\)|operands could not be broadcast",
     "Two arrays of shapes that do not broadcast were combined: print the shapes of both operands."),
    (r"view size is not compatible with input tensor's size and stride",
     "`.view` cannot follow a transpose: use `.reshape(...)` (or `.contiguous().view(...)`)."),
    (r"Expected all tensors to be on the same device",
     "Tensors on different devices were combined: create new tensors with `device=x.device`."),
    (r"expected (m1 and m2|mat1 and mat2|both vectors) to have the same dtype|expected scalar type \w+ but found",
     "Tensors of different dtypes were combined (float64 and float32?): create new tensors with `dtype=x.dtype` "
     "or use `torch.zeros_like` / `torch.full_like`."),
    (r"index \d+ is out of bounds|index out of range",
     "An index went past the end of an axis: check the lengths you slice or index with."),
]


#: Exercise-specific error hints, by the name a check calls the student's code under (see :func:`error_hints`).
_ERROR_HINTS: dict[str, list[tuple[str, str]]] = {}


def error_hints(name: str, hints: Iterable[tuple[str, str]]) -> None:
    """Declare what crashes of the exercise ``name`` usually mean: ``(regular expression, hint)`` pairs that
    :func:`call` tries on the error message before :data:`LIBRARY_HINTS`."""
    known = _ERROR_HINTS.setdefault(name, [])
    known.extend(h for h in hints if h not in known)   # a module imported again adds nothing twice


def _where(info: dict) -> str:
    """' at line 3 of your code (`x = ...`)' from the innermost student frame."""
    own = [f for f in info.get("frames", []) if f.get("student")]
    if not own:
        return ""
    f = own[-1]
    code = f" (`{f['code']}`)" if f.get("code") else ""
    return f" in `{f['function']}`, line {f['line']} of your code{code}" if f.get("function") not in ("", "<module>") \
        else f" at line {f['line']} of your code{code}"


def explain_error(err: Exception, name: str, args: Sequence = (), kwargs: dict | None = None,
                  error_hints: Iterable[tuple[str, str]] = ()) -> str:
    """The student-facing message for a :class:`StudentCodeError` or :class:`ModifiedArgument` from ``name``.

    ``error_hints`` are ``(regular expression, hint)`` pairs tried on the error message before
    :data:`LIBRARY_HINTS`: what this error usually means in this exercise.
    """
    if isinstance(err, ModifiedArgument):
        arg = err.info.get("name") or (f"number {err.info['position'] + 1}" if err.info.get("position") is not None
                                        else "")
        return (f"`{name}` changed its argument `{arg}` in place; the caller's data must stay as it was. "
                "`x -= ...`, `x /= ...`, `x[...] = ...` and methods ending in `_` (`x.masked_fill_(...)`) modify "
                "the array you were given: write `x = x - ...`, use the out-of-place method, or work on a copy "
                "(`x.copy()`, `x.clone()`).")
    info = err.info if isinstance(err, StudentCodeError) else _subject.error_info(err)
    etype, message = info.get("type", "Exception"), info.get("message", "")
    if etype == "WireError":
        return (f"`{name}` returned a value the check cannot read ({message[:300]}). Return numbers, NumPy arrays "
                "or torch tensors (dense, on the CPU or a GPU), or tuples of them, as the exercise asks.")
    if info.get("undefined"):
        return (f"`{name}` is not defined. Run the cell that defines it (and keep its name as given), then run "
                "this check again.")
    if etype == "NotImplementedError" and info.get("stub"):
        fn = info.get("function", "")
        if info.get("stub_elsewhere") and fn:
            return (f"`{name}` calls `{fn}`, which is not implemented yet: finish that exercise first (replace its "
                    "`raise NotImplementedError()` line), run its cell, then run this check again.")
        return (f"`{name}` is not implemented yet: replace the `raise NotImplementedError()` line in its cell with "
                "your code, run that cell, then run this check again.")
    shown = ", ".join(describe_value(a) for a in args)
    if kwargs:
        shown += (", " if shown else "") + ", ".join(f"{k}={describe_value(v)}" for k, v in kwargs.items())
    first_line = message.strip().splitlines()[0] if message.strip() else "(no message)"
    library = info.get("library")
    where = f" inside {library}" + (f" (called{_where(info)})" if _where(info) else "") if library else _where(info)
    msg = f"`{name}` raised {etype}{where} when called with ({shown}):\n    {first_line[:500]}"
    for pattern, hint in [*error_hints, *_ERROR_HINTS.get(name, ()), *LIBRARY_HINTS]:
        if re.search(pattern, message):
            return msg + "\n" + hint
    if library:
        return msg + "\nThe error comes from a library function your code called: print the shapes and dtypes " \
                     "of what you pass to it."
    return msg + "\nRun the cell that defines it on a small input and print the shapes of the intermediate values."


def call_with(fn, name: str, args: Sequence = (), kwargs: dict | None = None, /, *, seed: int | None = None,
              grad: bool = False, watch: bool = True, error_hints: Iterable[tuple[str, str]] = ()):
    """Call the student's ``fn(*args, **kwargs)`` and return its result as plain data (or a :class:`Handle`).

    ``seed`` seeds torch/NumPy/random right before the call, ``grad`` lets autograd record, ``watch=False``
    allows the call to change its arguments in place, ``error_hints`` explain this exercise's usual crashes (see
    :func:`explain_error`). Every failure becomes a :class:`CheckFailed`.
    """
    h = as_handle(fn)
    if not h._meta["callable"]:
        raise CheckFailed(f"`{name}` should be a function or class, but it is {describe_value(h)}.")
    try:
        return h._client.call(h, args, kwargs or {}, seed=seed, grad=grad, watch=watch)
    except (StudentCodeError, ModifiedArgument) as err:
        raise CheckFailed(explain_error(err, name, args, kwargs, error_hints)) from None


def call(fn, name: str, /, *args, **kwargs):
    """``call_with(fn, name, args, kwargs)``: run the student's code on these arguments."""
    return call_with(fn, name, args, kwargs)


def method(obj, attr: str, name: str, /, *args, seed: int | None = None, grad: bool = False, **kwargs):
    """Call ``obj.attr(*args, **kwargs)`` on the student's object (a handle), e.g. ``method(m, "forward", ...)``."""
    h = as_handle(obj)
    try:
        bound = getattr(h, attr)
    except (StudentCodeError, ModifiedArgument) as err:
        raise CheckFailed(explain_error(err, name, args, kwargs)) from None
    if not isinstance(bound, Handle):
        raise CheckFailed(f"`{name}`: `{attr}` should be a method, but it is {describe_value(bound)}.")
    return call_with(bound, name, args, kwargs, seed=seed, grad=grad)


def _qualname(factory) -> str:
    module, qual = getattr(factory, "__module__", None), getattr(factory, "__qualname__", None)
    if not module or not qual or "<" in qual:
        raise TypeError(f"{factory!r} cannot be built on the checked side: use a module-level function or class")
    return f"{module}:{qual}"


def build(like, factory: Callable, /, *args, seed: int | None = None, **kwargs):
    """``factory(*args, **kwargs)`` made on the side where ``like`` (a student's object) lives: a handle.

    ``factory`` is a class or function of labsupport, torch or numpy (e.g. ``nn.LayerNorm``,
    ``labsupport.checks.lab06.tiny_block``); with ``seed`` its random initialisation repeats exactly, so the
    check can build the same object for itself to compute the reference.
    """
    h = as_handle(like)
    client = h._client
    try:
        made = client.resolve(_qualname(factory))
    except (StudentCodeError, ModifiedArgument) as err:  # the check names something that does not exist: its bug
        raise RuntimeError(f"cannot find {_qualname(factory)}: {err}") from None
    try:
        return client.call(made, args, kwargs, seed=seed, watch=False)
    except (StudentCodeError, ModifiedArgument) as err:
        raise CheckFailed(f"The check could not build its test object ({factory.__name__}) where your code runs "
                          f"({err}). Did a cell of the notebook change torch or labsupport?") from None


def probe(obj, what: str, /, *args, **kwargs):
    """Run one of the helpers of :mod:`labsupport.checks.subject` on the student's object where it lives:
    ``probe(m, "parameters")`` -> ``{name: tensor}``, ``probe(m, "gradients", x)``, ``probe(m, "set_training",
    False)``. A failure inside the student's code becomes a :class:`CheckFailed`."""
    h = as_handle(obj)
    client = h._client
    helper = client.resolve(f"labsupport.checks.subject:{what}")
    try:
        return client.call(helper, (h, *args), kwargs, grad=(what == "gradients"), watch=False)
    except (StudentCodeError, ModifiedArgument) as err:
        raise CheckFailed(explain_error(err, f"{h.type_name}.forward" if what == "gradients" else h.type_name,
                                        args, kwargs)) from None


# ------------------------------------------------------------------------------------------------------------
# comparing
# ------------------------------------------------------------------------------------------------------------
def expect(condition: bool, message: str) -> None:
    """Fail with ``message`` unless ``condition``."""
    if not condition:
        raise CheckFailed(message)


def expect_number(what: str, got, integer: bool = False) -> float:
    """``got`` must be a Python number (not a 0-d array or tensor); returns it as a float."""
    if isinstance(got, bool) or not isinstance(got, (int, float)):
        if isinstance(got, (torch.Tensor, np.ndarray, np.generic)) and (
                got.numel() == 1 if isinstance(got, torch.Tensor) else np.size(got) == 1):
            raise CheckFailed(f"{what} should be a Python number, but it is a {describe_value(got)}: "
                              "convert it with `.item()` (or `float(...)`).")
        raise CheckFailed(f"{what} should be a number, but it is a {describe_value(got)}.")
    if integer and not isinstance(got, int):
        raise CheckFailed(f"{what} should be an integer, but it is {got!r}.")
    return float(got)


def candidates(mistakes: Iterable[Mistake], *args, **kwargs) -> list[tuple[Any, str]]:
    """``(output, message)`` hints: each mistaken reference of ``mistakes`` run on ``args`` (trusted code)."""
    out = []
    for m in mistakes:
        try:
            with np.errstate(all="ignore"):   # each mistake gets its own copy: one may change its inputs
                out.append((m.fn(*copy.deepcopy(args), **copy.deepcopy(kwargs)), m.message))
        except Exception:  # noqa: BLE001 - a mistake that cannot handle this input simply gives no hint
            continue
    return out


def _kind(x) -> str:
    if isinstance(x, torch.Tensor):
        return "torch.Tensor"
    if isinstance(x, np.ndarray):
        return "numpy array"
    return type(x).__name__


def compare(what: str, got, expected, atol: float = 1e-6, rtol: float = 0.0,
            hints: Iterable[tuple[object, str]] = (), dtype: bool = True) -> None:
    """Check that ``got`` equals ``expected`` (an array or tensor) within ``atol + rtol * |expected|``.

    Checks in this order: a value at all, the kind (NumPy array or torch.Tensor, as ``expected``), the shape,
    the dtype (bool, integer or floating point; for tensors also the floating-point precision unless
    ``dtype=False``), NaN and infinities, then the values. ``hints`` are ``(candidate, message)`` pairs for
    typical mistakes: if ``got`` matches a candidate (and the candidate differs from ``expected``), ``message``
    is shown instead of a bare difference.
    """
    if got is None:
        raise CheckFailed(f"{what} returned None. Did you forget the `return` statement?")
    if isinstance(got, Handle):
        raise CheckFailed(f"{what} should give {describe_value(expected)}, but it gave a {describe_value(got)}.")
    if isinstance(got, (tuple, list)) and not isinstance(expected, (tuple, list)):
        raise CheckFailed(f"{what} should return one array, but it returned a {describe_value(got)}.")
    exp_torch, exp_numpy = isinstance(expected, torch.Tensor), isinstance(expected, np.ndarray)
    if exp_torch and not isinstance(got, torch.Tensor):
        raise CheckFailed(f"{what} should be a torch.Tensor, but it is a {describe_value(got)}.")
    if exp_numpy and not isinstance(got, np.ndarray):
        if isinstance(got, torch.Tensor):
            raise CheckFailed(f"{what} should be a NumPy array, but it is a torch.Tensor: this exercise is in NumPy "
                              "(use np.exp, np.max, ... rather than torch functions).")
        if not isinstance(got, (int, float, np.generic)):
            raise CheckFailed(f"{what} should be a NumPy array, but it is a {describe_value(got)}.")
    if not isinstance(got, (np.ndarray, torch.Tensor, float, int, np.generic)):
        raise CheckFailed(f"{what} should be {describe_value(expected)}, but it is a {describe_value(got)}.")
    g, e = to_numpy(got), to_numpy(expected)
    if g.shape != e.shape:
        msg = f"{what} has the wrong shape: expected {e.shape}, got {g.shape}."
        if g.ndim >= 2 and g.shape[:-2] + g.shape[-2:][::-1] == e.shape:
            msg += " It looks transposed: check which axis you swap or reduce over."
        elif g.size == e.size:
            msg += " Same number of elements: a reshape, transpose or view is in the wrong order."
        _explain_with_hints(what, got, expected, hints, atol, rtol)
        raise CheckFailed(msg)
    if e.dtype == np.bool_ and g.dtype != np.bool_:
        raise CheckFailed(f"{what} should be a boolean mask (dtype bool), but its dtype is {g.dtype}.")
    if np.issubdtype(e.dtype, np.floating) and not np.issubdtype(g.dtype, np.floating):
        raise CheckFailed(f"{what} should hold floating-point numbers ({e.dtype}), but its dtype is {g.dtype}.")
    if np.issubdtype(e.dtype, np.integer) and not np.issubdtype(g.dtype, np.integer) and g.dtype != np.bool_:
        raise CheckFailed(f"{what} should hold integers ({e.dtype}), but its dtype is {g.dtype}.")
    if dtype and exp_numpy and e.dtype == np.float64 and g.dtype in (np.float16, np.float32):
        raise CheckFailed(f"{what} has dtype {g.dtype}; expected float64, the dtype of the inputs: computing in "
                          "lower precision loses digits the check needs. Keep the input's dtype (no "
                          "`dtype=np.float32` or `.astype(np.float32)`).")
    if dtype and exp_torch and expected.is_floating_point() and got.dtype != expected.dtype:
        raise CheckFailed(f"{what} has dtype {got.dtype}; expected {expected.dtype} (the dtype of the inputs). "
                          "A new tensor made without `dtype=` (or from a Python/NumPy float64 value) changes it: "
                          "create tensors with `dtype=x.dtype`, or use `torch.zeros_like`/`torch.full_like`.")
    if g.dtype == np.bool_ or e.dtype == np.bool_:
        if not np.array_equal(g, e):
            _explain_with_hints(what, got, expected, hints, atol, rtol)
            raise CheckFailed(f"{what} differs from the expected mask in {int((g != e).sum())} of {g.size} places "
                              f"(first at index {_first(g != e)}: {bool(e[_first(g != e)])} was expected).")
        return
    g64, e64 = g.astype(np.complex128 if np.iscomplexobj(g) else np.float64), e.astype(np.float64)
    bad, exp_bad = ~np.isfinite(g64), ~np.isfinite(e64)
    with np.errstate(all="ignore"):
        same_special = np.array_equal(bad, exp_bad) and np.array_equal(g64[exp_bad], e64[exp_bad], equal_nan=True)
        diff = np.abs(np.where(exp_bad | bad, 0, g64) - np.where(exp_bad | bad, 0, e64))
        tol = atol + rtol * np.abs(np.where(exp_bad, 0, e64))
    if same_special and not (diff > tol).any():
        return
    _explain_with_hints(what, got, expected, hints, atol, rtol)
    if (bad & ~exp_bad).any():
        i = _first(bad & ~exp_bad)
        raise CheckFailed(
            f"{what} contains {int((bad & ~exp_bad).sum())} NaN or infinite value(s) where finite numbers were "
            f"expected (first at index {i}: {g64[i]}). Typical causes: exp() of a large number overflowing, or a "
            "division by zero.")
    if (exp_bad & ~bad).any():
        i = _first(exp_bad & ~bad)
        raise CheckFailed(f"{what}: at index {i} {float(e64[i])} was expected and {float(np.real(g64[i])):.6g} came "
                          "out.")
    if not same_special:
        i = _first(exp_bad & (g64 != e64) & ~(np.isnan(g64) & np.isnan(e64)))
        raise CheckFailed(f"{what}: at index {i} {float(e64[i])} was expected and {float(np.real(g64[i]))} came out "
                          "(an infinity of the wrong sign, or NaN for an infinity).")
    i = np.unravel_index(int(np.argmax(diff - tol)), diff.shape)
    raise CheckFailed(
        f"{what} has the right shape {g.shape} but wrong values: the largest difference is "
        f"{float(diff.max()):.3g} (tolerance {atol:g}) at index {tuple(int(j) for j in i)}, where "
        f"{float(e64[i]):.6g} was expected and {float(np.real(g64[i])):.6g} came out.")


def _first(mask: np.ndarray) -> tuple:
    return tuple(int(j) for j in np.argwhere(mask)[0]) if mask.ndim else ()


def _explain_with_hints(what, got, expected, hints, atol: float = 1e-6, rtol: float = 0.0) -> None:
    """Raise the message of the first hint whose candidate ``got`` matches (to compare's own tolerance, with the
    same NaN and infinities) while the candidate itself differs from ``expected``."""
    g = to_numpy(got).astype(np.float64) if not isinstance(got, (int, float)) else np.asarray(float(got))
    e = to_numpy(expected).astype(np.float64)
    scale = max(1.0, float(np.nanmax(np.abs(np.where(np.isfinite(e), e, 0)))) if e.size else 1.0)
    tol = max(atol, 1e-9) * scale

    def same(a, b) -> bool:
        if a.shape != b.shape or not np.array_equal(np.isnan(a), np.isnan(b)):
            return False
        inf = np.isinf(a) | np.isinf(b)
        if not np.array_equal(a[inf], b[inf]):
            return False
        ok = ~(np.isnan(a) | inf)
        return bool(np.allclose(a[ok], b[ok], atol=tol, rtol=rtol))

    def matches(got_, cand) -> bool:
        """``got_`` is ``cand``, where a NaN of ``got_`` may stand for a 0 of ``cand`` (a softmax over a row of
        -inf gives NaN in plain code and 0 in the references)."""
        if got_.shape != cand.shape:
            return False
        nan = np.isnan(got_) & (np.isnan(cand) | (cand == 0))
        return same(np.where(nan, 0.0, got_), np.where(nan, 0.0, cand))

    for candidate, message in hints:
        try:
            c = to_numpy(candidate).astype(np.float64)
        except (TypeError, ValueError):
            continue
        with np.errstate(all="ignore"):
            if c.shape == e.shape and np.array_equal(np.isnan(c), np.isnan(e)) and bool(np.all(
                    (np.isnan(c) & np.isnan(e)) | (c == e) | (np.abs(c - e) <= atol + rtol * np.abs(e)))):
                continue  # this mistake passes compare on this input: no evidence
            if matches(g, c):
                raise CheckFailed(f"{what} is not right yet. {message}")


def passed(name: str, detail: str = "") -> None:
    """Print the success line of a check."""
    print(f"✓ {name}: all checks passed" + (f" ({detail})" if detail else ""))
