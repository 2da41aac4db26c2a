"""Lab 6's references (TWINS; test_every_lab.py runs every check with them) and its particular cases: another
right sampler passes, a few special messages. (The mistakes and the mutants are in test_mutants.py.)"""
import pytest
import torch

from labsupport.attention import causal_mask
from labsupport.checks import lab06 as L
from labsupport.checks.core import CheckFailed
from labsupport.training import top_k_filter


def block_forward(block, x):
    return block(x)


def bigram_loss(train_ids, val_ids, vocab_size):
    return float(L.reference_bigram_loss(train_ids, val_ids, vocab_size))


def gumbel_sample_next(logits, temperature=1.0, top_k=None, generator=None):
    """A right sampler that draws differently (the Gumbel-max trick): the check is statistical."""
    u = torch.rand(logits.shape, generator=generator).clamp_min(1e-12)
    return (top_k_filter(logits / temperature, top_k) - torch.log(-torch.log(u))).argmax(-1)


TWINS = {"bigram_loss": bigram_loss, "gpt_block_forward": block_forward, "sample_next": L.reference_sample_next,
         "attend_with_cache": L.reference_attend_with_cache}


@pytest.mark.parametrize("seed", [0, 7])
def test_another_right_sampler_passes(seed, capsys):
    L.check_sample_next(gumbel_sample_next, seed=seed)
    assert "✓ sample_next" in capsys.readouterr().out


def test_a_leak_the_table_does_not_list_is_found_by_changing_the_last_position():
    def leaky(block, x):
        mask = causal_mask(x.shape[1]).clone()
        mask[0, -1] = True
        x = x + block.dropout1(block.self_attn(block.norm1(x), mask=mask)[0])
        return x + block.dropout2(block.ff(block.norm2(x)))

    with pytest.raises(CheckFailed, match="the future leaks into the past"):
        L.check_gpt_block_forward(leaky)


def test_a_wrong_return_is_named():
    with pytest.raises(CheckFailed, match=r"\(output, keys, values\)"):
        L.check_attend_with_cache(lambda *args: L.reference_attend_with_cache(*args)[0])
    with pytest.raises(CheckFailed, match="tensor of ids"):
        L.check_sample_next(lambda logits, *a, **k: L.reference_sample_next(logits, *a, **k).tolist())
    with pytest.raises(CheckFailed, match="one number"):
        L.check_bigram_loss(lambda t, v, V: torch.stack([L.reference_bigram_loss(t, v, V)] * 2))


def test_the_fixtures_are_what_they_say():
    a, b = L.tiny_block(3, dropout=0.2), L.tiny_block(3, dropout=0.2)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not a.training and L.tiny_block(3, training=True).training
    assert (a.dropout1.p, a.ff.dropout.p, a.dropout2.p, a.self_attn.dropout) == (0.2, 0.1, pytest.approx(0.3), 0.0)
    logits, rows = L.sampling_logits(0)
    assert torch.equal(logits[0], rows[0]) and torch.equal(logits[1], rows[1]) and len(logits) == L.SAMPLES
    assert torch.equal(L.token_frequencies(torch.tensor([0, 1, 0, 2])), torch.tensor(
        [[1.0, 0, 0, 0, 0, 0], [0, 0.5, 0.5, 0, 0, 0]], dtype=torch.float64))
