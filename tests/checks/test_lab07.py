"""Lab 7's references (TWINS) and unfinished classes (STUBS), which test_every_lab.py runs every check with, and
its particular cases: a few special messages. (The mistakes and the mutants are in test_mutants.py.)"""
import pytest
from torch import nn

from labsupport.checks import lab07 as L
from labsupport.checks.core import CheckFailed
from labsupport.models import bert as ref

TWINS = {"embeddings": ref.BertEmbeddings, "mask_tokens": ref.mask_tokens, "mlm_loss": ref.mlm_loss,
         "classifier_head": ref.ClassifierHead}


class TodoEmbeddings(ref.BertEmbeddings):
    def forward(self, tokens, segments=None):
        raise NotImplementedError()


class TodoHead(ref.ClassifierHead):
    def forward(self, hidden):
        raise NotImplementedError()


def stub(*args, **kwargs):
    raise NotImplementedError()


STUBS = {"embeddings": TodoEmbeddings, "mask_tokens": stub, "mlm_loss": stub, "classifier_head": TodoHead}


def test_a_class_that_is_not_a_module_or_lacks_a_layer_is_named():
    with pytest.raises(CheckFailed, match="should make a torch module"):
        L.check_classifier_head(lambda d, c, p=0.1: "a head")

    class Renamed(nn.Module):
        def __init__(self, d_model, num_classes, dropout=0.1):
            super().__init__()
            self.dense = nn.Linear(d_model, d_model)
            self.classifier = nn.Linear(d_model, num_classes)

    with pytest.raises(CheckFailed, match="keep the layers created in __init__"):
        L.check_classifier_head(Renamed)


def test_a_wrong_return_is_named():
    with pytest.raises(CheckFailed, match=r"should return a pair \(inputs, labels\)"):
        L.check_mask_tokens(lambda tokens, *args, **kwargs: tokens)


def test_pretraining_helps_check(capsys):
    L.check_pretraining_helps(0.8, 0.5)
    assert "✓ pretraining helps" in capsys.readouterr().out
    with pytest.raises(CheckFailed, match="a gap of"):
        L.check_pretraining_helps(0.55, 0.5)


def test_the_batches_are_what_they_say():
    tokens = L.mlm_batch(0, 20, 12, range(5, 30), 0, 1, 2)
    assert (tokens[:, 0] == 1).all() and ((tokens == 2).sum(1) == 1).all()
    assert set(tokens.unique().tolist()) <= {0, 1, 2} | set(range(5, 30))
