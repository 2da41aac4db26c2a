"""Plain data that crosses between the code that checks and the code that is checked.

A self-check never looks at a student's object directly: every value a student's function returns is turned
into *plain data* first (numbers, strings, lists, tuples, dicts, NumPy arrays and PyTorch tensors rebuilt from
their raw bytes) and every value the check passes in is copied the same way. In a notebook both sides live in
one process and the copy is cheap; when the student's code runs in another process the same encoding travels as
JSON. Either way the check compares fresh, ordinary arrays, never an object whose ``==``, ``shape`` or
``tolist`` the student wrote, and the student's code never holds a reference to the check's own data.

Anything that is not plain data (a module, a function, a generator, a class) stays where it was made and is
passed around as a *reference*: ``{"t": "ref", "id": 3, ...}``. :mod:`labsupport.checks.subject` keeps the table
of referenced objects.

:func:`decode` is strict: it accepts only the shapes of data :func:`encode` makes, with limits on sizes and
depth, so a value from a process that is not trusted decodes into plain data or raises :class:`WireError`.
"""
from __future__ import annotations

import base64
import math

import numpy as np
import torch

__all__ = ["WireError", "Limits", "encode", "decode", "is_plain", "NUMPY_DTYPES", "TORCH_DTYPES"]


class WireError(ValueError):
    """A value that cannot be encoded, or data that is not a valid encoding."""


class Limits:
    """Bounds on what :func:`decode` accepts (and :func:`encode` produces)."""

    max_depth = 32           #: nesting of lists/tuples/dicts
    max_items = 100_000      #: items of one list/tuple/dict
    max_str = 100_000        #: characters of one string
    max_bytes = 32 << 20     #: bytes of one array
    max_nodes = 1_000_000    #: values in one decoded answer, all nesting levels together


#: dtypes that travel as themselves (name -> numpy dtype)
NUMPY_DTYPES = {name: np.dtype(name) for name in (
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32",
    "float64", "complex64", "complex128")}
#: torch dtypes (name after ``torch.``) -> the numpy dtype of their bytes (bfloat16 travels as float32)
TORCH_DTYPES = {
    "bool": "bool", "int8": "int8", "int16": "int16", "int32": "int32", "int64": "int64", "uint8": "uint8",
    "float16": "float16", "float32": "float32", "float64": "float64", "bfloat16": "float32",
    "complex64": "complex64", "complex128": "complex128",
}
_TORCH_DTYPE_OBJ = {name: getattr(torch, name) for name in TORCH_DTYPES}


def _float(x: float):
    """JSON has no inf or NaN: they travel as strings."""
    if math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def _unfloat(x) -> float:
    if isinstance(x, str):
        if x not in ("nan", "inf", "-inf"):
            raise WireError(f"not a float: {x[:20]!r}")
        return float(x)
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise WireError("not a float")
    try:
        return float(x)
    except OverflowError:
        raise WireError("a float out of range") from None


