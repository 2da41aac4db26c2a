"""Hidden tests of Lab 1 (attention from scratch in NumPy): the self-checks on other inputs, then edge cases."""
from __future__ import annotations

import numpy as np

from instructor.grading.hidden import hidden_test
from labsupport import attention as ref
from labsupport.checks import lab01 as checks
from labsupport.checks.core import call, compare, expect


@hidden_test("test_softmax", twins=["labsupport.attention:softmax_np"])
def test_softmax(student, seed):
    checks.check_softmax(student.softmax, seed=seed)
    x = np.random.default_rng(seed).normal(size=(3, 4, 5)) * 50
    s = call(student.softmax, "softmax", x)
    compare("softmax(x) for x of shape (3, 4, 5), entries of size ~50", s, ref.softmax_np(x))
    compare("softmax(x + 123)", call(student.softmax, "softmax", x + 123.0), ref.softmax_np(x))
    compare("softmax([0, 0])", call(student.softmax, "softmax", np.array([0.0, 0.0])), np.array([0.5, 0.5]))
    compare("softmax(x, axis=1)", call(student.softmax, "softmax", x, axis=1), ref.softmax_np(x, axis=1))


@hidden_test("test_attention_scores", twins=["labsupport.attention:attention_scores_np"])
def test_attention_scores(student, seed):
    checks.check_attention_scores(student.attention_scores, seed=seed)
    q, k = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[1.0, 1.0], [2.0, 0.0], [0.0, -3.0]])
    compare("attention_scores of a hand-made example", call(student.attention_scores, "attention_scores", q, k),
            np.array([[1, 2, 0], [1, 0, -3]]) / np.sqrt(2))
    rng = np.random.default_rng(seed)
    qb, kb = rng.normal(size=(2, 3, 4, 8)), rng.normal(size=(2, 3, 6, 8))
    compare("attention_scores for Q (2, 3, 4, 8), K (2, 3, 6, 8)",
            call(student.attention_scores, "attention_scores", qb, kb), ref.attention_scores_np(qb, kb))


@hidden_test("test_apply_mask", twins=["labsupport.attention:apply_mask_np"])
def test_apply_mask(student, seed):
    checks.check_apply_mask(student.apply_mask, seed=seed)
    s = np.arange(6, dtype=float).reshape(2, 3)
    m = np.array([True, False, True])
    out = call(student.apply_mask, "apply_mask", s, m)
    expect(isinstance(out, np.ndarray) and out.shape == (2, 3), "apply_mask must keep the shape of the scores.")
    expect(bool((np.asarray(out)[:, 1] <= -1e9).all()) and np.allclose(np.asarray(out)[:, [0, 2]], s[:, [0, 2]]),
           "apply_mask with a mask of shape (3,) must broadcast over the rows of the scores.")


@hidden_test("test_sdpa", twins=["labsupport.attention:scaled_dot_product_attention_np"])
def test_sdpa(student, seed):
    checks.check_scaled_dot_product_attention(student.scaled_dot_product_attention, seed=seed)
    sdpa = student.scaled_dot_product_attention
    got = call(sdpa, "scaled_dot_product_attention", np.ones((3, 4)), np.ones((1, 4)), np.array([[2.0, -1.0]]))
    expect(isinstance(got, tuple) and len(got) == 2, "scaled_dot_product_attention must return (output, weights).")
    compare("the weights when there is one key", got[1], np.ones((3, 1)))
    compare("the output when there is one key", got[0], np.array([[2.0, -1.0]] * 3))
    rng = np.random.default_rng(seed)
    v, q = rng.normal(size=(5, 3)), rng.normal(size=(2, 4))
    out, w = call(sdpa, "scaled_dot_product_attention", q, np.ones((5, 4)), v)
    compare("the weights when all keys are equal", w, np.full((2, 5), 0.2))
    compare("the output when all keys are equal (the mean of the values)", out, np.tile(v.mean(0), (2, 1)))


@hidden_test("test_masks", twins=["labsupport.attention:causal_mask_np", "labsupport.attention:padding_mask_np"])
def test_masks(student, seed):
    checks.check_causal_mask(student.causal_mask, seed=seed)
    checks.check_padding_mask(student.padding_mask, seed=seed)
    checks.check_masked_attention(student.scaled_dot_product_attention, seed=seed)
    compare("causal_mask(3)", call(student.causal_mask, "causal_mask", 3), ref.causal_mask_np(3))
    compare("padding_mask([0, 2], 3)", call(student.padding_mask, "padding_mask", [0, 2], 3),
            ref.padding_mask_np([0, 2], 3))
    w = call(student.scaled_dot_product_attention, "scaled_dot_product_attention", np.ones((4, 2)), np.ones((4, 2)),
             np.eye(4), ref.causal_mask_np(4))[1]
    compare("the weights of equal scores under a causal mask (row i uniform over 0..i)", w,
            ref.causal_mask_np(4) / np.arange(1, 5)[:, None])
