"""The process that runs a student's notebook, inside the sandbox. Nothing it says is trusted.

Started by :mod:`instructor.grading.sandbox` as ``python worker.py IN_FD OUT_FD``. It reads requests from
``IN_FD`` and writes answers to ``OUT_FD``, each a frame of 8 bytes (big-endian length) + JSON:

* ``{"op": "tripwire", "targets": ["labsupport.attention:softmax_np", ...]}``: before any cell, replace those
  references of labsupport with functions that raise ``GraderTripwire`` (to learn whether the student's code
  calls the reference it was asked to write);
* ``{"op": "cell", "index": i, "source": "..."}``: run one code cell in an IPython shell; answer
  ``{"cell": i, "ok": bool, "error": info, "stdout": text}`` (text capped in bytes);
* anything else goes to :class:`labsupport.checks.subject.Server` over the shell's namespace: ``get``,
  ``resolve``, ``call``, ``getattr``, ``release``: the hidden tests on the trusted side call the student's
  functions this way and get plain data back;
* ``{"op": "bye"}``: exit.

The student's code runs in this same process and can change anything in it, this file included: the trusted
side therefore decodes every answer strictly, computes every reference itself, and decides every point.
"""
from __future__ import annotations

import io
import json
import os
import struct
import sys


class CappedText(io.TextIOBase):
    """A text stream that keeps at most ``limit`` characters and counts the rest."""

    def __init__(self, limit: int):
        self.limit, self.parts, self.size, self.dropped = limit, [], 0, 0

    def writable(self) -> bool:
        return True

    def write(self, s) -> int:
        s = str(s)
        room = self.limit - self.size
        if room > 0:
            self.parts.append(s[:room])
            self.size += min(len(s), room)
        self.dropped += max(0, len(s) - max(room, 0))
        return len(s)

    def text(self) -> str:
        out = "".join(self.parts)
        if self.dropped:
            out += f"\n[... {self.dropped:,} more characters of output not kept]\n"
        return out


def read_frame(fd: int) -> dict | None:
    head = _read_exactly(fd, 8)
    if head is None:
        return None
    (n,) = struct.unpack(">Q", head)
    body = _read_exactly(fd, n)
    return None if body is None else json.loads(body)


def _read_exactly(fd: int, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        b = os.read(fd, min(n - got, 1 << 20))
        if not b:
            return None
        chunks.append(b)
        got += len(b)
    return b"".join(chunks)


def write_frame(fd: int, msg: dict) -> None:
    body = json.dumps(msg, allow_nan=False).encode()
    data = struct.pack(">Q", len(body)) + body
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class GraderTripwire(Exception):
    """Raised by a reference of labsupport that a graded exercise asks the student to write."""


def _tripped(*args, **kwargs):
    raise RuntimeError("GraderTripwire: this reference is not available while grading")


def install_tripwires(targets: list[str]) -> list[str]:
    """Replace each ``module:attr[.attr]`` by a function that raises :class:`GraderTripwire`: in its module, in
    every loaded labsupport module that imported it, and (for plain functions) in its code object, so that a
    reference kept elsewhere trips too. Returns the targets replaced."""
    import importlib
    import pkgutil
    import types

    import labsupport

    for info in pkgutil.walk_packages(labsupport.__path__, "labsupport."):
        try:
            importlib.import_module(info.name)
        except Exception:  # noqa: BLE001 - a module that cannot load is not one the student can call either
            pass
    done = []
    for target in targets:
        module_name, _, attrs = target.partition(":")
        try:
            owner = importlib.import_module(module_name)
            *path, last = attrs.split(".")
            for part in path:
                owner = getattr(owner, part)
            original = getattr(owner, last)
        except (ImportError, AttributeError):
            continue

        def tripwire(*args, _target=target, **kwargs):
            raise GraderTripwire(f"{_target} is not available while grading")

        setattr(owner, last, tripwire)
        if isinstance(original, types.FunctionType) and not original.__code__.co_freevars:
            original.__code__ = _tripped.__code__  # resolves only builtins, so it works in any module
        for name, module in list(sys.modules.items()):
            if name.startswith("labsupport") and module is not None:
                for key, value in list(vars(module).items()):
                    if value is original:
                        setattr(module, key, tripwire)
        done.append(target)
    return done


def main(argv: list[str]) -> int:
    fd_in, fd_out = int(argv[1]), int(argv[2])
    for fd in (fd_in, fd_out):
        os.set_inheritable(fd, False)
    out_limit = int(os.environ.get("GRADER_OUTPUT_LIMIT", "65536"))
    threads = int(os.environ.get("GRADER_THREADS", "0") or 0)

    import torch

    if threads:
        torch.set_num_threads(threads)
    from IPython.core.interactiveshell import InteractiveShell

    from labsupport.checks.subject import Server, error_info

    shell = InteractiveShell.instance(colors="NoColor")
    shell.showtraceback = _quiet_traceback(shell)
    server = Server(shell.user_ns)
    real_stdout, real_stderr = sys.stdout, sys.stderr
    while True:
        msg = read_frame(fd_in)
        if msg is None or msg.get("op") == "bye":
            return 0
        op = msg.get("op")
        if op == "tripwire":
            answer = {"value": {"t": "list", "v": [{"t": "str", "v": t} for t in install_tripwires(
                [str(t) for t in msg.get("targets", [])])]}}
        elif op == "cell":
            captured = CappedText(out_limit)
            sys.stdout = sys.stderr = captured
            try:
                result = shell.run_cell(str(msg.get("source", "")), store_history=True)
                err = result.error_in_exec or result.error_before_exec
            except BaseException as e:  # noqa: BLE001 - SystemExit, KeyboardInterrupt from the cell
                err = e
            finally:
                sys.stdout, sys.stderr = real_stdout, real_stderr
            answer = {"cell": msg.get("index"), "ok": err is None, "error": error_info(err) if err else None,
                      "stdout": captured.text()}
        else:
            answer = server.request(msg)
        try:
            write_frame(fd_out, answer)
        except (TypeError, ValueError) as err:  # not JSON-able: say so rather than die
            write_frame(fd_out, {"error": {"type": "WireError", "message": str(err)[:300], "library": "labsupport",
                                           "stub": False, "function": "", "frames": []}})


def _quiet_traceback(shell):
    """IPython's traceback printer, without colours and limited to the innermost frames."""
    original = shell.showtraceback

    def showtraceback(*args, **kwargs):
        kwargs.pop("running_compiled_code", None)
        try:
            etype, value, _ = sys.exc_info()
            print(f"{getattr(etype, '__name__', 'Error')}: {value}"[:2000])
        except Exception:  # noqa: BLE001
            original(*args, **kwargs)

    return showtraceback


if __name__ == "__main__":
    sys.exit(main(sys.argv))
