"""Figures for the book and the labs: attention heat maps, training curves, interactive explorers.

Every function draws with matplotlib and returns the ``Axes`` (or ``Figure``) so a caller can add to it.
Explorers (:func:`explorer`) use ipywidgets in a live notebook and fall back to a static row of figures when
``LABSUPPORT_STATIC=1`` (set by ``make book``) or when ipywidgets is missing, so the built book shows them.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np

STATIC_ENV = "LABSUPPORT_STATIC"


def to_numpy(x) -> np.ndarray:
    """A tensor (on any device, with or without gradient) or an array-like as a NumPy array."""
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def attention_heatmap(
    weights,
    x_labels: Sequence[str] | None = None,
    y_labels: Sequence[str] | None = None,
    ax=None,
    title: str | None = None,
    annotate: bool | None = None,
    cmap: str = "viridis",
    colorbar: bool = True,
):
    """Draw a ``(Lq, Lk)`` attention matrix: rows are queries (``y_labels``), columns are keys (``x_labels``).

    Cells are annotated with their weight when the matrix is small enough to read (``annotate=None`` decides).
    """
    w = to_numpy(weights).astype(float)
    if w.ndim != 2:
        raise ValueError(f"attention_heatmap expects a 2-D (queries, keys) matrix, got shape {w.shape}; "
                         "pick one batch element and one head first, e.g. weights[0, h]")
    y_labels = x_labels if y_labels is None and w.shape[0] == w.shape[1] else y_labels
    if ax is None:
        size = max(3.0, 0.45 * max(w.shape) + 1.5)
        _, ax = plt.subplots(figsize=(size + (1 if colorbar else 0), size * w.shape[0] / max(w.shape)))
    im = ax.imshow(w, cmap=cmap, vmin=0.0, vmax=max(1e-9, float(np.nanmax(w))), aspect="auto")
    if x_labels is not None:
        ax.set_xticks(range(len(x_labels)), labels=x_labels, rotation=60, ha="right")
    if y_labels is not None:
        ax.set_yticks(range(len(y_labels)), labels=y_labels)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    if annotate is None:
        annotate = max(w.shape) <= 12
    if annotate:
        for i in range(w.shape[0]):
            for j in range(w.shape[1]):
                ax.text(j, i, f"{w[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if w[i, j] < 0.6 * np.nanmax(w) else "black")
    if title:
        ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return ax


def attention_heads(weights, labels: Sequence[str] | None = None, titles: Sequence[str] | None = None, ncols: int = 4):
    """Draw each head of a ``(H, L, L)`` attention tensor side by side; returns the figure."""
    w = to_numpy(weights)
    H = w.shape[0]
    ncols = min(ncols, H)
    nrows = -(-H // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 3.2 * nrows), squeeze=False)
    for h, ax in enumerate(axes.flat):
        if h >= H:
            ax.axis("off")
            continue
        attention_heatmap(w[h], labels, ax=ax, title=titles[h] if titles else f"head {h}", annotate=False,
                          colorbar=False)
        if h % ncols:
            ax.set_ylabel("")
    fig.tight_layout()
    return fig


def plot_curves(curves: dict[str, Sequence[float]], xlabel: str = "step", ylabel: str = "loss", ax=None,
                title: str | None = None, hline: tuple[float, str] | None = None):
    """Plot one or more curves, e.g. ``{"train": [...], "validation": [...]}``; ``hline=(y, label)`` adds a bar."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    for name, ys in curves.items():
        ys = list(ys)
        if ys and isinstance(ys[0], (tuple, list)):  # (x, y) pairs
            ax.plot([p[0] for p in ys], [p[1] for p in ys], label=name, marker="o" if len(ys) < 30 else None)
        else:
            ax.plot(ys, label=name)
    if hline is not None:
        ax.axhline(hline[0], color="grey", linestyle="--", linewidth=1, label=hline[1])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return ax


def static_mode() -> bool:
    """True when explorers should draw static figures (the book build sets ``LABSUPPORT_STATIC=1``)."""
    if os.environ.get(STATIC_ENV, "") not in ("", "0"):
        return True
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return True
    return False


def explorer(draw: Callable, static_values: dict[str, Sequence], **widgets):
    """An interactive explorer that degrades to a static figure.

    ``draw(**params)`` draws onto the current matplotlib figure. In a live notebook this returns
    ``ipywidgets.interactive(draw, **widgets)`` (sliders, dropdowns). In static mode it draws ``draw`` once
    for each combination listed in ``static_values`` (one parameter varied, at most 4 values), side by side.
    """
    if not static_mode():
        import ipywidgets

        return ipywidgets.interactive(draw, **widgets)
    (name, values), = static_values.items()
    defaults = {k: _widget_default(w) for k, w in widgets.items()}
    for v in values:
        params = dict(defaults, **{name: v})
        draw(**params)
        plt.show()
    return None


def _widget_default(w):
    value = getattr(w, "value", None)
    if value is not None:
        return value
    if isinstance(w, (list, tuple)):
        return w[0]
    return w
