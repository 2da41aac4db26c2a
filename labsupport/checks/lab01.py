"""Self-checks of Lab 1, attention from scratch in NumPy.

Each check runs the student's function on random inputs (``seed`` picks them; the notebook uses the default,
grading uses others), compares it with the reference twin in :mod:`labsupport.attention` and recognises the
typical mistakes of :data:`MISTAKES` (each one the reference *with that mistake*, plus what to tell the
student). The same checks also catch what no table lists: a torch result in this NumPy lab, an input changed
in place, ``K.T`` on a batch, ``None`` not handled, a result of the wrong shape or dtype.
"""
from __future__ import annotations

import numpy as np

from labsupport import attention as ref
from labsupport.checks.core import CheckFailed, Mistake, call, candidates, compare, error_hints, expect, passed

__all__ = ["MISTAKES", "CHECKS", "check_softmax", "check_attention_scores", "check_apply_mask",
           "check_scaled_dot_product_attention", "check_causal_mask", "check_padding_mask", "check_masked_attention"]


def _rng(seed: int, case: int) -> np.random.Generator:
    return np.random.default_rng([seed, case])


# ------------------------------------------------------------------------------------------------------------
# the typical mistakes, each as the reference with that mistake
# ------------------------------------------------------------------------------------------------------------
def _softmax_unstable(x, axis=-1):
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def _softmax_global_max(x, axis=-1):
    e = np.exp(x - np.max(x))
    return e / e.sum(axis=axis, keepdims=True)


def _sdpa(weights_fn, values="v"):
    def attention(q, k, v, mask=None):
        w = weights_fn(q, k, mask)
        return w @ (k if values == "k" else v), w
    return attention


def _scores(q, k):
    return ref.attention_scores_np(q, k)


