"""Lab 5 self-checks: the reference passes, each typical mistake is caught with its specific message."""
import pytest
import torch
import torch.nn.functional as F

from labsupport.attention import causal_mask
from labsupport.checks import CheckFailed
from labsupport.checks import lab05 as C
from labsupport.training import greedy_decode, warmup_inverse_sqrt
from checkhelpers import not_implemented


def fails(check, fn, *needles):
    with pytest.raises(CheckFailed) as err:
        check(fn)
    for n in needles:
        assert n in err.value.message, err.value.message
    return err.value.message


# shift_target --------------------------------------------------------------------------------------------
def test_shift_target(capsys):
    C.check_shift_target(lambda t: (t[:, :-1], t[:, 1:]))
    assert "✓ shift_target" in capsys.readouterr().out
    fails(C.check_shift_target, lambda t: (t, t), "Neither part is shifted")
    fails(C.check_shift_target, lambda t: (t[:, 1:], t[:, :-1]), "swapped")
    fails(C.check_shift_target, lambda t: (t[:, :-1], t[:, :-1]), "same tensor")
    fails(C.check_shift_target, lambda t: t[:, :-1], "should return a pair")
    fails(C.check_shift_target, lambda t: (t[:, 1:], t[:, 1:]), "same tensor")
    fails(C.check_shift_target, not_implemented, "not implemented yet")


# masks -----------------------------------------------------------------------------------------------------
def test_make_src_mask(capsys):
    C.check_make_src_mask(lambda s, p: (s != p)[:, None, None, :])
    assert "✓ make_src_mask" in capsys.readouterr().out
    fails(C.check_make_src_mask, lambda s, p: (s == p)[:, None, None, :], "polarity is inverted")
    fails(C.check_make_src_mask, lambda s, p: s != p, "Add two singleton axes")
    fails(C.check_make_src_mask, lambda s, p: (s != p)[:, None, :, None], "QUERIES")
    fails(C.check_make_src_mask, lambda s, p: (s != p).long()[:, None, None, :], "boolean")
    fails(C.check_make_src_mask, not_implemented, "not implemented yet")


def ref_tgt(t, p):
    return causal_mask(t.shape[1])[None, None] & (t != p)[:, None, None, :]


def test_make_tgt_mask(capsys):
    C.check_make_tgt_mask(ref_tgt)
    assert "✓ make_tgt_mask" in capsys.readouterr().out
    L = lambda t: t.shape[1]
    fails(C.check_make_tgt_mask, lambda t, p: ~ref_tgt(t, p), "polarity is inverted")
    fails(C.check_make_tgt_mask, lambda t, p: causal_mask(L(t))[None, None].expand(t.shape[0], 1, L(t), L(t)), "only the causal")
    fails(C.check_make_tgt_mask, lambda t, p: (t != p)[:, None, None, :].expand(-1, 1, L(t), -1), "causal part is missing")
    fails(C.check_make_tgt_mask, lambda t, p: torch.ones(L(t), L(t), dtype=torch.bool).triu()[None, None] & (t != p)[:, None, None, :], "FUTURE")
    fails(C.check_make_tgt_mask, lambda t, p: torch.ones(L(t), L(t), dtype=torch.bool).tril(-1)[None, None] & (t != p)[:, None, None, :], "diagonal")
    fails(C.check_make_tgt_mask, lambda t, p: causal_mask(L(t))[None, None] & (t != p)[:, None, :, None], "QUERIES")
    fails(C.check_make_tgt_mask, lambda t, p: ref_tgt(t, p)[:, 0], "shape")
    fails(C.check_make_tgt_mask, lambda t, p: ref_tgt(t, p).float(), "boolean")


# noam_lr ---------------------------------------------------------------------------------------------------
def test_noam_lr(capsys):
    C.check_noam_lr(lambda s, d, w: d ** -0.5 * min(s ** -0.5, s * w ** -1.5))
    assert "✓ noam_lr" in capsys.readouterr().out
    fails(C.check_noam_lr, lambda s, d, w: d ** -0.5 * s ** -0.5, "no warm-up")
    fails(C.check_noam_lr, lambda s, d, w: warmup_inverse_sqrt(s + 1, d, w), "off by one", f"step {39}")
    fails(C.check_noam_lr, lambda s, d, w: d ** -0.5 * min((s - 1) ** -0.5 if s > 1 else 1e9, (s - 1) * w ** -1.5), "off by one", "step 41")
    fails(C.check_noam_lr, lambda s, d, w: min(s ** -0.5, s * w ** -1.5), "d_model ** -0.5")
    fails(C.check_noam_lr, lambda s, d, w: d ** -0.5 * min(s ** -0.5, s * w ** -0.5), "warmup ** -1.5")
    fails(C.check_noam_lr, lambda s, d, w: d ** -0.5 * max(s ** -0.5, s * w ** -1.5), "max")
    fails(C.check_noam_lr, lambda s, d, w: "x", "a number")
    fails(C.check_noam_lr, not_implemented, "not implemented yet")


