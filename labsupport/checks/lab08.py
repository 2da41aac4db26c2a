"""Self-checks of Lab 8, the Vision Transformer: patches, the [CLS] token and positions, the forward pass, attention.

Each check runs the student's code on inputs drawn from ``seed`` (the notebook uses the default, grading uses
others), compares it with the reference twin in :mod:`labsupport.models.vit` and recognises the typical mistakes
of :data:`MISTAKES` (each one the reference *with that mistake*, plus what to tell the student):

* patchify: a plain reshape (strips of a pixel row instead of square patches), patches numbered column by column,
  the pixels of each patch transposed, each patch flattened channel-last ``(p, p, C)``, ``F.unfold`` without the
  transpose, a fixed patch size;
* unpatchify: the same mistakes in reverse, seen through the round trip ``unpatchify(patchify(x)) == x``, and the
  height and width swapped;
* add_cls_and_positions: the [CLS] vector appended at the end instead of prepended, the positions not added, the
  [CLS] slot left without its position (or only [CLS] given one), the table shifted by one, the [CLS] vector
  added to every patch (an output with N tokens, not 1 + N);
* vit_forward: the head applied to the mean of the tokens, the last or the second token instead of [CLS], the
  positions, the [CLS] token, its position or the encoder (or its final LayerNorm) skipped, the [CLS] token used
  as its own position, dropout added where the model has none; on models with other patch sizes, channels and
  non-square images, in training mode under a fixed seed (dropout placement), and with gradients reaching every
  parameter (no ``torch.no_grad()`` or ``.detach()`` inside);
* cls_attention_map: the [CLS] *column* (what attends to [CLS]) taken instead of its *row*, the [CLS] key kept or
  the last patch dropped, one head only, the heads summed or their maximum taken (or kept), the grid transposed,
  the weights renormalised, float32 for float64 weights.

The checks call the student's code only through :func:`labsupport.checks.core.call` (plain data in and out), so
they run unchanged in the notebook and, through handles, in the grader. A model the student's ``vit_forward``
receives is built on the student's side with :func:`labsupport.checks.core.build` from :func:`small_vit` and a
seed; the check builds the same model for itself (bit-identical weights) to compute the reference. That model
(:class:`SmallViT`) refuses to run labsupport's own forward: ``return model(images)`` is not the exercise.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from labsupport.checks.core import (
    CheckFailed,
    Mistake,
    as_handle,
    build,
    call,
    call_with,
    candidates,
    compare,
    describe_value,
    error_hints,
    expect,
    passed,
    probe,
)
from labsupport.device import torch_threads
from labsupport.models import vit as ref

__all__ = ["MISTAKES", "CHECKS", "check_patchify", "check_unpatchify", "check_add_cls_and_positions",
           "check_vit_forward", "check_cls_attention_map", "check_test_accuracy", "small_vit", "SmallViT",
           "ForwardOf", "reference_vit_forward", "reference_add_cls_and_positions", "library_forward"]


def _gen(seed: int, case: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1009 + case)


def _randn(g: torch.Generator, *shape, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=g, dtype=dtype)


def _hw(image_size) -> tuple[int, int]:
    return (image_size, image_size) if isinstance(image_size, int) else (int(image_size[0]), int(image_size[1]))


# ------------------------------------------------------------------------------------------------------------
# fixtures built on the student's side (labsupport.checks.core.build) and, with the same seed, here
# ------------------------------------------------------------------------------------------------------------
_OWN_FORWARD = ("`vit_forward` must assemble the model from its parts (model.patch_embed, your patchify and "
                "add_cls_and_positions, model.encoder, model.head): the checks' model does not run labsupport's own "
                "{}.")


class SmallViT(ref.ViT):
    """labsupport's ViT whose own ``forward`` (``model(images)``), ``encode`` and ``embed`` refuse to run: they are
    what the student's ``vit_forward`` writes from the parts. (The lab's training loop uses the library's forward;
    the checks never call these on the student's side.)"""

    def forward(self, images):
        raise RuntimeError(_OWN_FORWARD.format("forward, model(images)"))

    def encode(self, images):
        raise RuntimeError(_OWN_FORWARD.format("model.encode"))

    def embed(self, images):
        raise RuntimeError(_OWN_FORWARD.format("model.embed"))