MISTAKES: dict[str, list[Mistake]] = {
    "softmax": [
        Mistake("axis_0", "It normalises each column (axis 0); softmax over the last axis makes each row sum to 1.",
                lambda x, axis=-1: ref.softmax_np(x, axis=0)),
        Mistake("no_division", "It returns exp(x) without dividing by the sum.", lambda x, axis=-1: np.exp(x)),
        Mistake("no_division_shifted", "It returns exp(x - max) without dividing by the sum.",
                lambda x, axis=-1: np.exp(x - x.max(axis=axis, keepdims=True))),
        Mistake("whole_sum", "It divides by the sum of the whole array; divide each row by its own sum "
                             "(np.sum(e, axis=axis, keepdims=True)).",
                lambda x, axis=-1: (lambda e: e / e.sum())(np.exp(x - x.max(axis, keepdims=True)))),
        Mistake("no_max_subtracted", "exp(1000) overflows to inf and inf/inf is NaN. Subtract each row's maximum "
                                     "before exp (softmax does not change when you shift a row).", _softmax_unstable),
        Mistake("global_max", "It subtracts the maximum of the whole array; a row far below it then underflows to "
                              "0/0 = NaN. Subtract each row's own maximum: np.max(x, axis=axis, keepdims=True).",
                _softmax_global_max),
        Mistake("axis_ignored", "It ignores the `axis` argument: pass axis=axis to np.max and np.sum.",
                lambda x, axis=-1: ref.softmax_np(x, axis=-1)),
    ],
    "attention_scores": [
        Mistake("unscaled", "These are the raw dot products: divide them by sqrt(d_k), the square root of the last "
                            "dimension of Q.", lambda q, k: q @ np.swapaxes(k, -1, -2)),
        Mistake("divide_by_dk", "It divides by d_k; the scale is 1/sqrt(d_k).",
                lambda q, k: q @ np.swapaxes(k, -1, -2) / q.shape[-1]),
        Mistake("sqrt_of_keys", "It divides by the square root of the number of keys; d_k is the width of a query "
                                "or key vector, Q.shape[-1].",
                lambda q, k: q @ np.swapaxes(k, -1, -2) / np.sqrt(k.shape[-2])),
        Mistake("sqrt_of_queries", "It divides by the square root of the number of queries; d_k is the width of a "
                                   "query or key vector, Q.shape[-1].",
                lambda q, k: q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-2])),
    ],
    "apply_mask": [
        Mistake("inverted", "The polarity is inverted: keep the scores where the mask is True.",
                lambda s, m=None: s if m is None else ref.apply_mask_np(s, ~m)),
        Mistake("zero", "Blocked scores were set to 0 (multiplying by the mask does that), but exp(0) = 1 "
                        "still gives them weight: use -np.inf.",
                lambda s, m=None: s if m is None else np.where(m, s, 0.0)),
        Mistake("multiply", "Blocked scores were set to 0 (multiplying by the mask does that), but exp(0) = 1 "
                            "still gives them weight: use -np.inf.", lambda s, m=None: s if m is None else s * m),
        Mistake("none_not_handled", "With mask=None every score became -inf: when there is no mask, return the "
                                    "scores unchanged (test `if mask is None` first).",
                lambda s, m=None: np.where(m if m is not None else False, s, -np.inf)),
    ],
    "scaled_dot_product_attention": [
        Mistake("weights_over_queries", "The weights are normalised over the queries (axis -2); each query's row "
                                        "must sum to 1: softmax over the last axis.",
                _sdpa(lambda q, k, m: ref.softmax_np(ref.apply_mask_np(_scores(q, k), m), axis=-2))),
        Mistake("unscaled", "The weights are computed without the 1/sqrt(d_k) scale.",
                _sdpa(lambda q, k, m: ref.softmax_np(ref.apply_mask_np(q @ np.swapaxes(k, -1, -2), m)))),
        Mistake("weights_times_keys", "The weights are applied to the keys; the output is the weighted sum of the "
                                      "values: weights @ V.",
                _sdpa(lambda q, k, m: ref.softmax_np(ref.apply_mask_np(_scores(q, k), m)), values="k")),
    ],
    "masked_attention": [
        Mistake("mask_ignored", "The mask is ignored: apply it to the scores before the softmax.",
                _sdpa(lambda q, k, m: ref.softmax_np(_scores(q, k)))),
        Mistake("mask_after_softmax", "The weights were masked after the softmax, so rows no longer sum to 1: mask "
                                      "the scores before it.",
                _sdpa(lambda q, k, m: ref.softmax_np(_scores(q, k)) * (1 if m is None else m))),
        Mistake("mask_inverted", "The mask polarity is inverted: keep the scores where the mask is True and set the "
                                 "others to -inf.",
                _sdpa(lambda q, k, m: ref.softmax_np(ref.apply_mask_np(_scores(q, k), None if m is None else ~m)))),
        Mistake("mask_zero", "Masked scores were set to 0, but exp(0) = 1 still gives them weight: set them to "
                             "-inf (np.where(mask, scores, -np.inf)).",
                _sdpa(lambda q, k, m: ref.softmax_np(_scores(q, k) if m is None else np.where(m, _scores(q, k), 0.0)))),
    ],
    "causal_mask": [
        Mistake("inverted", "The polarity is inverted: use True where a position MAY attend (itself and earlier "
                            "positions).", lambda n: ~ref.causal_mask_np(n)),
        Mistake("no_diagonal", "The diagonal is missing: every position may attend to itself.",
                lambda n: np.tril(np.ones((n, n), bool), -1)),
        Mistake("upper", "It lets each position see the future (upper triangle) instead of the past.",
                lambda n: np.triu(np.ones((n, n), bool))),
        Mistake("not_boolean", "should be a boolean mask (dtype bool)", lambda n: np.tril(np.ones((n, n)))),
    ],
    "padding_mask": [
        Mistake("inverted", "The polarity is inverted: True marks the real tokens, False the padding.",
                lambda lengths, max_len: ~ref.padding_mask_np(lengths, max_len)),
        Mistake("off_by_one", "One position too many is marked real: position i is a real token when "
                              "i < length (not i <= length).",
                lambda lengths, max_len: np.arange(max_len)[None, :] <= np.asarray(lengths)[:, None]),
        Mistake("max_len_ignored", "The mask's width must be max_len, not the longest length.",
                lambda lengths, max_len: ref.padding_mask_np(lengths, int(np.max(lengths)))),
    ],
}


error_hints("softmax", [
    (r"could not be broadcast", "`np.max(x, axis=axis)` drops the reduced axis, so it no longer lines up with x: "
                                "pass `keepdims=True` to np.max and np.sum."),
])
error_hints("padding_mask", [
    (r"list indices must be|'list' object|unsupported operand type\(s\).*list",
     "`lengths` may be a Python list: turn it into an array first, `np.asarray(lengths)`."),
])

