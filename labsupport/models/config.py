"""The models' configurations, as data: one dataclass per model and one table of the published sizes.

Every model takes its configuration as keyword arguments (``GPT(vocab_size=65, d_model=128)``) or as one of these
dataclasses (``GPT(GPTConfig(...))``, as nanoGPT does); ``model.config`` is the dataclass it was built from. The
published configurations live in :data:`PRESETS`, and nowhere else::

    with torch.device("meta"):                       # no memory: shapes only
        gpt2 = GPT(preset("gpt2-small"))             # the same as GPT.gpt2_small()
    count_parameters(gpt2)                           # 124,439,808

``d_ff=None`` means ``4 * d_model``. ``activation`` names one of :data:`labsupport.blocks.ACTIVATIONS`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = ["GPTConfig", "BERTConfig", "ViTConfig", "Seq2SeqConfig", "PRESETS", "preset", "make_config"]


@dataclass(kw_only=True)
class GPTConfig:
    """A decoder-only language model (:class:`labsupport.models.GPT`)."""

    vocab_size: int
    max_len: int = 256
    d_model: int = 128
    num_heads: int = 4
    num_layers: int = 4
    d_ff: int | None = None
    dropout: float = 0.1
    activation: str = "gelu"          # GPT-2 itself: "gelu_tanh"
    tie_weights: bool = True
    layer_norm_eps: float = 1e-5


@dataclass(kw_only=True)
class BERTConfig:
    """A BERT encoder with its masked-LM and classifier heads (:class:`labsupport.models.BERT`)."""

    vocab_size: int
    max_len: int = 128
    d_model: int = 128
    num_heads: int = 4
    num_layers: int = 2
    d_ff: int | None = None
    dropout: float = 0.1
    activation: str = "gelu"
    num_segments: int = 2
    num_classes: int = 2
    pad_id: int = 0
    layer_norm_eps: float = 1e-12


@dataclass(kw_only=True)
class ViTConfig:
    """A Vision Transformer (:class:`labsupport.models.ViT`). ``image_size`` is ``H`` or ``(H, W)``."""

    image_size: int | tuple[int, int] = 8
    patch_size: int = 2
    in_channels: int = 1
    num_classes: int = 10
    d_model: int = 64
    num_heads: int = 4
    num_layers: int = 4
    d_ff: int | None = None
    dropout: float = 0.1
    activation: str = "gelu"
    factorized_positions: bool = False
    layer_norm_eps: float = 1e-6      # Hugging Face's ViT checkpoints: 1e-12


@dataclass(kw_only=True)
class Seq2SeqConfig:
    """An encoder-decoder (:class:`labsupport.models.Seq2SeqTransformer`).

    ``final_norms=None`` gives each stack a final LayerNorm exactly when ``norm_first`` (pre-norm needs one);
    ``True`` adds them to a post-norm model too, as stock ``nn.Transformer`` has them.
    """

    src_vocab: int
    tgt_vocab: int
    d_model: int = 128
    num_heads: int = 4
    num_encoder_layers: int = 2
    num_decoder_layers: int = 2
    d_ff: int = 512
    dropout: float = 0.1
    activation: str = "relu"
    max_len: int = 256
    norm_first: bool = False
    final_norms: bool | None = None
    layer_norm_eps: float = 1e-5
    share_embeddings: bool = False
    tie_output: bool = False
    src_pad_id: int = 0
    tgt_pad_id: int = 0


#: The published configurations (parameter counts pinned by the tests to the papers and to ``transformers``).
PRESETS = {
    # Radford et al. (2019); the released "124M" checkpoint: 124,439,808 parameters with the tied output layer
    "gpt2-small": GPTConfig(vocab_size=50257, max_len=1024, d_model=768, num_heads=12, num_layers=12, d_ff=3072,
                            dropout=0.1, activation="gelu_tanh"),
    # Devlin et al. (2019), bert-base-uncased: embeddings + encoder + pooler = 109,482,240
    "bert-base": BERTConfig(vocab_size=30522, max_len=512, d_model=768, num_heads=12, num_layers=12, d_ff=3072),
    # sentence-transformers/all-MiniLM-L6-v2 (Lab 9): a 6-layer, 384-wide BERT, 22,713,216 with the pooler
    "minilm-l6": BERTConfig(vocab_size=30522, max_len=512, d_model=384, num_heads=12, num_layers=6, d_ff=1536),
    # Dosovitskiy et al. (2021), ViT-B/16 on ImageNet: 86,567,656
    "vit-b16": ViTConfig(image_size=224, patch_size=16, in_channels=3, num_classes=1000, d_model=768, num_heads=12,
                         num_layers=12, d_ff=3072, dropout=0.0),
    # Vaswani et al. (2017), the base model on a shared 37,000-token vocabulary: 63.1M by our count (Table 3: 65M)
    "transformer-base": Seq2SeqConfig(src_vocab=37000, tgt_vocab=37000, d_model=512, num_heads=8,
                                      num_encoder_layers=6, num_decoder_layers=6, d_ff=2048, dropout=0.1,
                                      max_len=5000, share_embeddings=True, tie_output=True),
}


def preset(name: str, **overrides):
    """A copy of ``PRESETS[name]`` with some fields replaced, e.g. ``preset("gpt2-small", dropout=0.0)``."""
    if name not in PRESETS:
        raise KeyError(f"no preset {name!r}; the presets are {', '.join(PRESETS)}")
    return dataclasses.replace(PRESETS[name], **overrides)


def make_config(config_class, config, fields: dict):
    """The configuration a model's constructor was given: ``config`` (a ``config_class``) with ``fields``
    replaced, or ``config_class(**fields)``. Positional sizes are refused with a message saying how to call."""
    if config is None:
        return config_class(**fields)
    if not isinstance(config, config_class):
        names = ", ".join(f.name for f in dataclasses.fields(config_class))
        raise TypeError(f"the constructor takes keyword arguments ({names}) or a {config_class.__name__}; "
                        f"got the positional argument {config!r}")
    return dataclasses.replace(config, **fields)
