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

import dataclasses

import torch
from torch import nn

from labsupport.attention import AttentionCache, MultiHeadAttention
from labsupport.blocks import FeedForward, LayerNorm, sublayer
from labsupport.models.checkpoints import (
    CheckpointError,
    assign,
    check_tied,
    convert,
    floating_dtype,
    hf_activation,
    hub_folder,
    read_checkpoint,
)
from labsupport.models.config import GPTConfig, make_config, preset
from labsupport.positional import LearnedPositionalEncoding

__all__ = ["KVCache", "GPTBlock", "GPT", "gpt_config_from_hf"]


class KVCache:
    """The keys and values of every layer of a :class:`GPT`: ``cache[i]`` is block ``i``'s
    :class:`~labsupport.attention.AttentionCache`, each ``(B, H, T, D/H)``."""

    def __init__(self, num_layers: int):
        self.layers = [AttentionCache() for _ in range(num_layers)]

    def __getitem__(self, i: int) -> AttentionCache:
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def length(self) -> int:
        """``T``, the number of positions cached."""
        return self.layers[0].length

    def nbytes(self) -> int:
        """Memory held by the cache, in bytes."""
        return sum(layer.nbytes() for layer in self.layers)


class GPTBlock(nn.Module):
    """GPT-2's block: pre-norm causal self-attention and a feed-forward network, two residual sub-layers::

        x = sublayer(x, causal self-attention, norm1, dropout1, norm_first=True)
        x = sublayer(x, ff,                    norm2, dropout2, norm_first=True)

    ``forward(x (B, L, D), cache=None) -> (B, L, D)``. With ``cache`` (an
    :class:`~labsupport.attention.AttentionCache`), ``x`` holds the newest positions only: their keys and values are
    appended to the cache and their queries attend to everything cached (Lab 6's ``attend_with_cache``).
    Attribute names as Lab 4's :class:`~labsupport.blocks.EncoderBlock`.
    """

    def __init__(self, *, d_model: int, num_heads: int, d_ff: int, dropout: float = 0.1, activation: str = "gelu",
                 layer_norm_eps: float = 1e-5):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout=dropout)
        self.ff = FeedForward(d_model, d_ff, dropout=dropout, activation=activation)
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, cache: AttentionCache | None = None) -> torch.Tensor:
        attend = lambda h: self.self_attn(h, h, h, is_causal=True, cache=cache, need_weights=False)[0]
        x = sublayer(x, attend, self.norm1, self.dropout1, norm_first=True)
        return sublayer(x, self.ff, self.norm2, self.dropout2, norm_first=True)


class GPT(nn.Module):
    """Decoder-only Transformer language model: ``forward(idx (B, L), cache=None) -> logits (B, L, V)``.

    Configured by :class:`~labsupport.models.config.GPTConfig` (keywords, or the dataclass). ``tie_weights``
    (default, as GPT-2): the output layer (``lm_head``, no bias) shares the token embedding matrix.
    Initialisation as GPT-2: normal(0, 0.02) weights, zero biases, and the projections that write into the
    residual stream (``out_proj``, ``linear2``) scaled down by ``1/sqrt(2 * num_layers)``. :meth:`from_hf` loads
    GPT-2's weights (Hugging Face's layout or nanoGPT's); ``GPT.gpt2_small()`` is GPT-2 small exactly.
    """

    def __init__(self, config: GPTConfig | None = None, /, **fields):
        super().__init__()
        self.config = cfg = make_config(GPTConfig, config, fields)
        d_ff = 4 * cfg.d_model if cfg.d_ff is None else cfg.d_ff
        self.vocab_size, self.max_len, self.d_model, self.num_layers = (cfg.vocab_size, cfg.max_len, cfg.d_model,
                                                                        cfg.num_layers)
        self.tok_embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = LearnedPositionalEncoding(cfg.max_len, cfg.d_model, dropout=cfg.dropout)
        block = dict(d_model=cfg.d_model, num_heads=cfg.num_heads, d_ff=d_ff, dropout=cfg.dropout,
                     activation=cfg.activation, layer_norm_eps=cfg.layer_norm_eps)
        self.blocks = nn.ModuleList(GPTBlock(**block) for _ in range(cfg.num_layers))
        self.norm = LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self._init_weights()
        if cfg.tie_weights:
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
            x = block(x, None if cache is None else cache[i])
        return self.lm_head(self.norm(x))

    @classmethod
    def gpt2_small(cls, **overrides) -> GPT:
        """GPT-2 small, ``PRESETS["gpt2-small"]``: 50,257-token byte-pair vocabulary, 1,024 positions, 12 layers,
        12 heads, ``d_model=768``, ``d_ff=3072``, tanh-GELU, tied embeddings: 124,439,808 parameters (the "124M"
        of the released checkpoint)."""
        return cls(preset("gpt2-small", **overrides))

    # ---- checkpoints: Hugging Face's GPT-2 and nanoGPT ---------------------------------------------------------------
    @classmethod
    def from_hf(cls, source, config=None, **overrides) -> GPT:
        """A :class:`GPT` holding the weights of a GPT-2 checkpoint, in eval mode.

        ``source``: a ``transformers`` ``GPT2LMHeadModel`` / ``GPT2Model``, its ``state_dict``, a file or a folder
        (see :mod:`labsupport.models.checkpoints`), or a nanoGPT ``state_dict`` (same names, ``nn.Linear`` weights
        instead of GPT-2's transposed ``Conv1D`` ones; told apart by the shape of ``c_attn.weight``). ``config``:
        GPT-2's ``config.json`` (dict, path, ``GPT2Config``) or nanoGPT's ``model_args`` dict (``block_size``,
        ``n_embd``, ...; nanoGPT uses the exact GELU). ``overrides`` change fields of the :class:`GPTConfig`.
        """
        state, hf = read_checkpoint(source, config)
        qkv = next((t for n, t in state.items() if n.endswith("h.0.attn.c_attn.weight")), None)
        if qkv is None:
            raise CheckpointError("not a GPT-2 checkpoint: no h.0.attn.c_attn.weight")
        conv1d = qkv.shape[1] == 3 * qkv.shape[0]  # GPT-2's Conv1D keeps (in, out); nn.Linear (out, in)
        cfg = gpt_config_from_hf(hf, nanogpt=not conv1d, tie_weights="lm_head.weight" not in state or
                                 torch.equal(state["lm_head.weight"], state[_wte_name(state)]), **overrides)
        model = cls(cfg).to(floating_dtype(state))
        tensors = convert(state, _gpt_rules(transposed=conv1d), _GPT_IGNORE, what="GPT-2 checkpoint")
        if cfg.tie_weights:
            check_tied(tensors, "lm_head.weight", "tok_embed.weight", "GPT-2 checkpoint")
            tensors.pop("lm_head.weight", None)
        assign(model, tensors, what="GPT-2 checkpoint")
        return model.eval()

    @classmethod
    def from_pretrained(cls, repo_id: str = "gpt2", **overrides) -> GPT:
        """Download (or take from the local cache) GPT-2's weights from the Hugging Face hub (``"gpt2"`` is the
        124M model) and load them with :meth:`from_hf`. Offline it fails at once, naming Lab 9's offline model."""
        return cls.from_hf(hub_folder(repo_id), **overrides)


