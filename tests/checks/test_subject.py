"""Handles on the checked side: calls with copied arguments, errors as plain data, in-place changes reported."""
import numpy as np
import pytest
import torch

from labsupport.checks.core import probe
from labsupport.checks.subject import Handle, ModifiedArgument, StudentCodeError, as_handle, local_namespace


def test_calls_return_plain_copies_and_objects_stay_behind_handles():
    seen = []

    def f(x):
        seen.append(x)
        return x * 2, torch.nn.Linear(2, 3)

    x = np.ones(3)
    out, layer = as_handle(f)(x)
    assert np.array_equal(out, 2 * x) and seen[0] is not x           # the student got a copy
    assert isinstance(layer, Handle) and layer.is_module and "6 + 3" not in repr(layer)
    assert "9 parameters" in repr(layer)
    y = layer(torch.zeros(1, 2))
    assert isinstance(y, torch.Tensor) and y.shape == (1, 3)
    assert layer.in_features == 2                                    # plain attributes come back as values


def test_errors_say_where_they_were_raised():
    def stub(x):
        raise NotImplementedError()

    def crash(x):
        return np.linalg.inv(np.zeros((2, 2)))

    def library_stub(x):
        raise NotImplementedError("sparse tensors are not supported")

    with pytest.raises(StudentCodeError) as info:
        as_handle(stub)(1)
    assert info.value.info["stub"] and info.value.type_name == "NotImplementedError"
    with pytest.raises(StudentCodeError) as info:
        as_handle(crash)(1)
    assert info.value.info["library"] == "numpy" and "Singular" in info.value.message
    with pytest.raises(StudentCodeError) as info:
        as_handle(library_stub)(1)
    assert not info.value.info["stub"]                               # a message of its own: not the stub


def test_an_argument_changed_in_place_is_reported():
    def in_place(x, scale):
        x *= scale
        return x

    with pytest.raises(ModifiedArgument) as info:
        as_handle(in_place)(np.ones(2), 3.0)
    assert info.value.info["name"] == "x"
    with pytest.raises(ModifiedArgument):
        as_handle(lambda t: t.add_(1))(torch.zeros(2))


def test_seeded_calls_repeat_exactly_and_grad_is_off_by_default():
    h = as_handle(lambda n: torch.rand(n))
    a = h._client.call(h, (3,), seed=5)
    b = h._client.call(h, (3,), seed=5)
    assert torch.equal(a, b)
    g = as_handle(lambda t: torch.is_grad_enabled())
    assert g(torch.zeros(1)) is False and g._client.call(g, (torch.zeros(1),), grad=True) is True


def test_namespaces_and_the_probes():
    ns = local_namespace({"layer": torch.nn.Linear(2, 2)})
    assert ns.layer.is_module
    with pytest.raises(StudentCodeError) as info:
        _ = ns.missing
    assert info.value.info["undefined"]
    params = probe(ns.layer, "parameters")               # helpers run on the side of the object they are given
    assert set(params) == {"weight", "bias"} and isinstance(params["weight"], torch.nn.Parameter)
