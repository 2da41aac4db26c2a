"""Self-checks of Lab 9, a pretrained transformer in the BERT you built: WordPiece, checkpoint names, sentence
embeddings, retrieval metrics and what attention heads attend to.

Each check runs the student's code on inputs made from ``seed`` (the notebook uses the default, grading uses
others), compares it with the reference twin in :mod:`labsupport.data.wordpiece`, :mod:`labsupport.data.minilm`
or :mod:`labsupport.data.pydoc_questions`, and recognises the typical mistakes of :data:`MISTAKES` (each one the
reference *with that mistake*, plus what to tell the student):

* pre_tokenize: not lower-cased, accents kept, NFKD instead of NFD, only ASCII (``string.punctuation``) or only
  Unicode ``P*`` punctuation, punctuation dropped or left attached, ``split(" ")`` instead of ``split()``;
* wordpiece_split: continuations looked up without ``##`` (or the first piece with it, or ``##`` left out of the
  result), shortest match first, a partial ``[UNK]`` instead of the whole word, ``max_chars`` ignored or off by
  one;
* map_name: the two LayerNorms or the two feed-forward layers swapped, the attention's output layer taken for the
  feed-forward one, key and value swapped, position and segment tables swapped, the position-id buffer kept, the
  pooler dropped, layer numbers shifted or read one digit only;
* sentence_embeddings: padding averaged in, the sum divided by the padded length, the ``[CLS]`` vector, max
  pooling, normalised over the batch, ``normalize`` ignored;
* retrieval_metrics: ranks counted from the lowest score, ``k`` ignored or off by one, the reciprocal of the mean
  rank, ranks from 0, percentages, ranks taken down the columns;
* attention_share: every query counted, the relation transposed, the mean or the maximum over the related keys,
  a sum over the queries.
"""
from __future__ import annotations

import math
import re
import string
import unicodedata

import numpy as np
import torch
import torch.nn.functional as F

from labsupport.checks.core import (
    CheckFailed,
    Handle,
    Mistake,
    call,
    candidates,
    compare,
    describe_value,
    error_hints,
    expect,
    expect_number,
    passed,
)
from labsupport.data import minilm as mref
from labsupport.data import pydoc_questions as qref
from labsupport.data import wordpiece as wref
from labsupport.device import torch_threads

__all__ = ["MISTAKES", "CHECKS", "check_pre_tokenize", "check_wordpiece_split", "check_map_name",
           "check_sentence_embeddings", "check_retrieval_metrics", "check_attention_share",
           "check_same_ids", "check_same_hidden_states", "check_pretrained_wins", "test_vocab"]


def _rng(seed: int, case: int) -> np.random.Generator:
    return np.random.default_rng([seed, case])


def _gen(seed: int, case: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1009 + case)


# ------------------------------------------------------------------------------------------------------------
# comparing lists of strings
# ------------------------------------------------------------------------------------------------------------
def _show(tokens, i: int) -> str:
    lo = max(i - 3, 0)
    return ("... " if lo else "") + " ".join(repr(t) for t in tokens[lo:i + 4]) + (" ..." if i + 4 < len(tokens)
                                                                                   else "")


def _token_list(what: str, got) -> list[str]:
    """``got`` as a list, after checking that it is a list (or tuple) of strings."""
    if got is None:
        raise CheckFailed(f"{what} returned None. Did you forget the `return` statement?")
    if isinstance(got, Handle) or not isinstance(got, (list, tuple)):
        raise CheckFailed(f"{what} should return a list of strings, but it returned {describe_value(got)}.")
    bad = [t for t in got if not isinstance(t, str)]
    if bad:
        raise CheckFailed(f"{what} should return a list of strings, but it holds {describe_value(bad[0])}.")
    return list(got)


