"""The encoder-decoder Transformer of "Attention Is All You Need" (Vaswani et al., 2017): Lab 5's model.

Data flow (``B`` batch, ``Ls`` source length, ``Lt`` target length, ``D`` model width, ``V`` vocabulary)::

    src (B, Ls) ids --embed * sqrt(D) + positions--> encoder (N blocks) --> memory (B, Ls, D)
    tgt (B, Lt) ids --embed * sqrt(D) + positions--> decoder (N blocks, attends to memory) --> (B, Lt, D)
                                                     --linear--> logits (B, Lt, V)

``tgt`` is the decoder's *input*: the target shifted right (``<bos> y1 y2 ...``); the logits at position ``t``
predict ``y_{t+1}`` (teacher forcing). Masks follow :mod:`labsupport.attention` (boolean, ``True`` = may
attend): the source padding mask ``(B, 1, 1, Ls)`` is used by the encoder's self-attention and the decoder's
cross-attention; the target mask ``(B, 1, Lt, Lt)`` is causal and hides target padding. When a mask is not
given the model builds it from the pad ids with :meth:`make_src_mask` / :meth:`make_tgt_mask`.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from labsupport.attention import causal_mask, key_padding_mask, record_attention
from labsupport.blocks import Decoder, Encoder
from labsupport.models.config import Seq2SeqConfig, make_config, preset
from labsupport.positional import SinusoidalPositionalEncoding

__all__ = ["Seq2SeqTransformer"]


class Seq2SeqTransformer(nn.Module):
    """Encoder-decoder Transformer built from :class:`~labsupport.blocks.Encoder` and
    :class:`~labsupport.blocks.Decoder`.

    Configured by :class:`~labsupport.models.config.Seq2SeqConfig` (keywords, or the dataclass).
    ``share_embeddings``: source and target use one embedding table (needs ``src_vocab == tgt_vocab``, a shared
    vocabulary as in the paper). ``tie_output``: the output projection reuses the target embedding matrix (the
    paper does both: "we share the same weight matrix between the two embedding layers and the pre-softmax
    linear transformation"). ``norm_first=False`` is the paper's post-norm; pre-norm adds a final norm to each
    stack, and ``final_norms=True`` adds them to post-norm too, as stock ``nn.Transformer`` has them.
    """

    def __init__(self, config: Seq2SeqConfig | None = None, /, **fields):
        super().__init__()
        self.config = cfg = make_config(Seq2SeqConfig, config, fields)
        if cfg.share_embeddings and cfg.src_vocab != cfg.tgt_vocab:
            raise ValueError(f"share_embeddings needs one vocabulary, got src_vocab={cfg.src_vocab}, "
                             f"tgt_vocab={cfg.tgt_vocab}")
        self.d_model, self.max_len = cfg.d_model, cfg.max_len
        self.src_pad_id, self.tgt_pad_id = cfg.src_pad_id, cfg.tgt_pad_id
        self.src_embed = nn.Embedding(cfg.src_vocab, cfg.d_model)
        self.tgt_embed = self.src_embed if cfg.share_embeddings else nn.Embedding(cfg.tgt_vocab, cfg.d_model)
        self.pos = SinusoidalPositionalEncoding(cfg.d_model, cfg.max_len, dropout=cfg.dropout)
        stack = dict(d_model=cfg.d_model, num_heads=cfg.num_heads, d_ff=cfg.d_ff, dropout=cfg.dropout,
                     activation=cfg.activation, norm_first=cfg.norm_first, layer_norm_eps=cfg.layer_norm_eps,
                     final_norm=cfg.final_norms)
        self.encoder = Encoder(num_layers=cfg.num_encoder_layers, **stack)
        self.decoder = Decoder(num_layers=cfg.num_decoder_layers, **stack)
        self.generator = nn.Linear(cfg.d_model, cfg.tgt_vocab)
        self._reset_parameters()
        if cfg.tie_output:
            self.generator.weight = self.tgt_embed.weight

    def _reset_parameters(self) -> None:
        # Xavier-uniform for every matrix, as the reference implementations of the paper do
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    # ---- masks -------------------------------------------------------------------------------------------------
    def make_src_mask(self, src: torch.Tensor) -> torch.Tensor:
        """``(B, 1, 1, Ls)``: ``True`` at real source tokens, ``False`` at padding."""
        return key_padding_mask(src, self.src_pad_id)

    def make_tgt_mask(self, tgt: torch.Tensor) -> torch.Tensor:
        """``(B, 1, Lt, Lt)``: position ``t`` may attend to positions ``<= t`` that are not padding."""
        Lt = tgt.shape[1]
        return causal_mask(Lt, device=tgt.device)[None, None] & key_padding_mask(tgt, self.tgt_pad_id)

    # ---- the two halves ------------------------------------------------------------------------------------------
    def encode(self, src: torch.Tensor, src_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``src (B, Ls)`` ids to ``memory (B, Ls, D)``."""
        if src_mask is None:
            src_mask = self.make_src_mask(src)
        x = self.pos(self.src_embed(src) * math.sqrt(self.d_model))
        return self.encoder(x, src_mask)

    def decode(self, tgt: torch.Tensor, memory: torch.Tensor, tgt_mask: torch.Tensor | None = None,
               memory_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Decoder input ``tgt (B, Lt)`` and ``memory (B, Ls, D)`` to logits ``(B, Lt, V)``.

        ``memory_mask`` is the source padding mask (``None``: every source position is visible).
        """
        if tgt_mask is None:
            tgt_mask = self.make_tgt_mask(tgt)
        y = self.pos(self.tgt_embed(tgt) * math.sqrt(self.d_model))
        return self.generator(self.decoder(y, memory, tgt_mask, memory_mask))

    def forward(self, src: torch.Tensor, tgt: torch.Tensor, src_mask: torch.Tensor | None = None,
                tgt_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced logits ``(B, Lt, V)`` for source ``src (B, Ls)`` and decoder input ``tgt (B, Lt)``."""
        if src_mask is None:
            src_mask = self.make_src_mask(src)
        memory = self.encode(src, src_mask)
        return self.decode(tgt, memory, tgt_mask, src_mask)

    @torch.no_grad()
    def cross_attention(self, src: torch.Tensor, tgt: torch.Tensor, layer: int = -1) -> torch.Tensor:
        """The cross-attention weights ``(B, H, Lt, Ls)`` of decoder block ``layer`` when the model reads ``src``
        and the decoder input ``tgt`` (one teacher-forced pass; see :func:`labsupport.attention.record_attention`)."""
        with record_attention(self.decoder) as maps:
            self(src, tgt)
        return maps[f"layers.{layer % len(self.decoder.layers)}.cross_attn"]

    # ---- the paper's configuration -----------------------------------------------------------------------------
    @classmethod
    def paper_base(cls, vocab_size: int = 37000, **overrides) -> Seq2SeqTransformer:
        """The "base" model of Vaswani et al. (2017), ``PRESETS["transformer-base"]``: a shared 37,000-token
        byte-pair vocabulary (English-German), ``d_model=512``, 8 heads, 6 + 6 layers, ``d_ff=2048``, dropout 0.1,
        post-norm, all three embedding matrices shared. That is 63.1 million parameters by this count (output bias
        included); the paper's Table 3 lists 65M.
        """
        return cls(preset("transformer-base", src_vocab=vocab_size, tgt_vocab=vocab_size, **overrides))