def library_forward(model, images):
    """labsupport's ViT forward (with its embedding dropout), also for a :class:`SmallViT`: ``ViT.forward`` is
    ``head(encoder(embed(images))[:, 0])`` (pinned by tests/checks/test_lab08.py)."""
    return model.head(model.encoder(ref.ViT.embed(model, images))[:, 0])


def small_vit(seed: int, *, image_size=8, patch_size: int = 2, in_channels: int = 1, num_classes: int = 10,
              d_model: int = 32, num_heads: int = 4, num_layers: int = 2, dropout: float = 0.0,
              factorized_positions: bool = True) -> SmallViT:
    """A small :class:`SmallViT` in eval mode whose weights depend only on ``seed``, with visible, distinct [CLS],
    [CLS]-position and patch-position vectors (the library starts them near zero)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SmallViT(image_size=image_size, patch_size=patch_size, in_channels=in_channels,
                        num_classes=num_classes, d_model=d_model, num_heads=num_heads, num_layers=num_layers,
                        dropout=dropout, factorized_positions=factorized_positions)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in (model.cls_token, model.cls_position, *model.positions.parameters()):
            p.copy_(torch.randn(p.shape, generator=g))
    return model.eval()


class ForwardOf(nn.Module):
    """``fn(model, *inputs)`` as the forward of a module holding ``model``: lets
    ``probe(..., "gradients", ...)`` back-propagate through the student's ``vit_forward``."""

    def __init__(self, fn, model: nn.Module):
        super().__init__()
        self.fn, self.model = fn, model

    def forward(self, *inputs):
        return self.fn(self.model, *inputs)


