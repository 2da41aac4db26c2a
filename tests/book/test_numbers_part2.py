"""The numbers that the Part II chapters (positional encodings, block and training, challenges) print from
labsupport, pinned to independent hand calculations, so that a change in labsupport that alters them fails here
before it silently changes the book."""
import math

import pytest
import torch

from labsupport import costs
from labsupport.models import GPT, KVCache, Seq2SeqTransformer, count_parameters
from labsupport.positional import LearnedPositionalEncoding
from labsupport.training import warmup_inverse_sqrt

# ------------------------------------------------------------------------------- ch-positional-encodings

def test_learned_table_of_gpt2_small():
    table = LearnedPositionalEncoding(max_len=1024, d_model=768)
    assert sum(p.numel() for p in table.parameters()) == 1024 * 768 == 786_432


# --------------------------------------------------------------------------------- ch-block-and-training

def test_tied_and_untied_base_model():
    # encoder layer: attention 4(512^2 + 512) + FFN (2*512*2048 + 2048 + 512) + 2 norms (2*2*512)
    enc = 4 * (512**2 + 512) + (2 * 512 * 2048 + 2048 + 512) + 4 * 512
    dec = 8 * (512**2 + 512) + (2 * 512 * 2048 + 2048 + 512) + 6 * 512
    tied = 37000 * 512 + 6 * enc + 6 * dec
    assert costs.seq2seq_params() == tied == 63_082_496
    assert costs.seq2seq_params(shared_embeddings=False) == tied + 2 * 37000 * 512 == 100_970_496


def test_ffn_and_attention_of_base_block():
    assert costs.ffn_params(512, 2048) == 2 * 512 * 2048 + 2048 + 512 == 2_099_712
    assert costs.attention_params(512) == 4 * 512 * 512 + 4 * 512 == 1_050_624


@pytest.mark.parametrize("step, expected", [(1, 1.75e-07), (1000, 1.75e-04), (4000, 6.99e-04), (100_000, 1.40e-04)])
def test_warmup_values_printed(step, expected):
    by_hand = 512 ** -0.5 * min(step ** -0.5, step * 4000 ** -1.5)
    assert warmup_inverse_sqrt(step, 512, 4000) == pytest.approx(by_hand)
    assert float(f"{by_hand:.2e}") == expected


# ----------------------------------------------------------------------------------------- ch-challenges

def test_models_built_on_meta_match_formulas_and_checkpoints():
    with torch.device("meta"):
        base = count_parameters(Seq2SeqTransformer.paper_base())
        gpt2 = count_parameters(GPT.gpt2_small())
        gpt3 = count_parameters(GPT(vocab_size=50257, max_len=2048, d_model=12288, num_heads=96, num_layers=96,
                                    d_ff=4 * 12288))
    assert base == costs.seq2seq_params(output_bias=True) == 63_082_496 + 37000
    assert gpt2 == costs.gpt_params(50257, 1024, 768, 12) == 124_439_808
    # GPT-3 by hand: embeddings + 96 x 12 d^2 weights + biases/norms per layer (13 d) + final norm
    d = 12288
    assert gpt3 == costs.gpt_params(50257, 2048, d, 96) == (50257 + 2048) * d + 96 * (12 * d * d + 13 * d) + 2 * d


def test_bert_built_on_meta_matches_checkpoint():
    bert_mod = pytest.importorskip("labsupport.models.bert")
    with torch.device("meta"):
        bert = bert_mod.BERT.bert_base()
    assert bert.encoder_parameters() == costs.bert_params() == 109_482_240


