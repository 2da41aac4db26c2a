"""labsupport.data.tokenizers: vocabularies, specials, round trips, padding."""
import pytest
import torch

from labsupport.data import SPECIALS, CharTokenizer, WordTokenizer


def test_char_round_trip_and_specials():
    text = "def f(x):\n    return x + 1\n"
    tok = CharTokenizer.from_text(text)
    assert tok.vocab[:5] == list(SPECIALS)
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id, tok.mask_id) == (0, 1, 2, 3, 4)
    assert len(tok) == 5 + len(set(text))
    ids = tok.encode(text)
    assert len(ids) == len(text) and min(ids) >= 5
    assert tok.decode(ids) == text
    assert tok.encode("z") == [tok.unk_id]
    assert tok.decode(tok.encode("z")) == "<unk>"
    with_specials = tok.encode("ab"[:0] + "x", add_bos=True, add_eos=True)
    assert with_specials[0] == tok.bos_id and with_specials[-1] == tok.eos_id
    assert tok.decode(with_specials) == "x"
    assert tok.decode(with_specials, skip_specials=False, stop_at_eos=False) == "<bos>x<eos>"


def test_char_without_specials():
    tok = CharTokenizer.from_text("abca", specials=())
    assert tok.vocab == ["a", "b", "c"] and tok.pad_id is None and tok.eos_id is None
    assert tok.decode(tok.encode("cab")) == "cab"
    with pytest.raises(KeyError):
        tok.encode("d")
    with pytest.raises(ValueError):
        tok.batch(["a"])


NUMBER_PHRASES = ["one thousand, two hundred and thirty-four", "quatre-vingt-dix-sept",
                  "mille deux cent trente-quatre", "vingt et un", "deux cents"]


def test_word_round_trip():
    tok = WordTokenizer.from_texts(NUMBER_PHRASES)
    for s in NUMBER_PHRASES:
        assert tok.decode(tok.encode(s)) == s
    assert tok.split("thirty-four,") == ["thirty", "-", "four", ","]
    assert "-" in tok.stoi and "vingt" in tok.stoi
    assert tok.encode("forty-two")[0] == tok.unk_id


def test_word_vocab_order_min_count_max_size_lowercase():
    tok = WordTokenizer.from_texts(["b a a", "c a b"], min_count=2)
    assert tok.vocab[5:] == ["a", "b"]  # most frequent first
    tok = WordTokenizer.from_texts(["b a a", "c a b"], max_size=1)
    assert tok.vocab[5:] == ["a"]
    tok = WordTokenizer.from_texts(["Hello World"], lowercase=True)
    assert tok.decode(tok.encode("HELLO world")) == "hello world"


def test_batch_pads_and_cuts():
    tok = WordTokenizer.from_texts(NUMBER_PHRASES)
    batch = tok.batch(["vingt et un", "deux cents"], add_bos=True, add_eos=True)
    assert batch.dtype == torch.long and batch.shape == (2, 5)
    assert batch[1, -1].item() == tok.pad_id and batch[0, 0].item() == tok.bos_id and batch[0, -1].item() == tok.eos_id
    assert tok.decode_batch(batch) == ["vingt et un", "deux cents"]
    cut = tok.batch(["vingt et un"], max_len=2)
    assert cut.shape == (1, 2)
    assert tok.pad([[5], [5, 6, 7]]).tolist() == [[5, 0, 0], [5, 6, 7]]
    assert "WordTokenizer(vocab_size=" in repr(tok)