# ------------------------------------------------------------------------------------------------------------
# the references of the exercises (trusted code) and the typical mistakes, each as the reference with it
# ------------------------------------------------------------------------------------------------------------
def _six(x: torch.Tensor, p: int) -> torch.Tensor:
    B, C, H, W = x.shape
    return x.reshape(B, C, H // p, p, W // p, p)          # (B, C, grid_h, p, grid_w, p)


def _flat(t: torch.Tensor, x: torch.Tensor, p: int) -> torch.Tensor:
    B, C, H, W = x.shape
    return t.reshape(B, (H // p) * (W // p), C * p * p)


def _unsix(patches: torch.Tensor, p: int, image_size, channels: int) -> tuple:
    H, W = _hw(image_size)
    return patches.reshape(patches.shape[0], H // p, W // p, channels, p, p), (patches.shape[0], channels, H, W)


def _cls_expand(cls: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return cls.expand(x.shape[0], -1, -1)


def reference_add_cls_and_positions(x, cls_token, positions):
    return torch.cat([_cls_expand(cls_token, x), x], dim=1) + positions


def _position_table(model, first=None) -> torch.Tensor:
    return torch.cat([model.cls_position[0] if first is None else first, model.positions.table()])


def _patch_vectors(model, images, p=None) -> torch.Tensor:
    return model.patch_embed(ref.patchify(images, model.patch_size if p is None else p))


def _sequence(model, images, table=None) -> torch.Tensor:
    x = _patch_vectors(model, images)
    seq = torch.cat([_cls_expand(model.cls_token, x), x], dim=1)
    return seq if table is False else seq + (_position_table(model) if table is None else table)


def reference_vit_forward(model, images):
    """The exercise's forward: labsupport's ViT without its embedding dropout (the identity in eval mode)."""
    return model.head(model.encoder(_sequence(model, images))[:, 0])


def _vit_no_final_norm(model, images):
    h = _sequence(model, images)
    for layer in model.encoder.layers:
        h = layer(h)
    return model.head(h[:, 0])


def _vit_no_cls(model, images):
    return model.head(model.encoder(_patch_vectors(model, images) + model.positions.table()).mean(1))


def _cls_map_parts(w, grid):
    gh, gw = _hw(grid)
    return w.shape[0], gh, gw


MISTAKES: dict[str, list[Mistake]] = {
    "patchify": [
        Mistake("plain_reshape", "A plain reshape takes C*p*p consecutive values, i.e. strips of a pixel row, not "
                                 "square patches. Split H into (H/p, p) and W into (W/p, p), move the two grid axes "
                                 "to the front with permute, then flatten.",
                lambda x, p: _flat(x, x, p)),
        Mistake("column_major", "The patches are numbered column by column; number them row by row (index = row * "
                                "grid_w + col), as you read a page.",
                lambda x, p: _flat(_six(x, p).permute(0, 4, 2, 1, 3, 5), x, p)),
        Mistake("pixels_transposed", "The pixels inside each patch are transposed: keep the patch's own rows before "
                                     "its columns.",
                lambda x, p: _flat(_six(x, p).permute(0, 2, 4, 1, 5, 3), x, p)),
        Mistake("channel_last", "Each patch is flattened channel-last (p, p, C); flatten it channel-first (C, p, p), "
                                "the layout of a Conv2d kernel.",
                lambda x, p: _flat(_six(x, p).permute(0, 2, 4, 3, 5, 1), x, p)),
        Mistake("height_width_swapped", "Height and width are swapped: split H = images.shape[2] into (H // p, p) "
                                        "and W = images.shape[3] into (W // p, p).",
                lambda x, p: _flat(x.reshape(x.shape[0], x.shape[1], x.shape[3] // p, p, x.shape[2] // p, p)
                                   .permute(0, 2, 4, 1, 3, 5), x, p)),
        Mistake("unfold_not_transposed", "F.unfold returns (B, C*p*p, N), one column per patch: transpose its last "
                                         "two axes to get (B, N, C*p*p).",
                lambda x, p: F.unfold(x, p, stride=p)),
        Mistake("patch_size_fixed", "It always cuts 2x2 patches: use the patch_size argument.",
                lambda x, p: ref.patchify(x, 2)),
    ],
    "unpatchify": [
        Mistake("plain_reshape", "A plain reshape does not undo patchify: reshape to (B, grid_h, grid_w, C, p, p), "
                                 "permute back to (B, C, grid_h, p, grid_w, p), then reshape to (B, C, H, W).",
                lambda t, p, size, ch=1: t.reshape(_unsix(t, p, size, ch)[1])),
        Mistake("column_major", "The patches are placed column by column; patch index n sits at row n // grid_w, "
                                "column n % grid_w.",
                lambda t, p, size, ch=1: t.reshape(t.shape[0], _hw(size)[1] // p, _hw(size)[0] // p, ch, p, p)
                .permute(0, 3, 2, 4, 1, 5).reshape(_unsix(t, p, size, ch)[1])),
        Mistake("grid_axes_swapped", "The grid axes come out swapped: permute back to (B, C, grid_h, p, grid_w, p), "
                                     "i.e. permute(0, 3, 1, 4, 2, 5), before the last reshape.",
                lambda t, p, size, ch=1: _unsix(t, p, size, ch)[0].permute(0, 3, 2, 4, 1, 5)
                .reshape(_unsix(t, p, size, ch)[1])),
        Mistake("patch_size_fixed", "It always reads 2x2 patches: use the patch_size argument.",
                lambda t, p, size, ch=1: ref.unpatchify(t.reshape(t.shape[0], -1, ch * 4), 2, size, ch)),
        Mistake("pixels_transposed", "The pixels inside each patch come out transposed: put the patch's rows before "
                                     "its columns.",
                lambda t, p, size, ch=1: _unsix(t, p, size, ch)[0].permute(0, 3, 1, 5, 2, 4)
                .reshape(_unsix(t, p, size, ch)[1])),
        Mistake("channel_last", "Each patch is read as channel-last (p, p, C); patchify flattens it channel-first "
                                "(C, p, p).",
                lambda t, p, size, ch=1: t.reshape(t.shape[0], _hw(size)[0] // p, _hw(size)[1] // p, p, p, ch)
                .permute(0, 5, 1, 3, 2, 4).reshape(_unsix(t, p, size, ch)[1])),
        Mistake("height_width_swapped", "Height and width are swapped: image_size is (H, W), height first.",
                lambda t, p, size, ch=1: ref.unpatchify(t, p, _hw(size)[::-1], ch)),
    ],
    "add_cls_and_positions": [
        Mistake("cls_last", "The [CLS] vector is appended at the end; it goes first (position 0), where the head "
                            "will read it.",
                lambda x, c, pos: torch.cat([x, _cls_expand(c, x)], 1) + pos),
        Mistake("cls_last_rotated", "The [CLS] vector is at the end; prepend it (position 0).",
                lambda x, c, pos: torch.cat([x, _cls_expand(c, x)], 1) + torch.cat([pos[1:], pos[:1]])),
        Mistake("no_positions", "The positions are not added: without them the model cannot tell where a patch was.",
                lambda x, c, pos: torch.cat([_cls_expand(c, x), x], 1)),
        Mistake("cls_without_position", "The [CLS] slot did not get its position vector (positions[0]); add the "
                                        "whole table after prepending.",
                lambda x, c, pos: torch.cat([_cls_expand(c, x), x + pos[1:]], 1)),
        Mistake("positions_shifted", "The patches got the position table shifted by one and [CLS] none: prepend "
                                     "[CLS] first, then add all 1 + N positions.",
                lambda x, c, pos: torch.cat([_cls_expand(c, x), x + pos[:-1]], 1)),
        Mistake("only_cls_position", "Only the [CLS] slot got a position (positions[0]); every patch needs its own "
                                     "row of the table as well.",
                lambda x, c, pos: torch.cat([_cls_expand(c, x) + pos[0], x], 1)),
    ],
    "vit_forward": [
        Mistake("mean_pool", "The head reads the mean of all tokens; the ViT classifies from the [CLS] token "
                             "(position 0 of the encoder output).",
                lambda m, x: m.head(m.encoder(_sequence(m, x)).mean(1))),
        Mistake("last_token", "The head reads the last token; the [CLS] token is at position 0.",
                lambda m, x: m.head(m.encoder(_sequence(m, x))[:, -1])),
        Mistake("second_token", "The head reads token 1 (the first patch); the [CLS] token is at position 0: "
                                "h[:, 0].",
                lambda m, x: m.head(m.encoder(_sequence(m, x))[:, 1])),
        Mistake("no_positions", "The positions are not added: build the table torch.cat([model.cls_position[0], "
                                "model.positions.table()]) and pass it to add_cls_and_positions.",
                lambda m, x: m.head(m.encoder(_sequence(m, x, table=False))[:, 0])),
        Mistake("no_encoder", "The encoder is skipped: pass the sequence through model.encoder.",
                lambda m, x: m.head(_sequence(m, x)[:, 0])),
        Mistake("no_cls", "No [CLS] token and mean pooling: prepend model.cls_token and read position 0 at the end.",
                _vit_no_cls),
        Mistake("cls_token_as_position", "Row 0 of the position table is model.cls_token; the [CLS] slot's position "
                                         "is model.cls_position[0].",
                lambda m, x: m.head(m.encoder(_sequence(m, x, _position_table(m, m.cls_token[0])))[:, 0])),
        Mistake("no_cls_position", "The [CLS] slot got no position vector: row 0 of the table is "
                                   "model.cls_position[0].",
                lambda m, x: m.head(m.encoder(_sequence(m, x, _position_table(m, torch.zeros_like(
                    m.cls_position[0]))))[:, 0])),
        Mistake("no_final_norm", "The encoder's final LayerNorm is missing: call model.encoder(x) itself rather than "
                                 "looping over model.encoder.layers.", _vit_no_final_norm),
        Mistake("dropout_before_head", "In training mode the [CLS] vector is dropped out before the head; leave "
                                       "dropout out of vit_forward (the encoder has its own).",
                lambda m, x: m.head(m.dropout(m.encoder(_sequence(m, x))[:, 0]))),
        Mistake("dropout_on_patches", "In training mode the patch embeddings are dropped out before [CLS] and the "
                                      "positions are added; leave dropout out of vit_forward (the encoder has its "
                                      "own).",
                lambda m, x: m.head(m.encoder(reference_add_cls_and_positions(
                    m.dropout(_patch_vectors(m, x)), m.cls_token, _position_table(m)))[:, 0])),
    ],
    "cls_attention_map": [
        Mistake("cls_column", "It takes the [CLS] column (how much each patch attends to [CLS]); take the [CLS] row, "
                              "weights[:, :, 0, 1:] (what [CLS] attends to).",
                lambda w, g: w.mean(1)[:, 1:, 0].reshape(_cls_map_parts(w, g))),
        Mistake("max_heads", "It takes the maximum over heads; average them (mean over dim 1).",
                lambda w, g: w.amax(1)[:, 0, 1:].reshape(_cls_map_parts(w, g))),
        Mistake("sum_heads", "It sums over heads; average them (mean over dim 1).",
                lambda w, g: w.sum(1)[:, 0, 1:].reshape(_cls_map_parts(w, g))),
        Mistake("first_head", "It reads head 0 only; average over all heads (mean over dim 1).",
                lambda w, g: w[:, 0, 0, 1:].reshape(_cls_map_parts(w, g))),
        Mistake("grid_transposed", "The grid is transposed: patches are numbered row by row, so reshape to "
                                   "(B, grid_h, grid_w) directly.",
                lambda w, g: w.mean(1)[:, 0, 1:].reshape(w.shape[0], _hw(g)[1], _hw(g)[0]).transpose(1, 2)),
        Mistake("last_key_dropped", "It drops the last key instead of the first: key 0 is [CLS], the patches are keys "
                                    "1 onwards (weights[..., 0, 1:]).",
                lambda w, g: w.mean(1)[:, 0, :-1].reshape(_cls_map_parts(w, g))),
        Mistake("renormalised", "The patch weights were renormalised to sum to 1; keep them as they are (what the "
                                "[CLS] key took is simply left out).",
                lambda w, g: (lambda m: m / m.sum(-1, keepdim=True))(w.mean(1)[:, 0, 1:])
                .reshape(_cls_map_parts(w, g))),
    ],
}


error_hints("patchify", [
    (r"shape '\[.*\]' is invalid for input of size",
     "The sizes you reshape to do not multiply out to the image's: split H into (H // p, p) and W into (W // p, p) "
     "with p = patch_size (not a fixed number), and keep C."),
])
error_hints("unpatchify", [
    (r"shape '\[.*\]' is invalid for input of size",
     "The sizes you reshape to do not fit the patches: (B, H // p, W // p, C, p, p) with p = patch_size, "
     "C = channels and (H, W) from image_size (an int means a square image)."),
])
error_hints("add_cls_and_positions", [
    (r"Sizes of tensors must match except in dimension [02]\b",
     "torch.cat joins along the wrong axis: the tokens are dim 1 (the batch is dim 0, the width dim 2), so "
     "torch.cat([cls, x], dim=1), with cls = cls_token.expand(x.shape[0], -1, -1)."),
    (r"Sizes of tensors must match except in dimension|Tensors must have same number of dimensions",
     "torch.cat needs equal sizes in every other dimension: repeat the token for the batch first, "
     "cls_token.expand(x.shape[0], -1, -1) (B copies of one token), and join along dim=1, the sequence axis."),
])
error_hints("vit_forward", [
    (r"must assemble the model from its parts",
     "This exercise is the forward pass itself: write its four steps (patches and their embedding, [CLS] and "
     "positions, the encoder, the head on token 0) instead of calling the library's model(images)."),
    (r"mat1 and mat2 shapes cannot be multiplied",
     "model.patch_embed expects patch vectors of C*p*p values: patchify with model.patch_size (this model's own "
     "patch side, not a fixed number)."),
    (r"Sizes of tensors must match except in dimension|Tensors must have same number of dimensions",
     "The position table is torch.cat([model.cls_position[0], model.positions.table()]): (1, D) on top of "
     "(N, D), one row for [CLS] and one per patch."),
])
error_hints("cls_attention_map", [
    (r"shape '\[.*\]' is invalid for input of size",
     "The values do not fit the grid: after averaging the heads (mean over dim 1) take the [CLS] row and only the "
     "patch keys, weights[:, 0, 1:] (N = grid_h * grid_w of them; key 0 is [CLS] itself)."),
])


# ------------------------------------------------------------------------------------------------------------
# Exercises 1 and 2: patchify / unpatchify
# ------------------------------------------------------------------------------------------------------------
@torch_threads(1)
def check_patchify(patchify, *, seed: int = 0) -> None:
    """Check ``patchify(images (B, C, H, W), patch_size) -> (B, N, C * p * p)``, row-major, patches as (C, p, p)."""
    mistakes = MISTAKES["patchify"]
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6) + 10 * (seed % 7)
    compare("patchify(images (2, 3, 4, 6), 2)", call(patchify, "patchify", x, 2), ref.patchify(x, 2),
            hints=candidates(mistakes, x, 2))
    digits = _randn(_gen(seed, 1), 5, 1, 8, 8)
    for p in (2, 4):
        compare(f"patchify(digits (5, 1, 8, 8), {p})", call(patchify, "patchify", digits, p), ref.patchify(digits, p),
                hints=candidates(mistakes, digits, p))
    compare("patchify(digits, 8) (a single patch: the whole image)", call(patchify, "patchify", digits, 8),
            digits.reshape(5, 1, 64), hints=candidates(mistakes, digits, 8))
    x3 = _randn(_gen(seed, 2), 2, 2, 6, 9, dtype=torch.float64)
    compare("patchify(images (2, 2, 6, 9) in float64, 3)", call(patchify, "patchify", x3, 3), ref.patchify(x3, 3),
            atol=0.0, hints=candidates(mistakes, x3, 3))
    passed("patchify")


@torch_threads(1)
def check_unpatchify(unpatchify, *, seed: int = 0) -> None:
    """Check ``unpatchify(patches (B, N, C * p * p), patch_size, image_size, channels) -> (B, C, H, W)``."""
    mistakes = MISTAKES["unpatchify"]
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6) + 10 * (seed % 7)
    patches = ref.patchify(x, 2)
    compare("unpatchify(patchify(x, 2), 2, (4, 6), 3) (should give x (2, 3, 4, 6) back)",
            call(unpatchify, "unpatchify", patches, 2, (4, 6), 3), x, hints=candidates(mistakes, patches, 2, (4, 6), 3))
    digits = _randn(_gen(seed, 1), 5, 1, 8, 8)
    for p in (2, 4):
        pt = ref.patchify(digits, p)
        compare(f"unpatchify(patchify(digits, {p}), {p}, 8, 1)", call(unpatchify, "unpatchify", pt, p, 8, 1), digits,
                hints=candidates(mistakes, pt, p, 8, 1))
    pt = ref.patchify(digits, 2)
    compare("unpatchify(patches, 2, 8) (channels left at its default, 1)", call(unpatchify, "unpatchify", pt, 2, 8),
            digits, hints=candidates(mistakes, pt, 2, 8))
    x3 = _randn(_gen(seed, 2), 3, 2, 6, 9, dtype=torch.float64)
    pt = ref.patchify(x3, 3)
    compare("unpatchify(patchify(x, 3), 3, (6, 9), 2) for x (3, 2, 6, 9) in float64",
            call(unpatchify, "unpatchify", pt, 3, (6, 9), 2), x3, atol=0.0,
            hints=candidates(mistakes, pt, 3, (6, 9), 2))
    passed("unpatchify", "the round trip gives the images back")


# ------------------------------------------------------------------------------------------------------------
# Exercise 3: the [CLS] token and the positions
# ------------------------------------------------------------------------------------------------------------
@torch_threads(1)
def check_add_cls_and_positions(add_cls_and_positions, *, seed: int = 0) -> None:
    """Check ``add_cls_and_positions(x (B, N, D), cls_token (1, 1, D), positions (1 + N, D)) -> (B, 1 + N, D)``:
    ``cat([cls, x], dim=1) + positions``; the inputs stay unchanged."""
    mistakes = MISTAKES["add_cls_and_positions"]
    g = _gen(seed, 1)
    for B, N, D in ((3, 4, 8), (2, 6, 5)):
        x, cls, pos = _randn(g, B, N, D), _randn(g, 1, 1, D), _randn(g, 1 + N, D)
        what = f"add_cls_and_positions(x {(B, N, D)}, cls (1, 1, {D}), positions {(1 + N, D)})"
        got = call(add_cls_and_positions, "add_cls_and_positions", x, cls, pos)
        if isinstance(got, torch.Tensor) and tuple(got.shape) == (B, N, D):
            raise CheckFailed(f"{what} has {N} tokens, like the input: the [CLS] vector must be prepended as an extra "
                              f"token, giving {N + 1} (torch.cat([cls, x], dim=1)), not added to the patches.")
        compare(what, got, reference_add_cls_and_positions(x, cls, pos), hints=candidates(mistakes, x, cls, pos))
    got = call(add_cls_and_positions, "add_cls_and_positions", x[:1], cls, pos)
    compare("add_cls_and_positions for a batch of one", got, reference_add_cls_and_positions(x[:1], cls, pos),
            hints=candidates(mistakes, x[:1], cls, pos))
    x64, c64, p64 = (t.double() for t in (x, cls, pos))
    got = call(add_cls_and_positions, "add_cls_and_positions", x64, c64, p64)
    compare("add_cls_and_positions on float64 inputs", got, reference_add_cls_and_positions(x64, c64, p64),
            hints=candidates(mistakes, x64, c64, p64))
    passed("add_cls_and_positions")


# ------------------------------------------------------------------------------------------------------------
# Exercise 4: the forward pass
# ------------------------------------------------------------------------------------------------------------
#: the models of check_vit_forward: (configuration, batch size); the second has dropout for the training-mode case
VIT_CASES = [
    (dict(image_size=8, patch_size=2, in_channels=1, num_classes=10, d_model=32, num_heads=4, num_layers=2,
          factorized_positions=True), 3),
    (dict(image_size=(8, 12), patch_size=4, in_channels=3, num_classes=5, d_model=16, num_heads=2, num_layers=1,
          dropout=0.2, factorized_positions=False), 2),
]


def _seeded(fn, model, images, seed: int):
    """``fn(model, images)`` on a copy of ``model`` in training mode, the RNG seeded as call_with(seed=) does."""
    twin = copy.deepcopy(model).train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return fn(twin, images)


def _describe_config(cfg: dict, B: int) -> str:
    H, W = _hw(cfg["image_size"])
    return f"a ViT for {cfg['in_channels']}x{H}x{W} images, patch size {cfg['patch_size']}, on a batch of {B}"


def _check_training_flag(model, name: str, training: bool) -> None:
    now = model.training
    mode, call_ = ("training", "model.train()") if now else ("evaluation", "model.eval()")
    expect(now is training,
           f"`{name}` switched the model to {mode} mode ({call_} inside it?). It must leave the mode as the caller "
           "set it: the training loop relies on training mode (dropout on), evaluation on eval mode.")


@torch_threads(1)
def check_vit_forward(vit_forward, *, seed: int = 0) -> None:
    """Check ``vit_forward(model, images) -> logits (B, num_classes)``: the same logits as labsupport's ViT (without
    its embedding dropout, or with it where the library has it) on two models, in evaluation and in training mode
    (the same dropout under the same seed), with gradients reaching every parameter, the model's mode left as it
    was, assembled from the parts (the model's own forward refuses to run)."""
    mistakes = MISTAKES["vit_forward"]
    fn = as_handle(vit_forward)
    models = []
    for case, (cfg, B) in enumerate(VIT_CASES):
        mseed = 1000 * seed + 17 * case + 1
        model, twin = build(fn, small_vit, mseed, **cfg), small_vit(mseed, **cfg)
        H, W = _hw(cfg["image_size"])
        images = _randn(_gen(seed, 10 + case), B, cfg["in_channels"], H, W)
        got = call_with(vit_forward, "vit_forward", (model, images), seed=seed + case)
        _check_training_flag(model, "vit_forward", False)
        if case == 0:
            again = call_with(vit_forward, "vit_forward", (model, images), seed=seed + 99)
            expect(not (isinstance(got, torch.Tensor) and isinstance(again, torch.Tensor)
                        and got.shape == again.shape and not torch.allclose(got, again, atol=1e-6)),
                   "`vit_forward` gives different logits for the same images in evaluation mode: something random "
                   "runs in it. F.dropout(x, p) drops whatever the mode (it does not know the model's), so leave "
                   "dropout out of vit_forward; model.dropout would be the identity in evaluation mode.")
        with torch.no_grad():
            compare(f"vit_forward(model, images) for {_describe_config(cfg, B)}", got,
                    reference_vit_forward(twin, images), atol=1e-5, rtol=1e-5, hints=candidates(mistakes, twin, images))
        models.append((cfg, B, model, twin, images))

    # training mode: dropout inside the encoder only, the same masks under the same seed
    cfg, B, model, twin, images = models[1]
    s = 7919 * seed + 3
    probe(model, "set_training", True)
    got = call_with(vit_forward, "vit_forward", (model, images), seed=s)
    _check_training_flag(model, "vit_forward", True)
    probe(model, "set_training", False)
    with torch.no_grad():
        want = _seeded(reference_vit_forward, twin, images, s)
        library = _seeded(library_forward, twin, images, s)  # with the library's embedding dropout: also right
        if isinstance(got, torch.Tensor) and got.shape == library.shape and torch.allclose(got, library, atol=1e-5,
                                                                                            rtol=1e-5):
            want = library
        hints = [(_seeded(m.fn, twin, images, s), m.message) for m in mistakes]
        hints.append((reference_vit_forward(twin, images), "In training mode it gives the evaluation-mode logits: "
                                                            "dropout was switched off (model.eval() or "
                                                            "model.encoder.eval() inside vit_forward?)."))
        compare(f"vit_forward in training mode (dropout {cfg['dropout']}) under a fixed seed, for "
                f"{_describe_config(cfg, B)}", got, want, atol=1e-5, rtol=1e-5, hints=hints)

    # gradients: every parameter of the model gets the reference's gradient
    cfg, B, model, twin, images = models[0]
    out = call_with(vit_forward, "vit_forward", (model, images), grad=True)
    expect(isinstance(out, torch.Tensor) and out.requires_grad,
           "The logits of `vit_forward` are not connected to the model's parameters, so training cannot change "
           "them: do not wrap the forward in torch.no_grad() and do not .detach() (or .item()) anything in it.")
    grads = probe(build(fn, ForwardOf, fn, model), "gradients", images)["grads"]
    twin.zero_grad(set_to_none=True)
    with torch.enable_grad():
        reference_vit_forward(twin, images).sum().backward()
    for name, p in twin.named_parameters():
        got_grad = grads.get(f"model.{name}")
        expect(got_grad is not None,
               f"No gradient reaches model.{name} through `vit_forward`: training would never change it. Is it "
               "detached (.detach(), .data, torch.no_grad()) or left out of the computation?")
        compare(f"the gradient of the logits' sum with respect to model.{name}", got_grad, p.grad, atol=1e-4,
                rtol=1e-4)
    twin.zero_grad(set_to_none=True)
    passed("vit_forward", "logits and gradients equal labsupport's ViT")


# ------------------------------------------------------------------------------------------------------------
# Exercise 5: where the [CLS] token looks
# ------------------------------------------------------------------------------------------------------------
@torch_threads(1)
def check_cls_attention_map(cls_attention_map, *, seed: int = 0) -> None:
    """Check ``cls_attention_map(weights (B, H, 1 + N, 1 + N), grid) -> (B, grid_h, grid_w)``."""
    mistakes = MISTAKES["cls_attention_map"]
    g = _gen(seed, 1)
    B, H, gh, gw = 2, 3, 2, 3  # a non-square grid makes a transposed layout visible
    T = 1 + gh * gw
    w = _randn(g, B, H, T, T).mul(2).softmax(-1)
    what = f"cls_attention_map(weights {(B, H, T, T)}, grid ({gh}, {gw}))"
    got = call(cls_attention_map, "cls_attention_map", w, (gh, gw))
    if isinstance(got, torch.Tensor) and got.dim() == 4:
        raise CheckFailed(f"{what} still has a heads axis ({describe_value(got)}): average over the heads (dim 1) "
                          "first.")
    compare(what, got, ref.cls_attention_map(w, (gh, gw)), hints=candidates(mistakes, w, (gh, gw)))
    w5 = _randn(g, 3, 2, 5, 5).mul(2).softmax(-1)
    compare("cls_attention_map(weights (3, 2, 5, 5), grid=2) (an int grid means 2 x 2)",
            call(cls_attention_map, "cls_attention_map", w5, 2), ref.cls_attention_map(w5, 2),
            hints=candidates(mistakes, w5, 2))
    w64 = _randn(g, 1, 4, 1 + 12, 1 + 12, dtype=torch.float64).mul(2).softmax(-1)
    compare("cls_attention_map(weights (1, 4, 13, 13) in float64, grid (4, 3))",
            call(cls_attention_map, "cls_attention_map", w64, (4, 3)), ref.cls_attention_map(w64, (4, 3)),
            hints=candidates(mistakes, w64, (4, 3)))
    passed("cls_attention_map")


# ------------------------------------------------------------------------------------------------------------
# The result of the lab
# ------------------------------------------------------------------------------------------------------------
def check_test_accuracy(acc: float, bar: float = 0.97) -> None:
    """The lab's bar: at least ``bar`` accuracy on the held-out digits."""
    expect(acc >= bar, f"The test accuracy is {100 * acc:.1f}%, below the bar of {100 * bar:.0f}%.")
    passed("test accuracy", f"{100 * acc:.1f}%")


#: check name -> check, the keys of :data:`MISTAKES`
CHECKS = {"patchify": check_patchify, "unpatchify": check_unpatchify,
          "add_cls_and_positions": check_add_cls_and_positions, "vit_forward": check_vit_forward,
          "cls_attention_map": check_cls_attention_map}
