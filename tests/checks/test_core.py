"""The self-check core: compare's messages, call's explanations of crashes, what IPython shows."""
import numpy as np
import pytest
import torch

from labsupport.checks.core import (
    CheckFailed,
    Mistake,
    build,
    call,
    call_with,
    candidates,
    compare,
    error_hints,
    expect_number,
    probe,
)


def test_compare_messages():
    with pytest.raises(CheckFailed, match="NaN or infinite"):
        compare("x", np.array([1.0, np.nan]), np.array([1.0, 2.0]))
    with pytest.raises(CheckFailed, match="largest difference is 0.5"):
        compare("x", np.array([1.0, 2.5]), np.array([1.0, 2.0]))
    with pytest.raises(CheckFailed, match="should be a torch.Tensor"):
        compare("x", np.zeros(2), torch.zeros(2))
    with pytest.raises(CheckFailed, match="should be a NumPy array, but it is a torch.Tensor"):
        compare("x", torch.zeros(2), np.zeros(2))
    with pytest.raises(CheckFailed, match="floating-point"):
        compare("x", np.zeros(2, dtype=int), np.zeros(2))
    with pytest.raises(CheckFailed, match="Same number of elements"):
        compare("x", np.zeros((2, 6)), np.zeros((3, 4)))
    with pytest.raises(CheckFailed, match="dtype torch.float64; expected torch.float32"):
        compare("x", torch.zeros(2, dtype=torch.float64), torch.zeros(2))
    with pytest.raises(CheckFailed, match="returned None"):
        compare("x", None, np.zeros(2))
    compare("x", torch.ones(2), torch.ones(2))


def test_infinities_of_the_wrong_sign_are_reported():
    with pytest.raises(CheckFailed, match="wrong sign") as info:
        compare("scores", np.array([1.0, np.inf]), np.array([1.0, -np.inf]))
    assert "largest difference is 0" not in info.value.message
    compare("scores", np.array([1.0, -np.inf]), np.array([1.0, -np.inf]))


def test_hints_name_the_mistake_but_not_when_it_gives_the_right_answer():
    mistakes = [Mistake("double", "It doubles.", lambda x: 2 * x), Mistake("same", "Never shown.", lambda x: x)]
    x = np.arange(3.0)
    with pytest.raises(CheckFailed, match="It doubles"):
        compare("f(x)", 2 * x, x, hints=candidates(mistakes, x))
    with pytest.raises(CheckFailed, match="wrong values"):
        compare("f(x)", x + 1, x, hints=candidates(mistakes, x))


def test_numbers_and_zero_d_tensors():
    assert expect_number("loss", 1.5) == 1.5
    with pytest.raises(CheckFailed, match=r"\.item\(\)"):
        expect_number("loss", torch.tensor(1.5))


def test_call_reports_crashes_with_input_shapes_and_hints():
    def crash(x):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)")

    with pytest.raises(CheckFailed) as info:
        call(crash, "my_layer", torch.zeros(2, 3))
    text = str(info.value)
    assert "my_layer" in text and "RuntimeError" in text and "shape (2, 3)" in text and "Linear layer" in text
    assert info.value.__cause__ is None and info.value.__suppress_context__
    with pytest.raises(CheckFailed, match="should be a function"):
        call(None, "my_layer")


def test_errors_inside_libraries_are_said_to_be_there():
    def unpacked(x):
        out = (x, x)                                 # the (output, weights) pair of an attention
        return torch.nn.functional.dropout(out, 0.1)

    with pytest.raises(CheckFailed) as info:
        call(unpacked, "block", torch.zeros(2))
    assert "inside torch" in info.value.message and "take the output" in info.value.message
    with pytest.raises(CheckFailed, match="Masks are boolean"):
        call(lambda m: ~m, "mask", torch.zeros(2))


def test_exercise_error_hints_and_stub_of_another_function():
    error_hints("keepdims_demo", [(r"could not be broadcast", "Use keepdims=True.")])
    with pytest.raises(CheckFailed, match="Use keepdims=True"):
        call(lambda x: x - x.max(axis=1), "keepdims_demo", np.zeros((2, 3)))

    def helper():
        raise NotImplementedError()

    def outer():
        return helper()

    with pytest.raises(CheckFailed, match="calls `helper`, which is not implemented yet"):
        call(outer, "outer")


def test_check_failed_renders_as_its_message_in_ipython():
    err = CheckFailed("line one\nline two")
    lines = err._render_traceback_()
    assert "line one" in lines[0] and lines[1:] == ["line two"] and "Traceback" not in "".join(lines)


def test_build_and_probe_on_the_checked_side():
    layer = build(lambda: None, torch.nn.Linear, 3, 2, seed=0)
    torch.manual_seed(0)
    twin = torch.nn.Linear(3, 2)
    params = probe(layer, "parameters")
    assert torch.equal(params["weight"], twin.weight.detach())
    grads = probe(layer, "gradients", torch.ones(1, 3))
    assert torch.allclose(grads["grads"]["bias"], torch.ones(2))
    out = call_with(layer, "Linear", (torch.ones(1, 3),))
    assert torch.allclose(out, twin(torch.ones(1, 3)).detach())
