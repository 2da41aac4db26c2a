"""labsupport.blocks pinned to PyTorch's own modules (weights copied across, dropout off); sublayer, LayerNorm's
formula, the activations, attention weights on request."""
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from labsupport.attention import causal_mask, padding_mask, record_attention, to_torch_mask
from labsupport.blocks import (
    ACTIVATIONS,
    Decoder,
    DecoderBlock,
    Encoder,
    EncoderBlock,
    FeedForward,
    LayerNorm,
    sublayer,
)

ATOL = 1e-5

# (B, L_target, L_source, d_model, heads, d_ff)
SHAPES = [(1, 1, 1, 4, 1, 8), (2, 5, 7, 16, 4, 32), (3, 9, 4, 24, 3, 40), (4, 6, 11, 32, 8, 64)]


@pytest.mark.parametrize("shape", [(5, 8), (2, 3, 16), (2, 3, 4, 33)])
@pytest.mark.parametrize("eps", [1e-5, 1e-2])
def test_layernorm_matches_torch(shape, eps):
    torch.manual_seed(0)
    D = shape[-1]
    ours, theirs = LayerNorm(D, eps=eps), nn.LayerNorm(D, eps=eps)
    with torch.no_grad():
        theirs.weight.normal_()
        theirs.bias.normal_()
    ours.load_state_dict(theirs.state_dict())  # same parameter names
    x = torch.randn(*shape) * 3 + 1
    torch.testing.assert_close(ours(x), theirs(x), atol=ATOL, rtol=0)
    # tiny variance, where eps matters (float64 so that only eps, not rounding, could make a difference)
    ours, theirs = ours.double(), theirs.double()
    x = 1 + 1e-3 * torch.randn(*shape, dtype=torch.float64)
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-9, rtol=0)
    torch.testing.assert_close(ours.formula(x), ours(x), atol=1e-12, rtol=0)  # Lab 4's line = the fused kernel
    assert not torch.allclose(ours(x), (x - x.mean(-1, keepdim=True)) / x.std(-1, unbiased=False, keepdim=True)
                              * ours.weight + ours.bias, atol=1e-3)


def test_layernorm_fresh_is_standardising():
    y = LayerNorm(10)(torch.randn(4, 10) * 5 + 2)
    torch.testing.assert_close(y.mean(-1), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(-1, unbiased=False), torch.ones(4), atol=1e-3, rtol=0)


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_feedforward(activation):
    torch.manual_seed(1)
    ff = FeedForward(8, 20, activation=activation)
    assert sum(p.numel() for p in ff.parameters()) == 2 * 8 * 20 + 20 + 8
    x = torch.randn(2, 5, 8)
    act = F.relu if activation == "relu" else F.gelu
    torch.testing.assert_close(ff(x), ff.linear2(act(ff.linear1(x))))
    # position-wise: position 3 alone gives the same answer
    torch.testing.assert_close(ff(x)[:, 3], ff(x[:, 3:4])[:, 0])
    with pytest.raises(ValueError):
        FeedForward(8, 20, activation="tanh")


def _torch_masks(B, Lq, Lk, kind, lengths):
    """Our masks (True = may attend) and torch's (attn_mask, key_padding_mask) for the same pattern."""
    ours, attn, kpm = None, None, None
    if kind in ("causal", "both"):
        c = causal_mask(Lq, Lk)
        ours, attn = c, to_torch_mask(c)
    if kind in ("padding", "both"):
        p = padding_mask(lengths, Lk)  # (B, 1, 1, Lk)
        ours = p if ours is None else ours & p
        kpm = to_torch_mask(p[:, 0, 0, :])  # (B, Lk), True = padding
    return ours, attn, kpm


def _lengths(B, L, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, L + 1, (B,), generator=g)


@pytest.mark.parametrize("norm_first,activation", list(itertools.product([False, True], ["relu", "gelu"])))
@pytest.mark.parametrize("mask_kind", ["none", "causal", "padding", "both"])
def test_encoder_block_matches_torch(norm_first, activation, mask_kind):
    for i, (B, L, _, D, H, dff) in enumerate(SHAPES):
        torch.manual_seed(100 + i)
        layer = nn.TransformerEncoderLayer(D, H, dff, dropout=0.0, activation=activation, batch_first=True,
                                           norm_first=norm_first).eval()
        block = EncoderBlock(d_model=D, num_heads=H, d_ff=dff, dropout=0.0, activation=activation,
                             norm_first=norm_first).eval()
        block.load_from_torch(layer)
        x = torch.randn(B, L, D)
        ours, attn, kpm = _torch_masks(B, L, L, mask_kind, _lengths(B, L, i))
        want = layer(x, src_mask=attn, src_key_padding_mask=kpm)
        got = block(x, ours)
        assert got.shape == (B, L, D)
        torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
        with record_attention(block) as maps:  # the reference attention, weights kept: the same output
            torch.testing.assert_close(block(x, ours), want, atol=ATOL, rtol=0)
        assert maps["self_attn"].shape == (B, H, L, L)
        torch.testing.assert_close(maps["self_attn"].sum(-1), torch.ones(B, H, L), atol=1e-5, rtol=0)


