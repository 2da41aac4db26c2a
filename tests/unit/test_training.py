"""labsupport.training: schedule, label smoothing (pinned to F.cross_entropy), the loop, LABSUPPORT_MAX_STEPS."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from labsupport.training import (
    MAX_STEPS_ENV,
    History,
    LabelSmoothingLoss,
    make_warmup_scheduler,
    max_steps,
    train,
    warmup_inverse_sqrt,
)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_label_smoothing_equals_torch(smoothing):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(37, 11, generator=g) * 3
    target = torch.randint(0, 11, (37,), generator=g)
    got = LabelSmoothingLoss(smoothing)(logits, target)
    want = F.cross_entropy(logits, target, label_smoothing=smoothing)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_label_smoothing_ignore_index_and_3d(smoothing):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 9, 13, generator=g, requires_grad=True)
    target = torch.randint(1, 13, (4, 9), generator=g)
    target[0, 5:] = 0
    target[2, 3:] = 0
    got = LabelSmoothingLoss(smoothing, ignore_index=0)(logits, target)
    want = F.cross_entropy(logits.reshape(-1, 13), target.reshape(-1), ignore_index=0, label_smoothing=smoothing)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
    # gradients agree too, and padded positions get none
    (g1,) = torch.autograd.grad(got, logits)
    (g2,) = torch.autograd.grad(want, logits)
    torch.testing.assert_close(g1, g2, atol=1e-7, rtol=1e-5)
    assert g1[0, 6].abs().sum() == 0


def test_label_smoothing_rejects_bad_smoothing():
    with pytest.raises(ValueError):
        LabelSmoothingLoss(1.0)


@pytest.mark.parametrize("d_model,warmup", [(512, 4000), (64, 100)])
def test_schedule_peaks_at_warmup(d_model, warmup):
    values = [warmup_inverse_sqrt(s, d_model, warmup) for s in range(1, 3 * warmup)]
    peak = max(range(len(values)), key=values.__getitem__) + 1
    assert peak == warmup
    assert math.isclose(values[warmup - 1], d_model ** -0.5 * warmup ** -0.5, rel_tol=1e-12)
    # linear warm-up, then 1/sqrt decay
    assert math.isclose(values[9] / values[0], 10.0, rel_tol=1e-12)
    later = warmup_inverse_sqrt(4 * warmup, d_model, warmup)
    assert math.isclose(later, values[warmup - 1] / 2, rel_tol=1e-12)
    assert warmup_inverse_sqrt(0, d_model, warmup) > 0


def test_scheduler_drives_optimizer_lr():
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=1.0)
    sched = make_warmup_scheduler(opt, d_model=64, warmup=10)
    lrs = []
    for _ in range(30):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(warmup_inverse_sqrt(1, 64, 10))
    assert max(range(30), key=lrs.__getitem__) == 9  # the 10th update uses the peak
    assert lrs[9] == pytest.approx(64 ** -0.5 * 10 ** -0.5)


def _regression():
    torch.manual_seed(0)
    x = torch.randn(256, 4)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1
    model = nn.Linear(4, 1)
    batches = [(x[i:i + 32], y[i:i + 32]) for i in range(0, 256, 32)]

    def step_fn(m, batch):
        xb, yb = batch
        return F.mse_loss(m(xb).squeeze(-1), yb)

    return model, batches, step_fn, x, y


def test_train_reduces_loss_and_records(monkeypatch):
    monkeypatch.delenv(MAX_STEPS_ENV, raising=False)
    model, batches, step_fn, x, y = _regression()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    evals = []

    def eval_fn(m):
        assert not m.training and not torch.is_grad_enabled()
        evals.append(1)
        return {"val_loss": F.mse_loss(m(x).squeeze(-1), y)}

    hist = train(model, batches, step_fn, opt, steps=200, eval_fn=eval_fn, eval_every=50, progress=False)
    assert isinstance(hist, History)
    assert len(hist.train_loss) == 200 and hist.steps == 200
    assert hist.train_loss[-1] < 0.01 * hist.train_loss[0]
    assert [s for s, _ in hist.evals] == [50, 100, 150, 200]
    assert hist.last("val_loss") < 1e-3
    assert hist.seconds > 0 and len(hist.lrs) == 200
    assert len(hist.smoothed_loss(10)) == 200
    ax = hist.plot()
    assert len(ax.lines) == 2
    import matplotlib.pyplot as plt
    plt.close("all")


def test_train_takes_iterables_only(monkeypatch):
    monkeypatch.delenv(MAX_STEPS_ENV, raising=False)
    model, batches, step_fn, *_ = _regression()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    hist = train(model, iter(batches * 2), step_fn, opt, steps=16, progress=False)  # an iterator
    assert hist.steps == 16
    hist = train(model, batches, step_fn, opt, steps=3 * len(batches) + 1, progress=False)  # a list, cycled
    assert hist.steps == 3 * len(batches) + 1

    def endless():
        while True:
            yield batches[0]

    assert train(model, endless(), step_fn, opt, steps=5, progress=False).steps == 5
    with pytest.raises(ValueError, match="ran out"):
        train(model, iter(batches), step_fn, opt, steps=len(batches) + 1, progress=False)
    with pytest.raises(TypeError, match="not a function"):
        train(model, lambda: batches[0], step_fn, opt, steps=2, progress=False)  # one convention: no callables


def test_train_with_scheduler_and_clip(monkeypatch):
    monkeypatch.delenv(MAX_STEPS_ENV, raising=False)
    model, batches, step_fn, *_ = _regression()
    opt = torch.optim.Adam(model.parameters(), lr=1.0)
    sched = make_warmup_scheduler(opt, d_model=16, warmup=20, factor=2.0)
    hist = train(model, batches, step_fn, opt, steps=40, scheduler=sched, clip=0.5, progress=False)
    assert hist.lrs[19] == pytest.approx(2.0 * 16 ** -0.5 * 20 ** -0.5)
    assert max(hist.lrs) == hist.lrs[19]


def test_train_nan_loss_is_reported(monkeypatch):
    monkeypatch.delenv(MAX_STEPS_ENV, raising=False)
    model, batches, _, *_ = _regression()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(FloatingPointError, match="masks"):
        train(model, batches, lambda m, b: m(b[0]).sum() * float("nan"), opt, steps=3, progress=False)


def test_max_steps_env_caps_steps(monkeypatch):
    monkeypatch.setenv(MAX_STEPS_ENV, "3")
    assert max_steps(1000) == 3 and max_steps(2) == 2
    model, batches, step_fn, *_ = _regression()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    hist = train(model, batches, step_fn, opt, steps=1000, eval_fn=lambda m: {"a": 1.0}, eval_every=500,
                 progress=False)
    assert hist.steps == 3 and len(hist.train_loss) == 3
    assert hist.evals == [(3, {"a": 1.0})]
    monkeypatch.setenv(MAX_STEPS_ENV, "")
    assert max_steps(1000) == 1000
    monkeypatch.delenv(MAX_STEPS_ENV)
    assert max_steps(1000) == 1000
    monkeypatch.setenv(MAX_STEPS_ENV, "three")
    with pytest.raises(ValueError, match="LABSUPPORT_MAX_STEPS must be an integer"):
        max_steps(10)


def test_warmup_cosine():
    from labsupport.training import make_warmup_cosine_scheduler, warmup_cosine
    f = [warmup_cosine(t, 10, 110, 0.1) for t in range(130)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0) and f[10] == pytest.approx(1.0)
    assert f[60] == pytest.approx(0.55) and f[110] == pytest.approx(0.1) and f[129] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(f[10:], f[11:]))
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=0.01)
    sched = make_warmup_cosine_scheduler(opt, 10, 110)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.001)
    for _ in range(10):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)
