"""Self-checks for the labs: run a student's code, compare it with the reference, explain what is wrong.

A failed check raises :class:`CheckFailed` (an ``AssertionError``, so nbgrader counts it as a failed test)
whose message says what was expected and what came in: the shape, the dtype, NaNs, the largest difference,
or that the function is not implemented yet. The student never has to read a traceback from inside torch.

The building blocks here are general; each lab's checks live in ``labsupport.checks.labNN``.

Typical use inside a check::

    got = call(student_fn, "softmax", x)               # runs it, turns crashes into clear messages
    compare("softmax(x)", got, softmax_np(x), atol=1e-6, hints=[...])
    passed("softmax")
"""
from __future__ import annotations

import functools
from typing import Callable, Iterable

import numpy as np
import torch

__all__ = ["CheckFailed", "call", "compare", "expect", "passed", "describe_value", "to_numpy", "one_thread"]


class CheckFailed(AssertionError):
    """A self-check failed; the message is written for the student."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:  # keep the message as written, on its own lines
        return "\n" + self.message


def describe_value(x) -> str:
    """A short description of a value: type, shape and dtype for arrays and tensors."""
    if isinstance(x, torch.Tensor):
        return f"torch.Tensor of shape {tuple(x.shape)}, dtype {x.dtype}, on {x.device}"
    if isinstance(x, np.ndarray):
        return f"numpy array of shape {x.shape}, dtype {x.dtype}"
    if isinstance(x, (tuple, list)):
        inner = ", ".join(describe_value(v) for v in x[:4])
        return f"{type(x).__name__} of {len(x)} item(s) ({inner}{', ...' if len(x) > 4 else ''})"
    return f"{type(x).__name__} ({x!r:.60})"


def to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def call(fn: Callable, name: str, *args, **kwargs):
    """Call a student's ``fn``; turn 'not implemented' and crashes into a :class:`CheckFailed`."""
    __tracebackhide__ = True
    if not callable(fn):
        raise CheckFailed(f"`{name}` should be a function or class, but it is {describe_value(fn)}.")
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise CheckFailed(
            f"`{name}` is not implemented yet: replace the `raise NotImplementedError()` line in its cell "
            "with your code, run that cell, then run this check again."
        ) from None
    except CheckFailed:
        raise
    except Exception as err:  # a crash in student code: say which call and which inputs
        shown = ", ".join(describe_value(a) for a in args)
        if kwargs:
            shown += ", " + ", ".join(f"{k}={describe_value(v)}" for k, v in kwargs.items())
        raise CheckFailed(
            f"`{name}` raised {type(err).__name__} when called with ({shown}):\n    {err}\n"
            "Run the cell that defines it on a small input and print the shapes of the intermediate values."
        ) from None


def expect(condition: bool, message: str) -> None:
    """Fail with ``message`` unless ``condition``."""
    __tracebackhide__ = True
    if not condition:
        raise CheckFailed(message)