def _compare_tokens(what: str, got, want: list[str], hints=()) -> None:
    got = _token_list(what, got)
    if got == want:
        return
    for candidate, message in hints:
        if candidate != want and got == candidate:
            raise CheckFailed(f"{what} is not right yet. {message}\n    expected {want}\n    got      {got}")
    if "" in got:
        raise CheckFailed(f"{what} contains empty strings: split on runs of whitespace with `text.split()` (no "
                          f"argument), which never gives empty words.\n    got {got}")
    spaced = [t for t in got if any(ch.isspace() for ch in t)]
    if spaced:
        raise CheckFailed(f"{what} has a token with whitespace in it, {spaced[0]!r}: every whitespace character "
                          "(space, tab, newline) separates words.")
    i = next((j for j, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    raise CheckFailed(f"{what} differs from the expected tokens at position {i}:\n    expected {_show(want, i)}\n"
                      f"    got      {_show(got, i)}\n({len(want)} tokens expected, {len(got)} came out.)")


def _check_token_cases(cases, mistakes) -> None:
    """``cases``: ``[(shown, got, want, args)]``. A typical mistake is named only when it explains the student's
    result on every case (a mistake that happens to give the same answer on one input is no evidence); otherwise
    the first case that differs is shown."""
    cases = [(shown, _token_list(shown, got), want, args) for shown, got, want, args in cases]
    wrong = [c for c in cases if c[1] != c[2]]
    if not wrong:
        return
    for m in mistakes:
        outs = []
        for _, _, _, args in cases:
            try:
                outs.append(m.fn(*args))
            except Exception:  # noqa: BLE001 - a mistake that cannot handle this input explains nothing
                outs.append(None)
        if all(got == out for (_, got, _, _), out in zip(cases, outs)):
            shown, got, want, _ = wrong[0]
            raise CheckFailed(f"{shown} is not right yet. {m.message}\n    expected {want}\n    got      {got}")
    shown, got, want, _ = wrong[0]
    _compare_tokens(shown, got, want)


# ------------------------------------------------------------------------------------------------------------
# pre_tokenize: the typical mistakes
# ------------------------------------------------------------------------------------------------------------
def _ascii_punct(ch):
    return ch in string.punctuation


def _unicode_punct(ch):
    return unicodedata.category(ch).startswith("P")


def _pre(text, lower=True, accents="NFD", punct=wref.is_punctuation, split=str.split, keep_punct=True,
         split_punct=True):
    if lower:
        text = text.lower()
    if accents == "NFD, marks kept":
        text = unicodedata.normalize("NFD", text)
    elif accents:
        text = "".join(c for c in unicodedata.normalize(accents, text) if unicodedata.category(c) != "Mn")
    out = []
    for chunk in split(text):
        if not split_punct:
            out.append(chunk)
            continue
        word = ""
        for ch in chunk:
            if punct(ch):
                if word:
                    out.append(word)
                word = ""
                if keep_punct:
                    out.append(ch)
            else:
                word += ch
        if word:
            out.append(word)
    return out


MISTAKES: dict[str, list[Mistake]] = {
    "pre_tokenize": [
        Mistake("not_lowercased", "The model is uncased: lower-case the text (`text.lower()`).",
                lambda t: _pre(t, lower=False)),
        Mistake("accents_kept", "Accents are kept: strip them (`unicodedata.normalize('NFD', text)` splits a letter "
                                "from its accents; then drop the characters of category 'Mn').",
                lambda t: _pre(t, accents=None)),
        Mistake("marks_kept", "The text is decomposed (NFD) but the accent marks are still there: drop the "
                              "characters whose `unicodedata.category(ch)` is 'Mn'.",
                lambda t: _pre(t, accents="NFD, marks kept")),
        Mistake("nfkd", "NFKD also rewrites characters such as 'ﬁ' or '²' (into 'fi' and '2'); BERT uses NFD, "
                        "which only splits letters from their accents.", lambda t: _pre(t, accents="NFKD")),
        Mistake("ascii_punctuation_only", "Only ASCII punctuation (`string.punctuation`) is split off; Unicode "
                                          "punctuation such as “ ” ‘ ’ — … counts too (its category starts with "
                                          "'P').", lambda t: _pre(t, punct=_ascii_punct)),
        Mistake("unicode_punctuation_only", "Only characters of Unicode category P* are split off; BERT also "
                                            "counts every ASCII symbol that is not a letter or digit, such as "
                                            "$ + < = > ^ ` | ~.", lambda t: _pre(t, punct=_unicode_punct)),
        Mistake("punctuation_dropped", "Punctuation is dropped: each punctuation character is a token of its own.",
                lambda t: _pre(t, keep_punct=False)),
        Mistake("punctuation_attached", "Punctuation stays attached to words: split it off, one token per "
                                        "punctuation character.", lambda t: _pre(t, split_punct=False)),
        Mistake("split_on_space", "`text.split(' ')` splits on single spaces only: tabs and newlines stay inside "
                                  "tokens and double spaces give empty ones. Use `text.split()`.",
                lambda t: [w for w in _pre(t, split=lambda s: s.split(" "))]),
    ],
}

PRE_TOKENIZE_CASES = [
    "Hello, World!",
    "Don't   stop\tbelieving.\nIt's 3.14, isn't it?",
    "Café, naïve façade; Ångström résumé — ÉLAN",
    "x=1+2; y<3 and z>4 cost $5 ^ `a` |b| ~c #d @e",
    "“Quoted” text — and ‘single’ quotes… plus ﬁle x²",
    "def f(x):\n    return x**2  # the square",
]
_WORDS = ["python", "list", "Dict", "café", "naïve", "RÉSUMÉ", "x", "42", "__init__", "self.x", "f(x)", "a+b",
          "it's", "“word”", "end.", "(tuple)", "[1,", "2]", "—", "über", "ß", "Ω", "…"]


def pre_tokenize_text(seed: int, case: int, n: int = 14) -> str:
    """A random line of words, punctuation, accents and whitespace of several kinds."""
    rng = _rng(seed, case)
    seps = [" ", "  ", "\t", "\n", " \n "]
    words = [str(w) for w in rng.choice(_WORDS, size=n)]
    return "".join(w + str(rng.choice(seps)) for w in words).strip(" ")


error_hints("pre_tokenize", [
    (r"normalize\(\) argument 1 must be|invalid normalization form",
     "`unicodedata.normalize(form, text)` takes the form first: `unicodedata.normalize('NFD', text)`."),
])


@torch_threads(1)
def check_pre_tokenize(pre_tokenize, *, seed: int = 0) -> None:
    """Check ``pre_tokenize(text) -> list of str`` (uncased BERT's basic tokenizer)."""
    mistakes = MISTAKES["pre_tokenize"]
    texts = PRE_TOKENIZE_CASES + [pre_tokenize_text(seed, k) for k in range(3)]
    cases = [(f"pre_tokenize({text!r})", call(pre_tokenize, "pre_tokenize", text), wref.basic_tokenize(text), (text,))
             for text in texts]
    _check_token_cases(cases, mistakes)
    passed("pre_tokenize")


# ------------------------------------------------------------------------------------------------------------
# wordpiece_split
# ------------------------------------------------------------------------------------------------------------
def _wp(word, vocab, max_chars=100, prefix="##", first_prefix="", shortest=False, partial=False, keep_hash=True,
        limit=">"):
    too_long = len(word) > max_chars if limit == ">" else (len(word) >= max_chars if limit == ">=" else False)
    if too_long:
        return ["[UNK]"]
    pieces, start = [], 0
    while start < len(word):
        ends = range(start + 1, len(word) + 1) if shortest else range(len(word), start, -1)
        for end in ends:
            mark = first_prefix if start == 0 else prefix
            if mark + word[start:end] in vocab:
                pieces.append((mark if keep_hash else "") + word[start:end])
                break
        else:
            if partial:
                return pieces + ["[UNK]"]
            return ["[UNK]"]
        start = end
    return pieces


MISTAKES["wordpiece_split"] = [
    Mistake("max_chars_hard_coded", "The length limit is always 100: use the `max_chars` argument (do not "
                                    "hard-code 100).", lambda w, v, max_chars=100: _wp(w, v, 100)),
    Mistake("max_chars_ignored", "A word longer than `max_chars` characters must be ['[UNK]'] without being cut "
                                 "(use the argument, do not hard-code 100).",
            lambda w, v, max_chars=100: _wp(w, v, max_chars, limit="")),
    Mistake("max_chars_off_by_one", "A word of exactly `max_chars` characters is still cut; only longer ones are "
                                    "['[UNK]'] (`len(word) > max_chars`).",
            lambda w, v, max_chars=100: _wp(w, v, max_chars, limit=">=")),
    Mistake("no_prefix", "Continuation pieces must be looked up with their `##` prefix ('##ing', not 'ing'): a "
                         "piece after the first one is `'##' + word[start:end]`.",
            lambda w, v, max_chars=100: _wp(w, v, max_chars, prefix="")),
    Mistake("prefix_on_first", "The first piece of a word has no `##`: only pieces that continue a word do.",
            lambda w, v, max_chars=100: _wp(w, v, max_chars, first_prefix="##")),
    Mistake("hash_not_returned", "Continuation pieces are returned without their `##`; the vocabulary's piece (and "
                                 "its id) is '##ing', with the prefix.",
            lambda w, v, max_chars=100: _wp(w, v, max_chars, keep_hash=False)),
    Mistake("shortest_first", "It takes the shortest matching piece; WordPiece takes the longest: start with the "
                              "whole rest of the word and shorten it until it is in the vocabulary.",
            lambda w, v, max_chars=100: _wp(w, v, max_chars, shortest=True)),
    Mistake("partial_unk", "When a part of the word matches no piece, the WHOLE word is ['[UNK]'], not the pieces "
                           "found so far plus '[UNK]'.",
            lambda w, v, max_chars=100: _wp(w, v, max_chars, partial=True)),
]

#: a small vocabulary where greedy longest-first and the other strategies give different pieces
TEST_PIECES = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "una", "u", "n", "a", "token", "to", "ken",
               "##ken", "##iz", "##ization", "##ation", "##s", "##ed", "##able", "##a", "##ff", "##ord", "##orda",
               "##ble", "##b", "##le", "##ffor", "##d", "##e", "p", "##p", "ab", "##ab", "##y", "play", "##ing",
               "##in", "##g", "re", "##play"]


def test_vocab(pieces=TEST_PIECES) -> dict[str, int]:
    return {p: i for i, p in enumerate(pieces)}


WORDPIECE_CASES = [("token", 100), ("tokens", 100), ("tokenization", 100), ("unaffordable", 100),
                   ("replaying", 100), ("tokenq", 100), ("qtoken", 100), ("u", 100), ("plays", 100),
                   ("ab" * 51, 100), ("tokens", 6), ("tokens", 5), ("playing", 7)]


def random_vocab(seed: int, case: int) -> tuple[dict[str, int], list[str]]:
    """A random vocabulary over the letters a-d (pieces of 1-3 letters, with and without ##) and words to cut."""
    rng = _rng(seed, case)
    letters = "abcd"
    pieces = {"[UNK]"}
    for _ in range(40):
        p = "".join(rng.choice(list(letters), size=int(rng.integers(1, 4))))
        pieces.add(p if rng.random() < 0.4 else "##" + p)
    pieces |= {"a", "##a", "##b"}  # most words can be cut
    words = ["".join(rng.choice(list(letters), size=int(rng.integers(1, 9)))) for _ in range(12)]
    return {p: i for i, p in enumerate(sorted(pieces))}, words


@torch_threads(1)
def check_wordpiece_split(wordpiece_split, *, seed: int = 0) -> None:
    """Check ``wordpiece_split(word, vocab, max_chars=100) -> list of pieces``."""
    mistakes = MISTAKES["wordpiece_split"]
    vocab = test_vocab()
    cases = []
    for word, max_chars in WORDPIECE_CASES:
        kwargs = {} if max_chars == 100 else {"max_chars": max_chars}
        shown = f"wordpiece_split({word!r}, vocab{'' if max_chars == 100 else f', max_chars={max_chars}'})"
        if len(word) > 20:
            shown = f"wordpiece_split(a word of {len(word)} characters, vocab)"
        got = call(wordpiece_split, "wordpiece_split", word, vocab, **kwargs)
        cases.append((shown, got, wref.wordpiece(word, vocab, max_chars=max_chars), (word, vocab, max_chars)))
    rvocab, words = random_vocab(seed, 1)
    for word in words:
        cases.append((f"wordpiece_split({word!r}, a vocabulary of {len(rvocab)} pieces)",
                      call(wordpiece_split, "wordpiece_split", word, rvocab), wref.wordpiece(word, rvocab),
                      (word, rvocab)))
    _check_token_cases(cases, mistakes)
    passed("wordpiece_split")


def check_same_ids(mine, theirs, what: str = "the whole documentation text") -> None:
    """The lab's comparison of the student's token ids with Hugging Face ``tokenizers``' on the same text."""
    mine, theirs = list(mine), list(theirs)
    if mine != theirs:
        i = next((j for j, (a, b) in enumerate(zip(mine, theirs)) if a != b), min(len(mine), len(theirs)))
        raise CheckFailed(f"Your tokenizer and Hugging Face's differ on {what} at token {i:,} (of {len(theirs):,}): "
                          f"ids {mine[i:i + 5]} where {theirs[i:i + 5]} were expected.")
    passed("same ids as Hugging Face tokenizers", f"{len(mine):,} tokens")


# ------------------------------------------------------------------------------------------------------------
# map_name
# ------------------------------------------------------------------------------------------------------------
def _renamer(swap: dict[str, str] | None = None, skip=mref.SKIP, layer_shift: int = 0, one_digit: bool = False,
             drop=()):
    """The reference name map with a mistake: some targets replaced, other names skipped, layers renumbered."""
    rules = [(p, (swap or {}).get(t, t)) for p, t in mref.NAME_RULES]

    def rename(name):
        if any(re.fullmatch(p, name) for p in skip) or any(re.fullmatch(p, name) for p in drop):
            return None
        if name.startswith("embeddings.position_ids") and not skip:
            return name
        for pattern, target in rules:
            m = re.fullmatch(pattern, name)
            if m:
                out = m.expand(target)
                layer = re.match(r"encoder\.layers\.(\d+)\.", out)
                if layer:
                    n = layer.group(1)
                    n = n[0] if one_digit else str(int(n) + layer_shift)
                    out = f"encoder.layers.{n}." + out[layer.end():]
                return out
        return None
    return rename


_N1, _N2 = r"encoder.layers.\1.norm1.\2", r"encoder.layers.\1.norm2.\2"
_F1, _F2 = r"encoder.layers.\1.ff.linear1.\2", r"encoder.layers.\1.ff.linear2.\2"
_K, _V = r"encoder.layers.\1.self_attn.k_proj.\2", r"encoder.layers.\1.self_attn.v_proj.\2"
_O = r"encoder.layers.\1.self_attn.out_proj.\2"
MISTAKES["map_name"] = [
    Mistake("norms_swapped", "The two LayerNorms of a layer are swapped: `attention.output.LayerNorm` follows the "
                             "attention (norm1), `output.LayerNorm` follows the feed-forward layer (norm2).",
            _renamer({_N1: _N2, _N2: _N1})),
    Mistake("feed_forward_swapped", "The feed-forward layers are swapped: `intermediate.dense` widens (ff.linear1), "
                                    "`output.dense` narrows back (ff.linear2).", _renamer({_F1: _F2, _F2: _F1})),
    Mistake("attention_output_as_ff", "`attention.output.dense` was mapped to the feed-forward layer: it is the "
                                      "attention's output projection (self_attn.out_proj). Test the longer "
                                      "pattern 'attention.output.' before 'output.'.", _renamer({_O: _F2})),
    Mistake("key_value_swapped", "Keys and values are swapped: `attention.self.key` is k_proj, "
                                 "`attention.self.value` is v_proj.", _renamer({_K: _V, _V: _K})),
    Mistake("position_segment_swapped", "`position_embeddings` is the table of positions (embeddings.position), "
                                        "`token_type_embeddings` the table of segments (embeddings.segment).",
            _renamer({r"embeddings.position.\1": r"embeddings.segment.\1",
                      r"embeddings.segment.\1": r"embeddings.position.\1"})),
    Mistake("position_ids_kept", "`embeddings.position_ids` is a buffer of the numbers 0..511, not a weight: return "
                                 "None for it so that it is skipped.", _renamer(skip=())),
    Mistake("pooler_dropped", "The pooler is part of our BERT too (head.pooler): map `pooler.dense.weight` and "
                              "`pooler.dense.bias` to `head.pooler.weight` and `head.pooler.bias`.",
            _renamer(drop=(r"pooler\..*",))),
    Mistake("layer_shifted", "Layer numbers are shifted: both count from 0 (`encoder.layer.0.` is "
                             "`encoder.layers.0.`).", _renamer(layer_shift=1)),
    Mistake("one_digit", "Only the first digit of the layer number is read: layer 10 becomes layer 1. Read the whole "
                         "number (`name.split('.')[2]`, or a regular expression with `(\\d+)`).",
            _renamer(one_digit=True)),
]


error_hints("map_name", [
    (r"invalid group reference|unknown group name",
     "A replacement refers to a group the pattern does not have: number the groups `(\\d+)` of your pattern."),
])


@torch_threads(1)
def check_map_name(map_name, *, seed: int = 0) -> None:
    """Check ``map_name(hf_name) -> our name or None`` on every tensor name of a 12-layer BertModel."""
    names = mref.hf_bert_names(12)
    rng = _rng(seed, 1)
    names = [names[i] for i in rng.permutation(len(names))]
    got = {}
    for name in names:
        out = call(map_name, "map_name", name)
        expect(out is None or isinstance(out, str),
               f"map_name({name!r}) should return a string (our name) or None, but it returned "
               f"{describe_value(out)}.")
        got[name] = out
    want = {n: mref.bert_name(n) for n in names}
    if got == want:
        passed("map_name", f"{len(names)} tensor names of a 12-layer BERT")
        return
    for m in MISTAKES["map_name"]:
        if got == {n: m.fn(n) for n in names}:
            wrong = next(n for n in names if got[n] != want[n])
            raise CheckFailed(f"map_name is not right yet. {m.message}\n    map_name({wrong!r}) gave {got[wrong]!r}; "
                              f"expected {want[wrong]!r}.")
    wrong = [n for n in names if got[n] != want[n]]
    shown = "\n".join(f"    map_name({n!r}) gave {got[n]!r}; expected {want[n]!r}" for n in wrong[:4])
    raise CheckFailed(f"map_name gives the wrong name for {len(wrong)} of {len(names)} tensors, e.g.:\n{shown}")


def check_same_hidden_states(ours, theirs, atol: float = 1e-4) -> float:
    """The lab's comparison of the hidden states of our BERT with those of ``transformers.BertModel``."""
    expect(isinstance(ours, torch.Tensor) and isinstance(theirs, torch.Tensor) and ours.shape == theirs.shape,
           f"the two models' hidden states should have the same shape, got {describe_value(ours)} and "
           f"{describe_value(theirs)}.")
    diff = float((ours.double() - theirs.double()).abs().max())
    expect(diff <= atol, f"our BERT and transformers' BertModel differ by up to {diff:.3g} (more than {atol:g}): "
                         "some weights are not where they belong (check map_name and the missing/unexpected keys).")
    passed("same hidden states as BertModel", f"max difference {diff:.1e}")
    return diff


# ------------------------------------------------------------------------------------------------------------
# sentence_embeddings
# ------------------------------------------------------------------------------------------------------------
def _pool(hidden, mask, normalize=True, how="mean", norm_dim=-1, denominator="count", always_normalize=False):
    m = mask.unsqueeze(-1).to(hidden.dtype)
    if how == "mean":
        total = (hidden * m).sum(1)
        x = total / (m.sum(1).clamp(min=1e-9) if denominator == "count" else hidden.shape[1])
    elif how == "all":
        x = hidden.mean(1)
    elif how == "cls":
        x = hidden[:, 0]
    else:
        x = hidden.masked_fill(~mask.bool().unsqueeze(-1), float("-inf")).max(1).values
    return F.normalize(x, p=2, dim=norm_dim) if (normalize or always_normalize) else x


MISTAKES["sentence_embeddings"] = [
    Mistake("mask_ignored", "The padding is averaged in: take the mean over the real tokens only (multiply by the "
                            "mask, sum over the tokens, divide by the number of real tokens).",
            lambda h, m, normalize=True: _pool(h, m, normalize, how="all")),
    Mistake("divided_by_length", "The sum over the real tokens is divided by the padded length L; divide by the "
                                 "number of real tokens of each sentence (`mask.sum(1)`).",
            lambda h, m, normalize=True: _pool(h, m, normalize, denominator="length")),
    Mistake("cls_vector", "This is the [CLS] vector (position 0); all-MiniLM-L6-v2 was trained with the MEAN of "
                          "all real tokens.", lambda h, m, normalize=True: _pool(h, m, normalize, how="cls")),
    Mistake("max_pooling", "This is max pooling; the exercise asks for the mean over the real tokens.",
            lambda h, m, normalize=True: _pool(h, m, normalize, how="max")),
    Mistake("normalized_over_batch", "It is normalised over the batch axis: each sentence's vector must have "
                                     "length 1 (normalise over the last axis, dim=-1).",
            lambda h, m, normalize=True: _pool(h, m, normalize, norm_dim=0)),
    Mistake("normalize_ignored", "With normalize=False the mean itself is returned, not scaled to length 1: use "
                                 "the argument.", lambda h, m, normalize=True: _pool(h, m, always_normalize=True)),
    Mistake("never_normalized", "The embeddings must have length 1 (normalize=True is the default): divide each "
                                "by its Euclidean norm (`F.normalize(x, dim=-1)`).",
            lambda h, m, normalize=True: _pool(h, m, normalize=False)),
]


def _hidden_and_mask(seed: int, case: int, B: int, L: int, D: int, dtype=torch.float32):
    g = _gen(seed, case)
    hidden = torch.randn(B, L, D, generator=g, dtype=torch.float64)
    lengths = torch.randint(1, L + 1, (B,), generator=g)
    lengths[0] = L
    lengths[-1] = max(1, L // 2 - 1)
    mask = torch.arange(L)[None, :] < lengths[:, None]
    hidden = torch.where(mask[..., None], hidden, hidden * 5 + 3)  # padding positions hold other values
    return hidden.to(dtype), mask


@torch_threads(1)
def check_sentence_embeddings(sentence_embeddings, *, seed: int = 0) -> None:
    """Check ``sentence_embeddings(hidden (B, L, D), mask (B, L), normalize=True) -> (B, D)``."""
    mistakes = MISTAKES["sentence_embeddings"]
    for case, (B, L, D, dtype, normalize) in enumerate([(3, 7, 8, torch.float32, None), (4, 6, 5, torch.float64,
                                                                                          None),
                                                         (3, 7, 8, torch.float32, False),
                                                         (2, 5, 6, torch.float64, True)]):
        hidden, mask = _hidden_and_mask(seed, case, B, L, D, dtype)
        args = (hidden, mask) if normalize is None else (hidden, mask, normalize)
        shown = (f"sentence_embeddings(hidden {tuple(hidden.shape)} {str(dtype)[6:]}, mask {tuple(mask.shape)}"
                 f"{'' if normalize is None else f', normalize={normalize}'})")
        got = call(sentence_embeddings, "sentence_embeddings", *args)
        compare(shown, got, mref.sentence_embeddings(*args), atol=1e-5 if dtype == torch.float32 else 1e-10,
                hints=candidates(mistakes, *args))
    passed("sentence_embeddings")


# ------------------------------------------------------------------------------------------------------------
# retrieval_metrics
# ------------------------------------------------------------------------------------------------------------
def _metrics(scores, answers, k=5, ascending=False, mrr="mean_reciprocal", k_used=None, below=False, zero=False,
             scale=1.0, columns=False):
    s = torch.as_tensor(scores)
    if columns:
        s = s.T
    s = -s if ascending else s
    right = s.gather(1, torch.as_tensor(answers)[:, None])
    r = ((s > right).sum(1) + (0 if zero else 1)).double()
    k = k if k_used is None else k_used
    topk = (r < k) if below else (r <= k)
    with np.errstate(divide="ignore"):
        m = float((1.0 / r).mean()) if mrr == "mean_reciprocal" else float(1.0 / r.mean())
    return (scale * float((r == 1).double().mean()), scale * float(topk.double().mean()), scale * m)


MISTAKES["retrieval_metrics"] = [
    Mistake("ascending", "The answers are ranked from the LOWEST score: a higher similarity means a better match, so "
                         "rank by descending score (`scores > scores of the answer`, or `argsort(descending=True)`).",
            lambda s, a, k=5: _metrics(s, a, k, ascending=True)),
    Mistake("k_ignored", "The top-k accuracy ignores `k` (it counts the first 5 whatever k is): use the argument.",
            lambda s, a, k=5: _metrics(s, a, k, k_used=5)),
    Mistake("k_off_by_one", "The top-k accuracy counts ranks below k; rank k itself is in the top k (rank <= k, "
                            "ranks counted from 1).", lambda s, a, k=5: _metrics(s, a, k, below=True)),
    Mistake("reciprocal_of_mean_rank", "This is 1 / (mean rank); the mean reciprocal rank is the mean of 1 / rank "
                                       "over the questions.",
            lambda s, a, k=5: _metrics(s, a, k, mrr="reciprocal_mean")),
    Mistake("ranks_from_zero", "Ranks count from 1 (the best document has rank 1): add 1 to the number of "
                               "documents scored higher.", lambda s, a, k=5: _metrics(s, a, k, zero=True)),
    Mistake("percentages", "Return fractions between 0 and 1, not percentages.",
            lambda s, a, k=5: _metrics(s, a, k, scale=100.0)),
    Mistake("columns", "The ranks are taken down the columns: each ROW of scores is one question's scores for all "
                       "the documents, so rank along dim=1.", lambda s, a, k=5: _metrics(s, a, k, columns=True)),
]


def _same_number(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b or abs(a - b) <= 1e-6


def _retrieval_case(seed: int, case: int, Q: int, T: int):
    g = _gen(seed, case)
    scores = torch.randn(Q, T, generator=g, dtype=torch.float64)
    answers = torch.randint(0, T, (Q,), generator=g)
    # make the answer win often enough that every rank from 1 to a few occurs
    boost = torch.rand(Q, generator=g, dtype=torch.float64) * 2.5
    scores[torch.arange(Q), answers] += boost
    return scores, answers


@torch_threads(1)
def check_retrieval_metrics(retrieval_metrics, *, seed: int = 0) -> None:
    """Check ``retrieval_metrics(scores (Q, T), answers (Q,), k=5) -> (top1, topk, mrr)``, Python floats."""
    mistakes = MISTAKES["retrieval_metrics"]
    for case, (Q, T, k) in enumerate([(10, 10, None), (12, 9, 3), (20, 11, 2), (15, 8, 1)]):
        scores, answers = _retrieval_case(seed, case, Q, T)
        args = (scores, answers) if k is None else (scores, answers, k)
        shown = f"retrieval_metrics(scores ({Q}, {T}), answers ({Q},){'' if k is None else f', k={k}'})"
        got = call(retrieval_metrics, "retrieval_metrics", *args)
        expect(isinstance(got, (tuple, list)) and len(got) == 3,
               f"{shown} should return three numbers (top1, topk, mrr), but it returned {describe_value(got)}.")
        values = [expect_number(f"{name} of {shown}", v) for name, v in zip(("top1", "topk", "mrr"), got)]
        want = qref.retrieval_metrics(*args)
        if all(_same_number(a, b) for a, b in zip(values, want)):
            continue
        for cand, message in candidates(mistakes, *args):
            if not all(_same_number(a, b) for a, b in zip(cand, want)) and \
                    all(_same_number(a, b) for a, b in zip(values, cand)):
                raise CheckFailed(f"{shown} is not right yet. {message}")
        names = [n for n, a, b in zip(("top1", "topk", "mrr"), values, want) if not _same_number(a, b)]
        raise CheckFailed(f"{shown}: {', '.join(names)} wrong; expected (top1, topk, mrr) = "
                          f"({want[0]:.4f}, {want[1]:.4f}, {want[2]:.4f}), got "
                          f"({values[0]:.4f}, {values[1]:.4f}, {values[2]:.4f}).")
    passed("retrieval_metrics")


# ------------------------------------------------------------------------------------------------------------
# attention_share
# ------------------------------------------------------------------------------------------------------------
def _share(w, rel, queries="related", transpose=False, over_keys="sum", over_queries="mean"):
    r = (rel.T if transpose else rel).to(w.dtype)
    if over_keys == "sum":
        per = (w * r).sum(-1)
    elif over_keys == "mean":
        per = (w * r).sum(-1) / r.sum(-1).clamp(min=1)
    else:
        per = (w * r).amax(-1)
    has = rel.any(-1).to(w.dtype) if queries == "related" else torch.ones(rel.shape[0], dtype=w.dtype)
    total = (per * has).sum(-1)
    return total if over_queries == "sum" else total / has.sum().clamp(min=1)


MISTAKES["attention_share"] = [
    Mistake("every_query", "Queries that have no related key count as 0 in the average: average only over the "
                           "queries with at least one related key (`relation.any(-1)`).",
            lambda w, r: _share(w, r, queries="all")),
    Mistake("relation_transposed", "The relation is read the wrong way round: relation[i, j] says that KEY j is "
                                   "related to QUERY i, and weights[..., i, j] is query i's weight on key j.",
            lambda w, r: _share(w, r, transpose=True)),
    Mistake("mean_over_keys", "It averages the weights over the related keys; the share is their SUM (the "
                              "attention query i gives to all its related keys together).",
            lambda w, r: _share(w, r, over_keys="mean")),
    Mistake("max_over_keys", "It takes the largest weight on a related key; the share is the SUM over the related "
                             "keys.", lambda w, r: _share(w, r, over_keys="max")),
    Mistake("sum_over_queries", "It sums over the queries; average over them instead (divide by the number of "
                                "queries that have a related key).", lambda w, r: _share(w, r, over_queries="sum")),
]


def _attention_case(seed: int, case: int, lead: tuple, L: int, dtype=torch.float64):
    g = _gen(seed, case)
    w = torch.softmax(torch.randn(*lead, L, L, generator=g, dtype=torch.float64) * 2, dim=-1).to(dtype)
    rel = torch.rand(L, L, generator=g) < 0.3
    rel[1] = False
    rel[L - 2] = False
    rel[0, L - 1] = rel[0, 1] = True  # an asymmetric row
    rel[L - 1, 0] = False
    return w, rel


@torch_threads(1)
def check_attention_share(attention_share, *, seed: int = 0) -> None:
    """Check ``attention_share(weights (..., L, L), relation (L, L)) -> (...)``."""
    mistakes = MISTAKES["attention_share"]
    for case, (lead, L, dtype) in enumerate([((2, 3), 6, torch.float64), ((4,), 7, torch.float32),
                                             ((2, 2, 3), 5, torch.float64)]):
        w, rel = _attention_case(seed, case, lead, L, dtype)
        shown = f"attention_share(weights {tuple(w.shape)}, relation {tuple(rel.shape)})"
        compare(shown, call(attention_share, "attention_share", w, rel), mref.attention_share(w, rel),
                atol=1e-5 if dtype == torch.float32 else 1e-10, hints=candidates(mistakes, w, rel))
    w = torch.softmax(torch.randn(3, 6, 6, generator=_gen(seed, 9), dtype=torch.float64), -1)
    rel = mref.previous_token(6)
    compare("attention_share(weights (3, 6, 6), previous-token relation)",
            call(attention_share, "attention_share", w, rel), mref.attention_share(w, rel), atol=1e-10,
            hints=candidates(mistakes, w, rel))
    passed("attention_share")


def check_pretrained_wins(results: dict, margin: float = 0.05) -> None:
    """The lab's bar: the pretrained model's MRR beats TF-IDF's and the scratch model's by ``margin``."""
    mrr = {name: r[2] for name, r in results.items()}
    pre = mrr.get("pretrained MiniLM")
    expect(pre is not None, f"no 'pretrained MiniLM' row in {sorted(results)}")
    for other, value in mrr.items():
        if other != "pretrained MiniLM":
            expect(pre >= value + margin, f"the pretrained model's MRR {pre:.3f} does not beat {other}'s "
                                          f"{value:.3f} by {margin}.")
    best_other = max(v for n, v in mrr.items() if n != "pretrained MiniLM")
    passed("the pretrained model wins", f"MRR {pre:.3f}, the next best {best_other:.3f}")


#: check name -> check, the keys of :data:`MISTAKES`
CHECKS = {"pre_tokenize": check_pre_tokenize, "wordpiece_split": check_wordpiece_split, "map_name": check_map_name,
          "sentence_embeddings": check_sentence_embeddings, "retrieval_metrics": check_retrieval_metrics,
          "attention_share": check_attention_share}
