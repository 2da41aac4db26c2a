"""Where the checked code runs: the self-checks talk to it through handles, never by touching its objects.

A check receives the student's function or class and calls it through a :class:`Handle`. The handle sends a
request (call this object with these arguments, read this attribute, build this helper object) to a
:class:`Server`, which holds the real objects, runs the call and answers with plain data
(:mod:`labsupport.checks.wire`) or with a reference to an object that stays on its side (a module the student's
class built, say). In a notebook the server is in the same process (:func:`as_handle`); a client for another
process only has to carry the same requests and answers.

What the server adds to a plain call:

* arguments are fresh copies, so the student's code cannot keep or change the check's data; an argument that
  the call changes in place is reported (:class:`ModifiedArgument`);
* an exception becomes a :class:`StudentCodeError` that says where it was raised: in the student's own code or
  inside a library (``torch``, ``numpy``, ``labsupport``), and whether it is the student's unfinished
  ``raise NotImplementedError()``;
* ``seed`` seeds PyTorch, NumPy and ``random`` right before the call (dropout and sampling then repeat exactly),
  ``grad`` decides whether autograd records (off by default).
"""
from __future__ import annotations

import importlib
import json
import linecache
import operator
import os
import random
import sys
import traceback
import weakref
from typing import Any

import numpy as np
import torch

from labsupport.checks import wire

__all__ = ["StudentCodeError", "ModifiedArgument", "Server", "Client", "LocalClient", "Handle", "Namespace",
           "as_handle", "is_handle", "local_namespace", "parameters", "gradients", "set_training"]

#: packages whose objects a check may build on the student's side (see :meth:`Server.resolve`)
BUILD_PREFIXES = ("labsupport.", "torch.", "numpy.", "math.", "random.")
_LABSUPPORT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LIBRARY_DIRS = tuple(sorted({os.path.abspath(p) for p in (
    sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, _LABSUPPORT_DIR)}))


# ------------------------------------------------------------------------------------------------------------
# errors, as plain data
# ------------------------------------------------------------------------------------------------------------
class StudentCodeError(Exception):
    """The checked code raised an exception; ``info`` describes it with plain data only.

    ``info`` keys: ``type`` (the exception's class name), ``message``, ``library`` (the top-level package in
    which it was raised, or ``None`` when it was raised in the student's own code), ``stub`` (True for the
    student's own ``raise NotImplementedError()``), ``function`` (the function that raised), ``frames``
    (``[{"file", "line", "function", "code", "student"}, ...]``, innermost last), ``stub_elsewhere`` (the stub
    that raised is another function of the student's, called by the one that was checked).
    """

    def __init__(self, info: dict):
        super().__init__(f"{info.get('type')}: {info.get('message')}")
        self.info = info

    @property
    def type_name(self) -> str:
        return str(self.info.get("type", "Exception"))

    @property
    def message(self) -> str:
        return str(self.info.get("message", ""))


class ModifiedArgument(Exception):
    """The checked call changed one of its arguments in place; ``info = {"position", "name"}``."""

    def __init__(self, info: dict):
        super().__init__(f"argument {info.get('name') or info.get('position')} modified in place")
        self.info = info


def _library_dirs() -> tuple[str, ...]:
    import site
    import sysconfig

    dirs = set(_LIBRARY_DIRS)
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        try:
            dirs.add(os.path.abspath(sysconfig.get_path(key)))
        except (KeyError, TypeError):
            pass
    try:
        dirs.add(os.path.abspath(site.getusersitepackages()))
    except (AttributeError, TypeError):
        pass
    return tuple(sorted(dirs))


_ALL_LIBRARY_DIRS = _library_dirs()


def _is_student_file(filename: str) -> bool:
    """Code the student wrote: not in Python's library, not in any installed package (site-packages,
    dist-packages, the user site, the virtual environment), not in labsupport."""
    if not filename or filename.startswith("<frozen"):
        return False
    if filename.startswith("<"):
        return True
    path = os.path.abspath(filename)
    if "site-packages" in path.split(os.sep) or "dist-packages" in path.split(os.sep):
        return False
    return not any(path == d or path.startswith(d + os.sep) for d in _ALL_LIBRARY_DIRS)


def _library_of(filename: str) -> str:
    """``torch``, ``numpy``, ``labsupport``, ... for a file inside a library (its top-level package)."""
    path = os.path.abspath(filename)
    if path.startswith(_LABSUPPORT_DIR + os.sep):
        return "labsupport"
    parts = path.split(os.sep)
    for marker in ("site-packages", "dist-packages"):
        if marker in parts:
            i = parts.index(marker)
            if i + 1 < len(parts):
                return parts[i + 1].removesuffix(".py")
    return "python"