def test_compute_table():
    m = costs.MODELS
    c = {k: costs.training_flops(m[k].n_params, m[k].train_tokens) for k in m}
    assert c["transformer-base"] == pytest.approx(6 * 65e6 * 2.5e9)
    assert c["gpt3-175b"] == pytest.approx(3.15e23)
    assert c["bert-base"] == pytest.approx(6 * 110e6 * 42.6e9)
    assert c["gpt2-small"] == pytest.approx(6 * 124e6 * 10e9)
    assert c["llama2-70b"] == pytest.approx(6 * 69e9 * 2e12)
    # one A100 at 40 % of 312 TFLOP/s: GPT-3 takes about 80 years, the base Transformer about 2 hours
    assert costs.accelerator_hours(c["gpt3-175b"], 312e12, 0.4) / 24 / 365 == pytest.approx(80, rel=0.01)
    assert costs.accelerator_hours(c["transformer-base"], 312e12, 0.4) == pytest.approx(2.17, rel=0.01)
    # the paper's 3.3e18: 8 GPUs x 12 h x 9.5 TFLOP/s; 6ND is ~30 % of it
    assert round(c["transformer-base"] / (8 * 12 * 3600 * 9.5e12), 2) == 0.30
    assert costs.compute_optimal_tokens(175e9) == pytest.approx(3.5e12)


def test_memory_tables():
    # one layer, one sequence, 16 bits: GPT-3 at 2048 tokens = 96 x 2048^2 x 2 bytes = 805 MB
    assert costs.attention_memory_bytes(2048, 96, bytes_per_element=2) == 96 * 2048**2 * 2 == 805_306_368
    assert costs.attention_memory_bytes(512, 12, bytes_per_element=2) == 6_291_456
    assert costs.weights_bytes(175e9) == 350e9 and costs.training_memory_bytes(175e9) == 2.8e12
    # the crossover of attention's 4 n^2 d with the projections' 8 n d^2 is at n = 2 d
    for d in (768, 12288):
        n = 2 * d
        assert costs.attention_flops(n, d, projections=False) == costs.attention_flops(n, d) / 2


def test_kv_cache_tables_and_measured_cache():
    assert costs.kv_cache_bytes(12, 1, 12, 64) == 2 * 12 * 768 * 2 == 36_864
    assert costs.kv_cache_bytes(80, 4096, 8, 128) == 2 * 80 * 4096 * 8 * 128 * 2 == 1_342_177_280
    # the chapter's small GPT: its measured cache after 256 tokens equals the formula
    torch.manual_seed(0)
    gpt = GPT(vocab_size=256, max_len=256, d_model=128, num_heads=4, num_layers=4, dropout=0.0).eval()
    cache = gpt.new_cache()
    assert isinstance(cache, KVCache)
    with torch.no_grad():
        gpt(torch.randint(0, 256, (1, 256)), cache=cache)
    assert cache.nbytes() == costs.kv_cache_bytes(4, 256, 4, 32, bytes_per_element=4) == 1_048_576


def test_decode_bounds_printed():
    # Llama 2 7B: 6.74e9 x 2 bytes / 3.35e12 B/s = 4.02 ms; GPT-3: 350 GB / 3.35 TB/s = 104.5 ms
    assert costs.decode_seconds_per_token(6.74e9, 3.35e12) * 1e3 == pytest.approx(4.02, abs=0.005)
    assert costs.decode_seconds_per_token(175e9, 3.35e12) * 1e3 == pytest.approx(104.48, abs=0.005)


def test_energy_scenarios():
    def tonnes(peak, util, watts, pue, grid):
        return costs.co2_kg(costs.energy_kwh(costs.accelerator_hours(3.14e23, peak, util), watts, pue), grid) / 1e3
    assert tonnes(125e12, 24.6 / 125, 330, 1.1, 0.429) == pytest.approx(552, rel=0.01)
    # H100 at 40 % of 989 TFLOP/s, 700 W, PUE 1.1: 3.14e23 / 395.6e12 / 3600 h x 0.77 kW
    h100_kwh = 3.14e23 / (0.4 * 989e12) / 3600 * 0.7 * 1.1
    assert costs.energy_kwh(costs.accelerator_hours(3.14e23, 989e12, 0.4), 700, 1.1) == pytest.approx(h100_kwh)
    assert round(h100_kwh / 1e3) == 170
    assert tonnes(989e12, 0.4, 700, 1.1, 0.03) == pytest.approx(5.1, abs=0.1)
    assert math.isclose(tonnes(989e12, 0.4, 700, 1.58, 0.80), h100_kwh / 1.1 * 1.58 * 0.8 / 1e3)
