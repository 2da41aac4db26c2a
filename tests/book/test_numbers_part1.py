"""The numbers that the book's chapters 2-6 (history, understanding, scaled dot-product, multi-head) print from
labsupport: parameter counts, equalities with PyTorch's own modules, the behaviour of the masks, and the hand-built
heads of the multi-head chapter. If a change to labsupport breaks one of these, the chapter's text is wrong too.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from labsupport.attention import (
    MultiHeadAttention,
    causal_mask,
    copy_mha_weights,
    padding_mask,
    scaled_dot_product_attention,
    to_torch_mask,
)
from labsupport.blocks import DecoderBlock, EncoderBlock


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --- book/understanding.md ------------------------------------------------------------------------------------


def test_block_parameter_counts_base_model():
    d, heads, d_ff = 512, 8, 2048
    enc = EncoderBlock(d_model=d, num_heads=heads, d_ff=d_ff)
    dec = DecoderBlock(d_model=d, num_heads=heads, d_ff=d_ff)
    assert count(enc.self_attn) == 1_050_624
    assert count(enc.ff) == 2_099_712
    assert count(enc.norm1) + count(enc.norm2) == 2_048
    assert count(enc) == 3_152_384 == count(nn.TransformerEncoderLayer(d, heads, d_ff, batch_first=True))
    assert count(dec) == 4_204_032 == count(nn.TransformerDecoderLayer(d, heads, d_ff, batch_first=True))
    # the chapter's sum: 6 + 6 blocks and a shared 37,000 x 512 embedding table, about 63 million
    assert round((6 * count(enc) + 6 * count(dec) + 37_000 * d) / 1e6) == 63


def test_causal_attention_in_one_call_equals_prefix_by_prefix():
    torch.manual_seed(0)
    layer = MultiHeadAttention(d_model=32, num_heads=4).eval()
    x = torch.randn(1, 6, 32)
    all_at_once, _ = layer(x, mask=causal_mask(6))
    one_by_one = torch.cat([layer(x[:, : t + 1])[0][:, -1:] for t in range(6)], dim=1)
    assert torch.allclose(all_at_once, one_by_one, atol=1e-6)
    # and without the mask they differ (the check can fail)
    assert not torch.allclose(layer(x)[0], one_by_one, atol=1e-3)


# --- book/scaled_dot_product.md -------------------------------------------------------------------------------


def test_sdpa_equals_torch_with_causal_and_padding_masks():
    torch.manual_seed(0)
    L = 6
    both = causal_mask(L) & padding_mask([6, 4], max_len=L)
    assert tuple(both.shape) == (2, 1, 6, 6)
    q, k, v = torch.randn(3, 2, 4, L, 16).unbind(0)
    ours, weights = scaled_dot_product_attention(q, k, v, mask=both)
    assert torch.allclose(ours, F.scaled_dot_product_attention(q, k, v, attn_mask=both), atol=1e-6)
    ours_causal, _ = scaled_dot_product_attention(q, k, v, mask=causal_mask(L))
    assert torch.allclose(ours_causal, F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-6)
    # the weights of sequence 2 give the padding keys nothing and sum to 1 over the allowed keys
    assert weights[1, :, :, 4:].abs().max() == 0
    assert torch.allclose(weights.sum(-1), torch.ones(2, 4, L))


def test_fully_masked_row_gives_zeros_not_nan():
    q, k, v = torch.randn(3, 1, 6, 8).unbind(0)
    out, weights = scaled_dot_product_attention(q, k, v, torch.zeros(1, 6, dtype=torch.bool))
    assert torch.isnan(torch.softmax(torch.full((6,), float("-inf")), dim=0)).all()
    assert not torch.isnan(weights).any() and weights.abs().max() == 0 and out.abs().max() == 0


# --- book/multi_head.md ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("heads", [1, 2, 4, 8, 16])
def test_mha_parameter_count_independent_of_heads(heads):
    D = 512
    assert count(MultiHeadAttention(d_model=D, num_heads=heads)) == 4 * D * D + 4 * D == 1_050_624
    assert count(nn.MultiheadAttention(D, heads)) == 1_050_624


def test_bert_base_attention_parameters():
    assert count(MultiHeadAttention(d_model=768, num_heads=12)) == 2_362_368


def test_output_is_sum_of_per_head_contributions():
    torch.manual_seed(0)
    D, h = 32, 4
    mha = MultiHeadAttention(d_model=D, num_heads=h).eval()
    x = torch.randn(2, 6, D)
    q, k, v = (mha.split_heads(proj(x)) for proj in (mha.q_proj, mha.k_proj, mha.v_proj))
    heads, _ = scaled_dot_product_attention(q, k, v)
    W_O, d = mha.out_proj.weight.T, D // h
    per_head = sum(heads[:, i] @ W_O[i * d:(i + 1) * d] for i in range(h)) + mha.out_proj.bias
    assert torch.allclose(mha(x)[0], per_head, atol=1e-6)


def test_split_heads_cuts_the_feature_axis():
    x = torch.arange(24).view(1, 4, 6)
    m = MultiHeadAttention(d_model=6, num_heads=2)
    split = m.split_heads(x)
    assert split[0, 0].tolist() == [[0, 1, 2], [6, 7, 8], [12, 13, 14], [18, 19, 20]]
    assert split[0, 1].tolist() == [[3, 4, 5], [9, 10, 11], [15, 16, 17], [21, 22, 23]]
    assert torch.equal(m.merge_heads(split), x)
    assert x.reshape(1, 2, 4, 3)[0, 0].tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]


def test_equal_to_nn_multihead_attention_with_flipped_masks():
    torch.manual_seed(0)
    D, h, L = 32, 4, 6
    torch_mha = nn.MultiheadAttention(D, h, batch_first=True).eval()
    ours = MultiHeadAttention(d_model=D, num_heads=h).eval()
    copy_mha_weights(torch_mha, ours)
    x = torch.randn(2, L, D)
    keep = padding_mask([6, 4], max_len=L)
    out_ours, w_ours = ours(x, mask=causal_mask(L) & keep)
    out_torch, w_torch = torch_mha(x, x, x, attn_mask=to_torch_mask(causal_mask(L)),
                                   key_padding_mask=to_torch_mask(keep[:, 0, 0]),
                                   need_weights=True, average_attn_weights=False)
    assert torch.allclose(out_ours, out_torch, atol=1e-6)
    assert torch.allclose(w_ours, w_torch, atol=1e-6)
    forgot_to_flip, _ = torch_mha(x, x, x, attn_mask=causal_mask(L))
    assert forgot_to_flip.isnan().any()


def test_hand_built_heads_of_the_multi_head_chapter():
    """The construction of the chapter's "What heads attend to" section, kept in step with the page."""
    words = "the cat sat on the mat because the cat was tired".split()
    vocab = sorted(set(words))
    L, D, h = len(words), 64, 4
    d = D // h
    x = torch.zeros(1, L, D)
    for t, w in enumerate(words):
        x[0, t, vocab.index(w)] = 1.0
        x[0, t, 16 + t] = 1.0
    layer = MultiHeadAttention(d_model=D, num_heads=h)
    sharp = 40.0
    with torch.no_grad():
        for lin in (layer.q_proj, layer.k_proj, layer.v_proj, layer.out_proj):
            lin.weight.zero_()
            lin.bias.zero_()
        Wq, Wk = layer.q_proj.weight, layer.k_proj.weight
        for j in range(d):
            Wk[0 * d + j, 16 + j] = 1.0
            if j + 1 < d:
                Wq[0 * d + j, 16 + j + 1] = sharp
            Wk[1 * d + j, 16 + j] = 1.0
            if j >= 1:
                Wq[1 * d + j, 16 + j - 1] = sharp
            Wk[2 * d + j, j] = 1.0
            Wq[2 * d + j, j] = sharp
            Wk[3 * d + j, j] = 1.0
        layer.q_proj.bias[3 * d + vocab.index("cat")] = sharp
        for i in range(h):
            layer.v_proj.weight[i * d:(i + 1) * d, :16] = torch.eye(16)
        layer.out_proj.weight.copy_(torch.eye(D))
    out, weights = layer(x)
    w = weights[0].detach()
    for t in range(1, L):
        assert w[0, t, t - 1] > 0.99                      # previous token
    for t in range(L - 1):
        assert w[1, t, t + 1] > 0.99                      # next token
    assert torch.allclose(w[0, 0], torch.full((L,), 1 / L))       # the first token: evenly spread
    assert torch.allclose(w[2, 0, [0, 4, 7]], torch.full((3,), 1 / 3), atol=1e-3)   # "the" x 3
    assert torch.allclose(w[3, :, [1, 8]], torch.full((L, 2), 0.5), atol=1e-3)      # where is "cat"
    found = out[0].detach()
    decoded = {words[t]: (vocab[found[t, 0:16].argmax()], vocab[found[t, 16:32].argmax()]) for t in (2, 6, 8)}
    assert decoded == {"sat": ("cat", "on"), "because": ("mat", "the"), "cat": ("the", "was")}
