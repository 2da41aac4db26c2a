"""Hidden tests of Lab 8 (the Vision Transformer): the self-checks on other inputs, then the cases the notebook's
old hidden tests asserted (F.unfold's patch order, the top-right patch, the round trip, a hand-made [CLS] map, a
3-channel model on non-square images), rewritten on handles."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from instructor.grading.hidden import hidden_test
from labsupport.checks import lab08 as checks
from labsupport.checks.core import build, call, compare, expect
from labsupport.models import vit as ref


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@hidden_test("test_patchify", twins=["labsupport.models.vit:patchify"])
def test_patchify(student, seed):
    checks.check_patchify(student.patchify, seed=seed)
    x = torch.arange(64.0).reshape(1, 1, 8, 8)
    p = call(student.patchify, "patchify", x, 4)
    compare("patchify(arange(64) as one 8x8 image, 4)", p, ref.patchify(x, 4), atol=0.0)
    expect(p[0, 1].tolist() == [4.0, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31],
           "patch 1 of an 8x8 image cut into 4x4 patches is its top-right square.")
    x3 = torch.randn(3, 2, 6, 9, generator=_gen(seed))
    compare("patchify(images (3, 2, 6, 9), 3) against F.unfold's patch order",
            call(student.patchify, "patchify", x3, 3), F.unfold(x3, 3, stride=3).transpose(1, 2), atol=0.0)


@hidden_test("test_unpatchify", twins=["labsupport.models.vit:unpatchify"])
def test_unpatchify(student, seed):
    checks.check_unpatchify(student.unpatchify, seed=seed)
    x = torch.randn(4, 3, 6, 10, generator=_gen(seed))
    compare("unpatchify(patchify(x, 2), 2, (6, 10), 3) for x (4, 3, 6, 10)",
            call(student.unpatchify, "unpatchify", ref.patchify(x, 2), 2, (6, 10), 3), x, atol=0.0)
    one = torch.arange(16.0).reshape(1, 4, 4)  # four 2x2 patches, values in reading order
    got = call(student.unpatchify, "unpatchify", one, 2, 4, 1)
    compare("unpatchify of four 2x2 patches numbered 0..15", got, ref.unpatchify(one, 2, 4, 1), atol=0.0)
    expect(got[0, 0, 0].tolist() == [0.0, 1, 4, 5], "the top pixel row holds the top rows of patches 0 and 1.")


@hidden_test("test_add_cls_and_positions")
def test_add_cls_and_positions(student, seed):
    checks.check_add_cls_and_positions(student.add_cls_and_positions, seed=seed)
    x, c = torch.zeros(2, 3, 4), torch.ones(1, 1, 4)
    pos = torch.arange(4.0)[:, None].expand(4, 4).contiguous()
    out = call(student.add_cls_and_positions, "add_cls_and_positions", x, c, pos)
    compare("add_cls_and_positions(zeros (2, 3, 4), ones (1, 1, 4), positions i in row i)", out,
            checks.reference_add_cls_and_positions(x, c, pos), atol=0.0)
    expect(bool(out[:, 0].eq(1).all()) and bool(out[1, 2].eq(2).all()), "[CLS] first, slot i + position i.")


@hidden_test("test_vit_forward")  # no twin: its model refuses to run the library's forward (SmallViT)
def test_vit_forward(student, seed):
    checks.check_vit_forward(student.vit_forward, seed=seed)
    cfg = dict(image_size=(4, 8), patch_size=2, in_channels=3, num_classes=7, d_model=16, num_heads=2,
               num_layers=1, factorized_positions=False)
    model = build(student.vit_forward, checks.small_vit, seed + 5, **cfg)
    twin = checks.small_vit(seed + 5, **cfg)
    images = torch.randn(2, 3, 4, 8, generator=_gen(seed))
    with torch.no_grad():
        compare("vit_forward for a ViT on 3x4x8 images with 7 classes",
                call(student.vit_forward, "vit_forward", model, images), checks.library_forward(twin, images),
                atol=1e-5, rtol=1e-5)


@hidden_test("test_cls_attention_map", twins=["labsupport.models.vit:cls_attention_map"])
def test_cls_attention_map(student, seed):
    checks.check_cls_attention_map(student.cls_attention_map, seed=seed)
    w = torch.zeros(1, 2, 5, 5)
    w[0, 0, 0, 2] = 1.0  # head 0: [CLS] looks at patch 1 (top right)
    w[0, 1, 0, 3] = 1.0  # head 1: [CLS] looks at patch 2 (bottom left)
    compare("cls_attention_map of a hand-made example (two heads, a 2x2 grid)",
            call(student.cls_attention_map, "cls_attention_map", w, 2), torch.tensor([[[0.0, 0.5], [0.5, 0.0]]]))
    ws = torch.randn(2, 4, 1 + 8, 1 + 8, generator=_gen(seed)).softmax(-1)
    compare("cls_attention_map(weights (2, 4, 9, 9), grid (2, 4))",
            call(student.cls_attention_map, "cls_attention_map", ws, (2, 4)), ref.cls_attention_map(ws, (2, 4)))
