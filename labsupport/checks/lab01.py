"""Self-checks of Lab 1, attention from scratch in NumPy.

Each check runs the student's function on fresh random inputs, compares it with the reference twin in
:mod:`labsupport.attention` and recognises the usual mistakes:

* softmax: overflow on large inputs (no max subtracted), normalising over the wrong axis, not implemented;
* scores: the missing ``1/sqrt(d_k)`` scale, dividing by ``d_k`` instead of its square root, ``K Q^T``
  instead of ``Q K^T``;
* attention: softmax over the wrong axis, returning only the output (not ``(output, weights)``), weights
  applied to the keys instead of the values;
* apply_mask: masking with ``0`` (which still gets weight after softmax), inverted polarity, ``None`` not handled;
* masks: inverted polarity (``True`` where attention is forbidden), a missing diagonal, a non-boolean dtype;
* masked attention: masking with ``0`` instead of ``-inf``, mask polarity inverted.
"""
from __future__ import annotations

import numpy as np

from labsupport import attention as ref
from labsupport.checks import CheckFailed, call, compare, expect, passed


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def check_softmax(softmax) -> None:
    """Check ``softmax(x, axis=-1)``."""
    __tracebackhide__ = True
    rng = _rng(1)
    x = rng.normal(size=(4, 6))
    got = call(softmax, "softmax", x)
    compare("softmax(x) for x of shape (4, 6)", got, ref.softmax_np(x), hints=[
        (ref.softmax_np(x, axis=0), "It normalises each column (axis 0); softmax over the last axis makes each row sum to 1."),
        (np.exp(x), "It returns exp(x) without dividing by the sum."),
    ])
    big = np.array([[1000.0, 1001.0, 1002.0], [-1000.0, -1000.0, -999.0]])
    got = call(softmax, "softmax", big)
    if np.isnan(np.asarray(got, dtype=float)).any():
        raise CheckFailed(
            "softmax([[1000, 1001, 1002], ...]) gave NaN: exp(1000) overflows to inf and inf/inf is NaN. "
            "Subtract each row's maximum before exp (softmax does not change when you shift a row)."
        )
    compare("softmax of large inputs (±1000)", got, ref.softmax_np(big))
    x3 = rng.normal(size=(2, 3, 5))
    compare("softmax(x) for x of shape (2, 3, 5)", call(softmax, "softmax", x3), ref.softmax_np(x3), hints=[
        (ref.softmax_np(x3, axis=1), "For a 3-D input it normalises axis 1; use the last axis (axis=-1)."),
    ])
    compare("softmax(x, axis=0)", call(softmax, "softmax", x, axis=0), ref.softmax_np(x, axis=0))
    passed("softmax")


def check_attention_scores(attention_scores) -> None:
    """Check ``attention_scores(Q, K)`` = ``Q K^T / sqrt(d_k)``."""
    __tracebackhide__ = True
    rng = _rng(2)
    q, k = rng.normal(size=(3, 8)), rng.normal(size=(5, 8))
    got = call(attention_scores, "attention_scores", q, k)
    compare("attention_scores(Q (3, 8), K (5, 8))", got, ref.attention_scores_np(q, k), hints=[
        (q @ k.T, "These are the raw dot products: divide them by sqrt(d_k) (here sqrt(8))."),
        (q @ k.T / 8, "It divides by d_k; the scale is 1/sqrt(d_k)."),
    ])
    qb, kb = rng.normal(size=(2, 4, 6)), rng.normal(size=(2, 7, 6))
    compare("attention_scores for a batch, Q (2, 4, 6), K (2, 7, 6)", call(attention_scores, "attention_scores", qb, kb),
            ref.attention_scores_np(qb, kb))
    passed("attention_scores")


def check_apply_mask(apply_mask) -> None:
    """Check ``apply_mask(scores, mask)``: ``-inf`` where the mask is False, scores unchanged elsewhere."""
    __tracebackhide__ = True
    rng = _rng(5)
    scores = rng.normal(size=(4, 4))
    mask = ref.causal_mask_np(4)
    got = call(apply_mask, "apply_mask", scores, mask)
    if isinstance(got, np.ndarray) and np.issubdtype(got.dtype, np.floating):
        g = got.astype(float)
        g[g <= -1e9] = -np.inf  # a very large negative number works as well as -inf
        got = g
    want = ref.apply_mask_np(scores, mask)
    compare("apply_mask(scores, causal mask)", got, want, hints=[
        (ref.apply_mask_np(scores, ~mask), "The polarity is inverted: keep the scores where the mask is True."),
        (np.where(mask, scores, 0.0), "Blocked scores were set to 0, but exp(0) = 1 still gives them weight: use -np.inf."),
        (scores * mask, "Multiplying by the mask sets blocked scores to 0, which still gets weight after softmax: use -np.inf."),
    ])
    got = call(apply_mask, "apply_mask", scores, None)
    compare("apply_mask(scores, None) (no mask: scores unchanged)", got, scores)
    passed("apply_mask")


