"""labsupport.costs against hand calculations, PyTorch's own modules and published figures.

Three kinds of evidence, independent of the formulas under test:
* parameter counts of real ``torch.nn`` modules (``sum(p.numel())``) and of released checkpoints;
* FLOPs counted by ``torch.utils.flop_counter.FlopCounterMode`` while a real module runs;
* numbers printed in the papers (GPT-3's compute, Patterson et al.'s and Strubell et al.'s energy tables).
"""
import math

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from labsupport import costs
from labsupport.attention import MultiHeadAttention


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def counted_flops(fn, *args) -> int:
    with FlopCounterMode(display=False) as counter:
        fn(*args)
    return counter.get_total_flops()


# ------------------------------------------------------------------------------------------ parameter counts

@pytest.mark.parametrize("d, h, d_ff", [(32, 4, 64), (512, 8, 2048), (768, 12, 3072)])
def test_layer_counts_equal_torch_layers(d, h, d_ff):
    with torch.device("meta"):
        enc = nn.TransformerEncoderLayer(d, h, d_ff, batch_first=True)
        dec = nn.TransformerDecoderLayer(d, h, d_ff, batch_first=True)
        mha = nn.MultiheadAttention(d, h)
    assert costs.encoder_layer_params(d, d_ff) == n_params(enc)
    assert costs.decoder_layer_params(d, d_ff) == n_params(dec)
    assert costs.attention_params(d) == n_params(mha) == n_params(MultiHeadAttention(d, h))
    assert costs.ffn_params(d, d_ff) == n_params(enc.linear1) + n_params(enc.linear2)
    assert costs.layer_norm_params(d) == n_params(enc.norm1)


def test_gqa_attention_params():
    # Llama 2 70B: d 8192, 64 query heads, 8 key-value heads of 128, no biases
    assert costs.attention_params(8192, bias=False, kv_dim=8 * 128) == 2 * 8192 * 8192 + 2 * 8192 * 1024


def test_seq2seq_equals_nn_transformer_with_shared_embedding():
    V, d, h, d_ff = 1000, 64, 4, 128
    with torch.device("meta"):
        core = nn.Transformer(d, h, 3, 2, d_ff, batch_first=True)  # adds a final norm after each stack
        emb = nn.Embedding(V, d)  # shared: source, target and (tied) output projection
    expected = n_params(core) + n_params(emb)
    assert costs.seq2seq_params(V, d, 3, 2, d_ff, final_norms=True) == expected
    # untied: separate target embedding and output matrix
    with torch.device("meta"):
        extra = nn.Embedding(V, d), nn.Linear(d, V, bias=False)
    untied = costs.seq2seq_params(V, d, 3, 2, d_ff, shared_embeddings=False, final_norms=True)
    assert untied == expected + sum(n_params(m) for m in extra)


def test_published_parameter_counts():
    # released checkpoints: GPT-2 small and BERT-base (with pooler) have these exact sizes
    assert costs.gpt_params(50257, 1024, 768, 12) == 124_439_808
    assert costs.bert_params() == 109_482_240
    # Vaswani et al. (2017), Table 3: base model 65M (their count includes details we do not model: within 5%)
    assert costs.seq2seq_params() == pytest.approx(65e6, rel=0.05)
    # GPT-3 175B (Brown et al. 2020, Table 2.1)
    assert costs.gpt_params(50257, 2048, 12288, 96) == pytest.approx(175e9, rel=0.01)
    # Kaplan's N = 12 n_layers d^2 by hand for GPT-3
    assert costs.non_embedding_params(96, 12288) == 12 * 96 * 12288**2 == 173_946_175_488


