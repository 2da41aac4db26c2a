"""Each lab's solution classes and their labsupport twins agree structurally: the same parameter names and shapes.

The solution cells of the class exercises are executed from the committed notebooks (instructor versions) in a
fresh namespace; each class is built with keyword arguments and compared with the library's class built with the
same arguments. This is what would have caught BERT's position table living at another name than Lab 7's.
"""
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from labsupport import attention, blocks, positional
from labsupport.models import bert

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"

# (notebook, cell ids to run in order, lab class, library twin, keyword arguments)
TWINS = [
    ("lab02_multihead_attention", ["mha"], "MultiHeadAttention", attention.MultiHeadAttention,
     dict(d_model=16, num_heads=4)),
    ("lab03_positional_encodings", ["learned"], "LearnedPositions", positional.LearnedPositionalEncoding,
     dict(max_len=10, d_model=8)),
    ("lab04_transformer_block", ["layer-norm"], "LayerNorm", blocks.LayerNorm, dict(d_model=8)),
    ("lab04_transformer_block", ["feed-forward"], "FeedForward", blocks.FeedForward, dict(d_model=8, d_ff=32)),
    ("lab04_transformer_block", ["layer-norm", "feed-forward", "sublayer", "encoder-block"], "EncoderBlock",
     blocks.EncoderBlock, dict(d_model=8, num_heads=2, d_ff=16)),
    ("lab04_transformer_block", ["layer-norm", "feed-forward", "sublayer", "decoder-block"], "DecoderBlock",
     blocks.DecoderBlock, dict(d_model=8, num_heads=2, d_ff=16)),
    ("lab07_bert", ["embeddings"], "BertEmbeddings", bert.BertEmbeddings, dict(vocab_size=20, max_len=10, d_model=8)),
    ("lab07_bert", ["classifier-head"], "ClassifierHead", bert.ClassifierHead, dict(d_model=8, num_classes=3)),
]


def solution_namespace(notebook: str, cell_ids: list[str]) -> dict:
    nb = json.loads((NOTEBOOKS / f"{notebook}.ipynb").read_text())
    cells = {c.get("id"): "".join(c["source"]) for c in nb["cells"]}
    ns = {"torch": torch, "nn": nn, "F": F, "math": __import__("math"),
          "MultiHeadAttention": attention.MultiHeadAttention, "IGNORE_INDEX": bert.IGNORE_INDEX}
    for cid in cell_ids:
        exec(compile(cells[cid], f"{notebook}:{cid}", "exec"), ns)
    return ns


def layout(module: nn.Module) -> dict:
    return {name: tuple(t.shape) for name, t in module.state_dict().items()}


@pytest.mark.parametrize("notebook,cell_ids,name,twin,kwargs", TWINS, ids=[t[2] for t in TWINS])
def test_lab_solution_and_library_twin_have_the_same_layout(notebook, cell_ids, name, twin, kwargs):
    lab_class = solution_namespace(notebook, cell_ids)[name]
    assert layout(lab_class(**kwargs)) == layout(twin(**kwargs))


def test_the_twins_load_each_others_weights_and_compute_the_same():
    """Beyond names: Lab 7's embeddings with the library's weights give the library's output (and Lab 4's block)."""
    ns = solution_namespace("lab07_bert", ["embeddings"])
    torch.manual_seed(0)
    ours = bert.BertEmbeddings(vocab_size=20, max_len=10, d_model=8, dropout=0.0).eval()
    theirs = ns["BertEmbeddings"](vocab_size=20, max_len=10, d_model=8, dropout=0.0).eval()
    theirs.load_state_dict(ours.state_dict())
    tokens = torch.randint(0, 20, (2, 7))
    torch.testing.assert_close(theirs(tokens), ours(tokens))
    ns = solution_namespace("lab04_transformer_block", ["layer-norm", "feed-forward", "sublayer", "encoder-block"])
    ours = blocks.EncoderBlock(d_model=8, num_heads=2, d_ff=16, dropout=0.0).eval()
    theirs = ns["EncoderBlock"](d_model=8, num_heads=2, d_ff=16, dropout=0.0).eval()
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(theirs(x, attention.causal_mask(5)), ours(x, is_causal=True), atol=1e-6, rtol=0)
