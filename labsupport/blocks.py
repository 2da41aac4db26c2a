"""The transformer block, the reference implementations (the twins of Lab 4).

A block wraps two (encoder) or three (decoder) *sub-layers* in the same pattern: a residual connection around
the sub-layer, dropout on the sub-layer's output, and a layer norm. Where the norm sits is the one design choice:

* **post-norm** (the 2017 paper, BERT, ``norm_first=False``): ``x = norm(x + dropout(fn(x)))``;
* **pre-norm** (GPT-2, ViT and most models since, ``norm_first=True``): ``x = x + dropout(fn(norm(x)))``,
  which leaves an un-normalised "residual stream" from input to output and trains more stably in deep stacks
  (a stack of pre-norm blocks then needs one final norm, see :class:`Encoder`).

:func:`sublayer` is that pattern, exactly as Lab 4 writes it; every block here is a few calls of it.

Sub-layers: self-attention (:class:`labsupport.attention.MultiHeadAttention`), cross-attention in the decoder
(queries from the decoder, keys and values from the encoder output, the ``memory``), and the position-wise
:class:`FeedForward` network ``linear2(dropout(act(linear1(x))))`` applied to every position alone.

Attribute names follow ``nn.TransformerEncoderLayer`` / ``nn.TransformerDecoderLayer`` where they can, and
``load_from_torch`` copies a (``batch_first=True``) torch layer's weights in, so the tests can pin these blocks to
PyTorch's. Masks follow :mod:`labsupport.attention`: boolean, ``True`` = may attend, broadcastable to
``(B, H, Lq, Lk)`` (torch's masks use the opposite polarity; see :func:`labsupport.attention.to_torch_mask`).

Shapes: ``B`` batch, ``L`` (``Lt`` target, ``Ls`` source) sequence lengths, ``D`` model width, ``H`` heads.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from labsupport.attention import MultiHeadAttention, copy_mha_weights

__all__ = ["ACTIVATIONS", "gelu_tanh", "LayerNorm", "FeedForward", "sublayer", "EncoderBlock", "DecoderBlock",
           "Encoder", "Decoder", "copy_encoder_layer_weights", "copy_decoder_layer_weights"]

def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GELU's tanh approximation, ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``: GPT-2's activation."""
    return F.gelu(x, approximate="tanh")


#: The feed-forward activations by name: ReLU (the 2017 paper), GELU exactly (``erf``: BERT, ViT) and GELU's tanh
#: approximation (GPT-2; it differs from the exact GELU by up to 5e-4, enough to change a pretrained model's
#: greedy tokens).
ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "gelu_tanh": gelu_tanh}


class LayerNorm(nn.Module):
    """Layer normalisation over the last dimension: ``(..., D) -> (..., D)``.

    ``y = (x - mean) / sqrt(var + eps) * weight + bias``, with the mean and the *biased* variance (divide by
    ``D``, not ``D - 1``) of each position's ``D`` features. ``weight`` starts at ones, ``bias`` at zeros; the
    names match ``nn.LayerNorm`` so ``load_state_dict`` works across. :meth:`formula` is that line as Lab 4 writes
    it; ``forward`` runs the same computation as PyTorch's fused kernel (the tests pin the two equal).
    """

    def __init__(self, d_model: int, *, eps: float = 1e-5):
        super().__init__()
        self.d_model, self.eps = d_model, eps
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))

    def formula(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=-1, keepdim=True)
        var = x.var(dim=-1, keepdim=True, unbiased=False)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (self.d_model,), self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.d_model}, eps={self.eps}"


class FeedForward(nn.Module):
    """The position-wise feed-forward network: ``(B, L, D) -> (B, L, D)``.

    ``linear2(dropout(activation(linear1(x))))`` with ``linear1: D -> d_ff`` and ``linear2: d_ff -> D``; the
    same two layers are applied to every position independently (``d_ff = 4 D`` in most models). Parameters:
    ``2 D d_ff + d_ff + D``. ``activation`` names one of :data:`ACTIVATIONS`: ``"relu"`` (the paper), ``"gelu"``
    (the exact erf form, torch's default: BERT, ViT) or ``"gelu_tanh"`` (GPT-2's tanh approximation).
    """

    def __init__(self, d_model: int, d_ff: int, *, dropout: float = 0.0, activation: str = "relu"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.activation_name = activation
        self.activation = ACTIVATIONS[activation]
        self.linear1 = nn.Linear(d_model, d_ff)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ff, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.dropout(self.activation(self.linear1(x))))


