"""labsupport.data.pydoc_questions: the labelled questions, the search corpus, and the metrics pinned to
scikit-learn's (top-k accuracy, and label ranking average precision, which is the reciprocal rank when each
question has one right answer)."""
import numpy as np
import pytest
import torch
from sklearn.metrics import label_ranking_average_precision_score, top_k_accuracy_score

from labsupport.data import pydoc_questions as pq
from labsupport.data.pydoc_text import topics


def test_at_least_60_distinct_questions_each_answered_by_a_topic_of_the_corpus():
    corpus = pq.corpus()
    assert len(pq.QUESTIONS) >= 60 and len(pq.questions()) == len(pq.QUESTIONS)
    assert len({q for q, _ in pq.QUESTIONS}) == len(pq.QUESTIONS)
    assert all(a in corpus for _, a in pq.QUESTIONS)
    assert not set(pq.EXCLUDED) & set(corpus) and set(pq.EXCLUDED) <= set(topics())
    assert list(corpus) == sorted(corpus) and len(corpus) == len(topics()) - len(pq.EXCLUDED)
    # the exclusions are what the docstring says: chapters holding other topics whole, and a duplicate
    t = topics()
    assert t["else"] == t["if"]
    for part, whole in (("for", "compound"), ("try", "compound"), ("naming", "execmodel"),
                        ("customization", "specialnames")):
        longest_paragraph = max(t[part].split("\n\n"), key=len)
        assert longest_paragraph in t[whole], (part, whole)
    ids = pq.answer_ids()
    assert ids.dtype == torch.long and [list(corpus)[i] for i in ids] == [a for _, a in pq.QUESTIONS]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_equal_scikit_learns(seed):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(40, 17))
    answers = rng.integers(0, 17, size=40)
    scores[np.arange(40), answers] += rng.random(40) * 2  # ranks 1, 2, 3, ... all occur
    for k in (1, 3, 5):
        top1, topk, mrr = pq.retrieval_metrics(torch.from_numpy(scores), torch.from_numpy(answers), k=k)
        assert top1 == pytest.approx(top_k_accuracy_score(answers, scores, k=1, labels=range(17)))
        assert topk == pytest.approx(top_k_accuracy_score(answers, scores, k=k, labels=range(17)))
        relevant = np.zeros_like(scores, dtype=int)
        relevant[np.arange(40), answers] = 1
        assert mrr == pytest.approx(label_ranking_average_precision_score(relevant, scores))
        assert all(isinstance(v, float) for v in (top1, topk, mrr))
    r = pq.ranks(scores, answers)
    assert r.min() >= 1 and r.max() <= 17 and (r == 1).any() and (r > 3).any()


def test_tfidf_finds_a_document_from_its_own_words():
    corpus = pq.corpus()
    names, texts = list(corpus), list(corpus.values())
    queries = [texts[names.index(n)][:300] for n in ("break", "lambda", "string-methods")]
    scores = pq.tfidf_scores(texts, queries)
    assert scores.shape == (3, len(names)) and scores.dtype == torch.float64
    assert [names[i] for i in scores.argmax(1)] == ["break", "lambda", "string-methods"]
