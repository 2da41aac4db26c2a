"""Positional encodings, the reference implementations (the twins of Lab 3).

Self-attention treats its input as a *set*: permute the tokens and the outputs are permuted the same way,
nothing else changes. To let a model use word order, each position gets a vector that is added to the token
embedding. This module holds the usual choices:

* :func:`sinusoidal_encoding` / :class:`SinusoidalPositionalEncoding`, the fixed table of Vaswani et al.
  (2017): ``PE[pos, 2i] = sin(pos / base^(2i/D))`` and ``PE[pos, 2i+1] = cos(pos / base^(2i/D))``;
* :class:`LearnedPositionalEncoding`, one trained vector per position (BERT, GPT-2);
* :class:`LearnedPositionalEncoding2D` and :func:`sinusoidal_encoding_2d`, positions on the ``grid_h x grid_w``
  patch grid of a Vision Transformer;
* :func:`offset_rotation`, the matrix behind the *relative-offset property*: for every offset ``k`` there is one
  fixed matrix ``M_k`` (a rotation in each (sin, cos) plane) with ``PE[pos + k] = M_k @ PE[pos]`` for all ``pos``.

Shapes: ``B`` batch, ``L`` sequence length, ``D`` (``d_model``) the model width.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "frequencies",
    "sinusoidal_encoding",
    "SinusoidalPositionalEncoding",
    "LearnedPositionalEncoding",
    "LearnedPositionalEncoding2D",
    "sinusoidal_encoding_2d",
    "offset_rotation",
    "cosine_similarity_table",
    "similarity_grid",
]


def frequencies(d_model: int, base: float = 10000.0, dtype=torch.float32) -> torch.Tensor:
    """The angular frequencies ``omega_i = 1 / base^(2i/D)`` for ``i = 0 .. ceil(D/2) - 1``: shape ``(ceil(D/2),)``.

    Dimension pair ``(2i, 2i+1)`` turns at frequency ``omega_i``: from one turn per ``2 pi`` positions (``i = 0``)
    down to one turn per ``2 pi * base`` positions, a geometric progression of wavelengths.
    """
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)
    return (1.0 / (base ** (two_i / d_model))).to(dtype)


def sinusoidal_encoding(max_len: int, d_model: int, base: float = 10000.0, dtype=torch.float32,
                        device=None) -> torch.Tensor:
    """The sinusoidal table, shape ``(max_len, d_model)``.

    ``PE[pos, 2i] = sin(pos * omega_i)`` and ``PE[pos, 2i+1] = cos(pos * omega_i)`` with
    ``omega_i = 1 / base^(2i/d_model)``: even columns hold sines, odd columns cosines. An odd ``d_model``
    simply drops the last cosine. Computed in float64 and then cast, so long tables stay accurate.
    """
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]  # (max_len, 1)
    angles = pos * frequencies(d_model, base, torch.float64)[None, :]  # (max_len, ceil(D/2))
    pe = torch.zeros(max_len, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles[:, : d_model // 2])
    return pe.to(dtype=dtype, device=device)


def offset_rotation(k: int, d_model: int, base: float = 10000.0, dtype=torch.float32) -> torch.Tensor:
    """The ``(D, D)`` matrix ``M_k`` with ``PE[pos + k] = M_k @ PE[pos]`` for every ``pos`` (``D`` even).

    It is block diagonal: pair ``(sin(a), cos(a))`` with ``a = pos * omega_i`` becomes ``(sin(a + b), cos(a + b))``
    with ``b = k * omega_i``, by the angle-addition formulas, i.e. the 2x2 block ``[[cos b, sin b], [-sin b, cos b]]``.
    It depends on the offset ``k`` only, not on ``pos``: this is what lets attention pick out relative positions
    with a linear map. (For a row-vector table, ``PE[pos + k] = PE[pos] @ M_k.T``.)
    """
    if d_model % 2:
        raise ValueError(f"offset_rotation needs an even d_model, got {d_model}")
    b = k * frequencies(d_model, base, torch.float64)
    c, s = torch.cos(b), torch.sin(b)
    m = torch.zeros(d_model, d_model, dtype=torch.float64)
    idx = torch.arange(0, d_model, 2)
    m[idx, idx] = c
    m[idx, idx + 1] = s
    m[idx + 1, idx] = -s
    m[idx + 1, idx + 1] = c
    return m.to(dtype)


def _check_length(offset: int, length: int, max_len: int, what: str) -> None:
    """Positions ``offset .. offset + length - 1`` must lie in the table ``0 .. max_len - 1``; the error names the
    ones that do not."""
    last = offset + length - 1
    if offset < 0:
        raise ValueError(f"{what}: positions {offset}..{min(last, -1)} are negative; the table holds positions "
                         f"0..{max_len - 1}")
    if last >= max_len:
        raise ValueError(
            f"{what}: positions {max(offset, max_len)}..{last} are outside the table of max_len={max_len} "
            f"(positions 0..{max_len - 1}); build the module with a larger max_len"
        )


class SinusoidalPositionalEncoding(nn.Module):
    """Adds the fixed sinusoidal table to its input: ``forward(x (B, L, D), offset=0) -> (B, L, D)``.

    Returns ``dropout(x + PE[offset : offset + L])``. ``offset`` is the position of the first token (used when
    generating with a KV cache, where only the newest tokens pass through). The table is a non-persistent
    buffer: it moves with ``.to(device)`` but is not stored in the ``state_dict`` (nothing to learn).
    """

    def __init__(self, d_model: int, max_len: int = 5000, *, dropout: float = 0.0, base: float = 10000.0):
        super().__init__()
        self.d_model, self.max_len = d_model, max_len
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("pe", sinusoidal_encoding(max_len, d_model, base), persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        L = x.size(-2)
        _check_length(offset, L, self.max_len, "SinusoidalPositionalEncoding")
        return self.dropout(x + self.pe[offset : offset + L].to(x.dtype))


class LearnedPositionalEncoding(nn.Module):
    """Adds a trained vector per position: ``forward(x (B, L, D), offset=0) -> dropout(x + E[offset:offset+L])``.

    ``embedding`` is an ``nn.Embedding(max_len, d_model)`` initialised from ``N(0, 0.02^2)`` (as GPT-2 and BERT
    do), so that at the start the positions nudge the token embeddings instead of drowning them. It cannot
    represent positions ``>= max_len``: unlike the sinusoidal table it does not extrapolate.
    """

    def __init__(self, max_len: int, d_model: int, *, dropout: float = 0.0, init_std: float = 0.02):
        super().__init__()
        self.d_model, self.max_len = d_model, max_len
        self.embedding = nn.Embedding(max_len, d_model)
        nn.init.normal_(self.embedding.weight, std=init_std)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        L = x.size(-2)
        _check_length(offset, L, self.max_len, "LearnedPositionalEncoding")
        positions = torch.arange(offset, offset + L, device=x.device)
        return self.dropout(x + self.embedding(positions).to(x.dtype))


class LearnedPositionalEncoding2D(nn.Module):
    """Learned positions for a ``grid_h x grid_w`` grid of image patches (Vision Transformer).

    ``factorized=True`` (default): a row table ``row (grid_h, D)`` and a column table ``col (grid_w, D)``;
    patch ``(r, c)`` gets ``row[r] + col[c]`` (``(grid_h + grid_w) D`` parameters).
    ``factorized=False``: one full table ``embedding (grid_h * grid_w, D)``, as in the ViT paper.

    Patches are numbered row-major (``index = r * grid_w + c``), the order of ``x.flatten(2)`` on a
    ``(B, D, grid_h, grid_w)`` feature map. ``forward(x (B, grid_h * grid_w, D)) -> x + table()``;
    :meth:`table` returns the ``(grid_h * grid_w, D)`` position vectors.
    """

    def __init__(self, grid_h: int, grid_w: int, d_model: int, *, factorized: bool = True, init_std: float = 0.02):
        super().__init__()
        self.grid_h, self.grid_w, self.d_model, self.factorized = grid_h, grid_w, d_model, factorized
        if factorized:
            self.row = nn.Embedding(grid_h, d_model)
            self.col = nn.Embedding(grid_w, d_model)
            nn.init.normal_(self.row.weight, std=init_std)
            nn.init.normal_(self.col.weight, std=init_std)
        else:
            self.embedding = nn.Embedding(grid_h * grid_w, d_model)
            nn.init.normal_(self.embedding.weight, std=init_std)

    def table(self) -> torch.Tensor:
        """The position vectors of all patches, row-major: ``(grid_h * grid_w, D)``."""
        if self.factorized:
            return (self.row.weight[:, None, :] + self.col.weight[None, :, :]).reshape(-1, self.d_model)
        return self.embedding.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.grid_h * self.grid_w
        if x.size(-2) != n:
            raise ValueError(f"expected {n} patches ({self.grid_h}x{self.grid_w}) along dim -2, "
                             f"got x of shape {tuple(x.shape)}")
        return x + self.table().to(x.dtype)


def sinusoidal_encoding_2d(grid_h: int, grid_w: int, d_model: int, base: float = 10000.0,
                           dtype=torch.float32) -> torch.Tensor:
    """Fixed 2-D positions for a patch grid, shape ``(grid_h * grid_w, d_model)``, row-major patch order.

    The first ``D/2`` dimensions encode the row with the 1-D sinusoidal table of width ``D/2``, the last
    ``D/2`` the column. ``d_model`` must be even.
    """
    if d_model % 2:
        raise ValueError(f"sinusoidal_encoding_2d needs an even d_model, got {d_model}")
    half = d_model // 2
    rows = sinusoidal_encoding(grid_h, half, base, torch.float64)  # (grid_h, D/2)
    cols = sinusoidal_encoding(grid_w, half, base, torch.float64)  # (grid_w, D/2)
    pe = torch.cat([rows[:, None, :].expand(grid_h, grid_w, half), cols[None, :, :].expand(grid_h, grid_w, half)],
                   dim=-1)
    return pe.reshape(grid_h * grid_w, d_model).to(dtype)


def cosine_similarity_table(table: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every pair of position vectors: ``(N, D) -> (N, N)``."""
    t = torch.nn.functional.normalize(table.detach().float(), dim=-1)
    return t @ t.T


