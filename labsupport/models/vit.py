"""The Vision Transformer (Dosovitskiy et al., 2021): an image read as a sequence of patches: Lab 8's model.

Data flow (``B`` batch, ``C`` channels, ``H x W`` image, ``p`` patch side, ``N = (H/p)(W/p)`` patches, ``D`` width)::

    images (B, C, H, W) --patchify--> (B, N, C p p) --linear patch embedding--> (B, N, D)
      --prepend the learned [CLS] vector--> (B, 1 + N, D) --add learned positions (CLS slot + 2-D patch grid)-->
      --N pre-norm encoder blocks (GELU), final LayerNorm--> (B, 1 + N, D) --head on position 0--> logits (B, classes)

There is nothing image-specific after the patch embedding: the encoder is the same stack as BERT's. The model
learns from data what a convolution assumes (that neighbouring pixels belong together): only the patch split and
the 2-D positions tell it where a patch was.

**Patch order.** :func:`patchify` numbers patches row-major (``index = row * grid_w + col``, the order you read a
page) and flattens each patch channel-first, ``(C, p, p)``, the layout of a ``Conv2d(C, D, p, stride=p)`` kernel:
the linear patch embedding is exactly such a convolution (``weight.view(D, C, p, p)``), see the tests.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from labsupport.attention import record_attention
from labsupport.blocks import Encoder
from labsupport.models.checkpoints import (
    CheckpointError,
    assign,
    convert,
    floating_dtype,
    hf_activation,
    hub_folder,
    read_checkpoint,
)
from labsupport.models.config import ViTConfig, make_config, preset
from labsupport.positional import LearnedPositionalEncoding2D

__all__ = ["patchify", "unpatchify", "ViT", "cls_attention_map", "attention_rollout", "vit_config_from_hf"]


def _pair(x) -> tuple[int, int]:
    return (x, x) if isinstance(x, int) else (int(x[0]), int(x[1]))


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``(B, C, H, W) -> (B, N, C * p * p)``: non-overlapping ``p x p`` patches, row-major, each flattened as
    ``(C, p, p)``. ``H`` and ``W`` must be multiples of ``p``."""
    B, C, H, W = images.shape
    p = patch_size
    if H % p or W % p:
        raise ValueError(f"image size {H}x{W} is not a multiple of the patch size {p}")
    x = images.reshape(B, C, H // p, p, W // p, p)  # (B, C, grid_h, p, grid_w, p)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (B, grid_h, grid_w, C, p, p)
    return x.reshape(B, (H // p) * (W // p), C * p * p)


def unpatchify(patches: torch.Tensor, patch_size: int, image_size, channels: int = 1) -> torch.Tensor:
    """The inverse of :func:`patchify`: ``(B, N, C * p * p) -> (B, C, H, W)`` with ``image_size = H`` or ``(H, W)``."""
    H, W = _pair(image_size)
    p, C = patch_size, channels
    B, N, F = patches.shape
    if N != (H // p) * (W // p) or F != C * p * p:
        raise ValueError(f"patches of shape {tuple(patches.shape)} do not fit a {C}x{H}x{W} image with patch size {p}")
    x = patches.reshape(B, H // p, W // p, C, p, p).permute(0, 3, 1, 4, 2, 5)  # (B, C, grid_h, p, grid_w, p)
    return x.reshape(B, C, H, W)


class ViT(nn.Module):
    """Vision Transformer: ``forward(images (B, C, H, W)) -> logits (B, num_classes)``.

    Configured by :class:`~labsupport.models.config.ViTConfig` (keywords, or the dataclass). Parts:
    ``patch_embed`` (``nn.Linear(C p^2, D)`` on :func:`patchify`'s output), ``cls_token`` ``(1, 1, D)``,
    ``cls_position`` ``(1, 1, D)`` (the position vector of the ``[CLS]`` slot) and ``positions`` (a
    :class:`~labsupport.positional.LearnedPositionalEncoding2D` on the patch grid; ``factorized_positions=True``
    uses row + column tables instead of one vector per patch), ``dropout``, ``encoder`` (pre-norm
    :class:`~labsupport.blocks.Encoder` with its final LayerNorm), ``head`` (``nn.Linear(D, num_classes)``).

    ``embed(images) -> (B, 1 + N, D)`` is the encoder's input, ``encode(images)`` its normalised output;
    ``attention_maps(images)`` runs the model and returns each block's attention weights ``(B, heads, 1 + N,
    1 + N)``. :meth:`from_hf` loads a Hugging Face ``ViTModel`` / ``ViTForImageClassification`` checkpoint.
    """

    def __init__(self, config: ViTConfig | None = None, /, **fields):
        super().__init__()
        self.config = cfg = make_config(ViTConfig, config, fields)
        H, W = _pair(cfg.image_size)
        p = cfg.patch_size
        if H % p or W % p:
            raise ValueError(f"image size {H}x{W} is not a multiple of the patch size {p}")
        d_ff = 4 * cfg.d_model if cfg.d_ff is None else cfg.d_ff
        self.image_size, self.patch_size, self.in_channels = (H, W), p, cfg.in_channels
        self.grid = (H // p, W // p)
        self.num_patches = self.grid[0] * self.grid[1]
        self.d_model, self.num_classes = cfg.d_model, cfg.num_classes
        self.patch_embed = nn.Linear(cfg.in_channels * p * p, cfg.d_model)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.d_model))
        self.cls_position = nn.Parameter(torch.zeros(1, 1, cfg.d_model))
        self.positions = LearnedPositionalEncoding2D(*self.grid, cfg.d_model, factorized=cfg.factorized_positions)
        self.dropout = nn.Dropout(cfg.dropout)
        self.encoder = Encoder(num_layers=cfg.num_layers, d_model=cfg.d_model, num_heads=cfg.num_heads, d_ff=d_ff,
                               dropout=cfg.dropout, activation=cfg.activation, norm_first=True,
                               layer_norm_eps=cfg.layer_norm_eps)
        self.head = nn.Linear(cfg.d_model, cfg.num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for name, p in self.named_parameters():
            if name.startswith("positions") or name in ("cls_token", "cls_position"):
                nn.init.normal_(p, std=0.02)
            elif p.dim() > 1:
                nn.init.xavier_uniform_(p)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def patchify(self, images: torch.Tensor) -> torch.Tensor:
        return patchify(images, self.patch_size)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Patch embeddings with the ``[CLS]`` vector in front and the positions added: ``(B, 1 + N, D)``."""
        if tuple(images.shape[1:]) != (self.in_channels, *self.image_size):
            raise ValueError(f"expected images of shape (B, {self.in_channels}, {self.image_size[0]}, "
                             f"{self.image_size[1]}), got {tuple(images.shape)}")
        x = self.positions(self.patch_embed(self.patchify(images)))  # (B, N, D), patch positions added
        cls = (self.cls_token + self.cls_position).expand(x.shape[0], -1, -1)  # (B, 1, D)
        return self.dropout(torch.cat([cls, x], dim=1))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.embed(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.encode(images)[:, 0])

    @torch.no_grad()
    def attention_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Run the model on ``images`` and return each block's attention weights, ``[(B, heads, 1 + N, 1 + N),
        ...]`` from the first block to the last (see :func:`labsupport.attention.record_attention`)."""
        with record_attention(self.encoder) as maps:
            self(images)
        return [maps[f"layers.{i}.self_attn"] for i in range(len(self.encoder.layers))]

    @classmethod
    def vit_b16(cls, **overrides) -> ViT:
        """ViT-B/16 for ImageNet, ``PRESETS["vit-b16"]``: 224x224 RGB images, 16x16 patches (196 of them), 12
        layers, 12 heads, ``D=768``, ``d_ff=3072``, 1,000 classes: **86,567,656** parameters, the published count:

        patch embedding ``3*16*16*768 + 768`` = 590,592; ``[CLS]`` 768; positions ``(196 + 1) * 768`` = 151,296;
        12 blocks of 7,087,872 = 85,054,464; final LayerNorm 1,536; head ``768 * 1000 + 1000`` = 769,000.
        """
        return cls(preset("vit-b16", **overrides))

    # ---- Hugging Face checkpoints ---------------------------------------------------------------------------------
    @classmethod
    def from_hf(cls, source, config=None, **overrides) -> ViT:
        """A :class:`ViT` holding the weights of a Hugging Face ViT checkpoint, in eval mode.

        ``source``: a ``transformers`` ``ViTModel`` / ``ViTForImageClassification``, its ``state_dict``, a file or
        a folder (see :mod:`labsupport.models.checkpoints`); ``config`` its ``ViTConfig`` when the source does not
        carry it. The convolution of the patch embedding becomes our linear layer (``weight.reshape(D, C p p)``);
        the position table splits into the ``[CLS]`` slot and the patch grid. ``ViTModel``'s pooler (a tanh layer
        that ``ViTForImageClassification`` does not use) has no counterpart and is skipped; a model without a
        classifier keeps a fresh ``head`` (``model.fresh_parts``).
        """
        state, hf = read_checkpoint(source, config)
        head = state.get("classifier.weight")
        cfg = vit_config_from_hf(hf, num_classes=None if head is None else head.shape[0], **overrides)
        if cfg.factorized_positions:
            raise CheckpointError("Hugging Face's ViT has one position vector per patch: factorized_positions=False")
        model = cls(cfg).to(floating_dtype(state))
        tensors = convert(state, _VIT_RULES, _VIT_IGNORE, what="ViT checkpoint")
        model.fresh_parts = assign(model, tensors, optional=("head",), what="ViT checkpoint")
        return model.eval()

    @classmethod
    def from_pretrained(cls, repo_id: str = "google/vit-base-patch16-224", **overrides) -> ViT:
        """Download (or take from the local cache) a ViT from the Hugging Face hub and load it with
        :meth:`from_hf`. Offline it fails at once, naming Lab 9's offline model."""
        return cls.from_hf(hub_folder(repo_id), **overrides)


def vit_config_from_hf(hf: dict, num_classes: int | None = None, **overrides) -> ViTConfig:
    """Our :class:`ViTConfig` from a Hugging Face ``ViTConfig`` (as a dict)."""
    if not hf:
        raise CheckpointError("a ViT checkpoint needs its configuration: pass config=")
    if hf.get("qkv_bias") is False:
        raise CheckpointError("qkv_bias=False is not supported: labsupport's attention projections have biases")
    try:
        cfg = ViTConfig(image_size=hf["image_size"], patch_size=hf["patch_size"], in_channels=hf["num_channels"],
                        num_classes=num_classes or len(hf.get("id2label") or {}) or 2, d_model=hf["hidden_size"],
                        num_heads=hf["num_attention_heads"], num_layers=hf["num_hidden_layers"],
                        d_ff=hf["intermediate_size"], dropout=hf.get("hidden_dropout_prob", 0.0),
                        activation=hf_activation(hf.get("hidden_act", "gelu")),
                        layer_norm_eps=hf.get("layer_norm_eps", 1e-12))
    except KeyError as err:
        raise CheckpointError(f"the ViT configuration lacks {err.args[0]!r}") from None
    return dataclasses.replace(cfg, **overrides)


def _vit_positions(m, table: torch.Tensor) -> dict[str, torch.Tensor]:
    """Hugging Face's ``(1, 1 + N, D)`` position table: slot 0 is the ``[CLS]`` position, then the patches."""
    return {"cls_position": table[:, :1], "positions.embedding.weight": table[0, 1:]}


_V = r"(?:vit\.)?"
_VL = _V + r"encoder\.layer\.(\d+)\."  # the checkpoints' names (transformers 4 and the hub's google/vit-*)
_V5 = _V + r"layers\.(\d+)\."         # transformers 5's module names
_VIT_RULES = [
    (_V + r"embeddings\.cls_token", "cls_token"),
    (_V + r"embeddings\.position_embeddings", _vit_positions),
    (_V + r"embeddings\.patch_embeddings\.projection\.weight",
     lambda m, w: {"patch_embed.weight": w.reshape(w.shape[0], -1)}),  # Conv2d (D, C, p, p) -> Linear (D, C p p)
    (_V + r"embeddings\.patch_embeddings\.projection\.bias", "patch_embed.bias"),
    (_VL + r"layernorm_before\.(weight|bias)", r"encoder.layers.\1.norm1.\2"),
    (_VL + r"attention\.attention\.query\.(weight|bias)", r"encoder.layers.\1.self_attn.q_proj.\2"),
    (_VL + r"attention\.attention\.key\.(weight|bias)", r"encoder.layers.\1.self_attn.k_proj.\2"),
    (_VL + r"attention\.attention\.value\.(weight|bias)", r"encoder.layers.\1.self_attn.v_proj.\2"),
    (_VL + r"attention\.output\.dense\.(weight|bias)", r"encoder.layers.\1.self_attn.out_proj.\2"),
    (_VL + r"layernorm_after\.(weight|bias)", r"encoder.layers.\1.norm2.\2"),
    (_VL + r"intermediate\.dense\.(weight|bias)", r"encoder.layers.\1.ff.linear1.\2"),
    (_VL + r"output\.dense\.(weight|bias)", r"encoder.layers.\1.ff.linear2.\2"),
    (_V5 + r"layernorm_(?:before)\.(weight|bias)", r"encoder.layers.\1.norm1.\2"),
    (_V5 + r"attention\.([qkv])_proj\.(weight|bias)", r"encoder.layers.\1.self_attn.\2_proj.\3"),
    (_V5 + r"attention\.o_proj\.(weight|bias)", r"encoder.layers.\1.self_attn.out_proj.\2"),
    (_V5 + r"layernorm_after\.(weight|bias)", r"encoder.layers.\1.norm2.\2"),
    (_V5 + r"mlp\.fc1\.(weight|bias)", r"encoder.layers.\1.ff.linear1.\2"),
    (_V5 + r"mlp\.fc2\.(weight|bias)", r"encoder.layers.\1.ff.linear2.\2"),
    (_V + r"layernorm\.(weight|bias)", r"encoder.norm.\1"),
    (r"classifier\.(weight|bias)", r"head.\1"),
]
_VIT_IGNORE = (_V + r"pooler\.dense\.(weight|bias)",)


# ----------------------------------------------------------------------------------------------------------------
# Looking at what the model attends to
# ----------------------------------------------------------------------------------------------------------------
def cls_attention_map(weights: torch.Tensor, grid) -> torch.Tensor:
    """How much the ``[CLS]`` query attends to each patch: ``(B, H, 1 + N, 1 + N) -> (B, grid_h, grid_w)``.

    Averages over heads, takes the ``[CLS]`` row (query 0), drops the ``[CLS]`` column (key 0) and lays the ``N``
    patch weights out on the grid, row-major. The values no longer sum to one (the ``[CLS]`` key got the rest).
    """
    gh, gw = _pair(grid)
    return weights.mean(dim=1)[:, 0, 1:].reshape(weights.shape[0], gh, gw)


def attention_rollout(weights: list[torch.Tensor], residual: float = 0.5) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema, 2020): how much each input token flows into each output token through
    the whole stack. Each layer's head-averaged weights ``A`` become ``residual * I + (1 - residual) * A`` (the
    residual connection carries the token itself along), rows renormalised, and the layers are multiplied from the
    first to the last: ``(B, 1 + N, 1 + N)``. Row 0 (minus column 0) is the ``[CLS]`` token's view of the image.
    """
    rollout = None
    for w in weights:
        a = w.mean(dim=1)  # (B, T, T)
        a = residual * torch.eye(a.shape[-1], device=a.device, dtype=a.dtype) + (1 - residual) * a
        a = a / a.sum(dim=-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout
    return rollout