# ------------------------------------------------------------------------------------------------------------
# the checks
# ------------------------------------------------------------------------------------------------------------
def check_softmax(softmax, *, seed: int = 0) -> None:
    """Check ``softmax(x, axis=-1)``."""
    mistakes = MISTAKES["softmax"]
    x = _rng(seed, 1).normal(size=(4, 6))
    compare("softmax(x) for x of shape (4, 6)", call(softmax, "softmax", x), ref.softmax_np(x),
            hints=candidates(mistakes, x))
    big = np.array([[1000.0, 1001.0, 1002.0], [-1000.0, -1000.0, -999.0]])
    big = big + _rng(seed, 2).integers(-3, 4, size=(2, 1))
    with np.errstate(all="ignore"):
        got = call(softmax, "softmax", big)
        hints = candidates(mistakes, big)
    compare("softmax of large inputs (about ±1000)", got, ref.softmax_np(big), hints=hints)
    x3 = _rng(seed, 3).normal(size=(2, 3, 5)) * 3
    compare("softmax(x) for x of shape (2, 3, 5)", call(softmax, "softmax", x3), ref.softmax_np(x3), hints=[
        (ref.softmax_np(x3, axis=1), "For a 3-D input it normalises axis 1; use the last axis (axis=-1)."),
        *candidates(mistakes, x3)])
    compare("softmax(x, axis=0)", call(softmax, "softmax", x, axis=0), ref.softmax_np(x, axis=0),
            hints=candidates(mistakes, x, axis=0))
    compare("softmax(x, axis=1) for x of shape (2, 3, 5)", call(softmax, "softmax", x3, axis=1),
            ref.softmax_np(x3, axis=1), hints=candidates(mistakes, x3, axis=1))
    shifted = call(softmax, "softmax", x3 + 123.0)
    compare("softmax(x + 123) (softmax does not change when every entry is shifted)", shifted, ref.softmax_np(x3))
    passed("softmax")


def check_attention_scores(attention_scores, *, seed: int = 0) -> None:
    """Check ``attention_scores(Q, K)`` = ``Q K^T / sqrt(d_k)``, also for batched inputs."""
    mistakes = MISTAKES["attention_scores"]
    rng = _rng(seed, 1)
    q, k = rng.normal(size=(3, 8)), rng.normal(size=(5, 8))
    compare("attention_scores(Q (3, 8), K (5, 8))", call(attention_scores, "attention_scores", q, k),
            ref.attention_scores_np(q, k), hints=candidates(mistakes, q, k))
    qb, kb = rng.normal(size=(2, 4, 6)), rng.normal(size=(2, 7, 6))
    compare("attention_scores for a batch, Q (2, 4, 6), K (2, 7, 6)",
            call(attention_scores, "attention_scores", qb, kb), ref.attention_scores_np(qb, kb),
            hints=candidates(mistakes, qb, kb))
    q4, k4 = rng.normal(size=(2, 3, 4, 5)), rng.normal(size=(2, 3, 6, 5))
    compare("attention_scores with batch and head axes, Q (2, 3, 4, 5), K (2, 3, 6, 5)",
            call(attention_scores, "attention_scores", q4, k4), ref.attention_scores_np(q4, k4),
            hints=candidates(mistakes, q4, k4))
    passed("attention_scores")


def check_apply_mask(apply_mask, *, seed: int = 0) -> None:
    """Check ``apply_mask(scores, mask)``: ``-inf`` where the mask is False, scores unchanged elsewhere; the
    mask broadcasts; ``None`` means no mask; the input is not modified."""
    mistakes = MISTAKES["apply_mask"]
    rng = _rng(seed, 1)
    scores = rng.normal(size=(4, 4))
    mask = ref.causal_mask_np(4)

    def as_neg_inf(got):
        if isinstance(got, np.ndarray) and np.issubdtype(got.dtype, np.floating):
            got = got.astype(float)
            got[got <= -1e9] = -np.inf  # a very large negative number works as well as -inf
        return got

    got = as_neg_inf(call(apply_mask, "apply_mask", scores, mask))
    compare("apply_mask(scores, causal mask)", got, ref.apply_mask_np(scores, mask),
            hints=candidates(mistakes, scores, mask))
    row = rng.random(5) < 0.5
    row[0] = True
    s2 = rng.normal(size=(2, 3, 5))
    got = as_neg_inf(call(apply_mask, "apply_mask", s2, row))
    compare("apply_mask(scores (2, 3, 5), mask (5,)) (the mask broadcasts over the leading axes)", got,
            ref.apply_mask_np(s2, row), hints=candidates(mistakes, s2, row))
    got = call(apply_mask, "apply_mask", scores, None)
    compare("apply_mask(scores, None) (no mask: scores unchanged)", got, scores,
            hints=candidates(mistakes, scores, None))
    passed("apply_mask")


def _pair(got, what: str):
    expect(isinstance(got, tuple) and len(got) == 2,
           f"{what} should return a pair (output, weights), but it returned "
           f"{type(got).__name__}{' of length ' + str(len(got)) if isinstance(got, (tuple, list)) else ''}.")
    return got


