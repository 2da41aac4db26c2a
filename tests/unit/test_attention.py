"""labsupport.attention pinned to PyTorch: F.scaled_dot_product_attention and nn.MultiheadAttention."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from labsupport import attention as A

SHAPES = [  # (batch dims, Lq, Lk, d_k, d_v)
    ((), 1, 1, 1, 1),
    ((), 4, 6, 8, 3),
    ((2,), 5, 5, 16, 16),
    ((2, 3), 7, 4, 8, 5),
    ((1, 4), 9, 9, 32, 12),
]


def _random_qkv(rng, batch, lq, lk, dk, dv):
    return rng.normal(size=(*batch, lq, dk)), rng.normal(size=(*batch, lk, dk)), rng.normal(size=(*batch, lk, dv))


def _torch(*arrays):
    return [torch.from_numpy(a) for a in arrays]


def test_softmax_matches_torch_and_is_stable():
    rng = np.random.default_rng(0)
    for shape in [(5,), (3, 7), (2, 3, 4)]:
        x = rng.normal(size=shape) * 30
        for axis in range(-len(shape), len(shape)):
            want = torch.softmax(torch.from_numpy(x), axis).numpy()
            np.testing.assert_allclose(A.softmax_np(x, axis), want, atol=1e-12)
    big = np.array([1000.0, 1001.0, -1e6])
    out = A.softmax_np(big)
    assert np.isfinite(out).all() and out.sum() == pytest.approx(1.0)
    assert A.softmax_np(np.array([-np.inf, -np.inf])).tolist() == [0.0, 0.0]  # fully masked row: zeros, not NaN


def test_softmax_keeps_float32():
    assert A.softmax_np(np.ones(3, dtype=np.float32)).dtype == np.float32
    assert A.softmax_np(np.arange(3)).dtype == np.float64  # integers are promoted


@pytest.mark.parametrize("batch,lq,lk,dk,dv", SHAPES)
@pytest.mark.parametrize("masking", ["none", "causal", "padding", "random"])
def test_attention_matches_torch(batch, lq, lk, dk, dv, masking):
    rng = np.random.default_rng(hash((batch, lq, lk, masking)) % 2**32)
    q, k, v = _random_qkv(rng, batch, lq, lk, dk, dv)
    if masking == "none":
        mask = None
    elif masking == "causal":
        if lq > lk:
            pytest.skip("a causal mask with more queries than keys leaves rows empty (torch gives NaN there)")
        mask = A.causal_mask(lq, lk).numpy()
    elif masking == "padding":
        lengths = rng.integers(1, lk + 1, size=batch)
        mask = (np.arange(lk) < np.asarray(lengths)[..., None])[..., None, :]  # (..., 1, Lk)
    else:
        mask = rng.random(size=(*batch, lq, lk)) < 0.7
        mask[..., 0] = True  # keep every row attending to something (torch gives NaN otherwise)
    want = F.scaled_dot_product_attention(*_torch(q, k, v), attn_mask=None if mask is None else torch.from_numpy(mask))
    out_np, w_np = A.scaled_dot_product_attention_np(q, k, v, mask)
    np.testing.assert_allclose(out_np, want.numpy(), atol=1e-10)
    out_t, w_t = A.scaled_dot_product_attention(*_torch(q, k, v), None if mask is None else torch.from_numpy(mask))
    np.testing.assert_allclose(out_t.numpy(), want.numpy(), atol=1e-10)
    np.testing.assert_allclose(w_np.sum(-1), 1.0, atol=1e-12)
    np.testing.assert_allclose(w_t.numpy(), w_np, atol=1e-12)


def test_fully_masked_row_gives_zeros_not_nan():
    q = k = v = torch.randn(1, 3, 4)
    mask = torch.tensor([[True, True, True], [False, False, False], [True, False, False]])
    out, w = A.scaled_dot_product_attention(q, k, v, mask)
    assert torch.isfinite(out).all() and torch.isfinite(w).all()
    assert torch.equal(w[0, 1], torch.zeros(3)) and torch.equal(out[0, 1], torch.zeros(4))


def test_masks_shapes_dtypes_and_polarity():
    m = A.causal_mask(4)
    assert m.dtype == torch.bool and m.shape == (4, 4)
    assert m.tolist() == np.tril(np.ones((4, 4), bool)).tolist()
    assert np.array_equal(A.causal_mask_np(4), m.numpy())
    # with a cache: 2 new queries over 5 keys, the last query sees everything
    assert A.causal_mask(2, 5).tolist() == [[True, True, True, True, False], [True] * 5]
    p = A.padding_mask([2, 4], 5)
    assert p.shape == (2, 1, 1, 5) and p.dtype == torch.bool
    assert p[:, 0, 0].tolist() == [[True, True, False, False, False], [True, True, True, True, False]]
    assert A.padding_mask_np([2, 4], 5).tolist() == p[:, 0, 0].tolist()
    tokens = torch.tensor([[5, 6, 0], [7, 0, 0]])
    assert A.key_padding_mask(tokens, pad_id=0)[:, 0, 0].tolist() == [[True, True, False], [True, False, False]]
    assert torch.equal(A.to_torch_mask(m), ~m)


def test_causal_attention_ignores_the_future():
    torch.manual_seed(0)
    x = torch.randn(1, 6, 8)
    out1, _ = A.scaled_dot_product_attention(x, x, x, A.causal_mask(6))
    x2 = x.clone()
    x2[0, 4:] = torch.randn(2, 8)  # change the future
    out2, _ = A.scaled_dot_product_attention(x2, x2, x2, A.causal_mask(6))
    torch.testing.assert_close(out1[0, :4], out2[0, :4])
    assert not torch.allclose(out1[0, 4:], out2[0, 4:])


@pytest.mark.parametrize("d_model,heads,lq,lk,bias",
                         [(8, 1, 3, 3, True), (16, 4, 5, 7, True), (32, 8, 6, 6, False), (12, 3, 1, 9, True)])
@pytest.mark.parametrize("masking", ["none", "causal", "padding", "both"])
def test_multihead_matches_torch(d_model, heads, lq, lk, bias, masking):
    torch.manual_seed(d_model + heads + lq)
    theirs = nn.MultiheadAttention(d_model, heads, bias=bias, batch_first=True).eval()
    ours = A.MultiHeadAttention(d_model, heads, bias=bias).load_from_torch(theirs).eval()
    B = 3
    q, kv = torch.randn(B, lq, d_model), torch.randn(B, lk, d_model)
    if masking in ("causal", "both") and lq != lk:
        pytest.skip("causal masks are for self-attention")
    causal = A.causal_mask(lq, lk) if masking in ("causal", "both") else None
    pad = A.padding_mask(torch.tensor([lk, max(1, lk - 2), 1]), lk) if masking in ("padding", "both") else None
    mask = causal if pad is None else (pad if causal is None else causal & pad)
    want, want_w = theirs(q, kv, kv, attn_mask=None if causal is None else ~causal,
                          key_padding_mask=None if pad is None else ~pad[:, 0, 0],
                          need_weights=True, average_attn_weights=False)
    got, got_w = ours(q, kv, kv, mask=mask)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_w, want_w, atol=1e-6, rtol=1e-5)


def test_multihead_self_attention_default_and_parameter_count():
    torch.manual_seed(1)
    mha = A.MultiHeadAttention(24, 4)
    x = torch.randn(2, 5, 24)
    out, w = mha(x)
    assert out.shape == (2, 5, 24) and w.shape == (2, 4, 5, 5)
    torch.testing.assert_close(out, mha(x, x, x)[0])
    assert sum(p.numel() for p in mha.parameters()) == 4 * 24 * 24 + 4 * 24
    assert sum(p.numel() for p in nn.MultiheadAttention(24, 4).parameters()) == 4 * 24 * 24 + 4 * 24
    torch.testing.assert_close(mha.merge_heads(mha.split_heads(x)), x)


def test_multihead_rejects_bad_configuration():
    with pytest.raises(ValueError, match="divisible"):
        A.MultiHeadAttention(10, 3)
    with pytest.raises(ValueError, match="shape mismatch"):
        A.MultiHeadAttention(8, 2).load_from_torch(nn.MultiheadAttention(8, 4))


def test_multihead_dropout_only_in_training():
    torch.manual_seed(2)
    mha = A.MultiHeadAttention(16, 2, dropout=0.5)
    x = torch.randn(1, 4, 16)
    mha.eval()
    torch.testing.assert_close(mha(x)[0], mha(x)[0])
    mha.train()
    assert not torch.allclose(mha(x)[0], mha(x)[0])


# ---------------------------------------------------------------------------------------------------------------
# The fused path, the KV cache, attention maps on request
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch,lq,lk,dk,dv", SHAPES)
@pytest.mark.parametrize("masking", ["none", "causal", "padding", "random"])
def test_reference_attention_equals_fused_kernel(batch, lq, lk, dk, dv, masking):
    """The readable twin of Labs 1-2 and F.scaled_dot_product_attention compute the same function (float64)."""
    rng = np.random.default_rng(7)
    q, k, v = _torch(*_random_qkv(rng, batch, lq, lk, dk, dv))
    mask = {"none": None, "causal": A.causal_mask(lq, lk), "padding": A.padding_mask([lk], lk)[0, 0],
            "random": torch.from_numpy(rng.random((lq, lk)) > 0.3)}[masking]
    ours, _ = A.scaled_dot_product_attention(q, k, v, mask)
    torch.testing.assert_close(ours, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=1e-12, rtol=0)


@pytest.mark.parametrize("masking", ["none", "causal", "padding", "both", "is_causal"])
def test_multihead_fused_path_equals_reference(masking):
    torch.manual_seed(3)
    mha = A.MultiHeadAttention(16, 4).double().eval()
    x = torch.randn(3, 6, 16, dtype=torch.float64)
    causal, pad = A.causal_mask(6), A.padding_mask([6, 4, 1], 6)
    mask = {"none": None, "causal": causal, "padding": pad, "both": causal & pad, "is_causal": None}[masking]
    is_causal = masking == "is_causal"
    fused, none = mha(x, mask=mask, is_causal=is_causal, need_weights=False)
    ref, w = mha(x, mask=mask if not is_causal else causal)
    assert none is None and w.shape == (3, 4, 6, 6)
    torch.testing.assert_close(fused, ref, atol=1e-12, rtol=0)
    # is_causal together with a padding mask: the two are combined
    torch.testing.assert_close(mha(x, mask=pad, is_causal=True, need_weights=False)[0], mha(x, mask=causal & pad)[0],
                               atol=1e-12, rtol=0)


def test_cross_attention_fused_path_equals_reference():
    torch.manual_seed(4)
    mha = A.MultiHeadAttention(12, 3).double().eval()
    q, mem = torch.randn(2, 4, 12, dtype=torch.float64), torch.randn(2, 7, 12, dtype=torch.float64)
    pad = A.padding_mask([7, 3], 7)
    torch.testing.assert_close(mha(q, mem, mem, pad, need_weights=False)[0], mha(q, mem, mem, pad)[0],
                               atol=1e-12, rtol=0)


@pytest.mark.parametrize("need_weights", [False, True])
def test_attention_cache_prefill_steps_and_chunks_equal_full_attention(need_weights):
    torch.manual_seed(5)
    mha = A.MultiHeadAttention(16, 4).eval()
    seq = torch.randn(2, 9, 16)
    full = mha(seq, is_causal=True, need_weights=False)[0]
    cache = A.AttentionCache()
    parts = [mha(seq[:, :3], is_causal=True, cache=cache, need_weights=need_weights)[0]]  # prefill
    assert cache.length == 3 and cache.keys.shape == (2, 4, 3, 4)
    for t in (3, 4):  # one token at a time
        parts.append(mha(seq[:, t:t + 1], is_causal=True, cache=cache, need_weights=need_weights)[0])
    parts.append(mha(seq[:, 5:9], is_causal=True, cache=cache, need_weights=need_weights)[0])  # a chunk of 4
    assert cache.length == 9 and cache.nbytes() == 2 * 2 * 4 * 9 * 4 * 4
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=0)


def test_record_attention_gives_maps_on_request_only():
    torch.manual_seed(6)
    model = nn.ModuleDict({"a": A.MultiHeadAttention(8, 2), "b": A.MultiHeadAttention(8, 4)})
    x = torch.randn(2, 5, 8)
    assert model["a"](x, need_weights=False)[1] is None
    with A.record_attention(model) as maps:
        out = model["a"](x, need_weights=False)[0]  # recorded although the caller did not ask
        model["b"](x, is_causal=True, need_weights=False)
    assert set(maps) == {"a", "b"} and maps["a"].shape == (2, 2, 5, 5) and maps["b"].shape == (2, 4, 5, 5)
    assert not maps["a"].requires_grad
    torch.testing.assert_close(maps["b"][..., 0, 1:], torch.zeros(2, 4, 4))  # causal
    torch.testing.assert_close(out, model["a"](x, need_weights=False)[0])
    assert model["a"].recorder is None and model["b"].recorder is None


@pytest.mark.parametrize("bias", [True, False])
def test_self_attention_fused_projection_equals_the_three_projections(bias):
    """One tensor for query, key and value takes the stacked-weights path; copies take q_proj, k_proj, v_proj."""
    torch.manual_seed(0)
    mha = A.MultiHeadAttention(32, 4, bias=bias)
    x = torch.randn(3, 7, 32, requires_grad=True)
    fused, _ = mha(x, x, x, is_causal=True, need_weights=False)
    fused.square().sum().backward()
    g_fused = [p.grad.clone() for p in mha.parameters()]
    x_grad = x.grad.clone()
    mha.zero_grad()
    x.grad = None
    separate, _ = mha(x, x.view_as(x), x.view_as(x), is_causal=True, need_weights=False)
    separate.square().sum().backward()
    torch.testing.assert_close(fused, separate, rtol=0, atol=1e-6)
    torch.testing.assert_close(x.grad, x_grad, rtol=1e-5, atol=1e-6)
    for a, p in zip(g_fused, mha.parameters()):
        torch.testing.assert_close(a, p.grad, rtol=1e-5, atol=1e-6)
