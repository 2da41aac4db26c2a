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
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
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
    """Scores ``q @ k^T``, divided by ``sqrt(d_k)`` when ``scale``:
    ``(..., Lq, d_k), (..., Lk, d_k) -> (..., Lq, Lk)``."""
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


class AttentionCache:
    """The keys and values one attention layer has computed for earlier positions, kept while generating.

    ``keys`` and ``values`` are ``(B, H, T, d_head)`` (``None`` while empty). Passed to
    :meth:`MultiHeadAttention.forward` as ``cache=``, it is read and extended in place: the new positions' keys and
    values are appended after the ``T`` cached ones (along dim 2), and the new queries attend to all ``T + L`` of
    them. A model with several layers keeps one per layer (:class:`labsupport.models.gpt.GPTCache`).
    """

    def __init__(self, keys: torch.Tensor | None = None, values: torch.Tensor | None = None):
        self.keys, self.values = keys, values

    @property
    def length(self) -> int:
        """``T``, the number of positions cached."""
        return 0 if self.keys is None else self.keys.shape[2]

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add the new ``(B, H, L, d_head)`` keys and values after the cached ones; return all of them."""
        if self.keys is not None:
            k = torch.cat([self.keys, k], dim=2)
            v = torch.cat([self.values, v], dim=2)
        self.keys, self.values = k, v
        return k, v

    def nbytes(self) -> int:
        """Memory held, in bytes."""
        return sum(t.numel() * t.element_size() for t in (self.keys, self.values) if t is not None)


class MultiHeadAttention(nn.Module):
    """Multi-head attention, batch first: ``MultiHead(Q, K, V) = Concat(head_1..head_H) W^O``.

    ``forward(query (B, Lq, D), key (B, Lk, D) = query, value = key, mask = None)`` returns
    ``(output (B, Lq, D), weights (B, H, Lq, Lk))``. ``mask`` is boolean and broadcastable to
    ``(B, H, Lq, Lk)``: a causal ``(Lq, Lk)`` mask, a ``(B, 1, 1, Lk)`` padding mask, or their ``&``.
    Keyword-only options:

    * ``is_causal=True`` adds the causal mask (each query sees the keys up to its own position);
    * ``cache=`` an :class:`AttentionCache`: the keys and values of ``query`` are appended to it and the queries
      attend to everything cached (self-attention while generating; ``is_causal`` then shifts the diagonal by the cache
      length, as :func:`causal_mask` ``(Lq, T + Lq)`` does);
    * ``need_weights=False`` returns ``(output, None)`` and runs the fused kernel
      ``torch.nn.functional.scaled_dot_product_attention``: the same function as the reference
      :func:`scaled_dot_product_attention` (the tests pin the two equal), faster, without the ``(B, H, Lq, Lk)``
      weights in memory. The blocks ask for no weights; :func:`record_attention` gets them on request.

    Parameters are four ``nn.Linear`` layers (``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``), so
    ``4 D^2 (+ 4 D)`` of them, however many heads: heads split the width, they do not add parameters. (Fusing
    the three input projections into one ``(D, 3D)`` product, as nanoGPT does, measured slower here: the weights
    would have to be concatenated at every call.)
    """

    def __init__(self, d_model: int, num_heads: int, *, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        self.d_model, self.num_heads, self.d_head = d_model, num_heads, d_model // num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)
        self.recorder: dict | None = None  # set by record_attention
        self.record_as = ""

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, L, D) -> (B, H, L, D/H)``."""
        B, L, _ = x.shape
        return x.view(B, L, self.num_heads, self.d_head).transpose(1, 2)

    def merge_heads(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, L, D/H) -> (B, L, D)``."""
        B, H, L, dh = x.shape
        return x.transpose(1, 2).reshape(B, L, H * dh)

    def project(self, query, key, value) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys and values split into heads, each ``(B, H, L, D/H)``.

        In self-attention (one tensor for all three) the three projections run as one matrix multiply with the
        weights stacked, as nanoGPT's ``c_attn``: the same numbers, and a training step a few percent faster.
        """
        if query is key and key is value:
            weight = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight])
            bias = None if self.q_proj.bias is None else torch.cat([self.q_proj.bias, self.k_proj.bias,
                                                                    self.v_proj.bias])
            q, k, v = F.linear(query, weight, bias).split(self.d_model, dim=-1)
            return self.split_heads(q), self.split_heads(k), self.split_heads(v)
        return (self.split_heads(self.q_proj(query)), self.split_heads(self.k_proj(key)),
                self.split_heads(self.v_proj(value)))

    def forward(self, query, key=None, value=None, mask=None, *, is_causal: bool = False,
                cache: AttentionCache | None = None, need_weights: bool = True):
        key = query if key is None else key
        value = key if value is None else value
        q, k, v = self.project(query, key, value)
        if cache is not None:
            k, v = cache.append(k, v)
        Lq, Lk = q.shape[2], k.shape[2]
        weights_wanted = need_weights or self.recorder is not None
        if is_causal and Lq == 1:
            is_causal = False  # one query, the last position: it sees every key
        elif is_causal and (mask is not None or Lq != Lk or weights_wanted):
            causal = causal_mask(Lq, Lk, device=q.device)  # with a cache the diagonal shifts by its length
            mask, is_causal = (causal if mask is None else mask & causal), False
        dropout_p = self.dropout if self.training else 0.0
        if weights_wanted:
            out, weights = scaled_dot_product_attention(q, k, v, mask, dropout_p, self.training)
            if self.recorder is not None:
                self.recorder[self.record_as] = weights.detach()
        else:
            out, weights = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p,
                                                          is_causal=is_causal), None
        return self.out_proj(self.merge_heads(out)), (weights if need_weights else None)

    @torch.no_grad()
    def load_from_torch(self, mha: nn.MultiheadAttention) -> MultiHeadAttention:
        """Copy the weights of a ``torch.nn.MultiheadAttention`` (same ``embed_dim``) into this module."""
        if mha.embed_dim != self.d_model or mha.num_heads != self.num_heads:
            raise ValueError(
                f"shape mismatch: this module has d_model={self.d_model}, heads={self.num_heads}; "
                f"the torch module has embed_dim={mha.embed_dim}, num_heads={mha.num_heads}"
            )
        copy_mha_weights(mha, self)
        return self


@contextmanager
def record_attention(model: nn.Module):
    """Attention maps on request: ``with record_attention(model) as maps: model(x)``.

    While the block is open every :class:`MultiHeadAttention` inside ``model`` computes its weights with the
    reference :func:`scaled_dot_product_attention` and stores them, detached, in the dict ``maps`` under the
    module's name (``"encoder.layers.0.self_attn"``, ...): ``(B, H, Lq, Lk)`` of its last call. Outside the block
    nothing is stored and attention takes the fused path.
    """
    maps: dict[str, torch.Tensor] = {}
    modules = [(name, m) for name, m in model.named_modules() if isinstance(m, MultiHeadAttention)]
    for name, m in modules:
        m.recorder, m.record_as = maps, name
    try:
        yield maps
    finally:
        for _, m in modules:
            m.recorder, m.record_as = None, ""


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
