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

import torch
from torch import nn

from labsupport.blocks import Encoder
from labsupport.positional import LearnedPositionalEncoding2D

__all__ = ["patchify", "unpatchify", "ViT", "cls_attention_map", "attention_rollout"]


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

    Parts: ``patch_embed`` (``nn.Linear(C p^2, D)`` on :func:`patchify`'s output), ``cls_token`` ``(1, 1, D)``,
    ``cls_position`` ``(1, 1, D)`` (the position vector of the ``[CLS]`` slot) and ``positions`` (a
    :class:`~labsupport.positional.LearnedPositionalEncoding2D` on the patch grid; ``factorized_positions=True``
    uses row + column tables instead of one vector per patch), ``dropout``, ``encoder`` (pre-norm
    :class:`~labsupport.blocks.Encoder` with its final LayerNorm), ``head`` (``nn.Linear(D, num_classes)``).

    ``embed(images) -> (B, 1 + N, D)`` is the encoder's input, ``encode(images)`` its normalised output;
    ``attention_maps()`` returns each block's last attention weights ``(B, heads, 1 + N, 1 + N)``.
    """

    def __init__(self, image_size=8, patch_size: int = 2, in_channels: int = 1, num_classes: int = 10,
                 d_model: int = 64, num_heads: int = 4, num_layers: int = 4, d_ff: int | None = None,
                 dropout: float = 0.1, factorized_positions: bool = False, layer_norm_eps: float = 1e-6):
        super().__init__()
        H, W = _pair(image_size)
        if H % patch_size or W % patch_size:
            raise ValueError(f"image size {H}x{W} is not a multiple of the patch size {patch_size}")
        d_ff = 4 * d_model if d_ff is None else d_ff
        self.image_size, self.patch_size, self.in_channels = (H, W), patch_size, in_channels
        self.grid = (H // patch_size, W // patch_size)
        self.num_patches = self.grid[0] * self.grid[1]
        self.d_model, self.num_classes = d_model, num_classes
        self.patch_embed = nn.Linear(in_channels * patch_size * patch_size, d_model)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d_model))
        self.cls_position = nn.Parameter(torch.zeros(1, 1, d_model))
        self.positions = LearnedPositionalEncoding2D(self.grid[0], self.grid[1], d_model, factorized=factorized_positions)
        self.dropout = nn.Dropout(dropout)
        self.encoder = Encoder(num_layers, d_model, num_heads, d_ff, dropout, activation="gelu", norm_first=True,
                               layer_norm_eps=layer_norm_eps)
        self.head = nn.Linear(d_model, num_classes)
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

    def attention_maps(self) -> list[torch.Tensor]:
        """The attention weights of each block from the last forward pass, ``[(B, heads, 1 + N, 1 + N), ...]``."""
        return [layer.attn_weights for layer in self.encoder.layers]

    @classmethod
    def vit_b16(cls, **overrides) -> "ViT":
        """ViT-B/16 for ImageNet: 224x224 RGB images, 16x16 patches (196 of them), 12 layers, 12 heads, ``D=768``,
        ``d_ff=3072``, 1,000 classes: **86,567,656** parameters, the published count:

        patch embedding ``3*16*16*768 + 768`` = 590,592; ``[CLS]`` 768; positions ``(196 + 1) * 768`` = 151,296;
        12 blocks of 7,087,872 = 85,054,464; final LayerNorm 1,536; head ``768 * 1000 + 1000`` = 769,000.
        """
        cfg = dict(image_size=224, patch_size=16, in_channels=3, num_classes=1000, d_model=768, num_heads=12,
                   num_layers=12, d_ff=3072, dropout=0.0)
        cfg.update(overrides)
        return cls(**cfg)


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
