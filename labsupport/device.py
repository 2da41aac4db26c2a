"""Where the labs run, and how they stay reproducible.

Every lab starts with::

    from labsupport.device import get_device, set_seed
    set_seed(0)
    device = get_device()

and never names ``"cuda"`` itself, so the same notebook runs on a laptop CPU, on Binder, on an Apple GPU
(``mps``) or on an NVIDIA GPU without edits.

Two helpers for measuring on a shared machine: :class:`torch_threads` (how many CPU threads PyTorch uses, for a
block of code or a function) and :func:`time_call` (the time of one call, after warm-up, synchronising the GPU).
"""
from __future__ import annotations

import contextlib
import os
import random
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

#: Environment variable that forces a device, e.g. ``LABSUPPORT_DEVICE=cpu make test``.
DEVICE_ENV = "LABSUPPORT_DEVICE"

_KNOWN = ("cuda", "mps", "cpu")


def get_device(prefer: str | None = None) -> torch.device:
    """Return the best available device: CUDA, then Apple's MPS, then the CPU.

    ``prefer`` (or the ``LABSUPPORT_DEVICE`` environment variable) forces one; asking for a device that is
    not available raises a clear error instead of failing later inside torch.
    """
    wanted = prefer or os.environ.get(DEVICE_ENV)
    if wanted:
        kind = wanted.split(":")[0]
        if kind not in _KNOWN:
            raise ValueError(f"unknown device {wanted!r}: expected one of {', '.join(_KNOWN)} (optionally 'cuda:N')")
        if kind == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {wanted!r} was asked for, but this machine has no CUDA GPU visible to torch")
        if kind == "mps" and not _mps_available():
            raise RuntimeError(f"device {wanted!r} was asked for, but Apple's MPS backend is not available")
        return torch.device(wanted)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def set_seed(seed: int = 0) -> None:
    """Seed Python's, NumPy's and PyTorch's random number generators (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds CUDA and MPS generators too


def describe(device: torch.device | None = None) -> str:
    """One line naming the device, for the top of a lab (``'cpu (2 threads)'``, ``'cuda: NVIDIA H200'``)."""
    device = device or get_device()
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return device.type


class torch_threads(contextlib.ContextDecorator):
    """Run a block, or every call of a function, on ``n`` CPU threads, then restore the previous number.

    Tiny models are as fast on one thread, and on a shared machine (a JupyterHub, a grading server, a laptop
    running other work) PyTorch's waiting threads would otherwise slow them down many times::

        with torch_threads(1):
            train(...)

        @torch_threads(1)
        def check(...): ...
    """

    def __init__(self, n: int = 1):
        self.n, self._saved = n, []

    def __enter__(self):
        self._saved.append(torch.get_num_threads())
        torch.set_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        torch.set_num_threads(self._saved.pop())
        return False


def time_call(fn: Callable, repeats: int = 5, warmup: int = 1, device: torch.device | None = None,
              reduce: Callable = statistics.median) -> float:
    """Seconds per call of ``fn()``: ``warmup`` untimed calls, then ``reduce`` (median; ``min`` for the best) of
    ``repeats`` timed ones. On a GPU the work queued by each call is waited for (``torch.cuda.synchronize``)."""
    cuda = device is not None and torch.device(device).type == "cuda"

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return reduce(times)
