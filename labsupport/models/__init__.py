"""The course's four models, each assembled from the blocks the earlier labs built (Labs 5-8).

* :class:`Seq2SeqTransformer`  the encoder-decoder of "Attention Is All You Need" (Lab 5, translation)
* :class:`GPT`                 a decoder-only language model with a KV cache (Lab 6)
* :class:`BERT`                an encoder with masked-language-model and classifier heads (Lab 7)
* :class:`ViT`                 a Vision Transformer (Lab 8)

Each takes its configuration as keyword arguments or as a dataclass of :mod:`labsupport.models.config`, whose
table ``PRESETS`` holds the published sizes (``GPT.gpt2_small()``, ``BERT.bert_base()``, ``ViT.vit_b16()``,
``Seq2SeqTransformer.paper_base()`` build them), cheaply on PyTorch's ``meta`` device::

    with torch.device("meta"):
        print(count_parameters(GPT.gpt2_small()))   # 124,439,808

``GPT.from_hf``, ``BERT.from_hf`` and ``ViT.from_hf`` load Hugging Face checkpoints
(:mod:`labsupport.models.checkpoints`).
"""
from __future__ import annotations

from torch import nn

from labsupport.models.bert import BERT
from labsupport.models.checkpoints import CheckpointError
from labsupport.models.config import PRESETS, BERTConfig, GPTConfig, Seq2SeqConfig, ViTConfig, preset
from labsupport.models.gpt import GPT, GPTBlock, KVCache
from labsupport.models.seq2seq import Seq2SeqTransformer
from labsupport.models.vit import ViT


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``model``; a parameter shared by two modules (tied embeddings) counts once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


__all__ = ["count_parameters", "Seq2SeqTransformer", "GPT", "GPTBlock", "KVCache", "BERT", "ViT", "PRESETS", "preset",
           "GPTConfig", "BERTConfig", "ViTConfig", "Seq2SeqConfig", "CheckpointError"]
