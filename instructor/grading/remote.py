"""The trusted end of the pipe to a sandboxed worker: requests out, answers in, with deadlines and size caps.

:class:`Remote` is a :class:`labsupport.checks.subject.Client`, so the labs' checks and the hidden tests call a
student's functions in the sandbox exactly as they call them in a notebook. Every answer is decoded strictly
(:mod:`labsupport.checks.wire`); a worker that is too slow, dies, or answers with something that is not a valid
frame raises :class:`RemoteTimeout`, :class:`RemoteDied` or :class:`ProtocolError`, never a student's verdict.
"""
from __future__ import annotations

import json
import os
import select
import struct
import time

from instructor.grading.sandbox import Process
from labsupport.checks.subject import Client

#: the largest answer frame accepted (a lab's check never needs more than a few MB)
MAX_FRAME = 128 << 20


class RemoteError(Exception):
    """The sandboxed worker did not answer as it should."""


class RemoteTimeout(RemoteError):
    pass


class RemoteDied(RemoteError):
    pass


class ProtocolError(RemoteError):
    pass


class Remote(Client):
    """Requests to one sandboxed worker. ``deadline`` (a ``time.monotonic()`` value) bounds every request."""

    def __init__(self, process: Process):
        super().__init__()
        self.process = process
        self.deadline: float | None = None

    # framing
    def _wait(self, fd: int, write: bool) -> None:
        while True:
            left = None if self.deadline is None else self.deadline - time.monotonic()
            if left is not None and left <= 0:
                raise RemoteTimeout("no answer in time")
            out_fd = self.process.proc.stdout.fileno()
            r, w, _ = select.select([out_fd] + ([] if write else [fd]), [fd] if write else [], [],
                                    1.0 if left is None else min(left, 1.0))
            if out_fd in r:
                self.process.drain_output()
            if (write and fd in w) or (not write and fd in r):
                return
            if not self.process.alive() and not (not write and fd in r):
                raise RemoteDied("the notebook's process ended")

    def _write(self, data: bytes) -> None:
        fd = self.process.to_worker
        view = memoryview(data)
        while view:
            self._wait(fd, write=True)
            try:
                n = os.write(fd, view[: 1 << 16])
            except BrokenPipeError:
                raise RemoteDied("the notebook's process ended") from None
            except BlockingIOError:
                continue
            view = view[n:]

    def _read_exactly(self, n: int) -> bytes:
        fd = self.process.from_worker
        chunks, got = [], 0
        while got < n:
            self._wait(fd, write=False)
            chunk = os.read(fd, min(n - got, 1 << 20))
            if not chunk:
                raise RemoteDied("the notebook's process ended")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def send(self, msg: dict) -> dict:
        body = json.dumps(msg, allow_nan=False).encode()
        os.set_blocking(self.process.to_worker, False)
        self._write(struct.pack(">Q", len(body)) + body)
        (n,) = struct.unpack(">Q", self._read_exactly(8))
        if n > MAX_FRAME:
            raise ProtocolError(f"an answer of {n:,} bytes is larger than the limit of {MAX_FRAME:,}")
        try:
            answer = json.loads(self._read_exactly(n))
        except (UnicodeDecodeError, ValueError, RecursionError):   # JSONDecodeError is a ValueError
            raise ProtocolError("an answer that is not valid JSON") from None
        if not isinstance(answer, dict):
            raise ProtocolError("an answer that is not a JSON object")
        return answer

    def release(self, oid: int) -> None:
        pass  # the sandbox and everything in it goes at the end; a hung worker must not block a finalizer

    # the worker's own operations
    def run_cell(self, index: int, source: str) -> dict:
        answer = self.send({"op": "cell", "index": index, "source": source})
        if answer.get("cell") != index:
            raise ProtocolError("an answer to another request")
        stdout = answer.get("stdout")
        return {"ok": answer.get("ok") is True, "error": answer.get("error") if isinstance(answer.get("error"), dict)
                else None, "stdout": stdout[:1 << 20] if isinstance(stdout, str) else ""}

    def tripwire(self, targets: list[str]) -> None:
        self.send({"op": "tripwire", "targets": list(targets)})

    def close(self) -> None:
        try:
            self.deadline = time.monotonic() + 1
            body = json.dumps({"op": "bye"}).encode()
            self._write(struct.pack(">Q", len(body)) + body)
        except RemoteError:
            pass
        finally:
            self.process.kill()
