"""Hidden tests of Lab 2 (multi-head attention): the self-checks on other inputs, then the cases of the old hidden
tests (hand-made examples, properties of attention), computed from data made here."""
from __future__ import annotations

import torch

from instructor.grading.hidden import hidden_test
from labsupport import attention as ref
from labsupport.checks import lab02 as checks
from labsupport.checks.core import call, call_with, compare, expect, method, probe


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _forward(m, what: str, *args, **kwargs):
    """``(output, weights)`` of the student's module, both tensors."""
    got = method(m, "forward", "MultiHeadAttention.forward", *args, **kwargs)
    expect(isinstance(got, (tuple, list)) and len(got) == 2 and all(isinstance(t, torch.Tensor) for t in got),
           f"MultiHeadAttention.forward should return a pair of tensors (output, weights) for {what}.")
    return got


@hidden_test("test_split_heads", twins=["labsupport.attention:MultiHeadAttention.split_heads"])
def test_split_heads(student, seed):
    checks.check_split_heads(student.split_heads, seed=seed)
    x = torch.arange(2 * 3 * 6, dtype=torch.float32).reshape(2, 3, 6)
    compare("split_heads(arange(36).reshape(2, 3, 6), 2): head h of token l holds its features h*3 .. h*3+2",
            call(student.split_heads, "split_heads", x, 2), x.view(2, 3, 2, 3).transpose(1, 2))
    y = torch.randn(1, 4, 12, generator=_gen(seed))
    compare("split_heads(x of shape (1, 4, 12), 6)", call(student.split_heads, "split_heads", y, 6),
            y.view(1, 4, 6, 2).transpose(1, 2))


@hidden_test("test_merge_heads", twins=["labsupport.attention:MultiHeadAttention.merge_heads"])
def test_merge_heads(student, seed):
    checks.check_merge_heads(student.merge_heads, student.split_heads, seed=seed)
    y = torch.randn(3, 5, 24, generator=_gen(seed))
    for h in (1, 2, 3, 8, 24):
        heads = y.view(3, 5, h, 24 // h).transpose(1, 2)
        compare(f"merge_heads of y of shape (3, 5, 24) split into {h} heads (it should give y back)",
                call(student.merge_heads, "merge_heads", heads), y)


@hidden_test("test_masks", twins=["labsupport.attention:causal_mask", "labsupport.attention:padding_mask"])
def test_masks(student, seed):
    checks.check_causal_mask(student.causal_mask, seed=seed)
    checks.check_padding_mask(student.padding_mask, seed=seed)
    compare("causal_mask(3)", call(student.causal_mask, "causal_mask", 3),
            torch.tensor([[True, False, False], [True, True, False], [True, True, True]]))
    compare("padding_mask([0, 2], 3)", call(student.padding_mask, "padding_mask", [0, 2], 3),
            torch.tensor([[False] * 3, [True, True, False]])[:, None, None, :])
    c = call(student.causal_mask, "causal_mask", 4)
    p = call(student.padding_mask, "padding_mask", torch.tensor([4, 2, 1]), 4)
    compare("causal_mask(4)", c, ref.causal_mask(4))
    compare("padding_mask(tensor([4, 2, 1]), 4)", p, ref.padding_mask(torch.tensor([4, 2, 1]), 4))
    compare("causal_mask(4) & padding_mask(tensor([4, 2, 1]), 4)", c & p,
            ref.causal_mask(4) & ref.padding_mask(torch.tensor([4, 2, 1]), 4))


@hidden_test("test_mha", twins=["labsupport.attention:MultiHeadAttention"])
def test_mha(student, seed):
    checks.check_multi_head_attention(student.MultiHeadAttention, seed=seed)
    m = call_with(student.MultiHeadAttention, "MultiHeadAttention", (8, 2), seed=seed)
    probe(m, "set_training", False)
    g = _gen(seed)
    x = torch.randn(2, 4, 8, generator=g)
    out, w = _forward(m, "x of shape (2, 4, 8)", x)
    expect(tuple(out.shape) == (2, 4, 8) and tuple(w.shape) == (2, 2, 4, 4),
           "MultiHeadAttention(8, 2) must return an output of shape (2, 4, 8) and weights of shape (2, 2, 4, 4) for "
           "x of shape (2, 4, 8).")
    compare("the sums of the attention weights over the keys", w.sum(-1), torch.ones(2, 2, 4), atol=1e-5)
    # a causal mask: changing the last token must not change the earlier outputs
    x2 = x.clone()
    x2[:, -1] = torch.randn(2, 8, generator=g)
    c = ref.causal_mask(4)
    a = _forward(m, "a causal mask", x, mask=c)[0]
    b = _forward(m, "a causal mask", x2, mask=c)[0]
    compare("the outputs of positions 0..2 under a causal mask after the last token changed", b[:, :3], a[:, :3],
            atol=1e-5)
    # permuting the keys and the values together does not change the output (attention is a weighted set sum)
    key, value = torch.randn(2, 6, 8, generator=g), torch.randn(2, 6, 8, generator=g)
    perm = torch.randperm(6, generator=g)
    compare("cross-attention after permuting the keys and the values together (it must not change)",
            _forward(m, "cross-attention", x, key[:, perm], value[:, perm])[0],
            _forward(m, "cross-attention", x, key, value)[0], atol=1e-5)


@hidden_test("test_torch_mask", twins=["labsupport.attention:to_torch_mask",
                                       "labsupport.checks.lab02:reference_torch_attn_mask"])
def test_torch_mask(student, seed):
    checks.check_to_torch_attn_mask(student.to_torch_attn_mask, seed=seed)
    f = student.to_torch_attn_mask
    got = call(f, "to_torch_attn_mask", ref.causal_mask(3), 2, 2, 3, 3)
    compare("to_torch_attn_mask(causal_mask(3), 2, 2, 3, 3)", got, (~ref.causal_mask(3)).expand(4, 3, 3))
    got = call(f, "to_torch_attn_mask", ref.padding_mask([1, 3], 3), 2, 3, 2, 3)
    want = torch.tensor([[False, True, True]] * 6 + [[False] * 3] * 6).reshape(6, 2, 3)
    compare("to_torch_attn_mask(padding_mask([1, 3], 3), 2, 3, 2, 3)", got, want)
