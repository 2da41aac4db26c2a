"""labsupport.models.vit: patch order, shapes, the B/16 count, equality with a strided Conv2d and PyTorch's
encoder layers (copied weights), attention maps on request, rollout."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from labsupport.models import count_parameters
from labsupport.models.vit import ViT, attention_rollout, cls_attention_map, patchify, unpatchify

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def test_patchify_round_trip_and_order():
    x = torch.randn(2, 3, 8, 12)
    p = patchify(x, 4)
    assert p.shape == (2, 6, 48)
    assert torch.equal(unpatchify(p, 4, (8, 12), 3), x)
    # the same order as F.unfold (row-major patches, each flattened channel-first): what a strided conv sees
    assert torch.equal(p, F.unfold(x, 4, stride=4).transpose(1, 2))
    # patch 1 is the second patch of the top row
    assert torch.equal(p[0, 1].view(3, 4, 4), x[0, :, 0:4, 4:8])
    with pytest.raises(ValueError):
        patchify(torch.randn(1, 1, 7, 8), 2)


def test_vit_shapes_and_b16_count():
    m = ViT(image_size=8, patch_size=2, in_channels=1, num_classes=10, d_model=32, num_heads=4, num_layers=2).eval()
    x = torch.randn(4, 1, 8, 8)
    assert m.embed(x).shape == (4, 17, 32)
    assert m(x).shape == (4, 10)
    maps = m.attention_maps(x)
    assert len(maps) == 2 and maps[0].shape == (4, 4, 17, 17)
    torch.testing.assert_close(maps[1].sum(-1), torch.ones(4, 4, 17))
    with torch.device("meta"):
        assert count_parameters(ViT.vit_b16()) == 86_567_656
        assert count_parameters(ViT.vit_b16(factorized_positions=True)) == 86_567_656 - (196 - 28) * 768


def test_vit_equals_conv_and_torch_encoder():
    """Patch embedding = Conv2d(stride p) with the same weights; blocks = nn.TransformerEncoder (pre-norm)."""
    torch.manual_seed(0)
    m = ViT(image_size=8, patch_size=4, in_channels=3, num_classes=5, d_model=32, num_heads=4, num_layers=2, d_ff=64,
            dropout=0.0).eval()
    conv = nn.Conv2d(3, 32, 4, stride=4)
    layers = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, activation="gelu", batch_first=True, norm_first=True,
                                   layer_norm_eps=1e-6), 2, norm=nn.LayerNorm(32, eps=1e-6),
        enable_nested_tensor=False).eval()
    with torch.no_grad():
        conv.weight.copy_(m.patch_embed.weight.view(32, 3, 4, 4))
        conv.bias.copy_(m.patch_embed.bias)
        for ours, theirs in zip(m.encoder.layers, layers.layers):
            a = ours.self_attn
            theirs.self_attn.in_proj_weight.copy_(torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]))
            theirs.self_attn.in_proj_bias.copy_(torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]))
            theirs.self_attn.out_proj.load_state_dict(a.out_proj.state_dict())
            for name in ("linear1", "linear2"):
                getattr(theirs, name).load_state_dict(getattr(ours.ff, name).state_dict())
            theirs.norm1.load_state_dict(ours.norm1.state_dict())
            theirs.norm2.load_state_dict(ours.norm2.state_dict())
        layers.norm.load_state_dict(m.encoder.norm.state_dict())
    x = torch.randn(3, 3, 8, 8)
    tokens = conv(x).flatten(2).transpose(1, 2)  # (B, 4, 32), row-major
    pos = torch.cat([m.cls_position[0], m.positions.table()])
    seq = torch.cat([m.cls_token.expand(3, 1, 32), tokens], 1) + pos
    want = m.head(layers(seq)[:, 0])
    torch.testing.assert_close(m(x), want, atol=1e-5, rtol=1e-5)


def test_vit_positions_matter():
    """Without positions a ViT is blind to where patches are: swapping two patches would not change its output."""
    m = ViT(image_size=8, patch_size=4, d_model=32, num_heads=4, num_layers=2, dropout=0.0).eval()
    x = torch.randn(1, 1, 8, 8)
    swapped = x.clone()
    swapped[..., :4, :4], swapped[..., :4, 4:] = x[..., :4, 4:], x[..., :4, :4]
    assert not torch.allclose(m(x), m(swapped), atol=1e-5)
    with torch.no_grad():
        m.cls_position.zero_()
        for p in m.positions.parameters():
            p.zero_()
    torch.testing.assert_close(m(x), m(swapped), atol=1e-5, rtol=1e-5)


def test_attention_maps_helpers():
    w = torch.rand(2, 3, 5, 5).softmax(-1)
    cam = cls_attention_map(w, 2)
    assert cam.shape == (2, 2, 2)
    torch.testing.assert_close(cam.reshape(2, 4), w.mean(1)[:, 0, 1:])
    r = attention_rollout([w, w])
    assert r.shape == (2, 5, 5)
    torch.testing.assert_close(r.sum(-1), torch.ones(2, 5))
    one = attention_rollout([w], residual=0.0)
    torch.testing.assert_close(one, w.mean(1))
