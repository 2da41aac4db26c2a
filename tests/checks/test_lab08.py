"""Lab 8's references (TWINS; test_every_lab.py runs every check with them) and its particular cases: the
messages the mutants do not reach. (The mistakes and the mutants are in test_mutants.py.)"""
import pytest
import torch

from labsupport.checks import lab08 as L
from labsupport.checks.core import CheckFailed
from labsupport.models import vit as ref

TWINS = {"patchify": ref.patchify, "unpatchify": ref.unpatchify,
         "add_cls_and_positions": L.reference_add_cls_and_positions, "vit_forward": L.reference_vit_forward,
         "cls_attention_map": ref.cls_attention_map}


def test_the_library_forward_is_refused_and_its_placement_of_dropout_accepted(capsys):
    """``return model(images)`` is not the exercise; the library's embedding dropout, written out, is right too."""
    with pytest.raises(CheckFailed, match="must assemble the model from its parts") as info:
        L.check_vit_forward(lambda model, images: model(images))
    assert "write its four steps" in info.value.message

    def with_embedding_dropout(model, images):
        return model.head(model.encoder(model.dropout(L._sequence(model, images)))[:, 0])

    L.check_vit_forward(with_embedding_dropout, seed=3)
    assert "✓ vit_forward" in capsys.readouterr().out


def test_a_forward_that_calls_an_unfinished_patchify_says_so():
    def patchify(images, patch_size):
        raise NotImplementedError()

    def vit_forward(model, images):
        return model.head(patchify(images, model.patch_size))

    with pytest.raises(CheckFailed, match="calls `patchify`, which is not implemented yet"):
        L.check_vit_forward(vit_forward)


def test_a_map_without_its_grid_is_a_shape_error():
    with pytest.raises(CheckFailed, match="wrong shape"):
        L.check_cls_attention_map(lambda w, g: w.mean(1)[:, 0, :].reshape(w.shape[0], -1))


def test_the_fixture_is_the_same_model_for_the_same_seed_and_leaves_the_rng_alone():
    state = torch.random.get_rng_state()
    a, b = L.small_vit(5), L.small_vit(5)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert not a.training and not torch.equal(a.cls_token, a.cls_position)
    c = L.small_vit(6)
    assert not torch.equal(a.cls_token, c.cls_token) and not torch.equal(a.patch_embed.weight, c.patch_embed.weight)


def test_library_forward_is_the_library_s_forward():
    plain = ref.ViT(image_size=(8, 12), patch_size=4, in_channels=3, num_classes=5, d_model=16, num_heads=2,
                    num_layers=1, dropout=0.2, factorized_positions=True)
    small = L.small_vit(3, image_size=(8, 12), patch_size=4, in_channels=3, num_classes=5, d_model=16, num_heads=2,
                        num_layers=1, dropout=0.2)
    plain.load_state_dict(small.state_dict())
    images = torch.randn(2, 3, 8, 12)
    for mode in (False, True):
        plain.train(mode), small.train(mode)
        torch.manual_seed(1)
        want = plain(images)
        torch.manual_seed(1)
        assert torch.equal(L.library_forward(small, images), want)


def test_accuracy_bar(capsys):
    L.check_test_accuracy(0.98)
    assert "✓ test accuracy" in capsys.readouterr().out
    with pytest.raises(CheckFailed, match="below the bar"):
        L.check_test_accuracy(0.95)
