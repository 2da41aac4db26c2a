"""Self-checks of Lab 8, the Vision Transformer: patches, the [CLS] token and positions, the forward pass, attention.

Each check runs the student's code on fresh inputs, compares it with the reference twin in
:mod:`labsupport.models.vit` and recognises the usual mistakes:

* patchify: a plain reshape (strips of a pixel row instead of square patches), patches numbered column by column
  (the grid transposed), the pixels of each patch transposed, each patch flattened channel-last ``(p, p, C)``;
* unpatchify: the same mistakes in reverse, seen through the round trip ``unpatchify(patchify(x)) == x``;
* add_cls_and_positions: the [CLS] vector appended at the end instead of prepended, the positions not added, the
  [CLS] slot left without its position, the table shifted by one, the [CLS] vector added to every patch;
* vit_forward: the head applied to the mean of the tokens or to the last token instead of [CLS], the positions or
  the [CLS] token skipped, the encoder skipped;
* cls_attention_map: the [CLS] *column* (what attends to [CLS]) taken instead of its *row*, the [CLS] key kept,
  the heads not averaged (or their maximum taken), the grid transposed.
"""
from __future__ import annotations

import torch

from labsupport.checks import CheckFailed, call, compare, describe_value, expect, one_thread, passed
from labsupport.models import vit as ref


# ----------------------------------------------------------------------------------------------------------------
# Exercise: patchify / unpatchify
# ----------------------------------------------------------------------------------------------------------------
def _patchify_mistakes(x: torch.Tensor, p: int) -> list[tuple[torch.Tensor, str]]:
    B, C, H, W = x.shape
    gh, gw = H // p, W // p
    six = x.reshape(B, C, gh, p, gw, p)
    return [
        (x.reshape(B, gh * gw, C * p * p),
         "A plain reshape takes C*p*p consecutive values, i.e. strips of a pixel row, not square patches. Split H "
         "into (H/p, p) and W into (W/p, p), move the two grid axes to the front with permute, then flatten."),
        (six.permute(0, 4, 2, 1, 3, 5).reshape(B, gh * gw, C * p * p),
         "The patches are numbered column by column; number them row by row (index = row * grid_w + col), "
         "as you read a page."),
        (six.permute(0, 2, 4, 1, 5, 3).reshape(B, gh * gw, C * p * p),
         "The pixels inside each patch are transposed: keep the patch's own rows before its columns."),
        (six.permute(0, 2, 4, 3, 5, 1).reshape(B, gh * gw, C * p * p),
         "Each patch is flattened channel-last (p, p, C); flatten it channel-first (C, p, p), the layout of a "
         "Conv2d kernel."),
    ]


@one_thread
def check_patchify(patchify) -> None:
    """Check ``patchify(images (B, C, H, W), patch_size) -> (B, N, C * p * p)``, row-major, patches as (C, p, p)."""
    __tracebackhide__ = True
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    got = call(patchify, "patchify", x, 2)
    compare("patchify(images (2, 3, 4, 6), 2)", got, ref.patchify(x, 2), hints=_patchify_mistakes(x, 2))
    digits = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    for p in (2, 4):
        got = call(patchify, "patchify", digits, p)
        compare(f"patchify(digits (5, 1, 8, 8), {p})", got, ref.patchify(digits, p),
                hints=_patchify_mistakes(digits, p))
    got = call(patchify, "patchify", digits, 8)
    compare("patchify(digits, 8) (a single patch: the whole image)", got, digits.reshape(5, 1, 64))
    passed("patchify")


def _unpatchify_mistakes(patches: torch.Tensor, p: int, H: int, W: int, C: int) -> list[tuple[torch.Tensor, str]]:
    """Images rebuilt from correct ``patches`` by the inverse of each typical mistake, with its message."""
    B = patches.shape[0]
    gh, gw = H // p, W // p
    six = patches.reshape(B, gh, gw, C, p, p)
    return [
        (patches.reshape(B, C, H, W),
         "A plain reshape does not undo patchify: reshape to (B, grid_h, grid_w, C, p, p), permute back to "
         "(B, C, grid_h, p, grid_w, p), then reshape to (B, C, H, W)."),
        (patches.reshape(B, gw, gh, C, p, p).permute(0, 3, 2, 4, 1, 5).reshape(B, C, H, W),
         "The patches are placed column by column; patch index n sits at row n // grid_w, column n % grid_w."),
        (six.permute(0, 3, 1, 5, 2, 4).reshape(B, C, H, W),
         "The pixels inside each patch come out transposed: put the patch's rows before its columns."),
        (patches.reshape(B, gh, gw, p, p, C).permute(0, 5, 1, 3, 2, 4).reshape(B, C, H, W),
         "Each patch is read as channel-last (p, p, C); patchify flattens it channel-first (C, p, p)."),
    ]


