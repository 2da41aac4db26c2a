"""labsupport.data.toy: the look-up task of Labs 2 and 4."""
import torch

from labsupport.data.toy import lookup_batch, lookup_batches


def test_previous_and_first_answers():
    tokens, previous, first = lookup_batch(4, seq_len=6, vocab_size=9, generator=torch.Generator().manual_seed(0))
    assert tokens.shape == previous.shape == first.shape == (4, 6) and tokens.max() < 9
    assert torch.equal(previous[:, 1:], tokens[:, :-1]) and torch.equal(previous[:, 0], tokens[:, 0])
    assert (first == tokens[:, :1]).all()


def test_batches_are_seeded():
    a, b = next(lookup_batches(8, seed=2)), next(lookup_batches(8, seed=2))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    it = lookup_batches(8, seed=2)
    next(it)
    assert not torch.equal(next(it)[0], a[0])
