"""The self-checks: the reference passes, and each typical mistake gets its own clear message."""
import numpy as np
import pytest
import torch

from labsupport import attention as ref
from labsupport.checks import CheckFailed, call, compare
from labsupport.checks import lab01 as L
from checkhelpers import fails_with, not_implemented


def test_reference_passes_every_check(capsys):
    L.check_softmax(ref.softmax_np)
    L.check_attention_scores(ref.attention_scores_np)
    L.check_apply_mask(ref.apply_mask_np)
    L.check_scaled_dot_product_attention(ref.scaled_dot_product_attention_np)
    L.check_causal_mask(ref.causal_mask_np)
    L.check_padding_mask(ref.padding_mask_np)
    L.check_masked_attention(ref.scaled_dot_product_attention_np)
    assert capsys.readouterr().out.count("✓") == 7


@pytest.mark.parametrize("check", [L.check_softmax, L.check_attention_scores, L.check_apply_mask,
                                   L.check_scaled_dot_product_attention, L.check_causal_mask,
                                   L.check_padding_mask, L.check_masked_attention])
def test_not_implemented_is_explained(check):
    fails_with(check, not_implemented, "not implemented yet", "NotImplementedError")


def test_softmax_mistakes():
    def unstable(x, axis=-1):
        e = np.exp(x)
        return e / e.sum(axis, keepdims=True)

    def wrong_axis(x, axis=-1):
        return ref.softmax_np(x, axis=0)

    def no_division(x, axis=-1):
        return np.exp(x)

    with np.errstate(all="ignore"):
        fails_with(L.check_softmax, unstable, "NaN", "Subtract each row's maximum")
    fails_with(L.check_softmax, wrong_axis, "column")
    fails_with(L.check_softmax, no_division, "without dividing")
    fails_with(L.check_softmax, lambda x, axis=-1: None, "returned None")
    fails_with(L.check_softmax, lambda x, axis=-1: x.T, "wrong shape", "transposed")


def test_score_mistakes():
    fails_with(L.check_attention_scores, lambda q, k: q @ k.T, "sqrt(d_k)")
    fails_with(L.check_attention_scores, lambda q, k: q @ k.T / q.shape[-1], "divides by d_k")
    fails_with(L.check_attention_scores, lambda q, k: k @ q.T / np.sqrt(q.shape[-1]), "wrong shape", "transposed")
    # .T works for 2-D but breaks batches: the check explains the crash without a deep traceback
    msg = fails_with(L.check_attention_scores, lambda q, k: q @ k.T / np.sqrt(q.shape[-1]), "raised ValueError", "(2, 4, 6)")
    assert "Traceback" not in msg


def test_mask_mistakes():
    fails_with(L.check_apply_mask, lambda s, m=None: s if m is None else np.where(m, s, 0.0), "exp(0) = 1")
    fails_with(L.check_apply_mask, lambda s, m=None: s if m is None else np.where(m, -np.inf, s), "polarity")
    L.check_apply_mask(lambda s, m=None: s if m is None else np.where(m, s, -1e9))  # large negative is accepted
    fails_with(L.check_causal_mask, lambda n: ~ref.causal_mask_np(n), "polarity")
    fails_with(L.check_causal_mask, lambda n: np.tril(np.ones((n, n), bool), -1), "diagonal")
    fails_with(L.check_causal_mask, lambda n: np.tril(np.ones((n, n))), "boolean")
    fails_with(L.check_padding_mask, lambda lengths, L_: ~ref.padding_mask_np(lengths, L_), "polarity")


def test_attention_mistakes():
    def only_output(q, k, v, mask=None):
        return ref.scaled_dot_product_attention_np(q, k, v, mask)[0]

    def wrong_axis(q, k, v, mask=None):
        w = ref.softmax_np(ref.attention_scores_np(q, k), axis=0)
        return w @ v, w

    def unscaled(q, k, v, mask=None):
        w = ref.softmax_np(q @ np.swapaxes(k, -1, -2))
        return w @ v, w

    def mask_after_softmax(q, k, v, mask=None):
        w = ref.softmax_np(ref.attention_scores_np(q, k))
        if mask is not None:
            w = w * mask
        return w @ v, w

    def inverted(q, k, v, mask=None):
        return ref.scaled_dot_product_attention_np(q, k, v, None if mask is None else ~mask)

    fails_with(L.check_scaled_dot_product_attention, only_output, "pair (output, weights)")
    fails_with(L.check_scaled_dot_product_attention, wrong_axis, "normalised over the queries")
    fails_with(L.check_scaled_dot_product_attention, unscaled, "without the 1/sqrt(d_k)")
    fails_with(L.check_masked_attention, mask_after_softmax, "after the softmax")
    fails_with(L.check_masked_attention, inverted, "polarity")
    fails_with(L.check_masked_attention, lambda q, k, v, mask=None: ref.scaled_dot_product_attention_np(q, k, v), "mask is ignored")


def test_compare_messages():
    with pytest.raises(CheckFailed, match="NaN or infinite"):
        compare("x", np.array([1.0, np.nan]), np.array([1.0, 2.0]))
    with pytest.raises(CheckFailed, match="largest difference is 0.5"):
        compare("x", np.array([1.0, 2.5]), np.array([1.0, 2.0]))
    with pytest.raises(CheckFailed, match="should return a torch.Tensor"):
        compare("x", np.zeros(2), torch.zeros(2))
    with pytest.raises(CheckFailed, match="floating-point"):
        compare("x", np.zeros(2, dtype=int), np.zeros(2))
    with pytest.raises(CheckFailed, match="Same number of elements"):
        compare("x", np.zeros((2, 6)), np.zeros((3, 4)))
    compare("x", torch.ones(2, dtype=torch.float32), torch.ones(2, dtype=torch.float32))


def test_call_reports_crashes_with_input_shapes():
    def crash(x):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)")

    with pytest.raises(CheckFailed) as info:
        call(crash, "my_layer", torch.zeros(2, 3))
    text = str(info.value)
    assert "my_layer" in text and "RuntimeError" in text and "shape (2, 3)" in text and "cannot be multiplied" in text
    assert info.value.__cause__ is None and info.value.__suppress_context__
    with pytest.raises(CheckFailed, match="should be a function"):
        call(None, "my_layer")