def similarity_grid(table: torch.Tensor, grid_h: int, grid_w: int, title: str | None = None, size: float = 0.9,
                    vmin: float | None = -1.0):
    """Draw the similarity structure of 2-D patch positions, as in the ViT paper's figure of position embeddings.

    ``table`` is ``(grid_h * grid_w, D)`` (row-major patches). The figure is a ``grid_h x grid_w`` grid of small
    heat maps: the one at row ``r``, column ``c`` shows the cosine similarity of patch ``(r, c)``'s position vector
    with every patch's, laid out on the image grid. The colour scale runs from ``vmin`` to 1 (``vmin=None``: from
    the smallest similarity in the table, to show structure when all vectors are alike). Returns the figure.
    """
    import matplotlib.pyplot as plt

    sim = cosine_similarity_table(table).cpu().numpy().reshape(grid_h, grid_w, grid_h, grid_w)
    vmin = float(sim.min()) if vmin is None else vmin
    fig, axes = plt.subplots(grid_h, grid_w, figsize=(size * grid_w + 1.2, size * grid_h + 0.5), squeeze=False)
    for r in range(grid_h):
        for c in range(grid_w):
            ax = axes[r, c]
            im = ax.imshow(sim[r, c], vmin=vmin, vmax=1, cmap="viridis")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(str(r + 1), rotation=0, labelpad=8, va="center")
            if r == grid_h - 1:
                ax.set_xlabel(str(c + 1))
    fig.supxlabel("patch column")
    fig.supylabel("patch row")
    fig.colorbar(im, ax=axes, fraction=0.03, pad=0.02, label="cosine similarity")
    if title:
        fig.suptitle(title)
    return fig
