"""A decoder-only language model in the style of GPT-2 (Radford et al., 2019), with a KV cache: Lab 6's model.

Data flow (``B`` batch, ``L`` length, ``D`` model width, ``V`` vocabulary)::

    idx (B, L) --token embedding + learned positions--> N pre-norm blocks with causal self-attention
              --final LayerNorm--> (B, L, D) --linear (weights tied to the token embedding)--> logits (B, L, V)

The logits at position ``t`` are the model's distribution over token ``t + 1``; the causal mask makes them
depend on tokens ``0..t`` only, so one forward pass trains all ``L`` next-token predictions at once.

**KV cache.** When generating, each new token would recompute the keys and values of the whole prefix, although
they never change (the mask keeps earlier positions from seeing later ones). A :class:`KVCache` keeps each
layer's keys and values ``(B, H, T, D/H)``; a forward pass with ``cache=`` then processes only the new tokens
(their queries attend to the cached keys plus their own) and appends their keys and values. Positions start at
``cache.length``. The result equals the uncached forward pass on the whole sequence.
"""
from __future__ import annotations

import torch
from torch import nn

from labsupport.attention import causal_mask, scaled_dot_product_attention
from labsupport.blocks import EncoderBlock, LayerNorm
from labsupport.positional import LearnedPositionalEncoding

__all__ = ["KVCache", "GPTBlock", "GPT", "cached_self_attention"]


class KVCache:
    """Per-layer keys and values of the tokens seen so far, each ``(B, H, T, D/H)``."""

    def __init__(self, num_layers: int):
        self.keys: list[torch.Tensor | None] = [None] * num_layers
        self.values: list[torch.Tensor | None] = [None] * num_layers

    @property
    def length(self) -> int:
        """``T``, the number of positions cached (those of layer 0)."""
        return 0 if self.keys[0] is None else self.keys[0].shape[2]

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add the new keys/values ``(B, H, L_new, D/H)`` of ``layer`` after the cached ones (along the position
        axis, dim 2) and return all of them, ``(B, H, T + L_new, D/H)``."""
        if self.keys[layer] is not None:
            k = torch.cat([self.keys[layer], k], dim=2)
            v = torch.cat([self.values[layer], v], dim=2)
        self.keys[layer], self.values[layer] = k, v
        return k, v

    def nbytes(self) -> int:
        """Memory held by the cache, in bytes."""
        return sum(t.numel() * t.element_size() for t in self.keys + self.values if t is not None)


def cached_self_attention(attn, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0):
    """Causal self-attention of ``x (B, L, D)`` with :class:`~labsupport.attention.MultiHeadAttention` ``attn``,
    optionally continuing from ``cache``: returns ``(output (B, L, D), weights (B, H, L, T + L))``.

    The ``L`` new queries attend to the ``T`` cached keys and to the new ones up to their own position
    (``causal_mask(L, T + L)``: the diagonal shifts by ``T``).
    """
    q = attn.split_heads(attn.q_proj(x))
    k = attn.split_heads(attn.k_proj(x))
    v = attn.split_heads(attn.v_proj(x))
    if cache is not None:
        k, v = cache.append(layer, k, v)
    mask = causal_mask(q.shape[2], k.shape[2], device=x.device)
    out, weights = scaled_dot_product_attention(q, k, v, mask, attn.dropout, attn.training)
    return attn.out_proj(attn.merge_heads(out)), weights


class GPTBlock(EncoderBlock):
    """A pre-norm block with causal self-attention and a GELU feed-forward network (GPT-2's block)::

        x = x + dropout1(causal_self_attn(norm1(x)))
        x = x + dropout2(ff(norm2(x)))

    It is :class:`labsupport.blocks.EncoderBlock` with ``norm_first=True``; only the attention call changes, to
    apply the causal mask and to use a KV cache: ``forward(x (B, L, D), cache=None, layer=0) -> (B, L, D)``.
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float = 0.1, layer_norm_eps: float = 1e-5):
        super().__init__(d_model, num_heads, d_ff, dropout, activation="gelu", norm_first=True,
                         layer_norm_eps=layer_norm_eps)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        out, weights = cached_self_attention(self.self_attn, self.norm1(x), cache, layer)
        self.attn_weights = weights.detach()
        x = x + self.dropout1(out)
        return x + self.dropout2(self.ff(self.norm2(x)))


class GPT(nn.Module):
    """Decoder-only Transformer language model: ``forward(idx (B, L), cache=None) -> logits (B, L, V)``.

    ``tie_weights`` (default, as GPT-2): the output layer (``lm_head``, no bias) shares the token embedding matrix.
    Initialisation as GPT-2: normal(0, 0.02) weights, zero biases, and the projections that write into the
    residual stream (``out_proj``, ``linear2``) scaled down by ``1/sqrt(2 * num_layers)``.
    """

    def __init__(self, vocab_size: int, max_len: int = 256, d_model: int = 128, num_heads: int = 4,
                 num_layers: int = 4, d_ff: int | None = None, dropout: float = 0.1, tie_weights: bool = True,
                 layer_norm_eps: float = 1e-5):
        super().__init__()
        d_ff = 4 * d_model if d_ff is None else d_ff
        self.vocab_size, self.max_len, self.d_model, self.num_layers = vocab_size, max_len, d_model, num_layers
        self.tok_embed = nn.Embedding(vocab_size, d_model)
        self.pos = LearnedPositionalEncoding(max_len, d_model, dropout)
        self.blocks = nn.ModuleList(GPTBlock(d_model, num_heads, d_ff, dropout, layer_norm_eps) for _ in range(num_layers))
        self.norm = LayerNorm(d_model, layer_norm_eps)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        self._init_weights()
        if tie_weights:
            self.lm_head.weight = self.tok_embed.weight

    def _init_weights(self) -> None:
        for name, p in self.named_parameters():
            if p.dim() > 1:
                std = 0.02
                if name.endswith("out_proj.weight") or name.endswith("linear2.weight"):
                    std = 0.02 / (2 * self.num_layers) ** 0.5
                nn.init.normal_(p, mean=0.0, std=std)
            elif name.endswith("bias") and "norm" not in name:
                nn.init.zeros_(p)

    def new_cache(self) -> KVCache:
        """An empty :class:`KVCache` for this model."""
        return KVCache(self.num_layers)

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        offset = 0 if cache is None else cache.length
        if offset + idx.shape[1] > self.max_len:
            raise ValueError(f"positions {offset}..{offset + idx.shape[1] - 1} exceed max_len={self.max_len}; "
                             "crop the context (labsupport.training.sample does)")
        x = self.pos(self.tok_embed(idx), offset=offset)
        for i, block in enumerate(self.blocks):
            x = block(x, cache, i)
        return self.lm_head(self.norm(x))

    @classmethod
    def gpt2_small(cls, **overrides) -> "GPT":
        """GPT-2 small: 50,257-token byte-pair vocabulary, 1,024 positions, 12 layers, 12 heads, ``d_model=768``,
        ``d_ff=3072``, tied embeddings: 124,439,808 parameters (the "124M" of the released checkpoint)."""
        cfg = dict(vocab_size=50257, max_len=1024, d_model=768, num_heads=12, num_layers=12, d_ff=3072, dropout=0.1)
        cfg.update(overrides)
        return cls(**cfg)
