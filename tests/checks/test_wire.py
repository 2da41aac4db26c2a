"""The plain-data encoding between a check and the checked code: round trips, copies, strict decoding."""
import math

import numpy as np
import pytest
import torch

from labsupport.checks import wire
from labsupport.checks.wire import WireError, decode, encode


@pytest.mark.parametrize("value", [
    None, True, 0, -3, 2**70, 1.5, math.inf, -math.inf, "text", [1, (2, 3)], {"a": [1.0], 3: None},
    np.arange(6.0).reshape(2, 3), np.array([True, False]), np.float32(2.5), np.int64(7), np.zeros((0, 4)),
    torch.arange(6.0).reshape(3, 2), torch.ones(2, dtype=torch.bool), torch.tensor(3), torch.float64, np.dtype("int32"),
    torch.Size([2, 3]), slice(1, None, 2), complex(1, -2), torch.device("cpu"),
])
def test_round_trip(value):
    back = decode(encode(value))
    if isinstance(value, (np.ndarray, np.generic)):
        assert type(back) is type(value) and np.array_equal(back, value) and back.dtype == value.dtype
    elif isinstance(value, torch.Tensor):
        assert type(back) is torch.Tensor and torch.equal(back, value) and back.dtype == value.dtype
    else:
        assert back == value and type(back) is type(value)


def test_nan_and_parameters_and_grad_flags():
    assert math.isnan(decode(encode(float("nan"))))
    p = decode(encode(torch.nn.Parameter(torch.ones(2))))
    assert isinstance(p, torch.nn.Parameter) and p.requires_grad
    t = decode(encode(torch.ones(2, requires_grad=True) * 2))
    assert t.requires_grad and not isinstance(t, torch.nn.Parameter)
    assert decode(encode(torch.ones(2, dtype=torch.bfloat16))).dtype == torch.bfloat16


def test_decoded_arrays_are_fresh_copies():
    a = np.zeros(3)
    b = decode(encode(a))
    b[0] = 1
    assert a[0] == 0


def test_subclasses_are_not_plain():
    class Liar(np.ndarray):
        def __eq__(self, other):
            return True

    class MyInt(int):
        pass

    for value in (np.zeros(2).view(Liar), MyInt(3), torch.zeros(1).as_subclass(type("T", (torch.Tensor,), {}))):
        assert not wire.is_plain(value)
        with pytest.raises(WireError):
            encode(value)
    assert encode(np.zeros(2).view(Liar), ref=lambda obj: {"t": "ref", "id": 1})["t"] == "ref"


@pytest.mark.parametrize("node", [
    {"t": "nd", "dtype": "float64", "shape": [3], "data": "AAAA"},          # bytes do not fit the shape
    {"t": "nd", "dtype": "object", "shape": [1], "data": ""},               # not an allowed dtype
    {"t": "nd", "dtype": "float64", "shape": [-1], "data": ""},
    {"t": "int", "v": 3},                                                    # ints travel as strings
    {"t": "float", "v": "1e308x"},
    {"t": "bool", "v": 1},
    {"t": "dict", "v": [[{"t": "list", "v": []}, {"t": "none"}]]},         # a key that is not str/int
    {"t": "ref", "id": 1},                                                   # no references expected here
    {"t": "pickle", "v": "gASVAAAA"},
    [1, 2],
])
def test_decode_rejects_what_encode_never_makes(node):
    with pytest.raises(WireError):
        decode(node)


def test_decode_limits_depth_and_size():
    node = {"t": "none"}
    for _ in range(wire.Limits.max_depth + 2):
        node = {"t": "list", "v": [node]}
    with pytest.raises(WireError):
        decode(node)
    with pytest.raises(WireError):
        decode({"t": "str", "v": "x" * (wire.Limits.max_str + 1)})