@pytest.mark.parametrize("norm_first,activation", list(itertools.product([False, True], ["relu", "gelu"])))
@pytest.mark.parametrize("mask_kind", ["none", "causal", "padding", "both"])
def test_decoder_block_matches_torch(norm_first, activation, mask_kind):
    for i, (B, Lt, Ls, D, H, dff) in enumerate(SHAPES):
        torch.manual_seed(200 + i)
        layer = nn.TransformerDecoderLayer(D, H, dff, dropout=0.0, activation=activation, batch_first=True,
                                           norm_first=norm_first).eval()
        block = DecoderBlock(d_model=D, num_heads=H, d_ff=dff, dropout=0.0, activation=activation,
                             norm_first=norm_first).eval()
        block.load_from_torch(layer)
        x, memory = torch.randn(B, Lt, D), torch.randn(B, Ls, D)
        # self-attention: causal and/or target padding; cross-attention: source padding (when masks are on)
        self_ours, self_attn, self_kpm = _torch_masks(B, Lt, Lt, mask_kind, _lengths(B, Lt, i))
        mem_kind = "padding" if mask_kind != "none" else "none"
        mem_ours, _, mem_kpm = _torch_masks(B, Lt, Ls, mem_kind, _lengths(B, Ls, i + 7))
        want = layer(x, memory, tgt_mask=self_attn, tgt_key_padding_mask=self_kpm, memory_key_padding_mask=mem_kpm)
        got = block(x, memory, self_mask=self_ours, memory_mask=mem_ours)
        assert got.shape == (B, Lt, D)
        torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
        with record_attention(block) as maps:
            torch.testing.assert_close(block(x, memory, self_ours, mem_ours), want, atol=ATOL, rtol=0)
        assert maps["self_attn"].shape == (B, H, Lt, Lt)
        assert maps["cross_attn"].shape == (B, H, Lt, Ls)


def test_decoder_cross_attention_mask_as_matrix():
    """A full (Lt, Ls) memory mask (not just padding) also matches torch's memory_mask."""
    torch.manual_seed(3)
    B, Lt, Ls, D, H = 2, 4, 6, 8, 2
    layer = nn.TransformerDecoderLayer(D, H, 16, dropout=0.0, batch_first=True).eval()
    block = DecoderBlock(d_model=D, num_heads=H, d_ff=16, dropout=0.0).load_from_torch(layer).eval()
    m = torch.rand(Lt, Ls) > 0.4
    m[:, 0] = True  # no fully blocked row (torch would give NaN, we give zeros)
    x, mem = torch.randn(B, Lt, D), torch.randn(B, Ls, D)
    torch.testing.assert_close(block(x, mem, memory_mask=m), layer(x, mem, memory_mask=to_torch_mask(m)), atol=ATOL,
                               rtol=0)


def test_causal_encoder_block_ignores_the_future():
    torch.manual_seed(4)
    block = EncoderBlock(d_model=16, num_heads=4, d_ff=32, dropout=0.0).eval()
    x = torch.randn(1, 6, 16)
    y = x.clone()
    y[0, 4:] = torch.randn(2, 16)
    m = causal_mask(6)
    torch.testing.assert_close(block(x, m)[:, :4], block(y, m)[:, :4])
    torch.testing.assert_close(block(x, is_causal=True), block(x, m), atol=1e-6, rtol=0)
    assert not torch.allclose(block(x)[:, :4], block(y)[:, :4])


def test_dropout_active_only_in_training():
    torch.manual_seed(5)
    block = EncoderBlock(d_model=16, num_heads=4, d_ff=32, dropout=0.5)
    x = torch.randn(2, 5, 16)
    block.train()
    assert not torch.allclose(block(x), block(x))
    block.eval()
    torch.testing.assert_close(block(x), block(x))


def test_load_from_torch_rejects_other_settings():
    layer = nn.TransformerEncoderLayer(16, 4, 32, batch_first=True, norm_first=True)
    with pytest.raises(ValueError, match="norm_first"):
        EncoderBlock(d_model=16, num_heads=4, d_ff=32, norm_first=False).load_from_torch(layer)
    with pytest.raises(ValueError, match="activation"):
        EncoderBlock(d_model=16, num_heads=4, d_ff=32, norm_first=True, activation="gelu").load_from_torch(layer)
    with pytest.raises(ValueError, match="batch_first"):
        EncoderBlock(d_model=16, num_heads=4, d_ff=32).load_from_torch(nn.TransformerEncoderLayer(16, 4, 32))
    with pytest.raises(ValueError, match="d_ff"):
        DecoderBlock(d_model=16, num_heads=4, d_ff=64).load_from_torch(
            nn.TransformerDecoderLayer(16, 4, 32, batch_first=True))
    with pytest.raises(TypeError):
        EncoderBlock(16, 4, 32)  # keyword-only