def sublayer(x: torch.Tensor, fn, norm, dropout, norm_first: bool) -> torch.Tensor:
    """One residual sub-layer (Lab 4): post-norm ``norm(x + dropout(fn(x)))``, or pre-norm
    ``x + dropout(fn(norm(x)))``."""
    if norm_first:
        return x + dropout(fn(norm(x)))
    return norm(x + dropout(fn(x)))


def _activation_of(layer: nn.Module) -> str:
    """Name of a torch transformer layer's activation ("relu", "gelu" or "gelu_tanh")."""
    act = layer.activation
    if act is F.relu or isinstance(act, nn.ReLU):
        return "relu"
    if act is F.gelu or (isinstance(act, nn.GELU) and act.approximate == "none"):
        return "gelu"
    if isinstance(act, nn.GELU) and act.approximate == "tanh":
        return "gelu_tanh"
    raise ValueError(f"unsupported activation in the torch layer: {act!r}")


def _check_same_config(ours: nn.Module, layer: nn.Module, kind: str) -> None:
    if not layer.self_attn.batch_first:
        raise ValueError(f"load_from_torch expects a batch_first=True {kind}")
    theirs = dict(d_model=layer.self_attn.embed_dim, num_heads=layer.self_attn.num_heads,
                  d_ff=layer.linear1.out_features, norm_first=layer.norm_first, activation=_activation_of(layer),
                  layer_norm_eps=layer.norm1.eps)
    mine = dict(d_model=ours.d_model, num_heads=ours.num_heads, d_ff=ours.d_ff, norm_first=ours.norm_first,
                activation=ours.ff.activation_name, layer_norm_eps=ours.norm1.eps)
    diff = {k: (mine[k], theirs[k]) for k in mine if mine[k] != theirs[k]}
    if diff:
        shown = ", ".join(f"{k}: ours {a!r} vs torch {b!r}" for k, (a, b) in diff.items())
        raise ValueError(f"the {kind} is configured differently ({shown})")


@torch.no_grad()
def _copy_linear(dst: nn.Linear, src: nn.Linear) -> None:
    dst.weight.copy_(src.weight)
    if src.bias is not None:
        dst.bias.copy_(src.bias)


@torch.no_grad()
def _copy_norm(dst: nn.Module, src: nn.LayerNorm) -> None:
    dst.weight.copy_(src.weight)
    dst.bias.copy_(src.bias)


@torch.no_grad()
def copy_encoder_layer_weights(src: nn.TransformerEncoderLayer, dst: nn.Module) -> None:
    """Copy a torch encoder layer's weights into any module laid out like :class:`EncoderBlock`.

    ``dst`` needs ``self_attn`` (with ``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``), ``ff.linear1``,
    ``ff.linear2``, ``norm1`` and ``norm2`` (ours, or a student's block in Lab 4). Nothing is checked beyond
    the tensor shapes; :meth:`EncoderBlock.load_from_torch` also checks the settings.
    """
    copy_mha_weights(src.self_attn, dst.self_attn)
    _copy_linear(dst.ff.linear1, src.linear1)
    _copy_linear(dst.ff.linear2, src.linear2)
    _copy_norm(dst.norm1, src.norm1)
    _copy_norm(dst.norm2, src.norm2)


@torch.no_grad()
def copy_decoder_layer_weights(src: nn.TransformerDecoderLayer, dst: nn.Module) -> None:
    """Copy a torch decoder layer's weights into any module laid out like :class:`DecoderBlock`
    (``self_attn``, ``cross_attn``, ``ff.linear1``, ``ff.linear2``, ``norm1..3``)."""
    copy_mha_weights(src.self_attn, dst.self_attn)
    copy_mha_weights(src.multihead_attn, dst.cross_attn)
    _copy_linear(dst.ff.linear1, src.linear1)
    _copy_linear(dst.ff.linear2, src.linear2)
    for i in (1, 2, 3):
        _copy_norm(getattr(dst, f"norm{i}"), getattr(src, f"norm{i}"))