def error_info(err: BaseException, limit: int = 12) -> dict:
    """Plain-data description of ``err`` (see :class:`StudentCodeError`)."""
    frames = []
    for fs in traceback.extract_tb(err.__traceback__)[-limit:]:
        code = fs.line or linecache.getline(fs.filename, fs.lineno or 0).strip()
        frames.append({"file": str(fs.filename)[:200], "line": int(fs.lineno or 0), "function": str(fs.name)[:100],
                       "code": str(code)[:200], "student": _is_student_file(fs.filename)})
    raised = frames[-1] if frames else None
    library = None if raised is None or raised["student"] else _library_of(raised["file"])
    try:
        message = str(err)
    except Exception:  # noqa: BLE001 - a student's exception whose __str__ fails
        message = "(the exception's message could not be read)"
    # the exercise's stub is exactly `raise NotImplementedError()`: raised by the student's own code, no message
    stub = isinstance(err, NotImplementedError) and raised is not None and raised["student"] and not message
    own = [i for i, f in enumerate(frames) if f["student"]]
    return {"type": type(err).__name__[:100], "message": message[:2000], "library": library, "stub": bool(stub),
            "stub_elsewhere": bool(stub and own and own[0] != len(frames) - 1),
            "function": raised["function"] if raised else "", "frames": frames}


# ------------------------------------------------------------------------------------------------------------
# the side where the checked code runs
# ------------------------------------------------------------------------------------------------------------
def _describe_object(obj) -> dict:
    """Reference metadata: what kind of object this is, read without running its code where possible."""
    t = type(obj)
    mro = [f"{c.__module__}.{c.__qualname__}" for c in t.__mro__][:12]
    meta = {"type": t.__name__[:100], "mro": mro, "is_class": isinstance(obj, type),
            "callable": callable(obj), "module": "torch.nn.modules.module.Module" in mro}
    if meta["is_class"]:
        meta["name"] = getattr(obj, "__qualname__", "?")[:100] if isinstance(getattr(obj, "__qualname__", None),
                                                                              str) else "?"
        meta["class_mro"] = [f"{c.__module__}.{c.__qualname__}" for c in obj.__mro__][:12]
    elif meta["module"]:
        try:
            meta["nparams"] = int(sum(p.numel() for p in torch.nn.Module.parameters(obj)))
        except Exception:  # noqa: BLE001
            meta["nparams"] = None
    return meta


