"""Lab 2 self-checks: the reference passes, and each typical mistake gets its own clear message."""
import math

import pytest
import torch
from torch import nn

from labsupport import attention as ref
from labsupport.checks import CheckFailed
from labsupport.checks import lab02 as L
from checkhelpers import fails_with, not_implemented


# the reference solutions, written as a student would
def split_heads(x, num_heads):
    B, L, D = x.shape
    return x.view(B, L, num_heads, D // num_heads).transpose(1, 2)


def merge_heads(x):
    B, H, L, dh = x.shape
    return x.transpose(1, 2).reshape(B, L, H * dh)


def causal_mask(n):
    return torch.ones(n, n, dtype=torch.bool).tril()


def padding_mask(lengths, max_len):
    lengths = torch.as_tensor(lengths)
    return (torch.arange(max_len)[None, :] < lengths[:, None])[:, None, None, :]


class MHA(nn.Module):
    """A student-style module; `mistake` switches one typical error on."""

    def __init__(self, d_model, num_heads, mistake=None):
        super().__init__()
        self.h, self.mistake = num_heads, mistake
        self.q_proj, self.k_proj = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)
        self.v_proj, self.out_proj = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)

    def forward(self, query, key=None, value=None, mask=None):
        key = query if key is None else key
        value = key if value is None else value
        B, Lq, D = query.shape
        Lk = Lq if self.mistake == "tied_length" else key.shape[1]
        dh = D // self.h

        def sp(t, L_):
            if self.mistake == "split_direct":
                return t.view(B, self.h, L_, dh)
            return t.view(B, L_, self.h, dh).transpose(1, 2)

        q, k, v = sp(self.q_proj(query), Lq), sp(self.k_proj(key), Lk), sp(self.v_proj(value), Lk)
        if self.mistake in ("no_scale", "nan", "invert", "ignore_mask"):
            s = q @ k.transpose(-2, -1)
            if self.mistake != "no_scale":
                s = s / math.sqrt(dh)
            if mask is not None and self.mistake != "ignore_mask":
                s = s.masked_fill(mask if self.mistake == "invert" else ~mask, float("-inf"))
            w = torch.softmax(s, -1)
            if self.mistake == "invert":
                w = w.nan_to_num(0.0)
            out = w @ v
        else:
            out, w = ref.scaled_dot_product_attention(q, k, v, mask)
        if self.mistake == "merge_direct":
            out = out.reshape(B, Lq, D)
        else:
            out = out.transpose(1, 2).reshape(B, Lq, D)
        if self.mistake == "only_output":
            return self.out_proj(out)
        if self.mistake == "mean_weights":
            return self.out_proj(out), w.mean(1)
        return (out if self.mistake == "no_out_proj" else self.out_proj(out)), w


def to_torch_attn_mask(mask, batch_size, num_heads, q_len, k_len):
    return ~mask.expand(batch_size, num_heads, q_len, k_len).reshape(batch_size * num_heads, q_len, k_len)


def test_reference_passes_every_check(capsys):
    L.check_split_heads(split_heads)
    L.check_merge_heads(merge_heads, split_heads)
    L.check_causal_mask(causal_mask)
    L.check_padding_mask(padding_mask)
    L.check_multi_head_attention(MHA)
    L.check_multi_head_attention(ref.MultiHeadAttention)
    L.check_to_torch_attn_mask(to_torch_attn_mask)
    assert capsys.readouterr().out.count("✓") == 7


@pytest.mark.parametrize("check", [L.check_split_heads, L.check_merge_heads, L.check_causal_mask, L.check_padding_mask,
                                   L.check_multi_head_attention, L.check_to_torch_attn_mask])
def test_not_implemented_is_explained(check):
    fails_with(check, not_implemented, "not implemented yet")


def test_split_heads_mistakes():
    fails_with(L.check_split_heads, lambda x, h: x.view(x.shape[0], x.shape[1], h, -1), "(B, L, H, d_head)", "transpose(1, 2)")
    fails_with(L.check_split_heads, lambda x, h: x.view(x.shape[0], h, x.shape[1], -1), "straight to (B, H, L, d_head)")
    fails_with(L.check_split_heads, lambda x, h: x.view(x.shape[0], x.shape[1], -1, h).permute(0, 3, 1, 2), "interleaved")
    fails_with(L.check_split_heads, lambda x, h: None, "returned None")
    fails_with(L.check_split_heads, lambda x, h: x.numpy(), "torch.Tensor")


