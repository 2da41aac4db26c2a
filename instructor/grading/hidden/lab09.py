"""Hidden tests of Lab 9 (a pretrained transformer in the BERT you built): the self-checks on other inputs, then
cases of the same kinds (real documentation text, other vocabularies, other shapes, hand-computed answers)."""
from __future__ import annotations

import numpy as np
import torch

from instructor.grading.hidden import hidden_test
from labsupport.checks import lab09 as checks
from labsupport.checks.core import call, compare, expect, expect_number
from labsupport.data import minilm as mref
from labsupport.data import pydoc_questions as qref
from labsupport.data import wordpiece as wref
from labsupport.data.pydoc_text import topics


@hidden_test("test_pre_tokenize", twins=["labsupport.data.wordpiece:basic_tokenize"])
def test_pre_tokenize(student, seed):
    checks.check_pre_tokenize(student.pre_tokenize, seed=seed)
    t = topics()
    names = sorted(t)
    rng = np.random.default_rng(seed)
    for name in rng.choice(names, size=3, replace=False):
        text = t[str(name)][:1500]
        checks._compare_tokens(f"pre_tokenize(the start of help({name!r}))",
                               call(student.pre_tokenize, "pre_tokenize", text), wref.basic_tokenize(text))
    for text in ("", "   \n\t ", "ÀÉÎÕÜ àéîõü", "a—b…c“d”e‘f’g", "C++ & C# | F# ~ R"):
        checks._compare_tokens(f"pre_tokenize({text!r})", call(student.pre_tokenize, "pre_tokenize", text),
                               wref.basic_tokenize(text))


@hidden_test("test_wordpiece_split", twins=["labsupport.data.wordpiece:wordpiece"])
def test_wordpiece_split(student, seed):
    checks.check_wordpiece_split(student.wordpiece_split, seed=seed)
    for case in (2, 3):
        vocab, words = checks.random_vocab(seed, case)
        for word in words:
            checks._compare_tokens(f"wordpiece_split({word!r}, a vocabulary of {len(vocab)} pieces)",
                                   call(student.wordpiece_split, "wordpiece_split", word, vocab),
                                   wref.wordpiece(word, vocab))
    vocab = checks.test_vocab()
    for word, max_chars in (("a" * 100, 100), ("unaffordable", 12), ("unaffordable", 11), ("tokenization", 3)):
        kwargs = {} if max_chars == 100 else {"max_chars": max_chars}
        checks._compare_tokens(f"wordpiece_split(a word of {len(word)} characters, vocab, max_chars={max_chars})",
                               call(student.wordpiece_split, "wordpiece_split", word, vocab, **kwargs),
                               wref.wordpiece(word, vocab, max_chars=max_chars))


@hidden_test("test_map_name", twins=["labsupport.data.minilm:bert_name", "labsupport.models.checkpoints:convert"])
def test_map_name(student, seed):
    checks.check_map_name(student.map_name, seed=seed)
    for name in mref.hf_bert_names(24, position_ids=False)[-40:]:
        got = call(student.map_name, "map_name", name)
        expect(got == mref.bert_name(name), f"map_name({name!r}) gave {got!r}; expected {mref.bert_name(name)!r}.")


@hidden_test("test_sentence_embeddings", twins=["labsupport.data.minilm:sentence_embeddings"])
def test_sentence_embeddings(student, seed):
    checks.check_sentence_embeddings(student.sentence_embeddings, seed=seed)
    hidden, mask = checks._hidden_and_mask(seed, 11, 5, 9, 12, torch.float64)
    mask[2] = False
    mask[2, 0] = True  # a sentence of one token
    got = call(student.sentence_embeddings, "sentence_embeddings", hidden, mask)
    compare("sentence_embeddings with a one-token sentence", got, mref.sentence_embeddings(hidden, mask),
            atol=1e-10)
    compare("the lengths of the embeddings", torch.linalg.vector_norm(torch.as_tensor(got), dim=-1),
            torch.ones(5, dtype=torch.float64), atol=1e-10)
    raw = call(student.sentence_embeddings, "sentence_embeddings", hidden, mask, False)
    compare("sentence_embeddings(..., normalize=False) of a one-token sentence (that token's vector)",
            torch.as_tensor(raw)[2], hidden[2, 0], atol=1e-10)


@hidden_test("test_retrieval_metrics", twins=["labsupport.data.pydoc_questions:retrieval_metrics",
                                              "labsupport.data.pydoc_questions:ranks"])
def test_retrieval_metrics(student, seed):
    checks.check_retrieval_metrics(student.retrieval_metrics, seed=seed)
    # three questions, four documents: the answers rank 1, 2 and 3
    scores = torch.tensor([[0.9, 0.1, 0.2, 0.3], [0.5, 0.7, 0.6, 0.1], [0.2, 0.3, 0.1, 0.4]], dtype=torch.float64)
    answers = torch.tensor([0, 2, 0])
    got = call(student.retrieval_metrics, "retrieval_metrics", scores, answers, 2)
    expect(isinstance(got, (tuple, list)) and len(got) == 3, "retrieval_metrics must return (top1, topk, mrr).")
    values = [expect_number(n, v) for n, v in zip(("top1", "topk", "mrr"), got)]
    want = (1 / 3, 2 / 3, (1 + 1 / 2 + 1 / 3) / 3)
    expect(np.allclose(values, want, atol=1e-9), f"for answers ranked 1, 2 and 3 with k=2, (top1, topk, mrr) should "
                                                 f"be {tuple(round(w, 4) for w in want)}, got {tuple(values)}.")
    scores, answers = checks._retrieval_case(seed, 21, 30, 13)
    got = call(student.retrieval_metrics, "retrieval_metrics", scores, answers, 7)
    expect(isinstance(got, (tuple, list)) and len(got) == 3 and np.allclose(
        [float(v) for v in got], qref.retrieval_metrics(scores, answers, 7), atol=1e-9),
        "retrieval_metrics(scores (30, 13), answers (30,), k=7) is wrong.")


@hidden_test("test_attention_share", twins=["labsupport.data.minilm:attention_share"])
def test_attention_share(student, seed):
    checks.check_attention_share(student.attention_share, seed=seed)
    # one head, four tokens: query 1 puts 0.7 on token 0, query 2 0.2 on token 1, query 3 0.5 on token 2
    w = torch.tensor([[[1.0, 0.0, 0.0, 0.0], [0.7, 0.3, 0.0, 0.0], [0.4, 0.2, 0.4, 0.0], [0.1, 0.2, 0.5, 0.2]]],
                     dtype=torch.float64)
    got = call(student.attention_share, "attention_share", w, mref.previous_token(4))
    compare("the previous-token share of a hand-made head", got, torch.tensor([(0.7 + 0.2 + 0.5) / 3],
                                                                             dtype=torch.float64), atol=1e-12)
    w, rel = checks._attention_case(seed, 31, (6, 12), 9, torch.float64)
    compare("attention_share(weights (6, 12, 9, 9), relation (9, 9))",
            call(student.attention_share, "attention_share", w, rel), mref.attention_share(w, rel), atol=1e-10)