def _check_attention_case(attention, what, q, k, v, mask, mistakes):
    args = (q, k, v) if mask is None else (q, k, v, mask)
    out, w = _pair(call(attention, "scaled_dot_product_attention", *args), "scaled_dot_product_attention")
    want_out, want_w = ref.scaled_dot_product_attention_np(q, k, v, mask)
    cands = candidates(mistakes, q, k, v, mask)
    if isinstance(out, np.ndarray) and isinstance(w, np.ndarray) and out.shape == want_w.shape \
            and w.shape == want_out.shape and out.shape != w.shape:
        raise CheckFailed(f"{what}: the pair is in the wrong order; return (output, weights).")
    compare(f"the attention weights (second item) {what}", w, want_w, hints=[(c[1], m) for c, m in cands
                                                                                if isinstance(c, tuple)])
    compare(f"the attention output (first item) {what}", out, want_out, hints=[(c[0], m) for c, m in cands
                                                                                 if isinstance(c, tuple)])
    return w


def check_scaled_dot_product_attention(attention, *, seed: int = 0) -> None:
    """Check ``scaled_dot_product_attention(Q, K, V)`` returns ``(output, weights)`` (without a mask)."""
    mistakes = MISTAKES["scaled_dot_product_attention"]
    rng = _rng(seed, 1)
    q, k, v = rng.normal(size=(3, 4)), rng.normal(size=(5, 4)), rng.normal(size=(5, 6))
    _check_attention_case(attention, "for Q (3, 4), K (5, 4), V (5, 6)", q, k, v, None, mistakes)
    qb, kb, vb = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 6, 4)), rng.normal(size=(2, 6, 2))
    _check_attention_case(attention, "for batched inputs Q (2, 3, 4), K (2, 6, 4), V (2, 6, 2)", qb, kb, vb, None,
                          mistakes)
    passed("scaled_dot_product_attention")


def check_causal_mask(causal_mask, *, seed: int = 0) -> None:
    """Check ``causal_mask(n)``: boolean, ``True`` on and below the diagonal."""
    for n in (4, 7 + seed % 3, 1):
        compare(f"causal_mask({n})", call(causal_mask, "causal_mask", n), ref.causal_mask_np(n),
                hints=candidates(MISTAKES["causal_mask"], n))
    passed("causal_mask")


def check_padding_mask(padding_mask, *, seed: int = 0) -> None:
    """Check ``padding_mask(lengths, max_len)``: ``(B, max_len)`` boolean, ``True`` at real tokens; ``lengths`` may
    be a list or an array, ``max_len`` may exceed the longest length."""
    rng = _rng(seed, 1)
    lengths = rng.integers(1, 6, size=3)
    lengths[rng.integers(3)] = 5
    for ls, L, shown in ((lengths, 5, f"np.array({lengths.tolist()}), 5"),
                         ([int(n) for n in lengths[:2]] + [0], 7, f"{[int(n) for n in lengths[:2]] + [0]}, 7")):
        compare(f"padding_mask({shown})", call(padding_mask, "padding_mask", ls, L), ref.padding_mask_np(ls, L),
                hints=candidates(MISTAKES["padding_mask"], ls, L))
    passed("padding_mask")


def check_masked_attention(attention, *, seed: int = 0) -> None:
    """Check ``scaled_dot_product_attention(Q, K, V, mask)`` with causal and padding masks."""
    mistakes = MISTAKES["masked_attention"] + MISTAKES["scaled_dot_product_attention"]
    rng = _rng(seed, 2)
    n, d = 5, 4
    q, k, v = rng.normal(size=(n, d)), rng.normal(size=(n, d)), rng.normal(size=(n, 3))
    mask = ref.causal_mask_np(n)
    w = _check_attention_case(attention, "under a causal mask", q, k, v, mask, mistakes)
    expect(np.allclose(np.triu(np.asarray(w), 1), 0), "a causal mask must give zero weight to every later position.")
    pad = ref.padding_mask_np(np.array([2, 4]), n)[:, None, :]  # (B, 1, Lk), broadcast over queries
    qb, kb, vb = rng.normal(size=(2, n, d)), rng.normal(size=(2, n, d)), rng.normal(size=(2, n, 3))
    _check_attention_case(attention, "with a padding mask of shape (2, 1, 5)", qb, kb, vb, pad, mistakes)
    passed("masked attention")


#: check name -> check, the keys of :data:`MISTAKES`
CHECKS = {"softmax": check_softmax, "attention_scores": check_attention_scores, "apply_mask": check_apply_mask,
          "scaled_dot_product_attention": check_scaled_dot_product_attention, "causal_mask": check_causal_mask,
          "padding_mask": check_padding_mask, "masked_attention": check_masked_attention}