def test_merge_heads_mistakes():
    fails_with(L.check_merge_heads, lambda x: x.reshape(x.shape[0], x.shape[2], -1), "straight to (B, L, D)")
    fails_with(L.check_merge_heads, lambda x: x.transpose(1, 2), "did not concatenate")
    fails_with(L.check_merge_heads, lambda x: x.transpose(1, 2).view(x.shape[0], x.shape[2], -1), "no longer contiguous", ".reshape")
    # merge works alone but does not undo a (wrong) split
    bad_split = lambda x, h: x.view(x.shape[0], h, x.shape[1], -1)  # noqa: E731
    fails_with(lambda f: L.check_merge_heads(f, bad_split), merge_heads, "merge_heads(split_heads(y, 4))")


def test_mask_mistakes():
    fails_with(L.check_causal_mask, lambda n: torch.ones(n, n).tril(), "dtype torch.float32", "boolean")
    fails_with(L.check_causal_mask, lambda n: torch.ones(n, n, dtype=torch.int64).tril(), "torch.int64")
    fails_with(L.check_causal_mask, lambda n: ~causal_mask(n), "polarity")
    fails_with(L.check_causal_mask, lambda n: torch.ones(n, n, dtype=torch.bool).tril(-1), "diagonal")
    fails_with(L.check_causal_mask, lambda n: torch.ones(n, n, dtype=torch.bool).triu(), "future")
    fails_with(L.check_padding_mask, lambda ls, m: padding_mask(ls, m)[:, 0, 0, :], "(B, 1, 1, max_len)", "broadcast")
    fails_with(L.check_padding_mask, lambda ls, m: ~padding_mask(ls, m), "polarity")
    fails_with(L.check_padding_mask, lambda ls, m: padding_mask(ls, m).float(), "boolean")
    fails_with(L.check_padding_mask, lambda ls, m: padding_mask(ls, m) if not isinstance(ls, list) else None,
               "returned None")


@pytest.mark.parametrize("mistake,fragment", [
    ("no_scale", "not scaled"),
    ("split_direct", "view(B, H, L, d_head) directly"),
    ("merge_direct", "without transposing"),
    ("no_out_proj", "output projection is missing"),
    ("invert", "polarity is inverted"),
    ("ignore_mask", "mask is ignored"),
    ("nan", "NaN"),
    ("only_output", "pair (output, weights)"),
    ("mean_weights", "per head"),
    ("tied_length", "cross-attention"),
])
def test_mha_mistakes(mistake, fragment):
    fails_with(L.check_multi_head_attention, lambda d, h: MHA(d, h, mistake), fragment)


def test_mha_structure_mistakes():
    class NoBias(MHA):
        def __init__(self, d, h):
            super().__init__(d, h)
            self.q_proj = nn.Linear(d, d, bias=False)

    class Named(nn.Module):
        def __init__(self, d, h):
            super().__init__()
            self.wq = nn.Linear(d, d)

    class Extra(MHA):
        def __init__(self, d, h):
            super().__init__(d, h)
            self.extra = nn.Linear(d, d)

    fails_with(L.check_multi_head_attention, NoBias, "with a bias")
    fails_with(L.check_multi_head_attention, Named, "no nn.Linear attribute `q_proj`")
    fails_with(L.check_multi_head_attention, Extra, "parameters; expected 4 D^2 + 4 D")


def test_mha_scale_by_d_model():
    class WrongScale(MHA):
        def forward(self, query, key=None, value=None, mask=None):
            key = query if key is None else key
            value = key if value is None else value
            q = split_heads(self.q_proj(query), self.h)
            k, v = split_heads(self.k_proj(key), self.h), split_heads(self.v_proj(value), self.h)
            s = q @ k.transpose(-2, -1) / math.sqrt(query.shape[-1])
            if mask is not None:
                s = s.masked_fill(~mask, float("-inf"))
            w = torch.softmax(s, -1).nan_to_num(0.0)
            return self.out_proj(merge_heads(w @ v)), w

    fails_with(L.check_multi_head_attention, WrongScale, "sqrt(d_model)")


def test_to_torch_attn_mask_mistakes():
    fails_with(L.check_to_torch_attn_mask, lambda m, b, h, lq, lk: ~to_torch_attn_mask(m, b, h, lq, lk), "polarity is not flipped")
    fails_with(L.check_to_torch_attn_mask, lambda m, b, h, lq, lk: ~m, "(batch_size * num_heads, q_len, k_len)")
    fails_with(L.check_to_torch_attn_mask,
               lambda m, b, h, lq, lk: ~m.expand(b, h, lq, lk).transpose(0, 1).reshape(b * h, lq, lk), "wrong order")
    fails_with(L.check_to_torch_attn_mask, lambda m, b, h, lq, lk: to_torch_attn_mask(m, b, h, lq, lk).float(), "boolean")


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