@pytest.mark.parametrize("norm_first", [False, True])
def test_stacks_match_torch(norm_first):
    torch.manual_seed(6)
    B, Lt, Ls, D, H, dff, N = 2, 5, 7, 16, 4, 32, 3
    tenc = nn.TransformerEncoder(nn.TransformerEncoderLayer(D, H, dff, 0.0, batch_first=True, norm_first=norm_first),
                                 N, norm=nn.LayerNorm(D), enable_nested_tensor=False).eval()
    tdec = nn.TransformerDecoder(nn.TransformerDecoderLayer(D, H, dff, 0.0, batch_first=True, norm_first=norm_first),
                                 N, norm=nn.LayerNorm(D)).eval()
    with torch.no_grad():  # make the layers differ from each other (TransformerEncoder deep-copies one layer)
        for p in itertools.chain(tenc.parameters(), tdec.parameters()):
            p.add_(0.1 * torch.randn_like(p))
    sizes = dict(num_layers=N, d_model=D, num_heads=H, d_ff=dff, dropout=0.0, norm_first=norm_first, final_norm=True)
    enc = Encoder(**sizes).load_from_torch(tenc).eval()
    dec = Decoder(**sizes).load_from_torch(tdec).eval()
    src, tgt = torch.randn(B, Ls, D), torch.randn(B, Lt, D)
    lengths = torch.tensor([Ls, 3])
    src_pad = padding_mask(lengths, Ls)
    mem_t = tenc(src, src_key_padding_mask=to_torch_mask(src_pad[:, 0, 0]))
    mem = enc(src, src_pad)
    torch.testing.assert_close(mem, mem_t, atol=ATOL, rtol=0)
    want = tdec(tgt, mem_t, tgt_mask=to_torch_mask(causal_mask(Lt)),
                memory_key_padding_mask=to_torch_mask(src_pad[:, 0, 0]))
    torch.testing.assert_close(dec(tgt, mem, causal_mask(Lt), src_pad), want, atol=ATOL, rtol=0)


def test_stack_final_norm_default():
    sizes = dict(num_layers=2, d_model=8, num_heads=2, d_ff=16)
    assert Encoder(**sizes, norm_first=True).norm is not None
    assert Encoder(**sizes, norm_first=False).norm is None
    assert Decoder(**sizes, norm_first=True).norm is not None
    assert Decoder(**sizes, norm_first=False, final_norm=True).norm is not None


def test_attention_weights_only_on_request_detached_and_model_copyable():
    """Blocks keep no weights; record_attention gives them detached (no autograd graph), so a model can be
    deep-copied right after a training forward pass, and the weights still sum to one."""
    import copy

    torch.manual_seed(0)
    sizes = dict(d_model=16, num_heads=4, d_ff=32, dropout=0.0)
    enc, dec = EncoderBlock(**sizes), DecoderBlock(**sizes)
    x, mem = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    with record_attention(enc) as enc_maps, record_attention(dec) as dec_maps:
        loss = enc(x).sum() + dec(x, mem).sum()
    assert set(enc_maps) == {"self_attn"} and set(dec_maps) == {"self_attn", "cross_attn"}
    for w in (*enc_maps.values(), *dec_maps.values()):
        assert not w.requires_grad and w.grad_fn is None
        torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1]))
    assert enc.self_attn.recorder is None  # nothing is stored outside the block
    copy.deepcopy(enc), copy.deepcopy(dec)
    loss.backward()  # the graph itself is intact
    assert enc.self_attn.q_proj.weight.grad is not None


@pytest.mark.parametrize("norm_first", [False, True])
def test_sublayer_is_labs_residual(norm_first):
    x = torch.randn(2, 3, 4)
    norm, fn = nn.LayerNorm(4), nn.Linear(4, 4)
    want = x + fn(norm(x)) if norm_first else norm(x + fn(x))
    torch.testing.assert_close(sublayer(x, fn, norm, nn.Identity(), norm_first), want)
    zero = lambda t: torch.zeros_like(t)
    assert torch.equal(sublayer(x, fn, nn.Identity(), zero, norm_first=False), x)  # dropout dropped everything


def test_activations_gelu_tanh_is_gpt2s():
    x = torch.linspace(-4, 4, 101, dtype=torch.float64)
    tanh_form = 0.5 * x * (1 + torch.tanh((2 / torch.pi) ** 0.5 * (x + 0.044715 * x ** 3)))
    torch.testing.assert_close(ACTIVATIONS["gelu_tanh"](x), tanh_form, atol=1e-12, rtol=0)
    assert 1e-4 < (ACTIVATIONS["gelu"](x) - tanh_form).abs().max() < 1e-3  # why GPT-2 needs its own
    torch.testing.assert_close(FeedForward(4, 8, activation="gelu_tanh").activation(x), tanh_form)
