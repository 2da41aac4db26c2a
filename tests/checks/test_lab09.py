"""Lab 9's references (TWINS; test_every_lab.py runs every check with them) and its particular cases: the lab's
own comparisons (ids, hidden states, the retrieval bar) fail with a message that says what differs. (The
mistakes and the mutants are in test_mutants.py.)"""
import pytest
import torch

from labsupport.checks import lab09 as L
from labsupport.checks.core import CheckFailed
from labsupport.data import minilm, pydoc_questions, wordpiece

TWINS = {"pre_tokenize": wordpiece.basic_tokenize, "wordpiece_split": wordpiece.wordpiece,
         "map_name": minilm.bert_name, "sentence_embeddings": minilm.sentence_embeddings,
         "retrieval_metrics": pydoc_questions.retrieval_metrics, "attention_share": minilm.attention_share}


def test_the_inputs_depend_on_the_seed():
    assert L.pre_tokenize_text(0, 1) != L.pre_tokenize_text(1, 1)
    assert L.random_vocab(0, 1) != L.random_vocab(1, 1)
    a, b = L._retrieval_case(0, 0, 5, 4), L._retrieval_case(1, 0, 5, 4)
    assert not torch.equal(a[0], b[0])


def test_the_wordpiece_test_vocabulary_tells_the_strategies_apart():
    vocab = L.test_vocab()
    longest = [wordpiece.wordpiece(w, vocab) for w, _ in L.WORDPIECE_CASES]
    for mistake in L.MISTAKES["wordpiece_split"]:
        assert [mistake.fn(w, vocab, m) for w, m in L.WORDPIECE_CASES] != \
            [wordpiece.wordpiece(w, vocab, max_chars=m) for w, m in L.WORDPIECE_CASES], mistake.name
    assert ["una", "##ffor", "##d", "##able"] in longest  # longest first: not un + ##a + ...; ##ffor, not ##ff


def test_wrong_return_types_are_named():
    with pytest.raises(CheckFailed, match="list of strings"):
        L.check_pre_tokenize(lambda text: " ".join(wordpiece.basic_tokenize(text)))
    with pytest.raises(CheckFailed, match="string \\(our name\\) or None"):
        L.check_map_name(lambda name: 3)
    with pytest.raises(CheckFailed, match="three numbers"):
        L.check_retrieval_metrics(lambda s, a, k=5: pydoc_questions.retrieval_metrics(s, a, k)[:2])
    with pytest.raises(CheckFailed, match="Python number"):
        L.check_retrieval_metrics(lambda s, a, k=5: tuple(torch.tensor(v) for v in
                                                          pydoc_questions.retrieval_metrics(s, a, k)))


def test_the_labs_own_comparisons():
    L.check_same_ids([1, 2, 3], [1, 2, 3])
    with pytest.raises(CheckFailed, match="at token 2"):
        L.check_same_ids([1, 2, 3, 4], [1, 2, 5, 4])
    x = torch.randn(2, 3, 4)
    assert L.check_same_hidden_states(x, x + 1e-7) < 1e-6
    with pytest.raises(CheckFailed, match="differ by up to"):
        L.check_same_hidden_states(x, x + 1e-2)
    with pytest.raises(CheckFailed, match="same shape"):
        L.check_same_hidden_states(x, x[:1])
    L.check_pretrained_wins({"pretrained MiniLM": (0.6, 0.9, 0.75), "TF-IDF": (0.4, 0.7, 0.55)})
    with pytest.raises(CheckFailed, match="does not beat TF-IDF"):
        L.check_pretrained_wins({"pretrained MiniLM": (0.6, 0.9, 0.57), "TF-IDF": (0.4, 0.7, 0.55)})