def compare(
    what: str,
    got,
    expected,
    atol: float = 1e-6,
    rtol: float = 0.0,
    hints: Iterable[tuple[object, str]] = (),
) -> None:
    """Check that ``got`` equals ``expected`` (an array or tensor) within ``atol + rtol * |expected|``.

    ``hints`` are ``(candidate, message)`` pairs for typical mistakes: if ``got`` matches ``candidate``
    (say, the unscaled scores, or the result with the mask inverted), ``message`` is shown instead of a
    bare difference.
    """
    __tracebackhide__ = True
    if got is None:
        raise CheckFailed(f"{what} returned None. Did you forget the `return` statement?")
    if isinstance(got, (tuple, list)) and not isinstance(expected, (tuple, list)):
        raise CheckFailed(f"{what} should return one array, but it returned a {describe_value(got)}.")
    if not isinstance(got, (np.ndarray, torch.Tensor, float, int, np.floating)):
        raise CheckFailed(f"{what} should return {describe_value(expected)}, but it returned a {describe_value(got)}.")
    exp_is_torch = isinstance(expected, torch.Tensor)
    if exp_is_torch and not isinstance(got, torch.Tensor):
        raise CheckFailed(f"{what} should return a torch.Tensor, but it returned a {describe_value(got)}.")
    g, e = to_numpy(got), to_numpy(expected)
    if g.shape != e.shape:
        msg = f"{what} has the wrong shape: expected {e.shape}, got {g.shape}."
        if g.ndim >= 2 and g.shape[:-2] + g.shape[-2:][::-1] == e.shape:
            msg += " It looks transposed: check which axis you swap or reduce over."
        elif g.size == e.size:
            msg += " Same number of elements: a reshape, transpose or view is in the wrong order."
        raise CheckFailed(msg)
    if np.issubdtype(e.dtype, np.floating) and not np.issubdtype(g.dtype, np.floating):
        raise CheckFailed(f"{what} should hold floating-point numbers ({e.dtype}), but its dtype is {g.dtype}.")
    if e.dtype == np.bool_ and g.dtype != np.bool_:
        raise CheckFailed(f"{what} should be a boolean mask (dtype bool), but its dtype is {g.dtype}.")
    bad = ~np.isfinite(g) if np.issubdtype(g.dtype, np.floating) else np.zeros(g.shape, bool)
    exp_bad = ~np.isfinite(e) if np.issubdtype(e.dtype, np.floating) else np.zeros(e.shape, bool)
    if g.dtype == np.bool_ or e.dtype == np.bool_:
        if not np.array_equal(g, e):
            _explain_with_hints(what, got, hints)
            raise CheckFailed(f"{what} differs from the expected mask in {int((g != e).sum())} of {g.size} places.")
        return
    same_inf = np.array_equal(bad, exp_bad) and np.array_equal(g[exp_bad], e[exp_bad])
    diff = np.abs(np.where(exp_bad | bad, 0, g.astype(np.float64)) - np.where(exp_bad | bad, 0, e.astype(np.float64)))
    tol = atol + rtol * np.abs(np.where(exp_bad, 0, e))
    if same_inf and not (diff > tol).any():
        return
    _explain_with_hints(what, got, hints)
    if (bad & ~exp_bad).any():
        n = int((bad & ~exp_bad).sum())
        raise CheckFailed(
            f"{what} contains {n} NaN or infinite value(s) where finite numbers were expected "
            f"(first at index {tuple(int(i) for i in np.argwhere(bad & ~exp_bad)[0])}). "
            "Typical causes: exp() of a large number overflowing, or a division by zero."
        )
    if (exp_bad & ~bad).any():
        i = tuple(int(j) for j in np.argwhere(exp_bad & ~bad)[0])
        raise CheckFailed(f"{what}: at index {i} {float(e[i])} was expected and {float(g[i]):.6g} came out.")
    i = np.unravel_index(int(np.argmax(diff - tol)), diff.shape)
    raise CheckFailed(
        f"{what} has the right shape {g.shape} but wrong values: the largest difference is "
        f"{float(diff.max()):.3g} (tolerance {atol:g}) at index {tuple(int(j) for j in i)}, where "
        f"{float(e[i]):.6g} was expected and {float(g[i]):.6g} came out."
    )


def _explain_with_hints(what, got, hints) -> None:
    __tracebackhide__ = True
    g = to_numpy(got)
    for candidate, message in hints:
        c = to_numpy(candidate)
        if c.shape == g.shape and np.allclose(np.nan_to_num(g), np.nan_to_num(c), atol=1e-5):
            raise CheckFailed(f"{what} is not right yet. {message}")


def passed(name: str, detail: str = "") -> None:
    """Print the success line of a check."""
    print(f"✓ {name}: all checks passed" + (f" ({detail})" if detail else ""))


def one_thread(check):
    """Decorator: run a check on one CPU thread. Its inputs are tiny, and on a shared machine (a JupyterHub, a
    grading server) PyTorch's waiting OpenMP threads would otherwise slow it down many times."""
    @functools.wraps(check)
    def wrapper(*args, **kwargs):
        __tracebackhide__ = True
        n = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return check(*args, **kwargs)
        finally:
            torch.set_num_threads(n)
    return wrapper