def test_model_table_is_consistent():
    m = costs.MODELS
    assert costs.gpt_params(50257, m["gpt2-small"].context, m["gpt2-small"].d_model,
                            m["gpt2-small"].n_layers) == pytest.approx(m["gpt2-small"].n_params, rel=0.01)
    assert costs.bert_params(context=m["bert-base"].context, d_model=m["bert-base"].d_model,
                             n_layers=m["bert-base"].n_layers) == pytest.approx(m["bert-base"].n_params, rel=0.01)
    assert costs.gpt_params(50257, 2048, m["gpt3-175b"].d_model, m["gpt3-175b"].n_layers) == pytest.approx(
        m["gpt3-175b"].n_params, rel=0.01)
    # Llama 2 7B (d 4096, 32 layers, SwiGLU d_ff 11008 = 3 matrices, RMSNorm, untied 32000 vocab): 6.74B
    d, L, ff, V = 4096, 32, 11008, 32000
    llama7 = 2 * V * d + L * (4 * d * d + 3 * d * ff + 2 * d) + d
    assert llama7 == 6_738_415_616
    assert m["llama2-7b"].n_params == pytest.approx(llama7, rel=0.001)
    assert m["llama2-70b"].kv_heads == 8 and m["gpt3-175b"].kv_heads == 96 and m["gpt3-175b"].d_head == 128
    # BERT's token count: 0.9 M steps x 256 x 128 + 0.1 M steps x 256 x 512
    assert m["bert-base"].train_tokens == pytest.approx(0.9e6 * 256 * 128 + 0.1e6 * 256 * 512, rel=0.01)


# ------------------------------------------------------------------------------------------------ FLOPs

def test_training_flops_gpt3_matches_paper():
    c = costs.training_flops(175e9, 300e9)
    assert c == pytest.approx(3.14e23, rel=0.01)  # Brown et al. 2020, Table D.1
    assert costs.flops_to_pf_days(c) == pytest.approx(3640, rel=0.01)  # 3.64e3 PF-days
    assert costs.training_flops(2, 3) == 36


def test_transformer_base_compute_vs_paper():
    """Vaswani et al. (Table 2) estimate 3.3e18 FLOPs for the base model: 8 P100 x 12 h x 9.5 TFLOP/s.
    6 N D with 2.5B token pairs is about 30% of that, a plausible utilisation for 2017."""
    assert costs.accelerator_hours(3.3e18, 9.5e12, 1.0) == pytest.approx(8 * 12, rel=0.01)
    c = costs.training_flops(65e6, 2.5e9)
    assert c == pytest.approx(9.75e17)
    assert 0.2 < c / 3.3e18 < 0.4


