"""Lab 2's references (TWINS; test_every_lab.py runs every check with them) and its particular cases: other
right answers pass, the structural mistakes of the module get their own messages. (The mistakes of the table and
the mutants are in test_mutants.py.)"""
import pytest
import torch
from torch import nn

from labsupport import attention as ref
from labsupport.checks import lab02 as L
from labsupport.checks.core import CheckFailed


def split_heads(x, num_heads):
    return ref.MultiHeadAttention(x.shape[-1], num_heads).split_heads(x)


def merge_heads(x):
    return ref.MultiHeadAttention(x.shape[1] * x.shape[-1], x.shape[1]).merge_heads(x)


def to_torch_attn_mask(mask, batch_size, num_heads, q_len, k_len):
    full = ref.to_torch_mask(mask.expand(batch_size, num_heads, q_len, k_len))
    return full.reshape(batch_size * num_heads, q_len, k_len)


TWINS = {"split_heads": split_heads, "merge_heads": merge_heads, "causal_mask": ref.causal_mask,
         "padding_mask": ref.padding_mask, "multi_head_attention": ref.MultiHeadAttention,
         "to_torch_attn_mask": to_torch_attn_mask}


@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_other_right_answers_pass(seed, capsys):
    L.check_merge_heads(merge_heads, split_heads, seed=seed)
    L.check_to_torch_attn_mask(L.reference_torch_attn_mask, seed=seed)
    assert capsys.readouterr().out.count("✓") == 2


def test_a_module_whose_forward_is_not_implemented_is_explained():
    class Stub(nn.Module):
        def __init__(self, d_model, num_heads):
            super().__init__()
            self.q_proj, self.k_proj = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)
            self.v_proj, self.out_proj = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)

        def forward(self, query, key=None, value=None, mask=None):
            raise NotImplementedError()

    with pytest.raises(CheckFailed, match="`MultiHeadAttention.forward` is not implemented yet"):
        L.check_multi_head_attention(Stub)


class Named(nn.Module):
    def __init__(self, d_model, num_heads):
        super().__init__()
        self.wq = nn.Linear(d_model, d_model)


class Extra(ref.MultiHeadAttention):
    def __init__(self, d_model, num_heads):
        super().__init__(d_model, num_heads)
        self.extra = nn.Linear(d_model, d_model)


class TiedLength(ref.MultiHeadAttention):
    def forward(self, query, key=None, value=None, mask=None):
        key = query if key is None else key
        value = key if value is None else value
        B, Lq, D = query.shape
        q, k, v = (p(t).view(B, Lq, self.num_heads, self.d_head).transpose(1, 2)
                   for p, t in ((self.q_proj, query), (self.k_proj, key), (self.v_proj, value)))
        out, w = ref.scaled_dot_product_attention(q, k, v, mask)
        return self.out_proj(self.merge_heads(out)), w


@pytest.mark.parametrize("cls, fragments", [
    (Named, ["no nn.Linear attribute `q_proj`"]),
    (Extra, ["parameters; expected 4 D^2 + 4 D"]),
    (TiedLength, ["This was cross-attention", "split each tensor with its own length"]),
    (lambda d, h: (d, h), ["should build an nn.Module"]),
])
def test_structural_mistakes_of_the_module(cls, fragments):
    with pytest.raises(CheckFailed) as info:
        L.check_multi_head_attention(cls)
    for fragment in fragments:
        assert fragment in info.value.message, info.value.message


def test_the_check_leaves_the_callers_random_numbers_alone():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    L.check_to_torch_attn_mask(to_torch_attn_mask)
    L.check_padding_mask(ref.padding_mask)
    assert torch.equal(torch.rand(3), expected)


def test_reference_torch_attn_mask_works_with_torch():
    B, H, Lq, D = 3, 2, 4, 8
    mha = nn.MultiheadAttention(D, H, batch_first=True).eval()
    ours = ref.MultiHeadAttention(D, H).eval()
    ref.copy_mha_weights(mha, ours)
    x = torch.randn(B, Lq, D)
    mask = ref.causal_mask(Lq) & ref.padding_mask(torch.tensor([4, 2, 1]), Lq)
    with torch.no_grad():
        want = ours(x, mask=mask)[0]
        got = mha(x, x, x, attn_mask=L.reference_torch_attn_mask(mask, B, H, Lq, Lq))[0]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