class EncoderBlock(nn.Module):
    """One encoder block: self-attention and a feed-forward network, each a residual :func:`sublayer`::

        x = sublayer(x, self-attention(mask), norm1, dropout1, norm_first)
        x = sublayer(x, ff,                   norm2, dropout2, norm_first)

    ``forward(x (B, L, D), mask=None, *, is_causal=False) -> (B, L, D)``. ``mask`` is boolean (``True`` = may
    attend), broadcastable to ``(B, H, L, L)``: typically a ``(B, 1, 1, L)`` padding mask; ``is_causal=True`` adds
    the causal mask (a decoder-only model). ``dropout`` is used on the attention weights, inside the feed-forward
    network and on each sub-layer's output, as in ``nn.TransformerEncoderLayer``. The attention weights are not
    kept; :func:`labsupport.attention.record_attention` gives them on request.
    """

    def __init__(self, *, d_model: int, num_heads: int, d_ff: int, dropout: float = 0.1, activation: str = "relu",
                 norm_first: bool = False, layer_norm_eps: float = 1e-5):
        super().__init__()
        self.d_model, self.num_heads, self.d_ff, self.norm_first = d_model, num_heads, d_ff, norm_first
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout=dropout)
        self.ff = FeedForward(d_model, d_ff, dropout=dropout, activation=activation)
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, *, is_causal: bool = False) -> torch.Tensor:
        attend = lambda h: self.self_attn(h, h, h, mask, is_causal=is_causal, need_weights=False)[0]
        x = sublayer(x, attend, self.norm1, self.dropout1, self.norm_first)
        return sublayer(x, self.ff, self.norm2, self.dropout2, self.norm_first)

    @torch.no_grad()
    def load_from_torch(self, layer: nn.TransformerEncoderLayer) -> EncoderBlock:
        """Copy the weights of a ``batch_first=True`` ``nn.TransformerEncoderLayer`` with the same settings."""
        _check_same_config(self, layer, "nn.TransformerEncoderLayer")
        copy_encoder_layer_weights(layer, self)
        return self


class DecoderBlock(nn.Module):
    """One decoder block: masked self-attention, cross-attention to the encoder output, feed-forward::

        x = sublayer(x, self-attention(self_mask),          norm1, dropout1, norm_first)
        x = sublayer(x, cross-attention(memory, memory_mask), norm2, dropout2, norm_first)
        x = sublayer(x, ff,                                   norm3, dropout3, norm_first)

    ``forward(x (B, Lt, D), memory (B, Ls, D), self_mask=None, memory_mask=None) -> (B, Lt, D)``.
    ``self_mask`` (broadcastable to ``(B, H, Lt, Lt)``) is usually the causal mask, possibly ``&`` a target
    padding mask; ``memory_mask`` (broadcastable to ``(B, H, Lt, Ls)``) usually the source padding mask
    ``(B, 1, 1, Ls)``. In pre-norm ``memory`` is not normalised here: a pre-norm encoder ends with its own norm.
    """

    def __init__(self, *, d_model: int, num_heads: int, d_ff: int, dropout: float = 0.1, activation: str = "relu",
                 norm_first: bool = False, layer_norm_eps: float = 1e-5):
        super().__init__()
        self.d_model, self.num_heads, self.d_ff, self.norm_first = d_model, num_heads, d_ff, norm_first
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout=dropout)
        self.cross_attn = MultiHeadAttention(d_model, num_heads, dropout=dropout)
        self.ff = FeedForward(d_model, d_ff, dropout=dropout, activation=activation)
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps)
        self.norm3 = LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, self_mask: torch.Tensor | None = None,
                memory_mask: torch.Tensor | None = None) -> torch.Tensor:
        attend = lambda h: self.self_attn(h, h, h, self_mask, need_weights=False)[0]
        look_up = lambda h: self.cross_attn(h, memory, memory, memory_mask, need_weights=False)[0]
        x = sublayer(x, attend, self.norm1, self.dropout1, self.norm_first)
        x = sublayer(x, look_up, self.norm2, self.dropout2, self.norm_first)
        return sublayer(x, self.ff, self.norm3, self.dropout3, self.norm_first)

    @torch.no_grad()
    def load_from_torch(self, layer: nn.TransformerDecoderLayer) -> DecoderBlock:
        """Copy the weights of a ``batch_first=True`` ``nn.TransformerDecoderLayer`` with the same settings."""
        _check_same_config(self, layer, "nn.TransformerDecoderLayer")
        copy_decoder_layer_weights(layer, self)
        return self