# label smoothing -------------------------------------------------------------------------------------------
def ref_ls(logits, target, eps, pad):
    V = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, V), target.reshape(-1), ignore_index=pad, label_smoothing=eps)


def manual_ls(logits, target, eps, pad, other=False, ignore=True, mean_all=False, weight_true=True, probs=False,
              total=False):
    V = logits.shape[-1]
    lg, tg = logits.reshape(-1, V), target.reshape(-1)
    logp = torch.softmax(lg, -1) if probs else F.log_softmax(lg, -1)
    nll = -logp.gather(1, tg[:, None]).squeeze(1)
    uni = (-logp.sum(-1) - nll * -1 * -1) / (V - 1) if other else -logp.mean(-1)
    if other:
        uni = (-logp.sum(-1) - nll) / (V - 1)
    per = ((1 - eps) if weight_true else 1.0) * nll + eps * uni
    keep = (tg != pad).float() if ignore else torch.ones_like(tg, dtype=torch.float)
    if total:
        return (per * keep).sum()
    return (per * keep).sum() / (keep.numel() if mean_all else keep.sum())


def test_label_smoothed_loss(capsys):
    C.check_label_smoothed_loss(ref_ls)
    C.check_label_smoothed_loss(manual_ls)
    assert capsys.readouterr().out.count("✓ label_smoothed_loss") == 2
    fails(C.check_label_smoothed_loss, lambda *a: manual_ls(*a, other=True), "V - 1")
    fails(C.check_label_smoothed_loss, lambda *a: manual_ls(*a, ignore=False), "not ignored")
    fails(C.check_label_smoothed_loss, lambda *a: manual_ls(*a, mean_all=True), "still counts them")
    fails(C.check_label_smoothed_loss, lambda l, t, e, p: ref_ls(l, t, 0.0, p), "no smoothing")
    fails(C.check_label_smoothed_loss, lambda *a: manual_ls(*a, weight_true=False), "not down-weighted")
    fails(C.check_label_smoothed_loss, lambda *a: manual_ls(*a, probs=True), "probabilities")
    fails(C.check_label_smoothed_loss, lambda *a: manual_ls(*a, total=True), "SUM")
    fails(C.check_label_smoothed_loss, lambda l, t, e, p: ref_ls(l, t, e, p).item(), "torch.Tensor")
    fails(C.check_label_smoothed_loss, lambda l, t, e, p: ref_ls(l, t, e, p).detach(), "autograd")
    fails(C.check_label_smoothed_loss, lambda l, t, e, p: F.cross_entropy(l.reshape(-1, l.shape[-1]), t.reshape(-1), ignore_index=p, label_smoothing=e, reduction="none"), "scalar")


# greedy decoding -------------------------------------------------------------------------------------------
def student_greedy(model, src, max_len, bos, eos, variant=None):
    src_mask = model.make_src_mask(src)
    if variant == "no_mask":
        src_mask = None
        memory = model.encode(src, torch.ones_like(model.make_src_mask(src)))
    else:
        memory = model.encode(src, src_mask)
    ys = torch.full((src.shape[0], 1), bos, dtype=torch.long)
    n = max_len + (3 if variant == "too_long" else 0)
    for _ in range(n):
        inp = ys[:, -1:] if variant == "last_only" else ys
        logits = model.decode(inp, memory, memory_mask=src_mask)
        nxt = logits[:, 0 if variant == "first_pos" else -1].argmax(-1)
        ys = torch.cat([ys, nxt[:, None]], 1)
    return ys[:, 1:] if variant == "no_bos" else ys


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_decode_reference_and_plain_loop_pass(seed, capsys):
    C.check_greedy_decode(lambda m, s, n, b, e: greedy_decode(m, s, n, b, e), seed=seed)
    C.check_greedy_decode(student_greedy, seed=seed)  # no early stop, tokens after eos ignored
    assert capsys.readouterr().out.count("✓ greedy_decode") == 2


def test_greedy_decode_mistakes():
    g = lambda v: (lambda m, s, n, b, e: student_greedy(m, s, n, b, e, v))
    fails(C.check_greedy_decode, g("last_only"), "only the last generated token")
    fails(C.check_greedy_decode, g("first_pos"), "FIRST position")
    fails(C.check_greedy_decode, g("no_mask"), "padding mask is missing")
    fails(C.check_greedy_decode, g("no_bos"), "start with <bos>")
    fails(C.check_greedy_decode, g("too_long"), "at most max_len")
    fails(C.check_greedy_decode, not_implemented, "not implemented yet")
