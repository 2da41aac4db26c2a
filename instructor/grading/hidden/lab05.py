"""Hidden tests of Lab 5 (translation with an encoder-decoder Transformer): the self-checks on other inputs, then
the cases the old hidden tests asserted (hand-made targets and masks, the paper's schedule, a certain prediction
under label smoothing, greedy decoding of another tiny model), through handles on the student's functions."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from instructor.grading.hidden import hidden_test
from labsupport.checks import lab05 as checks
from labsupport.checks.core import build, call, compare, describe_value, expect, expect_number
from labsupport.training import greedy_decode as ref_greedy_decode


def _pair(got, what: str):
    expect(isinstance(got, (tuple, list)) and len(got) == 2, f"{what} should return a pair (decoder_input, labels), "
                                                             f"but it returned a {describe_value(got)}.")
    return got


@hidden_test("test_shift_target")
def test_shift_target(student, seed):
    checks.check_shift_target(student.shift_target, seed=seed)
    t = torch.tensor([[1, 9, 8, 7, 2], [1, 6, 2, 0, 0]])
    i, lab = _pair(call(student.shift_target, "shift_target", t), "shift_target")
    compare("the decoder input of [[1, 9, 8, 7, 2], [1, 6, 2, 0, 0]]", i, t[:, :-1])
    compare("the labels of [[1, 9, 8, 7, 2], [1, 6, 2, 0, 0]]", lab, t[:, 1:])
    _, lab = _pair(call(student.shift_target, "shift_target", torch.tensor([[1, 2]])), "shift_target")
    compare("the labels of [[1, 2]] (<bos> <eos>)", lab, torch.tensor([[2]]))


@hidden_test("test_make_src_mask", twins=["labsupport.attention:key_padding_mask",
                                          "labsupport.models.seq2seq:Seq2SeqTransformer.make_src_mask"])
def test_make_src_mask(student, seed):
    checks.check_make_src_mask(student.make_src_mask, seed=seed)
    src = torch.tensor([[5, 6, 0], [7, 0, 0]])
    compare("make_src_mask([[5, 6, 0], [7, 0, 0]], 0)", call(student.make_src_mask, "make_src_mask", src, 0),
            torch.tensor([[True, True, False], [True, False, False]])[:, None, None, :])
    compare("make_src_mask([[3, 3]], 3) (pad_id is an argument: all padding)",
            call(student.make_src_mask, "make_src_mask", torch.tensor([[3, 3]]), 3),
            torch.zeros(1, 1, 1, 2, dtype=torch.bool))


@hidden_test("test_make_tgt_mask", twins=["labsupport.models.seq2seq:Seq2SeqTransformer.make_tgt_mask"])
def test_make_tgt_mask(student, seed):
    checks.check_make_tgt_mask(student.make_tgt_mask, seed=seed)
    T, F_ = True, False
    want = torch.tensor([[[T, F_, F_], [T, T, F_], [T, T, T]], [[T, F_, F_], [T, T, F_], [T, T, F_]]])[:, None]
    compare("make_tgt_mask([[1, 5, 6], [1, 7, 0]], 0)",
            call(student.make_tgt_mask, "make_tgt_mask", torch.tensor([[1, 5, 6], [1, 7, 0]]), 0), want)
    compare("make_tgt_mask([[1, 5, 6], [1, 7, 9]], 9) (pad_id is an argument)",
            call(student.make_tgt_mask, "make_tgt_mask", torch.tensor([[1, 5, 6], [1, 7, 9]]), 9), want)


@hidden_test("test_noam_lr", twins=["labsupport.training:warmup_inverse_sqrt"])
def test_noam_lr(student, seed):
    checks.check_noam_lr(student.noam_lr, seed=seed)

    def lr(step, d, w):
        return expect_number(f"noam_lr({step}, {d}, {w})", call(student.noam_lr, "noam_lr", step, d, w))

    peak = lr(4000, 512, 4000)
    expect(abs(peak - (512 * 4000) ** -0.5) < 1e-12, f"The paper's schedule (d_model=512, warmup=4000) peaks at "
                                                     f"(512 * 4000) ** -0.5 = {(512 * 4000) ** -0.5:.6g} at step 4000; "
                                                     f"noam_lr(4000, 512, 4000) gave {peak:.6g}.")
    expect(abs(lr(16000, 512, 4000) - peak / 2) < 1e-12, "Four times the steps after the peak must give half the rate "
                                                        "(the 1/sqrt(step) decay): noam_lr(16000, 512, 4000).")
    expect(abs(lr(10, 100, 50) / lr(5, 100, 50) - 2) < 1e-9, "During the warm-up the rate grows linearly: "
                                                            "noam_lr(10, 100, 50) must be twice noam_lr(5, 100, 50).")
    expect(math.isclose(lr(1, 16, 10), 16 ** -0.5 * 10 ** -1.5, rel_tol=1e-9),
           "The first update is step 1: noam_lr(1, 16, 10) = 16 ** -0.5 * 1 * 10 ** -1.5.")


@hidden_test("test_label_smoothed_loss", twins=["labsupport.training:LabelSmoothingLoss"])
def test_label_smoothed_loss(student, seed):
    checks.check_label_smoothed_loss(student.label_smoothed_loss, seed=seed)
    lg = torch.randn(2, 4, 9, generator=torch.Generator().manual_seed(seed))
    tg = torch.tensor([[3, 4, 0, 0], [5, 6, 7, 0]])
    want = F.cross_entropy(lg.reshape(-1, 9), tg.reshape(-1), ignore_index=0, label_smoothing=0.2)
    compare("label_smoothed_loss(logits (2, 4, 9), target with padding 0, smoothing=0.2, pad_id=0)",
            call(student.label_smoothed_loss, "label_smoothed_loss", lg, tg, 0.2, 0), want, atol=1e-5)
    perfect = torch.full((1, 1, 4), -1e4)
    perfect[0, 0, 2] = 1e4
    loss = call(student.label_smoothed_loss, "label_smoothed_loss", perfect, torch.tensor([[2]]), 0.1, 0)
    compare("label_smoothed_loss of a certain, correct prediction (it is still penalised: 0.1 * 3/4 * 2e4)", loss,
            torch.tensor(0.1 * 3 / 4 * 2e4), atol=1.0)


@hidden_test("test_greedy_decode", twins=["labsupport.training:greedy_decode"])
def test_greedy_decode(student, seed):
    checks.check_greedy_decode(student.greedy_decode, seed=seed)
    model = checks.tiny_model(4)
    model_h = build(student.greedy_decode, checks.tiny_model, 4)
    src = torch.randint(5, 12, (5, 6), generator=torch.Generator().manual_seed(seed))
    src[0, 3:] = 0
    got = call(student.greedy_decode, "greedy_decode", model_h, src, 6, 1, 7)
    expect(isinstance(got, torch.Tensor) and got.dim() == 2 and got.shape[0] == 5 and got.shape[1] <= 7,
           f"greedy_decode(model, src (5, 6), max_len=6, bos_id=1, eos_id=7) should return (5, n <= 7) ids, got "
           f"{describe_value(got)}.")
    want = ref_greedy_decode(model, src, 6, 1, 7, pad=0)
    cut = lambda row: row[: row.index(7) + 1] if 7 in row else row  # noqa: E731
    got_rows, want_rows = [cut(r) for r in got.tolist()], [cut(r) for r in want.tolist()]
    expect(got_rows == want_rows, f"greedy_decode(model, src (5, 6), max_len=6, bos_id=1, eos_id=7) gave {got_rows} "
                                  f"(up to <eos>); greedy decoding gives {want_rows}.")
