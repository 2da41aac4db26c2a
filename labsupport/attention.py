"""Attention, the reference implementations (the twins of Labs 1 and 2).

Shapes use these letters throughout:

* ``B`` batch, ``H`` heads, ``Lq`` query positions, ``Lk`` key/value positions,
* ``d_k`` the width of a query/key vector, ``d_v`` the width of a value vector, ``D`` the model width.

**Mask convention** (the same as :func:`torch.nn.functional.scaled_dot_product_attention`): a boolean mask
is ``True`` where a query *may* attend to a key and ``False`` where it may not. Masks broadcast against the
score matrix ``(..., Lq, Lk)``. (Careful: ``nn.MultiheadAttention``'s ``key_padding_mask`` and ``attn_mask``
use the opposite polarity, ``True`` = blocked; :func:`MultiHeadAttention` below follows ours.)

The NumPy functions carry the suffix ``_np``; the PyTorch ones do not.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

# ---------------------------------------------------------------------------------------------------------
# NumPy (Lab 1)
# ---------------------------------------------------------------------------------------------------------


def softmax_np(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax along ``axis``.

    Subtracting the maximum first changes nothing mathematically (softmax is shift-invariant) but keeps
    ``exp`` from overflowing: ``softmax([1000, 1001])`` is ``[0.269, 0.731]``, not ``[nan, nan]``.
    A row that is entirely ``-inf`` (a query allowed to see nothing) returns zeros instead of NaN.
    """
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.exp(x - m)
    s = np.sum(e, axis=axis, keepdims=True)
    return np.divide(e, s, out=np.zeros_like(e), where=s > 0)


def attention_scores_np(q: np.ndarray, k: np.ndarray, scale: bool = True) -> np.ndarray:
    """Scores ``q @ k^T``, divided by ``sqrt(d_k)`` when ``scale``: ``(..., Lq, d_k), (..., Lk, d_k) -> (..., Lq, Lk)``."""
    scores = q @ np.swapaxes(k, -1, -2)
    if scale:
        scores = scores / math.sqrt(q.shape[-1])
    return scores