def _wte_name(state) -> str:
    return "transformer.wte.weight" if "transformer.wte.weight" in state else "wte.weight"


def gpt_config_from_hf(hf: dict, nanogpt: bool = False, **overrides) -> GPTConfig:
    """Our :class:`GPTConfig` from GPT-2's config (``n_embd``, ``n_positions``, ...) or nanoGPT's ``model_args``
    (``block_size``, ...)."""
    if not hf:
        raise CheckpointError("a GPT-2 checkpoint needs its configuration: pass config= (config.json, a dict, "
                              "a GPT2Config or nanoGPT's model_args)")
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
        if hf.get(flag):
            raise CheckpointError(f"{flag}=True is not supported")
    if hf.get("bias") is False:
        raise CheckpointError("nanoGPT's bias=False is not supported: labsupport's layers have biases")
    try:
        cfg = GPTConfig(vocab_size=hf["vocab_size"], max_len=hf["block_size"] if nanogpt else hf["n_positions"],
                        d_model=hf["n_embd"], num_heads=hf["n_head"], num_layers=hf["n_layer"],
                        d_ff=hf.get("n_inner"), dropout=hf.get("dropout", hf.get("resid_pdrop", 0.1)),
                        activation="gelu" if nanogpt else hf_activation(hf.get("activation_function", "gelu_new")),
                        layer_norm_eps=hf.get("layer_norm_epsilon", 1e-5))
    except KeyError as err:
        raise CheckpointError(f"the GPT-2 configuration lacks {err.args[0]!r}") from None
    return dataclasses.replace(cfg, **overrides)


def _gpt_rules(transposed: bool) -> list:
    """Renaming rules for GPT-2's names; ``transposed``: ``Conv1D`` weights stored ``(in, out)``."""
    P = r"(?:transformer\.)?"
    H = P + r"h\.(\d+)\."
    lin = (lambda w: w.t()) if transposed else (lambda w: w)

    def weight(target):
        return lambda m, w: {m.expand(target): lin(w)}

    def split_qkv(kind):
        def split(m, t):
            parts = (lin(t) if kind == "weight" else t).chunk(3, dim=0)
            return {f"blocks.{m[1]}.self_attn.{n}_proj.{kind}": p for n, p in zip("qkv", parts)}
        return split

    return [
        (P + r"wte\.weight", "tok_embed.weight"),
        (P + r"wpe\.weight", "pos.embedding.weight"),
        (H + r"ln_1\.(weight|bias)", r"blocks.\1.norm1.\2"),
        (H + r"attn\.c_attn\.weight", split_qkv("weight")),
        (H + r"attn\.c_attn\.bias", split_qkv("bias")),
        (H + r"attn\.c_proj\.weight", weight(r"blocks.\1.self_attn.out_proj.weight")),
        (H + r"attn\.c_proj\.bias", r"blocks.\1.self_attn.out_proj.bias"),
        (H + r"ln_2\.(weight|bias)", r"blocks.\1.norm2.\2"),
        (H + r"mlp\.c_fc\.weight", weight(r"blocks.\1.ff.linear1.weight")),
        (H + r"mlp\.c_fc\.bias", r"blocks.\1.ff.linear1.bias"),
        (H + r"mlp\.c_proj\.weight", weight(r"blocks.\1.ff.linear2.weight")),
        (H + r"mlp\.c_proj\.bias", r"blocks.\1.ff.linear2.bias"),
        (P + r"ln_f\.(weight|bias)", r"norm.\1"),
        (r"lm_head\.weight", "lm_head.weight"),
    ]


# cached causal masks of older checkpoints (GPT-2's attn.bias / attn.masked_bias, nanoGPT's attn.bias)
_GPT_IGNORE = (r"(?:transformer\.)?h\.\d+\.attn\.(bias|masked_bias)",)
