"""Lab 5's translation task: English number phrases to French, generated with ``num2words`` (nothing downloaded).

    "three hundred and forty-two thousand, one hundred and seven"  ->  "trois cent quarante-deux mille cent sept"

It is a small but real translation problem: the words differ, the word order sometimes differs ("seventy" is
"soixante-dix", sixty-ten; "ninety-one" is "quatre-vingt-onze", four-twenty-eleven), some words appear or vanish
("one hundred" is just "cent"; "and" has no counterpart; "et" appears in "vingt et un"), and agreement depends on
context ("deux cents" but "deux cent un", "quatre-vingts" but "quatre-vingt mille"). A model that has only
memorised the training pairs fails on new numbers; one that has learned the structure gets them all right.

The split is by **number**: every number below ``1000`` is in the training set (the building blocks), plus a
random sample of larger ones; the held-out numbers are other numbers from ``1000`` to ``max_number`` that the
model never sees while training. ``lang="de"`` gives the German variant (one long compound word per number, tens
and units swapped: "vierunddreißig", four-and-thirty).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch
from num2words import num2words

from labsupport.data.tokenizers import CharTokenizer, WordTokenizer

__all__ = ["number_phrase", "split_numbers", "NumberTranslation", "WORD_PATTERN"]

#: Tokens are words with their hyphens ("thirty-four", "quatre-vingt-dix-sept") and commas: short sequences.
WORD_PATTERN = r"[\w'-]+|[^\w\s]"


def number_phrase(n: int, lang: str = "en") -> str:
    """The words of ``n`` in ``lang`` ("en", "fr", "de", ...), as num2words writes them."""
    return num2words(int(n), lang=lang)


def split_numbers(max_number: int = 999_999, n_train: int = 30_000, n_test: int = 2_000, seed: int = 0,
                  all_below: int = 1000) -> tuple[list[int], list[int]]:
    """Disjoint training and held-out numbers.

    Training: every number below ``all_below``, plus ``n_train - all_below`` random numbers from
    ``all_below .. max_number``. Held-out: ``n_test`` other random numbers from that range. Both sorted.
    """
    rng = random.Random(seed)
    pool_size = max_number + 1 - all_below
    if n_train - all_below + n_test > pool_size:
        raise ValueError("not enough numbers in the range for disjoint training and held-out sets")
    picked = rng.sample(range(all_below, max_number + 1), n_train - all_below + n_test)
    test = sorted(picked[:n_test])
    train = sorted(list(range(all_below)) + picked[n_test:])
    return train, test


@dataclass
class NumberTranslation:
    """The dataset of Lab 5: tokenizers, the training and held-out numbers, and batches of token ids.

    ``src_tok`` splits English into words and punctuation, ``tgt_tok`` French (or German: characters, since
    German writes a number as one compound word). Vocabularies come from the training phrases. Source sequences
    end with ``<eos>``; target sequences are ``<bos> words <eos>`` (the model's input is the target without its
    last token, and it must predict the target without its first: see Lab 5).
    """

    max_number: int = 999_999
    n_train: int = 30_000
    n_test: int = 2_000
    seed: int = 0
    tgt_lang: str = "fr"
    train_numbers: list = field(init=False, repr=False)
    test_numbers: list = field(init=False, repr=False)

    def __post_init__(self):
        self.train_numbers, self.test_numbers = split_numbers(self.max_number, self.n_train, self.n_test, self.seed)
        self._cache: dict[tuple[int, str], str] = {}
        train_en = [self.phrase(n, "en") for n in self.train_numbers]
        train_tgt = [self.phrase(n, self.tgt_lang) for n in self.train_numbers]
        self.src_tok = WordTokenizer.from_texts(train_en, pattern=WORD_PATTERN)
        if self.tgt_lang == "de":
            self.tgt_tok = CharTokenizer.from_text("".join(train_tgt))
        else:
            self.tgt_tok = WordTokenizer.from_texts(train_tgt, pattern=WORD_PATTERN)
        self._train_src = [self.src_tok.encode(s, add_eos=True) for s in train_en]
        self._train_tgt = [self.tgt_tok.encode(s, add_bos=True, add_eos=True) for s in train_tgt]

    def phrase(self, n: int, lang: str = "en") -> str:
        key = (int(n), lang)
        if key not in self._cache:
            self._cache[key] = number_phrase(n, lang)
        return self._cache[key]

    def pair(self, n: int) -> tuple[str, str]:
        """``(English, target-language)`` phrases of ``n``."""
        return self.phrase(n, "en"), self.phrase(n, self.tgt_lang)

    def max_lengths(self) -> tuple[int, int]:
        """Longest source and target sequence (in tokens, with the specials) among the training pairs."""
        return max(map(len, self._train_src)), max(map(len, self._train_tgt))

    def encode(self, numbers, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded ``(src (B, Ls), tgt (B, Lt))`` id tensors for ``numbers``; ``tgt`` has ``<bos>`` and ``<eos>``."""
        en = [self.phrase(n, "en") for n in numbers]
        tgt = [self.phrase(n, self.tgt_lang) for n in numbers]
        return (self.src_tok.batch(en, add_eos=True, device=device),
                self.tgt_tok.batch(tgt, add_bos=True, add_eos=True, device=device))

    def batches(self, batch_size: int = 64, seed: int = 0, device=None):
        """An endless iterator of random training batches ``(src, tgt)`` (sampled with replacement)."""
        g = torch.Generator().manual_seed(seed)
        n = len(self._train_src)
        while True:
            idx = torch.randint(0, n, (batch_size,), generator=g).tolist()
            yield (self.src_tok.pad([self._train_src[i] for i in idx], device=device),
                   self.tgt_tok.pad([self._train_tgt[i] for i in idx], device=device))
