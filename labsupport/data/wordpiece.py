"""WordPiece, the tokenizer of BERT (Schuster and Nakajima 2012; Wu et al. 2016; Devlin et al. 2019): Lab 9's twin.

A WordPiece vocabulary (``vocab.txt``, one piece a line, the line number is the id) holds whole words (``the``,
``function``) and word *continuations*, marked by a leading ``##`` (``##ing``, ``##s``). Text becomes ids in
two steps, exactly as Hugging Face's ``BertTokenizer`` / ``tokenizers``' ``BertNormalizer`` + ``BertPreTokenizer``
+ ``WordPiece`` do for an *uncased* model:

1. :func:`basic_tokenize` cleans the text (drops NUL, U+FFFD and control characters other than tab and newline;
   every whitespace character becomes a space), puts spaces around CJK ideographs, strips accents (Unicode NFD,
   then the combining marks, category ``Mn``, are dropped: ``café`` -> ``cafe``), lower-cases, and splits on
   whitespace and around every punctuation character (ASCII punctuation such as ``$ + < = > ^ ` | ~`` and every
   Unicode ``P*`` character): ``"Don't stop."`` -> ``["don", "'", "t", "stop", "."]``;
2. :func:`wordpiece` cuts each word greedily, longest match first: the longest prefix that is in the vocabulary,
   then the longest ``##`` continuation of the rest, and so on. A word of which some part matches nothing (or of
   more than 100 characters) becomes the single token ``[UNK]``: ``"tokenization"`` -> ``["token", "##ization"]``.

:class:`WordPieceTokenizer` adds ``[CLS]`` in front and ``[SEP]`` at the end, and pads batches with ``[PAD]``
(id 0 in BERT's vocabularies). ``tests/unit/test_wordpiece.py`` checks that it gives the same ids as Hugging
Face ``tokenizers`` on the whole of Python's documentation text and on hand-made multilingual text.
"""
from __future__ import annotations

import unicodedata
from os import PathLike
from pathlib import Path

import torch

__all__ = ["UNK", "CLS", "SEP", "PAD", "MASK", "MAX_WORD_CHARS", "load_vocab", "clean_text", "is_punctuation",
           "is_cjk", "strip_accents", "basic_tokenize", "wordpiece", "WordPieceTokenizer"]

UNK, CLS, SEP, PAD, MASK = "[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"
#: Longer words become ``[UNK]`` without being cut (``max_input_chars_per_word`` of BERT's tokenizers).
MAX_WORD_CHARS = 100

# CJK Unified Ideographs and their extensions and compatibility blocks (BERT's _is_chinese_char): ideographs are
# words of their own, each surrounded by spaces. Hiragana, katakana and hangul are not in these ranges.
_CJK = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
        (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def load_vocab(path: str | PathLike) -> dict[str, int]:
    """``vocab.txt`` as ``{piece: id}``: the id of a piece is its line number, counted from 0."""
    lines = Path(path).read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return {piece: i for i, piece in enumerate(lines)}


def _is_whitespace(ch: str) -> bool:
    return ch in " \t\n\r" or ch.isspace()


def _is_control(ch: str) -> bool:
    return ch not in "\t\n\r" and unicodedata.category(ch).startswith("C")


def clean_text(text: str) -> str:
    """Drop NUL, U+FFFD and control characters (Unicode ``C*`` other than tab, newline, carriage return); every
    whitespace character left becomes a plain space."""
    out = []
    for ch in text:
        if ch == "\0" or ch == "\ufffd" or _is_control(ch):
            continue
        out.append(" " if _is_whitespace(ch) else ch)
    return "".join(out)


def is_punctuation(ch: str) -> bool:
    """BERT's punctuation: every non-alphanumeric printable ASCII character and every Unicode ``P*`` character."""
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def is_cjk(ch: str) -> bool:
    """A CJK ideograph (BERT puts a space on either side of each)."""
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _CJK)


def strip_accents(text: str) -> str:
    """``"Café naïve"`` -> ``"Cafe naive"``: Unicode NFD splits a letter from its accents, which are then dropped
    (category ``Mn``, nonspacing marks)."""
    return "".join(ch for ch in unicodedata.normalize("NFD", text) if unicodedata.category(ch) != "Mn")


