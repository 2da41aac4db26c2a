"""labsupport.data.numbers: splits, tokenization, batches of the number-translation task (Lab 5)."""
import pytest
import torch

from labsupport.data.numbers import NumberTranslation, number_phrase, split_numbers


def test_split_numbers_disjoint_and_complete():
    train, test = split_numbers(max_number=99_999, n_train=3_000, n_test=1_000, seed=1)
    assert len(train) == 3_000 and len(test) == 1_000
    assert not set(train) & set(test)
    assert set(range(1000)) <= set(train) and min(test) >= 1000 and max(test) <= 99_999
    assert split_numbers(99_999, 3_000, 1_000, seed=1) == (train, test)
    with pytest.raises(ValueError):
        split_numbers(max_number=1500, n_train=1400, n_test=200)


@pytest.fixture(scope="module")
def numbers():
    return NumberTranslation(max_number=99_999, n_train=2_000, n_test=1_000, seed=0)


def test_number_translation_round_trip(numbers):
    assert number_phrase(97, "fr") == "quatre-vingt-dix-sept"
    for n in numbers.train_numbers[::97]:
        en, fr = numbers.pair(n)
        assert numbers.src_tok.decode(numbers.src_tok.encode(en)) == en
        assert numbers.tgt_tok.decode(numbers.tgt_tok.encode(fr)) == fr
    # held-out numbers are made of known words (no <unk>): the model can translate them
    src, tgt = numbers.encode(numbers.test_numbers)
    assert (src != numbers.src_tok.unk_id).all() and (tgt != numbers.tgt_tok.unk_id).all()
    assert (tgt[:, 0] == numbers.tgt_tok.bos_id).all()
    assert ((src == numbers.src_tok.eos_id).sum(1) == 1).all()
    assert numbers.tgt_tok.split("quatre-vingt-dix-sept mille") == ["quatre-vingt-dix-sept", "mille"]


def test_number_batches(numbers):
    it = numbers.batches(batch_size=16, seed=3)
    src, tgt = next(it)
    assert src.shape[0] == tgt.shape[0] == 16 and src.dtype == torch.long
    src2, _ = next(numbers.batches(batch_size=16, seed=3))
    assert torch.equal(src, src2)  # seeded
    Ls, Lt = numbers.max_lengths()
    assert src.shape[1] <= Ls and tgt.shape[1] <= Lt


def test_german_variant_uses_characters():
    de = NumberTranslation(max_number=20_000, n_train=1_500, n_test=200, tgt_lang="de")
    n = de.test_numbers[0]
    assert de.tgt_tok.decode(de.tgt_tok.encode(de.phrase(n, "de"))) == de.phrase(n, "de")
    assert type(de.tgt_tok).__name__ == "CharTokenizer"