@one_thread
def check_unpatchify(unpatchify) -> None:
    """Check ``unpatchify(patches (B, N, C * p * p), patch_size, image_size, channels) -> (B, C, H, W)``."""
    __tracebackhide__ = True
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    patches = ref.patchify(x, 2)
    got = call(unpatchify, "unpatchify", patches, 2, (4, 6), 3)
    compare("unpatchify(patchify(x, 2), 2, (4, 6), 3) (should give x back)", got, x,
            hints=_unpatchify_mistakes(patches, 2, 4, 6, 3))
    digits = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    for p in (2, 4):
        got = call(unpatchify, "unpatchify", ref.patchify(digits, p), p, 8, 1)
        compare(f"unpatchify(patchify(digits, {p}), {p}, 8, 1)", got, digits,
                hints=_unpatchify_mistakes(ref.patchify(digits, p), p, 8, 8, 1))
    passed("unpatchify", "the round trip gives the images back")


# ----------------------------------------------------------------------------------------------------------------
# Exercise: the [CLS] token and the positions
# ----------------------------------------------------------------------------------------------------------------
@one_thread
def check_add_cls_and_positions(add_cls_and_positions) -> None:
    """Check ``add_cls_and_positions(x (B, N, D), cls_token (1, 1, D), positions (1 + N, D)) -> (B, 1 + N, D)``:
    ``cat([cls, x], dim=1) + positions``."""
    __tracebackhide__ = True
    g = torch.Generator().manual_seed(2)
    B, N, D = 3, 4, 8
    x, cls, pos = torch.randn(B, N, D, generator=g), torch.randn(1, 1, D, generator=g), torch.randn(1 + N, D, generator=g)
    got = call(add_cls_and_positions, "add_cls_and_positions", x, cls, pos)
    c = cls.expand(B, 1, D)
    want = torch.cat([c, x], 1) + pos
    if isinstance(got, torch.Tensor) and got.shape == (B, N, D):
        raise CheckFailed(f"The output has {N} tokens, like the input: the [CLS] vector must be prepended as an "
                          f"extra token, giving {N + 1} (torch.cat([cls, x], dim=1)), not added to the patches.")
    compare("add_cls_and_positions(x (3, 4, 8), cls (1, 1, 8), positions (5, 8))", got, want, atol=1e-6, hints=[
        (torch.cat([x, c], 1) + pos, "The [CLS] vector is appended at the end; it goes first (position 0), "
                                     "where the head will read it."),
        (torch.cat([x, c], 1) + torch.cat([pos[1:], pos[:1]]),
         "The [CLS] vector is at the end; prepend it (position 0)."),
        (torch.cat([c, x], 1), "The positions are not added: without them the model cannot tell where a patch was."),
        (torch.cat([c, x + pos[1:]], 1), "The [CLS] slot did not get its position vector (positions[0]); add the "
                                         "whole table after prepending."),
        (torch.cat([c, x + pos[:N]], 1), "The patches got the position table shifted by one and [CLS] none: "
                                         "prepend [CLS] first, then add all 1 + N positions."),
    ])
    got = call(add_cls_and_positions, "add_cls_and_positions", x[:1], cls, pos)
    compare("add_cls_and_positions for a batch of one", got, want[:1], atol=1e-6)
    passed("add_cls_and_positions")


# ----------------------------------------------------------------------------------------------------------------
# Exercise: the forward pass
# ----------------------------------------------------------------------------------------------------------------
def _small_vit(seed: int = 0) -> ref.ViT:
    torch.manual_seed(seed)
    model = ref.ViT(image_size=8, patch_size=2, in_channels=1, num_classes=10, d_model=32, num_heads=4,
                    num_layers=2, dropout=0.0).eval()
    with torch.no_grad():  # visible, distinct values for the [CLS] and position vectors
        for p in (model.cls_token, model.cls_position, *model.positions.parameters()):
            p.normal_()
    return model