def check_scaled_dot_product_attention(attention) -> None:
    """Check ``scaled_dot_product_attention(Q, K, V)`` returns ``(output, weights)``."""
    __tracebackhide__ = True
    rng = _rng(3)
    q, k, v = rng.normal(size=(3, 4)), rng.normal(size=(5, 4)), rng.normal(size=(5, 6))
    got = call(attention, "scaled_dot_product_attention", q, k, v)
    expect(isinstance(got, tuple) and len(got) == 2,
           "scaled_dot_product_attention should return a pair (output, weights), "
           f"but it returned {type(got).__name__}{'' if not isinstance(got, tuple) else ' of length ' + str(len(got))}.")
    out, w = got
    want_out, want_w = ref.scaled_dot_product_attention_np(q, k, v)
    scores = ref.attention_scores_np(q, k)
    compare("the attention weights (second item)", w, want_w, hints=[
        (ref.softmax_np(scores, axis=0), "The weights are normalised over the queries (axis 0); each query's row must sum to 1."),
        (ref.softmax_np(q @ k.T), "The weights are computed without the 1/sqrt(d_k) scale."),
    ])
    compare("the attention output (first item)", out, want_out)
    qb, kb, vb = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 6, 4)), rng.normal(size=(2, 6, 2))
    got = call(attention, "scaled_dot_product_attention", qb, kb, vb)
    compare("the output for batched inputs Q (2, 3, 4), K (2, 6, 4), V (2, 6, 2)", got[0],
            ref.scaled_dot_product_attention_np(qb, kb, vb)[0])
    passed("scaled_dot_product_attention")


def check_causal_mask(causal_mask) -> None:
    """Check ``causal_mask(n)``: boolean, ``True`` on and below the diagonal."""
    __tracebackhide__ = True
    for n in (4, 7, 1):
        got = call(causal_mask, "causal_mask", n)
        want = ref.causal_mask_np(n)
        compare(f"causal_mask({n})", got, want, hints=[
            (~want, "The polarity is inverted: use True where a position MAY attend (itself and earlier positions)."),
            (np.tril(np.ones((n, n), bool), -1), "The diagonal is missing: every position may attend to itself."),
            (np.triu(np.ones((n, n), bool)), "It lets each position see the future (upper triangle) instead of the past."),
        ])
    passed("causal_mask")


def check_padding_mask(padding_mask) -> None:
    """Check ``padding_mask(lengths, max_len)``: ``(B, max_len)`` boolean, ``True`` at real tokens."""
    __tracebackhide__ = True
    lengths, L = np.array([3, 1, 5]), 5
    got = call(padding_mask, "padding_mask", lengths, L)
    want = ref.padding_mask_np(lengths, L)
    compare("padding_mask([3, 1, 5], 5)", got, want, hints=[
        (~want, "The polarity is inverted: True marks the real tokens, False the padding."),
    ])
    passed("padding_mask")


def check_masked_attention(attention) -> None:
    """Check ``scaled_dot_product_attention(Q, K, V, mask)`` with causal and padding masks."""
    __tracebackhide__ = True
    rng = _rng(4)
    n, d = 5, 4
    q, k, v = rng.normal(size=(n, d)), rng.normal(size=(n, d)), rng.normal(size=(n, 3))
    mask = ref.causal_mask_np(n)
    got = call(attention, "scaled_dot_product_attention", q, k, v, mask)
    expect(isinstance(got, tuple) and len(got) == 2, "with a mask, the function should still return (output, weights).")
    want_out, want_w = ref.scaled_dot_product_attention_np(q, k, v, mask)
    scores = ref.attention_scores_np(q, k)
    compare("the weights under a causal mask", got[1], want_w, hints=[
        (ref.scaled_dot_product_attention_np(q, k, v, ~mask)[1],
         "The mask polarity is inverted: keep the scores where the mask is True and set the others to -inf."),
        (ref.softmax_np(np.where(mask, scores, 0.0)),
         "Masked scores were set to 0, but exp(0) = 1 still gives them weight: set them to -inf (np.where(mask, scores, -np.inf))."),
        (ref.softmax_np(scores), "The mask is ignored: apply it to the scores before the softmax."),
        (ref.softmax_np(scores) * mask, "The weights were masked after the softmax, so rows no longer sum to 1: mask the scores before it."),
    ])
    compare("the output under a causal mask", got[0], want_out)
    expect(np.allclose(np.triu(np.asarray(got[1]), 1), 0), "a causal mask must give zero weight to every later position.")
    pad = ref.padding_mask_np(np.array([2, 4]), n)[:, None, :]  # (B, 1, Lk), broadcast over queries
    qb, kb, vb = rng.normal(size=(2, n, d)), rng.normal(size=(2, n, d)), rng.normal(size=(2, n, 3))
    got = call(attention, "scaled_dot_product_attention", qb, kb, vb, pad)
    compare("the output with a padding mask of shape (2, 1, 5)", got[0], ref.scaled_dot_product_attention_np(qb, kb, vb, pad)[0])
    passed("masked attention")