class Server:
    """Holds the objects of the checked side and answers requests (plain dicts, see :meth:`request`)."""

    def __init__(self, namespace: dict | None = None):
        self.namespace = namespace if namespace is not None else {}
        self.objects: dict[int, Any] = {}
        self._ids: dict[int, int] = {}        # id(obj) -> handle id, so one object keeps one handle
        self._next = 1

    # references
    def ref(self, obj) -> dict:
        oid = self._ids.get(id(obj))
        if oid is None or self.objects.get(oid) is not obj:
            oid, self._next = self._next, self._next + 1
            self.objects[oid] = obj
            self._ids[id(obj)] = oid
        return {"t": "ref", "id": oid, "meta": _describe_object(obj)}

    def deref(self, node) -> Any:
        oid = node.get("id")
        if type(oid) is not int or oid not in self.objects:
            raise wire.WireError("unknown reference")
        return self.objects[oid]

    def release(self, ids) -> None:
        for oid in ids:
            obj = self.objects.pop(oid, None)
            if obj is not None and self._ids.get(id(obj)) == oid:
                del self._ids[id(obj)]

    # requests
    def request(self, msg: dict) -> dict:
        """Answer one request: ``{"op": "get" | "resolve" | "call" | "getattr" | "release", ...}`` ->
        ``{"value": node}``, ``{"error": info}`` or ``{"modified": info}``."""
        op = msg.get("op")
        try:
            if op == "get":
                name = msg.get("name")
                if not isinstance(name, str) or name not in self.namespace:
                    return {"error": {"type": "NameError", "message": f"name '{name}' is not defined",
                                      "library": None, "stub": False, "function": "", "frames": [],
                                      "undefined": True}}
                return {"value": self._encode_result(self.namespace[name])}
            if op == "resolve":
                return {"value": self.ref(self.resolve(msg.get("qualname")))}
            if op == "release":
                self.release([i for i in msg.get("ids", []) if type(i) is int])
                return {"value": {"t": "none"}}
            if op == "getattr":
                obj, name = self.deref({"id": msg.get("id")}), msg.get("name")
                if not isinstance(name, str) or name.startswith("__"):
                    raise wire.WireError("bad attribute name")
                try:
                    value = getattr(obj, name)
                except Exception as err:  # noqa: BLE001 - student code (a property) may raise anything
                    return {"error": error_info(err)}
                return {"value": self._encode_result(value)}
            if op == "call":
                return self._call(msg)
        except wire.WireError as err:
            return {"error": {"type": "WireError", "message": str(err)[:500], "library": "labsupport",
                              "stub": False, "function": "", "frames": []}}
        return {"error": {"type": "WireError", "message": f"unknown request {str(op)[:20]!r}", "library": "labsupport",
                          "stub": False, "function": "", "frames": []}}

    def resolve(self, qualname) -> Any:
        """The object ``module:attr.attr`` (only from :data:`BUILD_PREFIXES`)."""
        if not isinstance(qualname, str) or ":" not in qualname:
            raise wire.WireError("bad qualified name")
        module, _, attrs = qualname.partition(":")
        if not (module + ".").startswith(BUILD_PREFIXES):
            raise wire.WireError(f"{module} is not a module checks may build from")
        obj = importlib.import_module(module)
        for part in attrs.split("."):
            if part.startswith("__"):
                raise wire.WireError("bad qualified name")
            obj = getattr(obj, part)
        return obj

    def _encode_result(self, value) -> dict:
        try:
            return wire.encode(value, ref=self.ref)
        except wire.WireError as err:
            raise wire.WireError(f"the returned value cannot be checked: {err}") from None
        except Exception as err:  # noqa: BLE001 - a meta or sparse tensor, a value whose copy fails
            extra = (" (a meta or sparse tensor has no values to compare: build it on the CPU, dense)"
                     if isinstance(value, torch.Tensor) or "meta" in str(err) else "")
            raise wire.WireError(f"the returned value cannot be checked: {type(err).__name__}: "
                                 f"{str(err)[:200]}{extra}") from None

    def _call(self, msg: dict) -> dict:
        fn = self.deref({"id": msg.get("id")})
        args = wire.decode(msg.get("args", {"t": "list", "v": []}), self.deref)
        kwargs = wire.decode(msg.get("kwargs", {"t": "dict", "v": []}), self.deref)
        if not isinstance(args, list) or not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
            raise wire.WireError("bad call arguments")
        watch = msg.get("watch", True) is True
        before = _snapshot(args, kwargs) if watch else None
        seed = msg.get("seed")
        saved = None
        if type(seed) is int:      # seed for this call only: the caller's random state comes back afterwards
            saved = (torch.random.get_rng_state(), np.random.get_state(), random.getstate())
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)
            random.seed(seed)
        try:
            with torch.set_grad_enabled(msg.get("grad") is True):
                value = fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - the checked code may raise anything
            return {"error": error_info(err)}
        finally:
            if saved is not None:
                torch.random.set_rng_state(saved[0])
                np.random.set_state(saved[1])
                random.setstate(saved[2])
        if before is not None:
            try:
                changed = _changed(before, args, kwargs)
            except Exception:  # noqa: BLE001 - an argument that cannot be read back any more has changed
                changed = 0
            if changed is not None:
                return {"modified": {"position": changed if isinstance(changed, int) else None,
                                     "name": changed if isinstance(changed, str) else _param_name(fn, changed)}}
        return {"value": self._encode_result(value)}


def _arrays(value, out: list) -> list:
    if isinstance(value, (np.ndarray, torch.Tensor)):
        out.append(value)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _arrays(v, out)
    elif isinstance(value, dict):
        for v in value.values():
            _arrays(v, out)
    return out


def _bytes(a) -> tuple:
    if isinstance(a, torch.Tensor):
        t = torch.Tensor.detach(a).cpu()
        if t.dtype == torch.bfloat16:
            t = t.float()
        return tuple(t.shape), str(t.dtype), t.contiguous().numpy().tobytes()
    return a.shape, str(a.dtype), np.ascontiguousarray(a).tobytes()


def _snapshot(args, kwargs):
    return ([_bytes_all(a) for a in args], {k: _bytes_all(v) for k, v in kwargs.items()})


def _bytes_all(value):
    return [_bytes(a) for a in _arrays(value, [])]


def _changed(before, args, kwargs):
    """The position (int) or name (str) of the first argument whose arrays changed, else None."""
    pos, named = before
    for i, a in enumerate(args):
        if _bytes_all(a) != pos[i]:
            return i
    for k, v in kwargs.items():
        if _bytes_all(v) != named[k]:
            return k
    return None


