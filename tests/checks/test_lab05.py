"""Lab 5's references (TWINS; test_every_lab.py runs every check with them) and its particular cases: other
right answers pass, the messages the mistake table cannot carry are specific. (The mistakes and the mutants are in
test_mutants.py.)"""
import pytest
import torch
import torch.nn.functional as F

from labsupport.attention import causal_mask, key_padding_mask
from labsupport.checks import lab05 as L
from labsupport.checks.core import CheckFailed
from labsupport.training import LabelSmoothingLoss, greedy_decode, warmup_inverse_sqrt


def make_tgt_mask(tgt, pad_id):
    return causal_mask(tgt.shape[1])[None, None] & key_padding_mask(tgt, pad_id)


def label_smoothed_loss(logits, target, smoothing, pad_id):
    return LabelSmoothingLoss(smoothing, ignore_index=pad_id)(logits, target)


def greedy(model, src, max_len, bos_id, eos_id):
    return greedy_decode(model, src, max_len, bos_id, eos_id)


def greedy_without_early_stop(model, src, max_len, bos_id, eos_id):
    """A plain loop to max_len: what follows <eos> is not compared, so it passes."""
    mask = model.make_src_mask(src)
    memory = model.encode(src, mask)
    ys = torch.full((src.shape[0], 1), bos_id, dtype=torch.long)
    for _ in range(max_len):
        ys = torch.cat([ys, model.decode(ys, memory, memory_mask=mask)[:, -1].argmax(-1, keepdim=True)], 1)
    return ys


TWINS = {"shift_target": lambda t: (t[:, :-1], t[:, 1:]), "make_src_mask": key_padding_mask,
         "make_tgt_mask": make_tgt_mask, "noam_lr": warmup_inverse_sqrt, "label_smoothed_loss": label_smoothed_loss,
         "greedy_decode": greedy}


@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_other_right_answers_pass(seed, capsys):
    L.check_greedy_decode(greedy_without_early_stop, seed=seed)
    L.check_label_smoothed_loss(lambda lg, t, e, p: F.cross_entropy(lg.reshape(-1, lg.shape[-1]), t.reshape(-1),
                                                                    ignore_index=p, label_smoothing=e), seed=seed)
    assert capsys.readouterr().out.count("✓") == 2


def test_the_notebook_pass_line_of_noam_lr(capsys):
    L.check_noam_lr(warmup_inverse_sqrt)
    assert "peak 0.01976 at step 40" in capsys.readouterr().out


@pytest.mark.parametrize("check, fn, fragment", [
    (L.check_noam_lr, lambda s, d, w: "x", "should be a number"),
    (L.check_noam_lr, lambda s, d, w: float("nan"), "returned nan"),
    (L.check_make_tgt_mask, lambda t, p: make_tgt_mask(t, p).expand(-1, 2, -1, -1), "expected (3, 1, 7, 7), got "
                                                                                    "(3, 2, 7, 7)"),
    (L.check_label_smoothed_loss, lambda *a: None, "returned None"),
    (L.check_greedy_decode, lambda m, s, n, b, e: greedy(m, s, n, b, e)[0], "should return shape (B, n)"),
    (L.check_greedy_decode, lambda m, s, n, b, e: greedy(m, s, n, b, e).tolist(), "tensor of token ids"),
])
def test_special_messages(check, fn, fragment):
    with pytest.raises(CheckFailed, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        check(fn)


def test_tiny_model_repeats_and_leaves_the_random_state_alone():
    torch.manual_seed(5)
    a = torch.rand(1)
    torch.manual_seed(5)
    m1, m2 = L.tiny_model(4), L.tiny_model(4)
    assert torch.equal(torch.rand(1), a)
    assert all(torch.equal(p, q) for p, q in zip(m1.state_dict().values(), m2.state_dict().values()))