class Encoder(nn.Module):
    """A stack of ``num_layers`` :class:`EncoderBlock` s, plus a final :class:`LayerNorm` ``norm``.

    ``final_norm=None`` adds the final norm exactly when ``norm_first`` (pre-norm stacks need it, post-norm
    blocks already end with one); pass ``True`` to match ``nn.Transformer``, whose encoder always has it.
    ``forward(x (B, L, D), mask=None, *, is_causal=False) -> (B, L, D)``. The other keywords are
    :class:`EncoderBlock`'s.
    """

    def __init__(self, *, num_layers: int, d_model: int, num_heads: int, d_ff: int, dropout: float = 0.1,
                 activation: str = "relu", norm_first: bool = False, layer_norm_eps: float = 1e-5,
                 final_norm: bool | None = None):
        super().__init__()
        block = dict(d_model=d_model, num_heads=num_heads, d_ff=d_ff, dropout=dropout, activation=activation,
                     norm_first=norm_first, layer_norm_eps=layer_norm_eps)
        self.layers = nn.ModuleList(EncoderBlock(**block) for _ in range(num_layers))
        final_norm = norm_first if final_norm is None else final_norm
        self.norm = LayerNorm(d_model, eps=layer_norm_eps) if final_norm else None

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, *, is_causal: bool = False) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, mask, is_causal=is_causal)
        return x if self.norm is None else self.norm(x)

    @torch.no_grad()
    def load_from_torch(self, encoder: nn.TransformerEncoder) -> Encoder:
        """Copy a ``batch_first`` ``nn.TransformerEncoder`` (same depth; its ``norm`` iff ours has one)."""
        _load_stack(self, encoder)
        return self


class Decoder(nn.Module):
    """A stack of ``num_layers`` :class:`DecoderBlock` s, plus a final :class:`LayerNorm` (see :class:`Encoder`).

    ``forward(x (B, Lt, D), memory (B, Ls, D), self_mask=None, memory_mask=None) -> (B, Lt, D)``.
    """

    def __init__(self, *, num_layers: int, d_model: int, num_heads: int, d_ff: int, dropout: float = 0.1,
                 activation: str = "relu", norm_first: bool = False, layer_norm_eps: float = 1e-5,
                 final_norm: bool | None = None):
        super().__init__()
        block = dict(d_model=d_model, num_heads=num_heads, d_ff=d_ff, dropout=dropout, activation=activation,
                     norm_first=norm_first, layer_norm_eps=layer_norm_eps)
        self.layers = nn.ModuleList(DecoderBlock(**block) for _ in range(num_layers))
        final_norm = norm_first if final_norm is None else final_norm
        self.norm = LayerNorm(d_model, eps=layer_norm_eps) if final_norm else None

    def forward(self, x, memory, self_mask=None, memory_mask=None):
        for layer in self.layers:
            x = layer(x, memory, self_mask, memory_mask)
        return x if self.norm is None else self.norm(x)

    @torch.no_grad()
    def load_from_torch(self, decoder: nn.TransformerDecoder) -> Decoder:
        """Copy a ``batch_first`` ``nn.TransformerDecoder`` (same depth; its ``norm`` iff ours has one)."""
        _load_stack(self, decoder)
        return self


def _load_stack(ours: nn.Module, theirs: nn.Module) -> None:
    if len(ours.layers) != len(theirs.layers):
        raise ValueError(f"depth mismatch: ours has {len(ours.layers)} layers, torch's {len(theirs.layers)}")
    if (ours.norm is None) != (theirs.norm is None):
        raise ValueError("one stack has a final norm and the other does not (see final_norm)")
    for mine, layer in zip(ours.layers, theirs.layers):
        mine.load_from_torch(layer)
    if ours.norm is not None:
        _copy_norm(ours.norm, theirs.norm)