def _param_name(fn, position: int) -> str | None:
    import inspect

    target = fn.forward if isinstance(fn, torch.nn.Module) else fn   # a module is called through forward
    try:
        params = [p for p in inspect.signature(target).parameters]
    except (TypeError, ValueError):
        return None
    return params[position] if position < len(params) else None


# ------------------------------------------------------------------------------------------------------------
# the checking side
# ------------------------------------------------------------------------------------------------------------
class Client:
    """The checking side of a :class:`Server`: turns requests into values, handles and exceptions.

    Subclasses only implement :meth:`send` (a dict out, a dict back).
    """

    def __init__(self):
        self._handles: weakref.WeakValueDictionary[int, Handle] = weakref.WeakValueDictionary()

    def send(self, msg: dict) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    # one request
    def _ask(self, msg: dict):
        answer = self.send(msg)
        if not isinstance(answer, dict):
            raise wire.WireError("bad answer")
        if "error" in answer:
            info = answer["error"]
            raise StudentCodeError(_clean_info(info))
        if "modified" in answer:
            info = answer["modified"] if isinstance(answer["modified"], dict) else {}
            raise ModifiedArgument({"position": info.get("position") if type(info.get("position")) is int else None,
                                    "name": str(info["name"])[:100] if isinstance(info.get("name"), str) else None})
        if "value" not in answer:
            raise wire.WireError("bad answer")
        return wire.decode(answer["value"], self._handle_of)

    def _handle_of(self, node) -> Handle:
        oid = node.get("id")
        if type(oid) is not int:
            raise wire.WireError("bad reference")
        h = self._handles.get(oid)
        if h is None:
            h = Handle(self, oid, _clean_meta(node.get("meta")))
            self._handles[oid] = h
        return h

    def _node_of(self, obj) -> dict:
        if isinstance(obj, Handle) and obj._client is self:
            return {"t": "ref", "id": obj._id}
        raise wire.WireError(f"a {type(obj).__name__} cannot be passed to the checked code: build it there "
                             "(labsupport.checks.core.build) or pass plain data")

    # the operations
    def get(self, name: str) -> Handle:
        return self._ask({"op": "get", "name": name})

    def resolve(self, qualname: str) -> Handle:
        return self._ask({"op": "resolve", "qualname": qualname})

    def call(self, handle: Handle, args=(), kwargs=None, *, seed: int | None = None, grad: bool = False,
             watch: bool = True):
        if not isinstance(args, (tuple, list)):
            raise TypeError(f"args must be a tuple or list of arguments, not {type(args).__name__}")
        if seed is not None:
            if isinstance(seed, bool):
                raise TypeError("seed must be an integer, not a bool")
            seed = operator.index(seed)
        msg = {"op": "call", "id": handle._id, "args": wire.encode(list(args), ref=self._node_of),
               "kwargs": wire.encode(dict(kwargs or {}), ref=self._node_of), "seed": seed, "grad": bool(grad),
               "watch": bool(watch)}
        return self._ask(msg)

    def getattr(self, handle: Handle, name: str):
        return self._ask({"op": "getattr", "id": handle._id, "name": name})

    def release(self, oid: int) -> None:
        try:
            self.send({"op": "release", "ids": [oid]})
        except Exception:  # noqa: BLE001 - the other side may be gone
            pass


def _s(x, n: int) -> str:
    return str(x)[:n].encode("utf-8", "replace").decode("utf-8")


def _clean_info(info) -> dict:
    """An error description from the other side, reduced to the expected keys and types (valid UTF-8)."""
    if not isinstance(info, dict):
        info = {}
    frames = []
    for f in info.get("frames", [])[:20] if isinstance(info.get("frames"), list) else []:
        if isinstance(f, dict):
            frames.append({"file": _s(f.get("file", ""), 200), "line": f.get("line") if type(f.get("line")) is int
                           else 0, "function": _s(f.get("function", ""), 100), "code": _s(f.get("code", ""), 200),
                           "student": f.get("student") is True})
    lib = info.get("library")
    return {"type": _s(info.get("type", "Exception"), 100), "message": _s(info.get("message", ""), 2000),
            "library": _s(lib, 50) if lib is not None else None, "stub": info.get("stub") is True,
            "stub_elsewhere": info.get("stub_elsewhere") is True,
            "function": _s(info.get("function", ""), 100), "frames": frames,
            "undefined": info.get("undefined") is True}


