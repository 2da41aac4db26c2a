"""labsupport.device: device choice, seeding, the thread limiter and the timing helper."""
import numpy as np
import pytest
import torch

from labsupport import device


def test_get_device_prefers_available_and_honours_env(monkeypatch):
    monkeypatch.delenv(device.DEVICE_ENV, raising=False)
    expected = "cuda" if torch.cuda.is_available() else ("mps" if device._mps_available() else "cpu")
    assert device.get_device().type == expected
    monkeypatch.setenv(device.DEVICE_ENV, "cpu")
    assert device.get_device() == torch.device("cpu")
    monkeypatch.setenv(device.DEVICE_ENV, "tpu")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        device.get_device()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_asking_for_missing_cuda_is_a_clear_error():
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        device.get_device("cuda")


def test_set_seed_makes_all_generators_repeat():
    import random

    device.set_seed(123)
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    device.set_seed(123)
    assert a == (random.random(), np.random.rand(), torch.rand(1).item())


def test_torch_threads_as_context_manager_and_decorator():
    before = torch.get_num_threads()
    with device.torch_threads(1):
        assert torch.get_num_threads() == 1
        with device.torch_threads(2):  # nested: each level restores its own
            assert torch.get_num_threads() == 2
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before

    @device.torch_threads(1)
    def inside():
        return torch.get_num_threads()

    assert inside() == 1 and torch.get_num_threads() == before
    with pytest.raises(KeyError):
        with device.torch_threads(1):
            raise KeyError("restored even on an error")
    assert torch.get_num_threads() == before


def test_time_call_warms_up_and_reduces():
    calls = []
    clock = iter([0.0, 0.5, 1.0, 1.1, 2.0, 2.3])  # three timed calls: 0.5, 0.1, 0.3 seconds

    def fake_perf_counter():
        return next(clock)

    import time as _time

    real = _time.perf_counter
    _time.perf_counter = fake_perf_counter
    try:
        median = device.time_call(lambda: calls.append(1), repeats=3, warmup=2)
    finally:
        _time.perf_counter = real
    assert len(calls) == 5 and median == pytest.approx(0.3)
    assert device.time_call(lambda: None, repeats=3, reduce=min) >= 0