def basic_tokenize(text: str, lowercase: bool = True) -> list[str]:
    """The words and punctuation of ``text``, cleaned, accents stripped and lower-cased (uncased BERT):
    ``"Héllo, World!"`` -> ``["hello", ",", "world", "!"]``. With ``lowercase=False`` case and accents stay."""
    text = clean_text(text)
    text = "".join(f" {ch} " if is_cjk(ch) else ch for ch in text)
    if lowercase:
        # strip the accents first, then lower-case one character at a time (as the tokenizers library does:
        # no context rules such as Greek final sigma)
        text = "".join(ch.lower() for ch in strip_accents(text))
    words = []
    for chunk in text.split():
        word = []
        for ch in chunk:
            if is_punctuation(ch):
                if word:
                    words.append("".join(word))
                    word = []
                words.append(ch)
            else:
                word.append(ch)
        if word:
            words.append("".join(word))
    return words


def wordpiece(word: str, vocab, unk: str = UNK, max_chars: int = MAX_WORD_CHARS) -> list[str]:
    """Cut one word into vocabulary pieces, greedily, longest match first; continuations carry ``##``.

    ``vocab`` is anything that supports ``in`` (a dict ``{piece: id}``, a set). When some rest of the word matches
    no piece, or the word has more than ``max_chars`` characters, the whole word is ``[unk]``.
    """
    if len(word) > max_chars:
        return [unk]
    pieces, start = [], 0
    while start < len(word):
        end = len(word)
        while end > start:
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                break
            end -= 1
        else:
            return [unk]
        pieces.append(piece)
        start = end
    return pieces


class WordPieceTokenizer:
    """Uncased BERT tokenization with a WordPiece vocabulary: text -> pieces -> ids, with ``[CLS]`` and ``[SEP]``.

    ``encode("Hi there")`` -> ``[101, 7632, 2045, 102]`` with BERT's vocabulary. :meth:`batch` pads a list of
    texts into ``(ids (B, L), mask (B, L))``, ``mask`` True at real tokens (the course's convention).
    """

    def __init__(self, vocab: dict[str, int], lowercase: bool = True, max_chars: int = MAX_WORD_CHARS):
        self.vocab = dict(vocab)
        self.lowercase, self.max_chars = lowercase, max_chars
        self.pieces = [None] * (max(self.vocab.values()) + 1)
        for piece, i in self.vocab.items():
            self.pieces[i] = piece
        missing = [s for s in (UNK, CLS, SEP, PAD) if s not in self.vocab]
        if missing:
            raise ValueError(f"the vocabulary lacks the special tokens {missing}")
        self.unk_id, self.cls_id, self.sep_id, self.pad_id = (self.vocab[s] for s in (UNK, CLS, SEP, PAD))
        self.mask_id = self.vocab.get(MASK)
        self._cache: dict[str, list[str]] = {}

    @classmethod
    def from_file(cls, path: str | PathLike, **kw) -> WordPieceTokenizer:
        """From a ``vocab.txt`` (or a folder that holds one)."""
        path = Path(path)
        return cls(load_vocab(path / "vocab.txt" if path.is_dir() else path), **kw)

    def __len__(self) -> int:
        return len(self.pieces)

    @property
    def vocab_size(self) -> int:
        return len(self.pieces)

    def split_word(self, word: str) -> list[str]:
        pieces = self._cache.get(word)
        if pieces is None:
            pieces = self._cache[word] = wordpiece(word, self.vocab, UNK, self.max_chars)
        return pieces

    def tokenize(self, text: str) -> list[str]:
        """The pieces of ``text`` (no special tokens)."""
        return [p for w in basic_tokenize(text, self.lowercase) for p in self.split_word(w)]

    def encode(self, text: str, add_special_tokens: bool = True, max_len: int | None = None) -> list[int]:
        """Ids of ``[CLS] pieces [SEP]``; with ``max_len`` the pieces are cut so that the whole fits."""
        ids = [self.vocab[p] for p in self.tokenize(text)]
        if not add_special_tokens:
            return ids if max_len is None else ids[:max_len]
        if max_len is not None:
            ids = ids[:max(max_len - 2, 0)]
        return [self.cls_id, *ids, self.sep_id]

    def batch(self, texts, max_len: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ids (B, L), mask (B, L))`` for a list of texts, padded with ``[PAD]`` to the longest; ``mask`` is
        True at real tokens."""
        rows = [self.encode(t, max_len=max_len) for t in texts]
        L = max(len(r) for r in rows)
        ids = torch.full((len(rows), L), self.pad_id, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        lengths = torch.tensor([len(r) for r in rows])
        return ids, torch.arange(L)[None, :] < lengths[:, None]

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        """Pieces joined back into text (``##`` continuations glued to the piece before)."""
        specials = {CLS, SEP, PAD}
        out = []
        for i in ids:
            piece = self.pieces[int(i)]
            if skip_special_tokens and piece in specials:
                continue
            if piece.startswith("##") and out:
                out[-1] += piece[2:]
            else:
                out.append(piece)
        return " ".join(out)