@pytest.mark.parametrize("L, d, h", [(16, 32, 4), (50, 64, 8)])
def test_attention_flops_counted_by_torch(L, d, h):
    mha = MultiHeadAttention(d, h)
    x = torch.randn(2, L, d)
    assert costs.attention_flops(L, d, batch=2) == counted_flops(mha, x)
    q = torch.randn(2, h, L, d // h)
    from labsupport.attention import scaled_dot_product_attention
    assert costs.attention_flops(L, d, batch=2, projections=False) == counted_flops(
        scaled_dot_product_attention, q, q, q)


def test_forward_flops_per_token_counted_by_torch():
    d, h, d_ff, L, n_layers = 64, 4, 256, 40, 3
    stack = nn.TransformerEncoder(nn.TransformerEncoderLayer(d, h, d_ff, batch_first=True), n_layers,
                                  enable_nested_tensor=False)
    x = torch.randn(1, L, d)
    total = counted_flops(stack, x)
    weights = costs.non_embedding_params(n_layers, d, d_ff)  # FLOP counter skips biases and norms
    assert weights == sum(p.numel() for p in stack.parameters() if p.dim() == 2)
    assert costs.forward_flops_per_token(weights, n_layers, L, d, causal=False) * L == total
    # Kaplan's causal form by hand
    assert costs.forward_flops_per_token(10, 2, 100, 8) == 2 * 10 + 2 * 2 * 100 * 8


# ----------------------------------------------------------------------------------------------- memory

def test_attention_memory_by_hand_and_tensor():
    # BERT-base, one 512-token sequence, one layer: 12 heads x 512^2 float32 = 12 MiB
    assert costs.attention_memory_bytes(512, 12) == 12 * 2**20
    t = torch.empty(3, 4, 10, 7, dtype=torch.float16, device="meta")
    assert costs.attention_memory_bytes(10, 4, batch=3, bytes_per_element=2, kv_len=7) == t.numel() * t.element_size()
    # quadrupling with doubled length
    assert costs.attention_memory_bytes(2048, 8) == 4 * costs.attention_memory_bytes(1024, 8)


def test_kv_cache_known_sizes():
    # Llama 2 7B in fp16: 0.5 MiB per token, so 2 GiB for a 4096-token context
    assert costs.kv_cache_bytes(32, 1, 32, 128) == 2**19
    assert costs.kv_cache_bytes(32, 4096, 32, 128) == 2 * 2**30
    # GPT-3 175B: 2 x 96 layers x 12288 x 2 bytes = 4.5 MiB per token
    assert costs.kv_cache_bytes(96, 1, 96, 128) == 4.5 * 2**20
    # grouped-query attention (8 of 64 heads) shrinks it 8-fold
    assert costs.kv_cache_bytes(80, 100, 64, 128) == 8 * costs.kv_cache_bytes(80, 100, 8, 128)
    k = torch.empty(5, 6, 7, 8, device="meta")  # (batch, kv_heads, tokens, d_head), float32, one layer, K only
    assert costs.kv_cache_bytes(1, 7, 6, 8, batch=5, bytes_per_element=4) == 2 * k.numel() * k.element_size()


def test_decode_bound_and_chinchilla():
    # Llama 2 7B in fp16 on 3.35 TB/s: 13.5 GB / 3.35e12 B/s = 4.0 ms per token
    assert costs.decode_seconds_per_token(6.74e9, 3.35e12) == pytest.approx(13.48e9 / 3.35e12)
    # the KV cache adds its bytes once per sequence of the batch
    assert costs.decode_seconds_per_token(1e9, 1e12, bytes_per_param=2, kv_bytes=1e9, batch=4) == pytest.approx(6e-3)
    # Chinchilla (Hoffmann et al. 2022): 70B parameters, 1.4T tokens
    assert costs.compute_optimal_tokens(70e9) == pytest.approx(1.4e12)


def test_training_memory():
    assert costs.training_memory_bytes(1e9) == 16e9
    assert costs.weights_bytes(7e9) == 14e9


# --------------------------------------------------------------------------------------- energy and carbon

def test_gpt3_energy_matches_patterson():
    """Patterson et al. (2021), Table 4: 10,000 V100 for 14.8 days at 330 W, PUE 1.1 -> 1,287 MWh;
    429 g CO2e/kWh -> 552 t. Their measured 24.6 TFLOP/s per V100 (of 125 peak) gives the same GPU-hours
    from GPT-3's 3.14e23 FLOPs."""
    hours = 10_000 * 14.8 * 24
    e = costs.energy_kwh(hours, 330, pue=1.1)
    assert e == pytest.approx(1287e3, rel=0.01)
    assert costs.co2_kg(1287e3, 0.429) == pytest.approx(552e3, rel=0.01)
    assert costs.accelerator_hours(3.14e23, 125e12, 24.6 / 125) == pytest.approx(hours, rel=0.01)


def test_bert_energy_matches_strubell():
    """Strubell et al. (2019), Table 3: BERT-base on 64 V100, 12,041.51 W in total for 79 h, PUE 1.58
    -> 1,507 kWh; 0.954 lbs CO2e/kWh -> 1,438 lbs."""
    e = costs.energy_kwh(79, 12_041.51, pue=1.58)
    assert e == pytest.approx(1507, rel=0.01)
    lbs_per_kwh = 0.954
    assert costs.co2_kg(1507, lbs_per_kwh) == pytest.approx(1438, rel=0.01)


def test_input_validation():
    with pytest.raises(ValueError, match="utilisation"):
        costs.accelerator_hours(1e18, 1e12, 0)
    with pytest.raises(ValueError, match="PUE"):
        costs.energy_kwh(1, 100, pue=0.9)
    assert math.isclose(costs.energy_kwh(2, 500, pue=1.0), 1.0)
