"""The numbers that the book's Part III chapters (representation and generation; BERT, GPT and ViT; applications;
conclusions) print or quote from labsupport. If a change to labsupport breaks one of these, the chapter's text is
wrong too.

The four reference counts themselves (paper_base, bert_base, gpt2_small, vit_b16) are pinned by
tests/test_models_seq2seq_gpt.py and tests/test_models_bert_vit.py; this file tests what the chapters add on top:
the GPT family built from the same class, the breakdown into embeddings/blocks/heads, the variants the prose and
the exercises compute (BERT-large, an untied GPT-2, other ViT heads, the vocabulary behind the paper's 65M), and
that the exact numbers the prose quotes still appear in the chapter.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from labsupport import costs
from labsupport.attention import MultiHeadAttention, causal_mask
from labsupport.models import GPT, Seq2SeqTransformer, count_parameters
from labsupport.models.bert import BERT
from labsupport.models.vit import ViT

BOOK = Path(__file__).resolve().parents[2] / "book"


def on_meta(build, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return build(**kwargs)


def chapter_text(name: str) -> str:
    return (BOOK / f"{name}.md").read_text(encoding="utf-8")


def in_text(number: int, text: str) -> bool:
    """``number`` written with thousands separators, as the chapters write exact counts."""
    return f"{number:,}" in text


# --- book/bert_gpt_vit.md: the GPT family -----------------------------------------------------------------------

GPT_FAMILY = {  # name: (vocabulary, context, d_model, heads, layers), expected exact count, published
    "GPT-1": ((40478, 512, 768, 12, 12), 116_536_320, 117e6),
    "GPT-2 small": ((50257, 1024, 768, 12, 12), 124_439_808, 124e6),
    "GPT-2 XL": ((50257, 1024, 1600, 25, 48), 1_557_611_200, 1.5e9),
    "GPT-3": ((50257, 2048, 12288, 96, 96), 174_604_259_328, 175e9),
}


@pytest.mark.parametrize("name", list(GPT_FAMILY))
def test_gpt_family_counts(name):
    (V, ctx, d, h, L), exact, published = GPT_FAMILY[name]
    model = on_meta(GPT, vocab_size=V, max_len=ctx, d_model=d, num_heads=h, num_layers=L, dropout=0.0)
    n = count_parameters(model)
    assert n == exact
    # the closed-form count of labsupport.costs agrees with the built model
    assert n == costs.gpt_params(V, ctx, d, L)
    # and with the published size, to the rounding the chapter claims (GPT-2 XL: the paper's 1542M ~ 1.5B)
    assert n == pytest.approx(published, rel=0.04)


def test_gpt1_count_explains_gpt2_small_117m():
    # the chapter: 117M is GPT-1's size; GPT-2 small adds vocabulary (+7.5M), positions (+0.4M), a final norm
    gpt1, gpt2 = GPT_FAMILY["GPT-1"][1], GPT_FAMILY["GPT-2 small"][1]
    assert round(gpt1 / 1e6) == 117
    assert (gpt1 - 2 * 768) == costs.gpt_params(40478, 512, 768, 12, final_norm=False)  # GPT-1 had no final norm
    vocab, positions, norm = (50257 - 40478) * 768, (1024 - 512) * 768, 0
    assert round(vocab / 1e6, 1) == 7.5 and round(positions / 1e6, 1) == 0.4
    assert gpt1 + vocab + positions + norm == gpt2


# --- book/bert_gpt_vit.md: the four reference models and their breakdown -------------------------------------

def breakdown(model: nn.Module) -> dict[str, int]:
    """The chapter's grouping (function part_of): embeddings, blocks (with a stack's final norm), heads."""
    parts = {"embeddings": 0, "blocks": 0, "heads": 0}
    for name, p in model.named_parameters():
        top = name.split(".")[0]
        if any(k in top for k in ("embed", "pos", "cls", "patch", "segment", "token")):
            parts["embeddings"] += p.numel()
        elif any(k in top for k in ("block", "layer", "encoder", "decoder")) or top == "norm":
            parts["blocks"] += p.numel()
        else:
            parts["heads"] += p.numel()
    return parts


@pytest.fixture(scope="module")
def reference_models():
    return {
        "Transformer base": on_meta(Seq2SeqTransformer.paper_base),
        "BERT-base": on_meta(BERT.bert_base),
        "GPT-2 small": on_meta(GPT.gpt2_small),
        "ViT-B/16": on_meta(ViT.vit_b16),
    }


def test_breakdown_matches_the_prose(reference_models):
    parts = {name: breakdown(m) for name, m in reference_models.items()}
    for name, m in reference_models.items():
        assert sum(parts[name].values()) == count_parameters(m)   # every parameter in exactly one group
    twelve_blocks = 12 * (12 * 768**2 + 13 * 768)
    assert twelve_blocks == 85_054_464
    # "the blocks take the same 85.1M in BERT-base, GPT-2 small and ViT-B/16"
    for name in ("BERT-base", "GPT-2 small", "ViT-B/16"):
        assert round(parts[name]["blocks"] / 1e6, 1) == 85.1
    assert parts["BERT-base"]["blocks"] == twelve_blocks
    assert parts["GPT-2 small"]["blocks"] == twelve_blocks + 2 * 768       # with its final norm
    # the figure's labels and the table's explanations
    assert round(parts["Transformer base"]["embeddings"] / 1e6, 1) == 18.9
    assert round(parts["Transformer base"]["blocks"] / 1e6, 1) == 44.1
    assert round(parts["BERT-base"]["embeddings"] / 1e6, 1) == 23.8
    assert round(parts["GPT-2 small"]["embeddings"] / 1e6, 1) == 39.4
    # "almost a third of GPT-2 small's parameters is its vocabulary matrix"
    share = 50257 * 768 / count_parameters(reference_models["GPT-2 small"])
    assert 0.30 < share < 1 / 3


def test_bert_table_row(reference_models):
    bert = reference_models["BERT-base"]
    assert bert.encoder_parameters() == 109_482_240 == costs.bert_params()
    mlm_head = sum(p.numel() for n, p in bert.named_parameters() if n.startswith("mlm_head"))
    assert round(mlm_head / 1e6, 2) == 0.62
    assert sum(p.numel() for p in bert.head.classifier.parameters()) == 1_538
    assert round(sum(p.numel() for p in bert.head.pooler.parameters()) / 1e6, 1) == 0.6


def test_vit_table_row(reference_models):
    vit = reference_models["ViT-B/16"]
    n = count_parameters(vit)
    head = sum(p.numel() for p in vit.head.parameters())
    assert round(head / 1e6, 2) == 0.77
    assert round((n - head) / 1e6, 1) == 85.8                           # "without it the model has 85.8M"
    n21k = count_parameters(on_meta(ViT.vit_b16, num_classes=21843))
    assert round((n21k - (n - head)) / 1e6, 1) == 16.8                  # the ImageNet-21k head
    assert round(sum(p.numel() for p in vit.patch_embed.parameters()) / 1e6, 2) == 0.59
    positions = sum(p.numel() for n_, p in vit.named_parameters() if n_.startswith(("positions", "cls")))
    assert positions == 198 * 768                                       # [CLS] vector + 197 position vectors
    assert vit.num_patches == 196


def test_transformer_base_vocabulary_behind_65m():
    # "Every 1,000 extra vocabulary entries add 0.5M, so 65M matches a vocabulary of about 40,700"
    n37 = count_parameters(on_meta(Seq2SeqTransformer.paper_base))
    n38 = count_parameters(on_meta(Seq2SeqTransformer.paper_base, vocab_size=38000))
    assert round((n38 - n37) / 1e6, 1) == 0.5
    n = count_parameters(on_meta(Seq2SeqTransformer.paper_base, vocab_size=40700))
    assert n == pytest.approx(65e6, abs=0.05e6)


def test_exercise_numbers():
    # exercise 1: BERT-large from the formulas, 335,141,888 (published 340M)
    large = on_meta(BERT.bert_base, d_model=1024, num_heads=16, num_layers=24, d_ff=4096)
    assert large.encoder_parameters() == 335_141_888 == costs.bert_params(n_layers=24, d_model=1024)
    # exercise 4: GPT-2 small without weight tying
    untied = on_meta(GPT.gpt2_small, tie_weights=False)
    assert count_parameters(untied) == 163_037_184
    assert count_parameters(untied) - 124_439_808 == 50257 * 768


def test_prose_quotes_the_counts():
    text = chapter_text("bert_gpt_vit")
    for number in (63_119_496, 110_106_428, 109_482_240, 124_439_808, 86_567_656, 85_054_464,
                   335_141_888, 163_037_184, 38_597_376):
        assert in_text(number, text.replace("{,}", ",")), f"{number:,} no longer appears in bert_gpt_vit.md"
    # the hidden assertions of the chapter's code use the same numbers as this test
    asserted = {int(x.replace("_", "")) for x in re.findall(r"== (\d[\d_]+)", text)}
    assert {63_119_496, 124_439_808, 110_106_428, 109_482_240, 86_567_656} <= asserted


# --- book/representation_generation.md ----------------------------------------------------------------------------

def test_causal_mask_leaves_earlier_outputs_bit_identical():
    # the chapter's demonstration: change only the last token; with the causal mask the first L-1 outputs do not move
    torch.manual_seed(0)
    L, D = 6, 16
    mha = MultiHeadAttention(d_model=D, num_heads=2).eval()
    x = torch.randn(1, L, D)
    x2 = x.clone()
    x2[0, -1] = torch.randn(D)
    with torch.no_grad():
        causal = (mha(x2, mask=causal_mask(L))[0] - mha(x, mask=causal_mask(L))[0]).norm(dim=-1)[0]
        full = (mha(x2)[0] - mha(x)[0]).norm(dim=-1)[0]
    assert torch.all(causal[:-1] == 0) and causal[-1] > 0
    assert torch.all(full > 0)


# --- book/applications.md -----------------------------------------------------------------------------------------

def test_llava_projector_shapes():
    with torch.device("meta"):
        proj = nn.Linear(1024, 4096)
        out = torch.cat([proj(torch.empty(1, 256, 1024)), torch.empty(1, 12, 4096)], dim=1)
    assert tuple(out.shape) == (1, 268, 4096)
    assert sum(p.numel() for p in proj.parameters()) == 4_198_400


# --- book/conclusions.md ------------------------------------------------------------------------------------------

def test_conclusions_growth_factor():
    # "From the base Transformer to GPT-3 is a factor of about 2,700"
    assert round(175e9 / 65e6, -2) == 2700
    assert in_text(109_482_240, chapter_text("conclusions"))
