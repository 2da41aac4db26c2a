"""The self-checks of Lab 8 (ViT): the reference passes, each typical mistake is caught with its own message."""
import pytest
import torch

from checkhelpers import fails_with, not_implemented
from labsupport.checks import CheckFailed
from labsupport.checks import lab08 as C
from labsupport.models import vit as ref


# ------------------------------------------------------------------------------------------------ patchify
def test_patchify_reference_passes(capsys):
    C.check_patchify(ref.patchify)
    assert "✓ patchify" in capsys.readouterr().out


def _six(x, p):
    B, Ch, H, W = x.shape
    return x.reshape(B, Ch, H // p, p, W // p, p), (B, Ch, H, W)


def patchify_plain_reshape(x, p):
    B, Ch, H, W = x.shape
    return x.reshape(B, (H // p) * (W // p), Ch * p * p)


def patchify_column_major(x, p):
    s, (B, Ch, H, W) = _six(x, p)
    return s.permute(0, 4, 2, 1, 3, 5).reshape(B, -1, Ch * p * p)


def patchify_pixels_transposed(x, p):
    s, (B, Ch, H, W) = _six(x, p)
    return s.permute(0, 2, 4, 1, 5, 3).reshape(B, -1, Ch * p * p)


def patchify_channel_last(x, p):
    s, (B, Ch, H, W) = _six(x, p)
    return s.permute(0, 2, 4, 3, 5, 1).reshape(B, -1, Ch * p * p)


@pytest.mark.parametrize("fn,fragment", [
    (patchify_plain_reshape, "plain reshape"),
    (patchify_column_major, "column by column"),
    (patchify_pixels_transposed, "inside each patch are transposed"),
    (patchify_channel_last, "channel-last"),
])
def test_patchify_mistakes(fn, fragment):
    fails_with(C.check_patchify, fn, fragment)


def test_not_implemented():
    for check in (C.check_patchify, C.check_unpatchify, C.check_add_cls_and_positions, C.check_vit_forward,
                  C.check_cls_attention_map):
        fails_with(check, not_implemented, "not implemented yet")


# ------------------------------------------------------------------------------------------------ unpatchify
def test_unpatchify_reference_passes(capsys):
    C.check_unpatchify(ref.unpatchify)
    assert "✓ unpatchify" in capsys.readouterr().out


def unpatchify_plain(patches, p, size, ch=1):
    H, W = (size, size) if isinstance(size, int) else size
    return patches.reshape(patches.shape[0], ch, H, W)


def unpatchify_column_major(patches, p, size, ch=1):
    H, W = (size, size) if isinstance(size, int) else size
    B = patches.shape[0]
    return patches.reshape(B, W // p, H // p, ch, p, p).permute(0, 3, 2, 4, 1, 5).reshape(B, ch, H, W)


def unpatchify_channel_last(patches, p, size, ch=1):
    H, W = (size, size) if isinstance(size, int) else size
    B = patches.shape[0]
    return patches.reshape(B, H // p, W // p, p, p, ch).permute(0, 5, 1, 3, 2, 4).reshape(B, ch, H, W)


@pytest.mark.parametrize("fn,fragment", [
    (unpatchify_plain, "plain reshape does not undo"),
    (unpatchify_column_major, "column by column"),
    (unpatchify_channel_last, "channel-last"),
])
def test_unpatchify_mistakes(fn, fragment):
    fails_with(C.check_unpatchify, fn, fragment)


# ------------------------------------------------------------------------------------------------ CLS + positions
def cls_ref(x, cls, pos):
    return torch.cat([cls.expand(x.shape[0], -1, -1), x], 1) + pos


def test_add_cls_reference_passes(capsys):
    C.check_add_cls_and_positions(cls_ref)
    assert "✓ add_cls_and_positions" in capsys.readouterr().out


@pytest.mark.parametrize("fn,fragment", [
    (lambda x, c, p: torch.cat([x, c.expand(x.shape[0], -1, -1)], 1) + p, "appended at the end"),
    (lambda x, c, p: torch.cat([c.expand(x.shape[0], -1, -1), x], 1), "positions are not added"),
    (lambda x, c, p: torch.cat([c.expand(x.shape[0], -1, -1), x + p[1:]], 1), "did not get its position"),
    (lambda x, c, p: torch.cat([c.expand(x.shape[0], -1, -1), x + p[:-1]], 1), "shifted by one"),
    (lambda x, c, p: x + c, "must be prepended"),
])
def test_add_cls_mistakes(fn, fragment):
    fails_with(C.check_add_cls_and_positions, fn, fragment)


# ------------------------------------------------------------------------------------------------ forward
def forward_ref(model, images):
    x = model.patch_embed(ref.patchify(images, model.patch_size))
    pos = torch.cat([model.cls_position[0], model.positions.table()])
    return model.head(model.encoder(cls_ref(x, model.cls_token, pos))[:, 0])


def test_vit_forward_reference_passes(capsys):
    C.check_vit_forward(forward_ref)
    C.check_vit_forward(lambda m, x: m(x))
    assert "✓ vit_forward" in capsys.readouterr().out


def forward_mean(model, images):
    x = model.patch_embed(ref.patchify(images, model.patch_size))
    pos = torch.cat([model.cls_position[0], model.positions.table()])
    return model.head(model.encoder(cls_ref(x, model.cls_token, pos)).mean(1))


def forward_last(model, images):
    x = model.patch_embed(ref.patchify(images, model.patch_size))
    pos = torch.cat([model.cls_position[0], model.positions.table()])
    return model.head(model.encoder(cls_ref(x, model.cls_token, pos))[:, -1])


def forward_no_positions(model, images):
    x = model.patch_embed(ref.patchify(images, model.patch_size))
    return model.head(model.encoder(cls_ref(x, model.cls_token, 0.0))[:, 0])


def forward_no_encoder(model, images):
    x = model.patch_embed(ref.patchify(images, model.patch_size))
    pos = torch.cat([model.cls_position[0], model.positions.table()])
    return model.head(cls_ref(x, model.cls_token, pos)[:, 0])


@pytest.mark.parametrize("fn,fragment", [
    (forward_mean, "mean of all tokens"),
    (forward_last, "last token"),
    (forward_no_positions, "positions are not added"),
    (forward_no_encoder, "encoder is skipped"),
])
def test_vit_forward_mistakes(fn, fragment):
    fails_with(C.check_vit_forward, fn, fragment)


# ------------------------------------------------------------------------------------------------ attention map
def test_cls_attention_map_reference_passes(capsys):
    C.check_cls_attention_map(ref.cls_attention_map)
    assert "✓ cls_attention_map" in capsys.readouterr().out


def _grid(grid):
    return (grid, grid) if isinstance(grid, int) else grid


@pytest.mark.parametrize("fn,fragment", [
    (lambda w, g: w.mean(1)[:, 1:, 0].reshape(w.shape[0], *_grid(g)), "[CLS] column"),
    (lambda w, g: w.amax(1)[:, 0, 1:].reshape(w.shape[0], *_grid(g)), "maximum over heads"),
    (lambda w, g: w.sum(1)[:, 0, 1:].reshape(w.shape[0], *_grid(g)), "sums over heads"),
    (lambda w, g: w.mean(1)[:, 0, 1:].reshape(w.shape[0], *_grid(g)[::-1]).transpose(1, 2), "grid is transposed"),
    (lambda w, g: w[:, :, 0, 1:].reshape(w.shape[0], w.shape[1], *_grid(g)), "heads axis"),
    (lambda w, g: w.mean(1)[:, 0, :].reshape(w.shape[0], -1), "wrong shape"),
])
def test_cls_attention_map_mistakes(fn, fragment):
    fails_with(C.check_cls_attention_map, fn, fragment)


def test_accuracy_bar():
    C.check_test_accuracy(0.98)
    with pytest.raises(CheckFailed, match="below the bar"):
        C.check_test_accuracy(0.95)
