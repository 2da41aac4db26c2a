"""What a Transformer costs: parameters, FLOPs, memory, energy and carbon, as pure functions.

Everything here is arithmetic on published configurations; nothing builds a model or allocates a tensor, so
the numbers for GPT-3 are as cheap to get as those for a toy model. The book's chapter on challenges
(``ch-challenges``) prints them; ``tests/test_costs.py`` pins them to hand calculations and published figures.

Conventions
-----------
* A **FLOP** is one floating-point addition or multiplication, so a multiply-accumulate counts as 2 FLOPs and a
  matrix product ``(m, k) @ (k, n)`` costs ``2 m k n`` FLOPs.
* **Parameters** ``N`` are counted like ``sum(p.numel() for p in model.parameters())``: weights, biases,
  layer-norm gains and shifts and embedding tables, each shared tensor once.
* **Tokens** ``D`` is the number of token positions the model is trained on (with repetition over epochs).
* Memory is in bytes; ``bytes_per_element`` is 4 for float32, 2 for float16/bfloat16.

The approximations (each function's docstring says which one it makes):

* forward pass ~ ``2 N`` FLOPs per token, backward pass ~ ``4 N`` (two matrix products per weight: one for
  the gradient with respect to the input, one for the gradient with respect to the weight), so training costs
  ``C ~ 6 N D`` FLOPs (Kaplan et al., 2020, section 2.1);
* attention adds ``2 n_layers n_ctx d_model`` FLOPs per token in the forward pass for the scores and the
  weighted sum of values, the part of the cost that grows with the context length.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# ---------------------------------------------------------------------------------------------------------
# Parameter counts
# ---------------------------------------------------------------------------------------------------------


def attention_params(d_model: int, bias: bool = True, kv_dim: int | None = None) -> int:
    """Parameters of one multi-head attention layer: ``W^Q, W^K, W^V, W^O`` and their biases.

    ``4 d^2 + 4 d`` for standard attention, whatever the number of heads (heads split ``d_model``, they do
    not add parameters). ``kv_dim`` is the width of the key and value projections when it differs from
    ``d_model`` (grouped-query attention: ``kv_dim = n_kv_heads * d_head``).
    """
    kv = d_model if kv_dim is None else kv_dim
    weights = 2 * d_model * d_model + 2 * d_model * kv
    biases = (2 * d_model + 2 * kv) if bias else 0
    return weights + biases


def ffn_params(d_model: int, d_ff: int, bias: bool = True) -> int:
    """Parameters of the position-wise feed-forward network ``W_2 act(W_1 x + b_1) + b_2``: ``2 d d_ff + d_ff + d``."""
    return 2 * d_model * d_ff + ((d_ff + d_model) if bias else 0)


def layer_norm_params(d_model: int) -> int:
    """A layer normalisation has a gain and a shift per feature: ``2 d``."""
    return 2 * d_model


def encoder_layer_params(d_model: int, d_ff: int, bias: bool = True) -> int:
    """One encoder block: self-attention, feed-forward network, two layer norms."""
    return attention_params(d_model, bias) + ffn_params(d_model, d_ff, bias) + 2 * layer_norm_params(d_model)


def decoder_layer_params(d_model: int, d_ff: int, bias: bool = True, cross_attention: bool = True) -> int:
    """One decoder block: masked self-attention, cross-attention (if any), feed-forward network, layer norms."""
    n_attn = 2 if cross_attention else 1
    n_norm = 3 if cross_attention else 2
    return (n_attn * attention_params(d_model, bias) + ffn_params(d_model, d_ff, bias)
            + n_norm * layer_norm_params(d_model))


def non_embedding_params(n_layers: int, d_model: int, d_ff: int | None = None) -> int:
    """Kaplan et al.'s ``N = 2 d_model n_layers (2 d_attn + d_ff)``, weights only (no biases, norms, embeddings).

    With ``d_ff = 4 d_model`` (the default) this is the familiar ``12 n_layers d_model^2``.
    """
    d_ff = 4 * d_model if d_ff is None else d_ff
    return 2 * d_model * n_layers * (2 * d_model + d_ff)


def gpt_params(vocab_size: int, context: int, d_model: int, n_layers: int, d_ff: int | None = None,
               tied_output: bool = True, final_norm: bool = True) -> int:
    """A GPT-2-style decoder-only model: token and learned position embeddings, ``n_layers`` decoder blocks
    without cross-attention, a final layer norm, and an output projection tied to the token embedding
    (``tied_output``; otherwise a separate ``d_model x vocab`` matrix without bias).

    GPT-2 small (50257, 1024, 768, 12) gives 124,439,808, the size of the released checkpoint.
    """
    d_ff = 4 * d_model if d_ff is None else d_ff
    n = vocab_size * d_model + context * d_model
    n += n_layers * decoder_layer_params(d_model, d_ff, cross_attention=False)
    n += layer_norm_params(d_model) if final_norm else 0
    n += 0 if tied_output else vocab_size * d_model
    return n


def bert_params(vocab_size: int = 30522, context: int = 512, d_model: int = 768, n_layers: int = 12,
                d_ff: int | None = None, num_segments: int = 2, pooler: bool = True) -> int:
    """A BERT encoder: token, position and segment embeddings with their layer norm, ``n_layers`` encoder
    blocks, and the pooler (a ``d x d`` layer on the [CLS] vector). Pre-training heads are not counted.

    BERT-base (the defaults) gives 109,482,240, the "110M" of Devlin et al. (2019).
    """
    d_ff = 4 * d_model if d_ff is None else d_ff
    n = (vocab_size + context + num_segments) * d_model + layer_norm_params(d_model)
    n += n_layers * encoder_layer_params(d_model, d_ff)
    n += (d_model * d_model + d_model) if pooler else 0
    return n


def seq2seq_params(vocab_size: int = 37000, d_model: int = 512, n_encoder_layers: int = 6,
                   n_decoder_layers: int = 6, d_ff: int = 2048, shared_embeddings: bool = True,
                   tgt_vocab_size: int | None = None, final_norms: bool = False, output_bias: bool = False) -> int:
    """The encoder-decoder Transformer of Vaswani et al. (2017) with sinusoidal positions (no parameters).

    With ``shared_embeddings`` one ``vocab x d`` matrix serves as source embedding, target embedding and
    output projection (the paper's choice, a shared source/target vocabulary). ``final_norms`` adds the layer
    norms that ``nn.Transformer`` puts after each stack; ``output_bias`` a bias on the output projection.
    The defaults (the paper's "base" model) give 63.1M; the paper reports 65M.
    """
    tgt_vocab_size = vocab_size if tgt_vocab_size is None else tgt_vocab_size
    if shared_embeddings:
        emb = vocab_size * d_model
    else:
        emb = vocab_size * d_model + 2 * tgt_vocab_size * d_model  # source, target and output matrices
    n = (emb + n_encoder_layers * encoder_layer_params(d_model, d_ff)
         + n_decoder_layers * decoder_layer_params(d_model, d_ff))
    n += 2 * layer_norm_params(d_model) if final_norms else 0
    n += tgt_vocab_size if output_bias else 0
    return n


# ---------------------------------------------------------------------------------------------------------
# FLOPs
# ---------------------------------------------------------------------------------------------------------


def forward_flops_per_token(n_params: float, n_layers: int = 0, context: int = 0, d_model: int = 0,
                            causal: bool = True) -> float:
    """Forward-pass FLOPs for one token: ``2 N + 2 n_layers n_ctx d_model`` (Kaplan et al., 2020, Table 1).

    ``2 N``: every weight is used in one multiply-accumulate. The second term is attention's scores
    ``q . k`` and weighted sum of values ``sum_j a_j v_j``, each ``2 d_model`` FLOPs per visible key. With a
    causal mask a token sees on average ``n_ctx / 2`` keys, hence ``2 x 2 x (n_ctx / 2) x d_model`` per layer;
    with ``causal=False`` (an encoder, or a plain implementation that computes the masked scores anyway)
    every token meets all ``n_ctx`` keys and the term doubles. Leave ``context`` at 0 to drop it (it is small
    next to ``2 N`` while ``n_ctx < 12 d_model``). Embedding look-ups cost nothing here; pass ``N`` without
    the embedding table unless the output projection uses it (tied weights).
    """
    per_key = 2.0 if causal else 4.0
    return 2.0 * n_params + per_key * n_layers * context * d_model


def training_flops(n_params: float, tokens: float, flops_per_param_per_token: float = 6.0) -> float:
    """Training compute ``C ~ 6 N D``: forward ``2 N`` plus backward ``4 N`` FLOPs per token, times ``D`` tokens.

    Assumes every parameter takes part in every token (a dense model) and ignores the attention term and the
    cost of the optimiser (a few FLOPs per parameter per *step*, not per token). GPT-3 175B on 300B tokens
    gives 3.15e23 (Brown et al., 2020, report 3.14e23).
    """
    return flops_per_param_per_token * n_params * tokens


def attention_flops(seq_len: int, d_model: int, n_layers: int = 1, batch: int = 1,
                    projections: bool = True) -> float:
    """Forward FLOPs of the self-attention layers for a sequence of ``seq_len`` tokens.

    * scores ``Q K^T``: ``2 n^2 d`` and weighted sum ``A V``: ``2 n^2 d`` (summed over heads, ``d = H d_head``);
      these grow with the square of the length;
    * projections ``W^Q, W^K, W^V, W^O`` (if ``projections``): ``4 x 2 n d^2``, linear in the length.

    Softmax, scaling and masking (a few FLOPs per score) are left out.
    """
    quadratic = 4.0 * seq_len * seq_len * d_model
    linear = 8.0 * seq_len * d_model * d_model if projections else 0.0
    return batch * n_layers * (quadratic + linear)


def compute_optimal_tokens(n_params: float, tokens_per_param: float = 20.0) -> float:
    """Training tokens for a compute-optimal model of ``n_params`` parameters: about 20 per parameter
    (Hoffmann et al., 2022, "Chinchilla"; the exact ratio depends on the fit, 20 is the usual rule of thumb)."""
    return tokens_per_param * n_params


def flops_to_pf_days(flops: float) -> float:
    """Convert FLOPs to petaflop/s-days (1e15 FLOP/s for 24 hours = 8.64e19 FLOPs), GPT-3's unit."""
    return flops / (1e15 * 86400)


# ---------------------------------------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------------------------------------


def attention_memory_bytes(seq_len: int, num_heads: int, batch: int = 1, n_layers: int = 1,
                           bytes_per_element: int = 4, kv_len: int | None = None) -> int:
    """Memory for the attention score matrices ``(batch, heads, seq_len, kv_len)`` of ``n_layers`` layers.

    One matrix per head and layer; this is what a plain implementation materialises (``softmax`` then keeps
    a second one of the same size, and training stores them for the backward pass). Fused kernels such as
    FlashAttention never materialise it. Grows as ``seq_len^2``.
    """
    kv_len = seq_len if kv_len is None else kv_len
    return batch * num_heads * n_layers * seq_len * kv_len * bytes_per_element


def kv_cache_bytes(n_layers: int, seq_len: int, n_kv_heads: int, d_head: int, batch: int = 1,
                   bytes_per_element: int = 2) -> int:
    """Size of the key-value cache of a decoder: ``2 (K and V) x layers x tokens x kv_heads x d_head x bytes``.

    ``n_kv_heads`` equals the number of heads for standard multi-head attention, 1 for multi-query attention
    and a divisor of it for grouped-query attention. Default: 16-bit values (as served).
    """
    return 2 * n_layers * seq_len * n_kv_heads * d_head * batch * bytes_per_element


def weights_bytes(n_params: float, bytes_per_element: int = 2) -> float:
    """Memory to hold the weights alone (``2`` bytes each in 16 bits, ``4`` in float32)."""
    return n_params * bytes_per_element


def training_memory_bytes(n_params: float, bytes_per_param: int = 16) -> float:
    """Memory for weights, gradients and Adam's two moments in mixed precision: about 16 bytes per parameter
    (2 weights + 2 gradients + 4 master weights + 4 + 4 moments), activations not included."""
    return n_params * bytes_per_param


def decode_seconds_per_token(n_params: float, bandwidth_bytes_per_s: float, bytes_per_param: int = 2,
                             kv_bytes: float = 0.0, batch: int = 1) -> float:
    """Lower bound on the time of one decoding step when generation is limited by memory bandwidth.

    Producing the next token of every sequence in a batch needs one pass over all the weights
    (``n_params x bytes_per_param``) and over each sequence's KV cache (``kv_bytes`` per sequence). With small
    batches these reads, not the arithmetic, set the pace: ``time >= bytes read / bandwidth``. Ignores
    compute, communication between devices and kernel overheads, so real systems are slower.
    """
    return (n_params * bytes_per_param + batch * kv_bytes) / bandwidth_bytes_per_s


# ---------------------------------------------------------------------------------------------------------
# Time, energy, carbon
# ---------------------------------------------------------------------------------------------------------


def accelerator_hours(flops: float, peak_flops_per_s: float, utilisation: float) -> float:
    """Device-hours to perform ``flops`` on accelerators delivering ``utilisation x peak_flops_per_s``.

    ``utilisation`` (model FLOPs utilisation, MFU) is the fraction of the peak that training sustains:
    typically 0.2-0.5 for large Transformers.
    """
    if not 0 < utilisation <= 1:
        raise ValueError(f"utilisation must be in (0, 1], got {utilisation}")
    return flops / (peak_flops_per_s * utilisation) / 3600.0


def energy_kwh(device_hours: float, power_w: float, pue: float = 1.1) -> float:
    """Energy drawn from the grid: ``device-hours x average power per device (W) x PUE / 1000``.

    ``power_w`` is the average draw of one device while training (for a GPU, less than its rated TDP; add the
    host's share if known). ``pue`` (power usage effectiveness, >= 1) accounts for the data centre's cooling
    and power distribution: about 1.1 for a modern hyperscale data centre, 1.58 as an industry average in 2018.
    """
    if pue < 1:
        raise ValueError(f"a PUE is at least 1 (1 = no overhead), got {pue}")
    return device_hours * power_w * pue / 1000.0


def co2_kg(energy_kwh_value: float, kg_co2e_per_kwh: float) -> float:
    """Operational emissions in kg CO2-equivalent: energy times the grid's carbon intensity.

    The intensity depends on where and when: about 0.43 kg/kWh for the 2019 U.S. average, 0.02-0.1 for grids
    dominated by hydro, nuclear or wind, 0.7-0.9 for coal-heavy grids. Manufacturing the hardware (embodied
    carbon) is not included.
    """
    return energy_kwh_value * kg_co2e_per_kwh


# ---------------------------------------------------------------------------------------------------------
# Published configurations
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelConfig:
    """A published model's shape and training set-up, with the source of each number in ``notes``."""

    name: str
    n_params: float          # as published (or the exact count of the released checkpoint)
    n_layers: int            # layers of the stack that processes a token (decoder for GPT, encoder for BERT)
    d_model: int
    num_heads: int
    context: int
    n_kv_heads: int | None = None  # None: same as num_heads
    train_tokens: float | None = None
    tokens_note: str = ""
    notes: str = field(default="", compare=False)

    @property
    def d_head(self) -> int:
        return self.d_model // self.num_heads

    @property
    def kv_heads(self) -> int:
        return self.num_heads if self.n_kv_heads is None else self.n_kv_heads


MODELS: dict[str, ModelConfig] = {
    "transformer-base": ModelConfig(
        "Transformer base", 65e6, 6, 512, 8, 512, train_tokens=2.5e9,
        tokens_note="100k steps x ~25k target tokens per batch (+ as many source tokens)",
        notes="Vaswani et al. 2017: 6+6 layers, d_ff 2048, 37k shared BPE vocabulary; Table 3 gives 65M"),
    "bert-base": ModelConfig(
        "BERT-base", 110e6, 12, 768, 12, 512, train_tokens=42.6e9,
        tokens_note="1M steps x 256 sequences: 90% of steps at 128 tokens, 10% at 512",
        notes="Devlin et al. 2019; 109,482,240 parameters with the pooler"),
    "gpt2-small": ModelConfig(
        "GPT-2 small", 124e6, 12, 768, 12, 1024, train_tokens=10e9,
        tokens_note="not published; assumed ~10B (WebText is ~40 GB of text, ~9B tokens)",
        notes="Radford et al. 2019; 124,439,808 parameters in the released checkpoint"),
    "gpt3-175b": ModelConfig(
        "GPT-3 175B", 175e9, 96, 12288, 96, 2048, train_tokens=300e9,
        tokens_note="300B tokens (Brown et al. 2020, Table 2.2)",
        notes="Brown et al. 2020: 96 layers, d_model 12288, 96 heads of 128"),
    "llama2-7b": ModelConfig(
        "Llama 2 7B", 6.74e9, 32, 4096, 32, 4096, train_tokens=2e12,
        tokens_note="2T tokens (Touvron et al. 2023)", notes="standard multi-head attention"),
    "llama2-70b": ModelConfig(
        "Llama 2 70B", 69e9, 80, 8192, 64, 4096, n_kv_heads=8, train_tokens=2e12,
        tokens_note="2T tokens (Touvron et al. 2023)", notes="grouped-query attention, 8 key-value heads"),
}
