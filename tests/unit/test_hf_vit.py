"""ViT.from_hf against Hugging Face's ViT (random weights from a config, no download)."""
import pytest
import torch

transformers = pytest.importorskip("transformers")

from labsupport.models import CheckpointError, ViT, count_parameters  # noqa: E402


def small_config(**kw):
    return transformers.ViTConfig(image_size=8, patch_size=2, num_channels=3, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=4, intermediate_size=64, **kw)


def images(dtype):
    return torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1)).to(dtype)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_classifier_logits_equal(dtype, tol):
    torch.manual_seed(0)
    hf = transformers.ViTForImageClassification(small_config(num_labels=5)).to(dtype).eval()
    ours = ViT.from_hf(hf)
    assert ours.config.layer_norm_eps == 1e-12 and ours.num_classes == 5 and ours.fresh_parts == []
    x = images(dtype)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), hf(x).logits, atol=tol, rtol=0)


def test_vit_model_hidden_states_and_attention_maps():
    torch.manual_seed(0)
    hf = transformers.ViTModel(small_config()).double().eval()
    ours = ViT.from_hf(hf.state_dict(), config=hf.config)
    assert ours.fresh_parts == ["head"]
    x = images(torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(ours.encode(x), hf(x).last_hidden_state, atol=1e-10, rtol=0)
    maps = ours.attention_maps(x)
    assert len(maps) == 2 and maps[0].shape == (2, 4, 17, 17)
    torch.testing.assert_close(maps[1].sum(-1), torch.ones(2, 4, 17, dtype=torch.float64))


def test_bad_checkpoints():
    hf = transformers.ViTModel(small_config())
    state = hf.state_dict()
    name = next(k for k in state if k.endswith("cls_token"))
    with pytest.raises(CheckpointError, match=r"cls_token: checkpoint \(1, 1, 16\)"):
        ViT.from_hf({**state, name: state[name][..., :16]}, config=hf.config)
    with pytest.raises(CheckpointError, match="factorized_positions"):
        ViT.from_hf(state, config=hf.config, factorized_positions=True)


def test_vit_b16_count_equals_transformers():
    with torch.device("meta"):
        theirs = transformers.ViTForImageClassification(transformers.ViTConfig(num_labels=1000))
        ours = ViT.vit_b16()
    # ViTForImageClassification has no pooler: its count is the paper's 86,567,656, as ours
    assert count_parameters(ours) == count_parameters(theirs) == 86_567_656
