"""Lab 4's references (TWINS; test_every_lab.py runs every check with them) and its particular cases: the
structural messages (names, modules) are specific. (The mistakes and the mutants are in test_mutants.py.)"""
import pytest
from torch import nn

from labsupport import blocks as ref
from labsupport.checks import lab04 as L
from labsupport.checks.core import CheckFailed


def layer_norm(d_model, eps=1e-5):
    return ref.LayerNorm(d_model, eps=eps)


def encoder_block(d_model, num_heads, d_ff, dropout=0.1, norm_first=False):
    return ref.EncoderBlock(d_model=d_model, num_heads=num_heads, d_ff=d_ff, dropout=dropout, norm_first=norm_first)


def decoder_block(d_model, num_heads, d_ff, dropout=0.1, norm_first=False):
    return ref.DecoderBlock(d_model=d_model, num_heads=num_heads, d_ff=d_ff, dropout=dropout, norm_first=norm_first)


TWINS = {"layer_norm": layer_norm, "feed_forward": ref.FeedForward, "sublayer": ref.sublayer,
         "encoder_block": encoder_block, "decoder_block": decoder_block}


@pytest.mark.parametrize("seed", [0, 3])
def test_the_reference_with_each_mistake_switched_off_passes(seed):
    """The mistake tables' base classes are the exercises' references: with no switch set they pass."""
    L.check_layer_norm(L._LayerNorm, seed=seed)
    L.check_feed_forward(L._FeedForward, seed=seed)
    L.check_encoder_block(L._EncoderBlock, seed=seed)
    L.check_decoder_block(L._DecoderBlock, seed=seed)


@pytest.mark.parametrize("name", ["layer_norm", "feed_forward", "encoder_block", "decoder_block"])
def test_a_class_that_builds_no_module_is_named(name):
    with pytest.raises(CheckFailed, match="should build an nn.Module"):
        L.CHECKS[name](lambda *args, **kwargs: (lambda x: x))


def test_renamed_attention_in_a_decoder_block_is_named():
    class Renamed(nn.Module):
        def __init__(self, *args, **kwargs):
            super().__init__()
            inner = decoder_block(*args, **kwargs)
            self.self_attn, self.mha, self.ff = inner.self_attn, inner.cross_attn, inner.ff
            self.norm1, self.norm2, self.norm3 = inner.norm1, inner.norm2, inner.norm3

    with pytest.raises(CheckFailed, match="Keep the attribute names") as info:
        L.check_decoder_block(Renamed)
    assert "missing `cross_attn.q_proj.weight`" in info.value.message
    assert "unexpected `mha.q_proj.weight`" in info.value.message