def _array_payload(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    if a.nbytes > Limits.max_bytes:
        raise WireError(f"an array of {a.nbytes} bytes is larger than the limit of {Limits.max_bytes}")
    return base64.b64encode(a.tobytes()).decode("ascii")


def encode(value, ref=None, _depth: int = 0):
    """``value`` as JSON-able plain data. ``ref(obj) -> dict`` turns a non-plain object into a reference;
    without ``ref`` such an object raises :class:`WireError`."""
    if _depth > Limits.max_depth:
        raise WireError("nested too deeply")
    d = _depth + 1
    # exact types only: a subclass of int/str/list/ndarray/Tensor could carry behaviour of its own
    t = type(value)
    if value is None:
        return {"t": "none"}
    if t is bool:
        return {"t": "bool", "v": value}
    if t is int:
        return {"t": "int", "v": str(value)}
    if t is float:
        return {"t": "float", "v": _float(value)}
    if t is complex:
        return {"t": "complex", "v": [_float(value.real), _float(value.imag)]}
    if t is str:
        if len(value) > Limits.max_str:
            value = value[: Limits.max_str]
        return {"t": "str", "v": value}
    if t in (list, tuple):
        if len(value) > Limits.max_items:
            raise WireError(f"a {t.__name__} of {len(value)} items is longer than the limit")
        return {"t": t.__name__, "v": [encode(v, ref, d) for v in value]}
    if t is dict or (isinstance(value, dict) and t.__module__ == "collections"):  # OrderedDict of a state_dict
        if len(value) > Limits.max_items:
            raise WireError("a dict with too many items")
        items = []
        for k, v in value.items():
            if type(k) not in (str, int):
                raise WireError(f"dict keys must be str or int, got {type(k).__name__}")
            items.append([encode(k, ref, d), encode(v, ref, d)])
        return {"t": "dict", "v": items}
    if t is slice:
        return {"t": "slice", "v": [encode(v, ref, d) for v in (value.start, value.stop, value.step)]}
    if t is torch.Size:
        return {"t": "size", "v": [int(s) for s in value]}
    if t is torch.dtype:
        return {"t": "tdtype", "v": str(value).replace("torch.", "")}
    if t is torch.device:
        return {"t": "device", "v": str(value)}
    if t is np.dtype or isinstance(value, np.dtype):
        return {"t": "ndtype", "v": np.dtype(value).name}
    if isinstance(value, np.generic) and type(value).__module__ == "numpy":
        a = np.asarray(value)
        if a.dtype.name not in NUMPY_DTYPES:
            raise WireError(f"unsupported numpy scalar dtype {a.dtype}")
        return {"t": "npscalar", "dtype": a.dtype.name, "data": _array_payload(a.reshape(1))}
    if t is np.ndarray:
        if value.dtype.name not in NUMPY_DTYPES:
            raise WireError(f"unsupported numpy dtype {value.dtype}")
        return {"t": "nd", "dtype": value.dtype.name, "shape": list(value.shape), "data": _array_payload(value)}
    if t in (torch.Tensor, torch.nn.Parameter):
        name = str(value.dtype).replace("torch.", "")
        if name not in TORCH_DTYPES:
            raise WireError(f"unsupported torch dtype {value.dtype}")
        data = torch.Tensor.detach(value).cpu()
        if name == "bfloat16":
            data = data.float()
        return {"t": "pt", "dtype": name, "shape": list(data.shape), "data": _array_payload(data.numpy()),
                "requires_grad": bool(value.requires_grad), "param": t is torch.nn.Parameter,
                "device": str(value.device)}
    if ref is None:
        raise WireError(f"a {t.__name__} is not plain data")
    return ref(value)


def is_plain(value) -> bool:
    """True if ``value`` encodes without references."""
    try:
        encode(value)
        return True
    except WireError:
        return False


def _array(node, dtypes) -> np.ndarray:
    name = node.get("dtype")
    if name not in dtypes:
        raise WireError(f"unsupported dtype {str(name)[:20]!r}")
    dt = np.dtype(dtypes[name] if dtypes is TORCH_DTYPES else name)
    shape = node.get("shape")
    if not isinstance(shape, list) or len(shape) > 32 or not all(type(s) is int and 0 <= s for s in shape):
        raise WireError("bad array shape")
    data = node.get("data")
    if not isinstance(data, str) or len(data) > (Limits.max_bytes * 4) // 3 + 8:
        raise WireError("bad array data")
    try:
        raw = base64.b64decode(data, validate=True)
    except ValueError:
        raise WireError("bad base64 in array data") from None
    n = math.prod(shape)
    if n * dt.itemsize != len(raw):
        raise WireError(f"array data of {len(raw)} bytes does not fit shape {shape} of {dt}")
    return np.frombuffer(raw, dtype=dt).reshape(shape).copy()


def decode(node, deref=None):
    """The value :func:`encode` made ``node`` from. ``deref(node) -> object`` resolves references (without it a
    reference raises :class:`WireError`). Never calls code named by the data; any malformed input, however it
    is malformed, raises :class:`WireError`, and strings come back valid UTF-8."""
    try:
        return _decode(node, deref, 0, [Limits.max_nodes])
    except WireError:
        raise
    except (ValueError, TypeError, RuntimeError, OverflowError, RecursionError, MemoryError) as err:
        raise WireError(f"malformed data ({type(err).__name__})") from None


def _utf8(s: str) -> str:
    """``s`` with lone surrogates (not encodable as UTF-8) replaced."""
    return s.encode("utf-8", "replace").decode("utf-8")


def _decode(node, deref, _depth: int, budget: list):
    if _depth > Limits.max_depth:
        raise WireError("nested too deeply")
    budget[0] -= 1
    if budget[0] < 0:
        raise WireError(f"more than {Limits.max_nodes:,} values in one answer")
    if not isinstance(node, dict):
        raise WireError("not an encoded value")
    t, v, d = node.get("t"), node.get("v"), _depth + 1
    if t == "none":
        return None
    if t == "bool":
        if type(v) is not bool:
            raise WireError("bad bool")
        return v
    if t == "int":
        if not isinstance(v, str) or len(v) > 4000:
            raise WireError("bad int")
        try:
            return int(v)
        except ValueError:
            raise WireError("bad int") from None
    if t == "float":
        return _unfloat(v)
    if t == "complex":
        if not isinstance(v, list) or len(v) != 2:
            raise WireError("bad complex")
        return complex(_unfloat(v[0]), _unfloat(v[1]))
    if t == "str":
        if not isinstance(v, str) or len(v) > Limits.max_str:
            raise WireError("bad str")
        return _utf8(v)
    if t in ("list", "tuple"):
        if not isinstance(v, list) or len(v) > Limits.max_items:
            raise WireError(f"bad {t}")
        items = [_decode(x, deref, d, budget) for x in v]
        return items if t == "list" else tuple(items)
    if t == "dict":
        if not isinstance(v, list) or len(v) > Limits.max_items:
            raise WireError("bad dict")
        out = {}
        for pair in v:
            if not isinstance(pair, list) or len(pair) != 2:
                raise WireError("bad dict item")
            k = _decode(pair[0], None, d, budget)
            if type(k) not in (str, int):
                raise WireError("bad dict key")
            out[k] = _decode(pair[1], deref, d, budget)
        return out
    if t == "slice":
        if not isinstance(v, list) or len(v) != 3:
            raise WireError("bad slice")
        parts = [_decode(x, None, d, budget) for x in v]
        if not all(p is None or type(p) is int for p in parts):
            raise WireError("bad slice")
        return slice(*parts)
    if t == "size":
        if not isinstance(v, list) or len(v) > 32 or not all(type(s) is int for s in v):
            raise WireError("bad size")
        return torch.Size(v)
    if t == "tdtype":
        if v not in _TORCH_DTYPE_OBJ:
            raise WireError("bad torch dtype")
        return _TORCH_DTYPE_OBJ[v]
    if t == "ndtype":
        if v not in NUMPY_DTYPES:
            raise WireError("bad numpy dtype")
        return NUMPY_DTYPES[v]
    if t == "device":
        if not isinstance(v, str) or len(v) > 32:
            raise WireError("bad device")
        return _device(v)
    if t == "npscalar":
        return _array({"dtype": node.get("dtype"), "shape": [1], "data": node.get("data")}, NUMPY_DTYPES)[0]
    if t == "nd":
        return _array(node, NUMPY_DTYPES)
    if t == "pt":
        a = _array(node, TORCH_DTYPES)
        tensor = torch.from_numpy(a)
        if node.get("dtype") == "bfloat16":
            tensor = tensor.to(torch.bfloat16)
        if node.get("param") is True:
            grad = node.get("requires_grad") is True and (tensor.is_floating_point() or tensor.is_complex())
            tensor = torch.nn.Parameter(tensor, requires_grad=grad)
        elif node.get("requires_grad") is True and (tensor.is_floating_point() or tensor.is_complex()):
            tensor.requires_grad_(True)
        return tensor
    if t == "ref":
        if deref is None:
            raise WireError("a reference where plain data was expected")
        return deref(node)
    raise WireError(f"unknown value type {str(t)[:20]!r}")


def _device(name: str) -> torch.device:
    try:
        return torch.device(name)
    except (RuntimeError, ValueError):
        return torch.device("cpu")