def apply_mask_np(scores: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Set the scores where ``mask`` is ``False`` to ``-inf`` (so softmax gives them zero weight)."""
    if mask is None:
        return scores
    return np.where(mask, scores, -np.inf)


def scaled_dot_product_attention_np(q, k, v, mask=None):
    """``softmax(q k^T / sqrt(d_k)) v`` in NumPy; returns ``(output (..., Lq, d_v), weights (..., Lq, Lk))``."""
    weights = softmax_np(apply_mask_np(attention_scores_np(q, k), mask), axis=-1)
    return weights @ v, weights


def causal_mask_np(n: int, m: int | None = None) -> np.ndarray:
    """Boolean ``(n, m)`` mask, ``True`` on and below the diagonal: position ``i`` sees positions ``<= i``."""
    return np.tril(np.ones((n, n if m is None else m), dtype=bool))


def padding_mask_np(lengths, max_len: int) -> np.ndarray:
    """Boolean ``(B, max_len)`` mask, ``True`` at real tokens and ``False`` at padding."""
    return np.arange(max_len)[None, :] < np.asarray(lengths)[:, None]


# ---------------------------------------------------------------------------------------------------------
# PyTorch (Lab 2 onwards)
# ---------------------------------------------------------------------------------------------------------


def causal_mask(n: int, m: int | None = None, device=None) -> torch.Tensor:
    """Boolean ``(n, m)`` mask, ``True`` where query ``i`` may attend to key ``j`` (``j <= i + m - n``).

    With ``m > n`` (queries are the last ``n`` of ``m`` positions, as with a KV cache) the diagonal shifts so
    that the last query sees every key.
    """
    m = n if m is None else m
    return torch.ones(n, m, dtype=torch.bool, device=device).tril(diagonal=m - n)


def padding_mask(lengths, max_len: int | None = None, device=None) -> torch.Tensor:
    """Boolean ``(B, 1, 1, L)`` key mask from sequence lengths: ``True`` at real tokens, ``False`` at padding.

    The two singleton dimensions let it broadcast over heads and query positions of ``(B, H, Lq, Lk)`` scores.
    """
    lengths = torch.as_tensor(lengths, device=device)
    max_len = int(lengths.max()) if max_len is None else max_len
    keep = torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]
    return keep[:, None, None, :]


def key_padding_mask(tokens: torch.Tensor, pad_id: int) -> torch.Tensor:
    """``(B, L)`` token ids to a ``(B, 1, 1, L)`` key mask that hides the ``pad_id`` positions."""
    return (tokens != pad_id)[:, None, None, :]


def scaled_dot_product_attention(q, k, v, mask=None, dropout_p: float = 0.0, training: bool = False):
    """``softmax(q k^T / sqrt(d_k)) v`` in PyTorch; returns ``(output, weights)``.

    ``q (..., Lq, d_k)``, ``k (..., Lk, d_k)``, ``v (..., Lk, d_v)``; ``mask`` boolean, broadcastable to
    ``(..., Lq, Lk)``, ``True`` = may attend. Dropout (on the weights, as in the paper) only when ``training``.
    A query that may attend to nothing gets zero weights and a zero output, not NaN.
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    if mask is not None:
        weights = weights.nan_to_num(0.0)  # fully masked rows: softmax of all -inf is NaN
    if training and dropout_p > 0:
        weights = torch.dropout(weights, dropout_p, train=True)
    return weights @ v, weights


class MultiHeadAttention(nn.Module):
    """Multi-head attention, batch first: ``MultiHead(Q, K, V) = Concat(head_1..head_H) W^O``.

    ``forward(query (B, Lq, D), key (B, Lk, D) = query, value = key, mask = None)`` returns
    ``(output (B, Lq, D), weights (B, H, Lq, Lk))``. ``mask`` is boolean and broadcastable to
    ``(B, H, Lq, Lk)``: a causal ``(Lq, Lk)`` mask, a ``(B, 1, 1, Lk)`` padding mask, or their ``&``.

    Parameters are four ``nn.Linear`` layers (``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``), so
    ``4 D^2 (+ 4 D)`` of them, however many heads: heads split the width, they do not add parameters.
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        self.d_model, self.num_heads, self.d_head = d_model, num_heads, d_model // num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, L, D) -> (B, H, L, D/H)``."""
        B, L, _ = x.shape
        return x.view(B, L, self.num_heads, self.d_head).transpose(1, 2)

    def merge_heads(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, L, D/H) -> (B, L, D)``."""
        B, H, L, dh = x.shape
        return x.transpose(1, 2).reshape(B, L, H * dh)

    def forward(self, query, key=None, value=None, mask=None):
        key = query if key is None else key
        value = key if value is None else value
        q = self.split_heads(self.q_proj(query))
        k = self.split_heads(self.k_proj(key))
        v = self.split_heads(self.v_proj(value))
        out, weights = scaled_dot_product_attention(q, k, v, mask, self.dropout, self.training)
        return self.out_proj(self.merge_heads(out)), weights

    @torch.no_grad()
    def load_from_torch(self, mha: nn.MultiheadAttention) -> "MultiHeadAttention":
        """Copy the weights of a ``torch.nn.MultiheadAttention`` (same ``embed_dim``) into this module."""
        if mha.embed_dim != self.d_model or mha.num_heads != self.num_heads:
            raise ValueError(
                f"shape mismatch: this module has d_model={self.d_model}, heads={self.num_heads}; "
                f"the torch module has embed_dim={mha.embed_dim}, num_heads={mha.num_heads}"
            )
        copy_mha_weights(mha, self)
        return self


@torch.no_grad()
def copy_mha_weights(src: nn.MultiheadAttention, dst: nn.Module) -> None:
    """Copy ``nn.MultiheadAttention``'s packed ``in_proj`` and ``out_proj`` into ``dst.{q,k,v,out}_proj``.

    Works for any module with those four ``nn.Linear`` attributes (ours, or a student's in Lab 2).
    """
    D = src.embed_dim
    if src.in_proj_weight is not None:
        wq, wk, wv = src.in_proj_weight.split(D, dim=0)
    else:  # kdim/vdim differ: separate weights
        wq, wk, wv = src.q_proj_weight, src.k_proj_weight, src.v_proj_weight
    for lin, w in ((dst.q_proj, wq), (dst.k_proj, wk), (dst.v_proj, wv)):
        lin.weight.copy_(w)
    if src.in_proj_bias is not None:
        for lin, b in zip((dst.q_proj, dst.k_proj, dst.v_proj), src.in_proj_bias.split(D)):
            lin.bias.copy_(b)
    dst.out_proj.weight.copy_(src.out_proj.weight)
    if src.out_proj.bias is not None:
        dst.out_proj.bias.copy_(src.out_proj.bias)


def to_torch_mask(mask: torch.Tensor | None) -> torch.Tensor | None:
    """Flip our polarity (``True`` = may attend) into ``nn.MultiheadAttention``'s (``True`` = blocked)."""
    return None if mask is None else ~mask
