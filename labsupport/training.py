"""Training, evaluation, decoding and sampling: the parts every training lab shares (Labs 5-8).

* :func:`max_steps`              the number of steps :func:`train` runs: ``LABSUPPORT_MAX_STEPS`` may cap it
* :func:`warmup_inverse_sqrt`    the learning-rate schedule of Vaswani et al. (2017), often called "Noam"
* :func:`make_warmup_scheduler`  that schedule as a ``torch.optim.lr_scheduler.LambdaLR``
* :class:`LabelSmoothingLoss`    cross-entropy against a smoothed target distribution
* :func:`train`                  a small, readable training loop with a progress bar; returns a :class:`History`
* :func:`greedy_decode`          greedy decoding for an encoder-decoder model (Lab 5)
* :func:`sample`                 temperature and top-k sampling for a decoder-only model, with a KV cache (Lab 6)

The loop is deliberately plain: fetch a batch, compute the loss with a function the lab supplies, back-propagate,
clip the gradient norm, step the optimizer and the schedule. Everything a lab is *about* (the loss, the masks,
the model) lives in the ``step_fn`` the lab writes, not in here.
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "MAX_STEPS_ENV", "max_steps", "warmup_inverse_sqrt", "make_warmup_scheduler", "warmup_cosine",
    "make_warmup_cosine_scheduler", "LabelSmoothingLoss",
    "History", "train", "greedy_decode", "sample", "top_k_filter",
]

#: Environment variable: an integer that caps the optimisation steps of every training loop of this module
#: (e.g. ``LABSUPPORT_MAX_STEPS=3`` to run a lab's code paths in seconds, without its results).
MAX_STEPS_ENV = "LABSUPPORT_MAX_STEPS"


def max_steps(steps: int) -> int:
    """The number of steps :func:`train` runs when asked for ``steps``: ``min(steps, LABSUPPORT_MAX_STEPS)`` when
    that variable is set, otherwise ``steps``. A lab can compare the two to know whether it trained in full."""
    cap = os.environ.get(MAX_STEPS_ENV, "").strip()
    if not cap:
        return steps
    try:
        return min(steps, int(cap))
    except ValueError:
        raise ValueError(f"{MAX_STEPS_ENV} must be an integer, got {cap!r}") from None


# ----------------------------------------------------------------------------------------------------------------
# Learning-rate schedule and loss
# ----------------------------------------------------------------------------------------------------------------
def warmup_inverse_sqrt(step: int, d_model: int, warmup: int) -> float:
    """The schedule of "Attention Is All You Need" (section 5.3), for ``step = 1, 2, 3, ...``::

        lr(step) = d_model ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)

    It grows linearly for ``warmup`` steps, peaks at ``step == warmup`` with ``(d_model * warmup) ** -0.5``,
    then decays like ``1 / sqrt(step)``. Step 0 (before any update) is treated as step 1, so it never returns 0.
    """
    step = max(int(step), 1)
    return d_model ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)


def make_warmup_scheduler(optimizer: torch.optim.Optimizer, d_model: int, warmup: int, factor: float = 1.0):
    """A ``LambdaLR`` that multiplies the optimizer's learning rate by ``factor * warmup_inverse_sqrt(step)``.

    Create the optimizer with ``lr=1.0`` to get exactly the paper's schedule (``factor`` scales it, as the
    Annotated Transformer does). ``LambdaLR`` counts scheduler steps from 0; update ``t`` (0-based) therefore
    uses the paper's step ``t + 1``, and the peak comes on update ``warmup``.
    """
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda t: factor * warmup_inverse_sqrt(t + 1, d_model, warmup))


def warmup_cosine(step: int, warmup: int, total: int, min_factor: float = 0.1) -> float:
    """A factor in ``[min_factor, 1]``: linear warm-up over ``warmup`` steps, then a cosine decay to ``min_factor``
    at ``total`` steps (and constant after). The schedule of GPT-2/3 and most models since."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_warmup_cosine_scheduler(optimizer: torch.optim.Optimizer, warmup: int, total: int, min_factor: float = 0.1):
    """A ``LambdaLR`` multiplying the optimizer's ``lr`` by :func:`warmup_cosine` (``lr`` is then the peak rate)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: warmup_cosine(t, warmup, total, min_factor))


class LabelSmoothingLoss(nn.Module):
    """Cross-entropy against a smoothed target: ``1 - smoothing`` on the true class, ``smoothing`` spread evenly
    over all ``V`` classes (the true one included), exactly as ``F.cross_entropy(..., label_smoothing=smoothing)``.

    ``logits`` may be ``(N, V)`` or ``(B, L, V)`` with targets ``(N,)`` or ``(B, L)``. Positions whose target
    equals ``ignore_index`` (padding) contribute nothing; the loss is the mean over the other positions.
    """

    def __init__(self, smoothing: float = 0.1, ignore_index: int | None = None):
        super().__init__()
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        self.smoothing = smoothing
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        V = logits.shape[-1]
        logp = F.log_softmax(logits.reshape(-1, V).float(), dim=-1)
        target = target.reshape(-1)
        keep = torch.ones_like(target, dtype=torch.bool) if self.ignore_index is None else target != self.ignore_index
        safe = torch.where(keep, target, torch.zeros_like(target))
        nll = -logp.gather(1, safe[:, None]).squeeze(1)  # -log p(true class)
        uniform = -logp.mean(dim=-1)                      # cross-entropy against the uniform distribution
        loss = (1.0 - self.smoothing) * nll + self.smoothing * uniform
        loss = loss * keep
        return loss.sum() / keep.sum().clamp(min=1)


# ----------------------------------------------------------------------------------------------------------------
# The training loop
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class History:
    """What :func:`train` recorded: the loss of every step, the evaluations, the learning rates, the time."""

    train_loss: list = field(default_factory=list)
    evals: list = field(default_factory=list)  # (step, {"metric": value, ...})
    lrs: list = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0

    def metric(self, name: str) -> list:
        """``[(step, value), ...]`` of one evaluation metric."""
        return [(s, m[name]) for s, m in self.evals if name in m]

    def last(self, name: str):
        """The most recent value of an evaluation metric (``None`` if never evaluated)."""
        values = self.metric(name)
        return values[-1][1] if values else None

    def smoothed_loss(self, window: int = 25) -> list:
        """The training loss averaged over a sliding window of ``window`` steps (less noisy for plots)."""
        out, total = [], 0.0
        for i, v in enumerate(self.train_loss):
            total += v
            if i >= window:
                total -= self.train_loss[i - window]
            out.append(total / min(i + 1, window))
        return out

    def plot(self, metrics: Iterable[str] | None = None, ax=None, title: str | None = None, hline=None,
             ylabel: str = "loss", window: int = 25):
        """Training loss (smoothed) and the evaluation metrics whose name contains "loss" (or ``metrics``)."""
        from labsupport.viz import plot_curves

        curves = {"train (smoothed)": self.smoothed_loss(window)} if self.train_loss else {}
        names = list(metrics) if metrics is not None else sorted(
            {k for _, m in self.evals for k in m if "loss" in k})
        for name in names:
            # evaluations are recorded after step s: plot them at x = s - 1, the index of that step's loss
            curves[name] = [(s - 1, v) for s, v in self.metric(name)]
        return plot_curves(curves, xlabel="step", ylabel=ylabel, ax=ax, title=title, hline=hline)


def _endless(batches: Iterable):
    """Yield the batches of ``batches`` forever: an iterator (a generator) is used as it is; a re-iterable
    collection (a list, a ``DataLoader``, which reshuffles each epoch) is iterated again when it ends."""
    if callable(batches) and not hasattr(batches, "__iter__"):
        raise TypeError("train() takes an iterable of batches, not a function: write a generator "
                        "(`while True: yield make_batch()`) or pass (make_batch() for _ in range(steps))")
    while True:
        empty = True
        for item in batches:
            empty = False
            yield item
        if empty:
            raise ValueError("train(): the batches ran out (an iterator that ended, or an empty collection); "
                             "give an endless iterator or a collection to cycle")


def train(
    model: nn.Module,
    batches: Iterable,
    step_fn: Callable,
    optimizer: torch.optim.Optimizer,
    steps: int,
    scheduler=None,
    eval_fn: Callable | None = None,
    eval_every: int | None = None,
    clip: float | None = 1.0,
    progress: bool = True,
    desc: str = "training",
) -> History:
    """Train ``model`` for ``steps`` updates and return a :class:`History`.

    ``batches``: an iterable of batches, the one convention of the course's data: an endless iterator (every
    ``batches(...)`` method of :mod:`labsupport.data` returns one), or a collection that is cycled (a list, a
    ``DataLoader``).
    ``step_fn(model, batch)`` returns the scalar loss of one batch (the lab's own code: masks, shifting, loss).
    ``eval_fn(model)`` returns a dict of metrics; it runs every ``eval_every`` steps and after the last step, in
    ``model.eval()`` mode without gradients. ``clip`` is the maximum gradient norm (``None``: no clipping).
    ``LABSUPPORT_MAX_STEPS`` caps ``steps`` (:func:`max_steps`).
    """
    from tqdm.auto import tqdm

    steps = max_steps(steps)
    stream = _endless(batches)
    history = History()
    start = time.perf_counter()
    bar = tqdm(total=steps, desc=desc, disable=not progress, mininterval=0.5, leave=True)

    def evaluate(step: int):
        model.eval()
        with torch.no_grad():
            metrics = {k: float(v) for k, v in eval_fn(model).items()}
        model.train()
        history.evals.append((step, metrics))
        bar.set_postfix({k: f"{v:.4g}" for k, v in metrics.items()}, refresh=False)

    model.train()
    try:
        for step in range(1, steps + 1):
            batch = next(stream)
            loss = step_fn(model, batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the loss became {loss.item()} at step {step}: lower the learning rate "
                                         "or check the masks (a fully masked row gives NaN)")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            history.lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            history.train_loss.append(loss.item())
            history.steps = step
            bar.update(1)
            if step % 10 == 0 or step == steps:
                bar.set_postfix(loss=f"{history.train_loss[-1]:.4f}", refresh=False)
            if eval_fn is not None and ((eval_every and step % eval_every == 0) or step == steps):
                evaluate(step)
    finally:
        bar.close()
        model.eval()
        history.seconds = time.perf_counter() - start
    return history


# ----------------------------------------------------------------------------------------------------------------
# Decoding (Lab 5) and sampling (Lab 6)
# ----------------------------------------------------------------------------------------------------------------
@torch.no_grad()
def greedy_decode(model: nn.Module, src: torch.Tensor, max_len: int, bos: int, eos: int, src_mask=None,
                  pad: int | None = None) -> torch.Tensor:
    """Greedy decoding with an encoder-decoder model that has ``encode(src, src_mask)`` and
    ``decode(tgt, memory, memory_mask=...)`` (returning logits ``(B, Lt, V)``), e.g. ``Seq2SeqTransformer``.

    The source is encoded once; then, starting from ``<bos>``, the most likely next token is appended until every
    sequence has produced ``<eos>`` or ``max_len`` tokens were generated. Returns ``(B, 1 + n)`` ids starting
    with ``<bos>``; after a sequence's ``<eos>`` the remaining places hold ``pad`` (default: the model's
    ``tgt_pad_id``, else ``eos``). ``src_mask`` defaults to the model's own source padding mask.
    """
    was_training = model.training
    model.eval()
    if src_mask is None and hasattr(model, "make_src_mask"):
        src_mask = model.make_src_mask(src)
    if pad is None:
        pad = getattr(model, "tgt_pad_id", None)
        pad = eos if pad is None else pad
    memory = model.encode(src, src_mask)
    ys = torch.full((src.shape[0], 1), bos, dtype=torch.long, device=src.device)
    done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
    for _ in range(max_len):
        logits = model.decode(ys, memory, memory_mask=src_mask)
        nxt = logits[:, -1].argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
        ys = torch.cat([ys, nxt[:, None]], dim=1)
        done |= nxt == eos
        if bool(done.all()):
            break
    model.train(was_training)
    return ys


def top_k_filter(logits: torch.Tensor, k: int | None) -> torch.Tensor:
    """Keep the ``k`` largest logits of each row, set the others to ``-inf`` (ties with the k-th are kept)."""
    if k is None or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


@torch.no_grad()
def sample(model: nn.Module, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
           top_k: int | None = None, use_cache: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
    """Continue the prompts ``idx (B, L)`` by ``max_new_tokens`` tokens with a decoder-only model (``GPT``).

    Each step divides the last position's logits by ``temperature`` (``0`` means greedy: always the most likely
    token), keeps the ``top_k`` largest, and draws from the softmax with ``generator``. With ``use_cache`` the
    model gets a KV cache (``model.new_cache()``): the prompt is processed once, then only the newest token per
    step. The model sees at most ``model.max_len`` positions; past that, the context is cropped to the last
    ``max_len`` tokens (and the cache rebuilt from them), so cached and uncached sampling give the same tokens.
    Returns ``(B, L + max_new_tokens)``.
    """
    was_training = model.training
    model.eval()
    max_len = model.max_len
    cache = model.new_cache() if use_cache else None
    for _ in range(max_new_tokens):
        if cache is None:
            logits = model(idx[:, -max_len:])
        elif cache.length == 0 or cache.length >= max_len:
            cache = model.new_cache()  # (re)fill the cache with the whole (cropped) context
            logits = model(idx[:, -max_len:], cache=cache)
        else:
            logits = model(idx[:, -1:], cache=cache)
        logits = logits[:, -1].float()
        if temperature == 0:
            nxt = logits.argmax(-1, keepdim=True)
        else:
            probs = torch.softmax(top_k_filter(logits / temperature, top_k), dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator)
        idx = torch.cat([idx, nxt], dim=1)
    model.train(was_training)
    return idx