@one_thread
def check_vit_forward(vit_forward) -> None:
    """Check ``vit_forward(model, images) -> logits (B, num_classes)`` against ``model(images)``."""
    __tracebackhide__ = True
    model = _small_vit()
    images = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        got = call(vit_forward, "vit_forward", model, images)
        want = model(images)
        patches = model.patch_embed(ref.patchify(images, 2))
        pos = torch.cat([model.cls_position[0], model.positions.table()])
        cls = model.cls_token.expand(3, 1, -1)
        seq = torch.cat([cls, patches], 1) + pos
        h = model.encoder(seq)
        hints = [
            (model.head(h.mean(1)), "The head reads the mean of all tokens; the ViT classifies from the [CLS] token "
                                    "(position 0 of the encoder output)."),
            (model.head(h[:, -1]), "The head reads the last token; the [CLS] token is at position 0."),
            (model.head(model.encoder(torch.cat([cls, patches], 1))[:, 0]), "The positions are not added."),
            (model.head(seq[:, 0]), "The encoder is skipped: pass the sequence through model.encoder."),
            (model.head(model.encoder(patches + model.positions.table()).mean(1)),
             "No [CLS] token and mean pooling: prepend model.cls_token and read position 0 at the end."),
        ]
        compare("vit_forward(model, images (3, 1, 8, 8))", got, want, atol=1e-4, hints=hints)
    passed("vit_forward", "same logits as labsupport's ViT")


# ----------------------------------------------------------------------------------------------------------------
# Exercise: where the [CLS] token looks
# ----------------------------------------------------------------------------------------------------------------
@one_thread
def check_cls_attention_map(cls_attention_map) -> None:
    """Check ``cls_attention_map(weights (B, H, 1 + N, 1 + N), grid) -> (B, grid_h, grid_w)``."""
    __tracebackhide__ = True
    g = torch.Generator().manual_seed(4)
    B, H, gh, gw = 2, 3, 2, 3  # a non-square grid makes a transposed layout visible
    T = 1 + gh * gw
    w = torch.randn(B, H, T, T, generator=g).softmax(-1)
    got = call(cls_attention_map, "cls_attention_map", w, (gh, gw))
    want = ref.cls_attention_map(w, (gh, gw))
    if isinstance(got, torch.Tensor) and got.dim() == 4:
        raise CheckFailed(f"The output still has a heads axis ({describe_value(got)}): average over the heads "
                          "(dim 1) first.")
    m = w.mean(1)
    compare("cls_attention_map(weights (2, 3, 7, 7), grid (2, 3))", got, want, atol=1e-6, hints=[
        (m[:, 1:, 0].reshape(B, gh, gw), "It takes the [CLS] column (how much each patch attends to [CLS]); take "
                                         "the [CLS] row, weights[:, :, 0, 1:] (what [CLS] attends to)."),
        (w.amax(1)[:, 0, 1:].reshape(B, gh, gw), "It takes the maximum over heads; average them (mean over dim 1)."),
        (m[:, 0, 1:].reshape(B, gw, gh).transpose(1, 2), "The grid is transposed: patches are numbered row by row, "
                                                         "so reshape to (B, grid_h, grid_w) directly."),
        (w.sum(1)[:, 0, 1:].reshape(B, gh, gw), "It sums over heads; average them (mean over dim 1)."),
    ])
    square = ref.cls_attention_map(w[..., :5, :5].softmax(-1), 2)
    got = call(cls_attention_map, "cls_attention_map", w[..., :5, :5].softmax(-1), 2)
    compare("cls_attention_map(weights (2, 3, 5, 5), grid=2) (an int grid means 2 x 2)", got, square, atol=1e-6)
    passed("cls_attention_map")


# ----------------------------------------------------------------------------------------------------------------
# The result of the lab
# ----------------------------------------------------------------------------------------------------------------
def check_test_accuracy(acc: float, bar: float = 0.97) -> None:
    """The lab's bar: at least ``bar`` accuracy on the held-out digits."""
    __tracebackhide__ = True
    expect(acc >= bar, f"The test accuracy is {100 * acc:.1f}%, below the bar of {100 * bar:.0f}%.")
    passed("test accuracy", f"{100 * acc:.1f}%")


__all__ = ["check_patchify", "check_unpatchify", "check_add_cls_and_positions", "check_vit_forward",
           "check_cls_attention_map", "check_test_accuracy"]