def _clean_meta(meta) -> dict:
    if not isinstance(meta, dict):
        meta = {}
    mro = [_s(m, 200) for m in meta.get("mro", [])[:12]] if isinstance(meta.get("mro"), list) else []
    cmro = [_s(m, 200) for m in meta.get("class_mro", [])[:12]] if isinstance(meta.get("class_mro"), list) else []
    n = meta.get("nparams")
    return {"type": _s(meta.get("type", "object"), 100), "mro": mro, "class_mro": cmro,
            "is_class": meta.get("is_class") is True, "callable": meta.get("callable") is True,
            "module": meta.get("module") is True, "nparams": n if type(n) is int else None,
            "name": _s(meta.get("name", ""), 100)}


class LocalClient(Client):
    """A client whose server is in this process; requests still go through JSON, as they would between two."""

    def __init__(self, server: Server | None = None):
        super().__init__()
        self.server = server or Server()

    def send(self, msg: dict) -> dict:
        answer = self.server.request(json.loads(json.dumps(msg)))
        return json.loads(json.dumps(answer))


class Handle:
    """An object on the checked side: call it, read its attributes; results are plain data or handles."""

    __slots__ = ("_client", "_id", "_meta", "__weakref__")

    def __init__(self, client: Client, oid: int, meta: dict):
        object.__setattr__(self, "_client", client)
        object.__setattr__(self, "_id", oid)
        object.__setattr__(self, "_meta", meta)
        weakref.finalize(self, client.release, oid)

    def __call__(self, *args, **kwargs):
        return self._client.call(self, args, kwargs)

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self._client.getattr(self, name)
        except StudentCodeError as err:
            if err.type_name == "AttributeError":   # so that hasattr() and getattr(h, x, default) work
                raise AttributeError(err.message) from None
            raise

    def __setattr__(self, name, value):
        raise AttributeError("a handle is read-only: change the object with a call on the checked side")

    def __repr__(self) -> str:
        m = self._meta
        if m["is_class"]:
            return f"<class {m['name'] or m['type']}>"
        if m["module"]:
            return f"<{m['type']} module, {m['nparams']:,} parameters>" if m["nparams"] is not None \
                else f"<{m['type']} module>"
        return f"<{m['type']}>"

    # what a check may ask without a round trip
    @property
    def type_name(self) -> str:
        return self._meta["type"]

    @property
    def is_module(self) -> bool:
        return self._meta["module"]

    @property
    def is_class(self) -> bool:
        return self._meta["is_class"]

    def subclass_of(self, qualname: str) -> bool:
        """For a class handle: does the class derive from ``qualname`` (e.g. ``torch.nn.modules.module.Module``)?"""
        return qualname in (self._meta["class_mro"] if self._meta["is_class"] else self._meta["mro"])


def is_handle(x) -> bool:
    return isinstance(x, Handle)


_LOCAL: LocalClient | None = None


def _local() -> LocalClient:
    global _LOCAL
    if _LOCAL is None:
        _LOCAL = LocalClient()
    return _LOCAL


def as_handle(obj) -> Handle:
    """A handle on ``obj``; an object of this process is registered with the process's own server."""
    if isinstance(obj, Handle):
        return obj
    client = _local()
    return client._handle_of(client.server.ref(obj))


class Namespace:
    """The names of the checked code's namespace as handles: ``student.softmax``."""

    def __init__(self, client: Client):
        object.__setattr__(self, "_client", client)

    def __getattr__(self, name: str) -> Handle:
        if name.startswith("__"):
            raise AttributeError(name)
        return self._client.get(name)

    @property
    def client(self) -> Client:
        return self._client


def local_namespace(namespace: dict) -> Namespace:
    """A :class:`Namespace` over a dict of this process (a lab's solutions, a test's mutant)."""
    return Namespace(LocalClient(Server(namespace)))


# ------------------------------------------------------------------------------------------------------------
# helpers that run on the checked side (built with labsupport.checks.core.build / probe)
# ------------------------------------------------------------------------------------------------------------
def parameters(module) -> dict:
    """``{name: tensor}`` of a module's parameters (``named_parameters``)."""
    return {name: p for name, p in torch.nn.Module.named_parameters(module)}


def buffers(module) -> dict:
    return {name: b for name, b in torch.nn.Module.named_buffers(module)}


def gradients(module, *args, **kwargs) -> dict:
    """Run ``module(*args, **kwargs)``, back-propagate the sum of its (first) output, and return
    ``{"output": output, "grads": {name: grad or None}}``."""
    torch.nn.Module.zero_grad(module, set_to_none=True)
    out = module(*args, **kwargs)
    first = out[0] if isinstance(out, (tuple, list)) else out
    first.sum().backward()
    return {"output": out, "grads": {n: p.grad for n, p in torch.nn.Module.named_parameters(module)}}


def set_training(module, mode: bool = True):
    """``module.train(mode)``, returning the module."""
    return torch.nn.Module.train(module, mode)
