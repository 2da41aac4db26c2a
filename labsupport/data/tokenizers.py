"""Tokenizers: text to integer ids and back, with the special tokens the models need.

A model sees integers, not text. A tokenizer fixes a *vocabulary* (a list of tokens; a token's id is its index)
and two maps: ``encode`` (text to ids) and ``decode`` (ids to text). Two kinds are enough for this course:

* :class:`CharTokenizer`, one token per character (Lab 6's GPT on Python's documentation);
* :class:`WordTokenizer`, one token per word or punctuation mark (Lab 5's number phrases, Lab 7's BERT).

Both reserve the first ids for the **special tokens** (:data:`SPECIALS`):

=========  ===  ==================================================================================
``<pad>``  0    fills short sequences up to the batch's length; masked out of attention and the loss
``<bos>``  1    "beginning of sequence": the first input of a decoder
``<eos>``  2    "end of sequence": the decoder emits it to say it has finished
``<unk>``  3    stands for any token that is not in the vocabulary
``<mask>`` 4    the token BERT's masked-language-model objective hides words behind
=========  ===  ==================================================================================

``batch(texts)`` encodes several texts and pads them into one ``(B, L)`` tensor of ids; ``decode`` skips the
special tokens unless asked not to, and stops at ``<eos>`` when ``stop_at_eos`` is set.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

import torch

__all__ = ["SPECIALS", "Tokenizer", "CharTokenizer", "WordTokenizer"]

#: The special tokens, in the order of their ids.
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>", "<mask>")


class Tokenizer:
    """The shared part: vocabulary, special ids, encode/decode of token lists, padding into batches.

    Subclasses define :meth:`split` (text to token strings) and :meth:`join` (token strings to text).
    """

    def __init__(self, tokens: Iterable[str], specials: Sequence[str] = SPECIALS):
        self.specials = tuple(specials)
        vocab = list(self.specials)
        seen = set(vocab)
        for t in tokens:
            if t not in seen:
                seen.add(t)
                vocab.append(t)
        self.vocab: list[str] = vocab
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(vocab)}
        self.special_ids = frozenset(range(len(self.specials)))

    # special ids (None when the tokenizer was built without that special)
    def _id(self, tok: str) -> int | None:
        return self.stoi[tok] if tok in self.specials else None

    @property
    def pad_id(self) -> int | None:
        return self._id("<pad>")

    @property
    def bos_id(self) -> int | None:
        return self._id("<bos>")

    @property
    def eos_id(self) -> int | None:
        return self._id("<eos>")

    @property
    def unk_id(self) -> int | None:
        return self._id("<unk>")

    @property
    def mask_id(self) -> int | None:
        return self._id("<mask>")

    def __len__(self) -> int:
        return len(self.vocab)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def __repr__(self) -> str:
        shown = ", ".join(repr(t) for t in self.vocab[len(self.specials):len(self.specials) + 8])
        return f"{type(self).__name__}(vocab_size={len(self)}, specials={len(self.specials)}, tokens=[{shown}, ...])"

    # to be defined by subclasses
    def split(self, text: str) -> list[str]:
        raise NotImplementedError

    def join(self, tokens: list[str]) -> str:
        raise NotImplementedError

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        """Text to a list of ids; unknown tokens become ``<unk>`` (an error if there is no ``<unk>``)."""
        unk = self.unk_id
        ids = []
        for t in self.split(text):
            i = self.stoi.get(t, unk)
            if i is None:
                raise KeyError(f"token {t!r} is not in the vocabulary and this tokenizer has no <unk>")
            ids.append(i)
        if add_bos:
            ids.insert(0, self.bos_id)
        if add_eos:
            ids.append(self.eos_id)
        return ids

    def decode(self, ids, skip_specials: bool = True, stop_at_eos: bool = True) -> str:
        """Ids (a list or a 1-D tensor) back to text. ``<unk>`` is kept (as ``<unk>``) even when skipping specials."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        out = []
        for i in ids:
            i = int(i)
            if stop_at_eos and i == self.eos_id:
                break
            if skip_specials and i in self.special_ids and i != self.unk_id:
                continue
            out.append(self.vocab[i])
        return self.join(out)

    def decode_batch(self, ids, **kwargs) -> list[str]:
        """Decode each row of a ``(B, L)`` tensor (or list of lists)."""
        return [self.decode(row, **kwargs) for row in ids]

    def batch(self, texts: Sequence[str], add_bos: bool = False, add_eos: bool = False, max_len: int | None = None,
              device=None) -> torch.Tensor:
        """Encode ``texts`` and pad them with ``<pad>`` into one ``(B, L)`` LongTensor (``L`` the longest, or
        ``max_len``; longer sequences are cut to ``max_len``)."""
        return self.pad([self.encode(t, add_bos, add_eos) for t in texts], max_len=max_len, device=device)

    def pad(self, seqs: Sequence[Sequence[int]], max_len: int | None = None, device=None) -> torch.Tensor:
        """Pad lists of ids with ``<pad>`` into a ``(B, L)`` LongTensor."""
        if self.pad_id is None:
            raise ValueError("this tokenizer has no <pad> token, so it cannot pad a batch")
        L = max((len(s) for s in seqs), default=0) if max_len is None else max_len
        out = torch.full((len(seqs), L), self.pad_id, dtype=torch.long)
        for b, s in enumerate(seqs):
            s = list(s)[:L]
            if s:
                out[b, : len(s)] = torch.as_tensor(s, dtype=torch.long)
        return out.to(device) if device is not None else out


class CharTokenizer(Tokenizer):
    """One token per character. ``CharTokenizer.from_text(text)`` takes the sorted set of characters of ``text``.

    ``specials=()`` builds a vocabulary without special tokens (a plain language model needs none).
    """

    @classmethod
    def from_text(cls, text: str, specials: Sequence[str] = SPECIALS) -> CharTokenizer:
        return cls(sorted(set(text)), specials)

    def split(self, text: str) -> list[str]:
        return list(text)

    def join(self, tokens: list[str]) -> str:
        return "".join(tokens)


class WordTokenizer(Tokenizer):
    """One token per word or punctuation mark.

    ``split`` finds words (letters, digits, apostrophes) and single punctuation marks with the regular
    expression ``pattern``, so ``"thirty-four,"`` becomes ``["thirty", "-", "four", ","]``; ``lowercase``
    folds case first. ``join`` puts a space between tokens except before the marks in ``no_space_before``
    (``,.;:!?)-``) and after those in ``no_space_after`` (``(-``), so ``decode(encode(s)) == s`` for ordinary
    text written in that style. Build the vocabulary with :meth:`from_texts`.
    """

    PATTERN = r"[\w']+|[^\w\s]"

    def __init__(self, tokens: Iterable[str], specials: Sequence[str] = SPECIALS, lowercase: bool = False,
                 pattern: str = PATTERN, no_space_before: str = ",.;:!?)-", no_space_after: str = "(-"):
        super().__init__(tokens, specials)
        self.lowercase = lowercase
        self.pattern = re.compile(pattern)
        self.no_space_before = set(no_space_before)
        self.no_space_after = set(no_space_after)

    @classmethod
    def from_texts(cls, texts: Iterable[str], min_count: int = 1, max_size: int | None = None,
                   specials: Sequence[str] = SPECIALS, **kwargs) -> WordTokenizer:
        """The vocabulary of ``texts``: tokens seen at least ``min_count`` times, the most frequent first (ties
        alphabetically), at most ``max_size`` of them (specials not counted)."""
        probe = cls([], specials, **kwargs)
        counts = Counter(t for text in texts for t in probe.split(text))
        ranked = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
        return cls(ranked[:max_size] if max_size is not None else ranked, specials, **kwargs)

    def split(self, text: str) -> list[str]:
        return self.pattern.findall(text.lower() if self.lowercase else text)

    def join(self, tokens: list[str]) -> str:
        out = ""
        for i, t in enumerate(tokens):
            if i > 0 and t not in self.no_space_before and tokens[i - 1] not in self.no_space_after:
                out += " "
            out += t
        return out
