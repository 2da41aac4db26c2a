"""The self-checks of Lab 7 (BERT): the reference passes, each typical mistake is caught with its own message."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from checkhelpers import fails_with, not_implemented
from labsupport.checks import CheckFailed
from labsupport.checks import lab07 as C
from labsupport.models import bert as ref


# ------------------------------------------------------------------------------------------------ embeddings
class Embeddings(nn.Module):
    """The notebook's skeleton with the reference solution."""

    def __init__(self, vocab_size, max_len, d_model, num_segments=2, dropout=0.1):
        super().__init__()
        self.token = nn.Embedding(vocab_size, d_model)
        self.segment = nn.Embedding(num_segments, d_model)
        self.position = nn.Embedding(max_len, d_model)
        self.norm = nn.LayerNorm(d_model, eps=1e-12)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens, segments=None):
        if segments is None:
            segments = torch.zeros_like(tokens)
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        return self.dropout(self.norm(self.token(tokens) + self.segment(segments) + self.position(positions)))


def variant(forward):
    return type("Variant", (Embeddings,), {"forward": forward})


def test_embeddings_reference_passes(capsys):
    C.check_embeddings(Embeddings)
    assert "✓ BertEmbeddings" in capsys.readouterr().out


def _pos(t):
    return torch.arange(t.shape[1])


@pytest.mark.parametrize("forward,fragment", [
    (lambda s, t, g=None: s.norm(s.token(t) + s.position(_pos(t))), "segment embedding is missing"),
    (lambda s, t, g=None: s.norm(s.token(t) + s.segment(torch.zeros_like(t) if g is None else g)),
     "position embedding is missing"),
    (lambda s, t, g=None: s.norm(s.token(t) + s.segment(torch.zeros_like(t) if g is None else g) + s.position(t)),
     "looked up with the token ids"),
    (lambda s, t, g=None: s.token(t) + s.segment(torch.zeros_like(t) if g is None else g) + s.position(_pos(t)),
     "LayerNorm is missing"),
    (lambda s, t, g=None: s.norm(s.token(t) + s.segment(torch.zeros_like(t) if g is None else g)) + s.position(_pos(t)),
     "before the positions are added"),
])
def test_embeddings_mistakes(forward, fragment):
    fails_with(C.check_embeddings, variant(forward), fragment)


def test_embeddings_segments_none_not_handled():
    def forward(s, t, g=None):
        seg = s.segment(g) if g is not None else 0.0
        return s.norm(s.token(t) + seg + s.position(_pos(t)))
    fails_with(C.check_embeddings, variant(forward), "segments=None")


def test_embeddings_crash_is_explained():
    def forward(s, t, g=None):
        return s.norm(s.token(t) + s.segment(g) + s.position(_pos(t)))  # segments None -> crash
    fails_with(C.check_embeddings, variant(forward), "raised TypeError")


# ------------------------------------------------------------------------------------------------ mask_tokens
def test_mask_tokens_reference_passes(capsys):
    C.check_mask_tokens(ref.mask_tokens)
    assert "✓ mask_tokens" in capsys.readouterr().out


def _special(tokens, special_ids):
    s = torch.zeros_like(tokens, dtype=torch.bool)
    for i in special_ids:
        s |= tokens == i
    return s


def make_masker(pick_specials=False, label_all=False, labels_from_inputs=False, rate=None, only_masked=False,
                shares=(0.8, 0.1), random_any=False, change_unpicked=False, in_place=False, fixed_prob=False):
    def mask_tokens(tokens, mask_id, vocab_size, special_ids, mask_prob=0.15, generator=None):
        p = 0.15 if fixed_prob else mask_prob
        p = rate if rate is not None else p
        special = _special(tokens, special_ids)
        picked = torch.rand(tokens.shape, generator=generator) < p
        if not pick_specials:
            picked &= ~special
        u = torch.rand(tokens.shape, generator=generator)
        lo = 5 if not random_any else 0
        rnd = torch.randint(lo, vocab_size, tokens.shape, generator=generator)
        inputs = tokens if in_place else tokens.clone()
        m, r = shares
        inputs[picked & (u < m)] = mask_id
        inputs[picked & (u >= m) & (u < m + r)] = rnd[picked & (u >= m) & (u < m + r)]
        if change_unpicked:
            inputs[~picked & ~special & (u < 0.05)] = mask_id
        keep = picked & (u < m) if only_masked else picked
        labels = torch.where(keep, tokens if not labels_from_inputs else inputs, torch.full_like(tokens, -100))
        if label_all:
            labels = tokens.clone()
        return inputs, labels
    return mask_tokens


@pytest.mark.parametrize("kwargs,fragment", [
    (dict(pick_specials=True), "Special tokens were picked"),
    (dict(label_all=True), "Every position has a label"),
    (dict(labels_from_inputs=True, shares=(1.0, 0.0)), "holds the masked inputs"),
    (dict(only_masked=True), "only the [MASK]ed ones are labelled"),
    (dict(rate=0.3), "expected about 15%"),
    (dict(shares=(1.0, 0.0)), "Every picked token became [MASK]"),
    (dict(shares=(0.1, 0.1)), "shares of the picked tokens are off"),
    (dict(shares=(0.8, 0.2)), "shares of the picked tokens are off"),
    (dict(random_any=True), "random replacements are special tokens"),
    (dict(change_unpicked=True), "not picked were changed"),
    (dict(in_place=True), "in place"),
    (dict(fixed_prob=True), "use the mask_prob argument"),
])
def test_mask_tokens_mistakes(kwargs, fragment):
    fails_with(C.check_mask_tokens, make_masker(**kwargs), fragment)


def test_mask_tokens_wrong_return():
    fails_with(C.check_mask_tokens, lambda t, *a, **k: t, "should return a pair (inputs, labels)")


# ------------------------------------------------------------------------------------------------ mlm_loss
def test_mlm_loss_reference_passes(capsys):
    C.check_mlm_loss(ref.mlm_loss)
    assert "✓ mlm_loss" in capsys.readouterr().out


def loss_all_positions(logits, labels):
    V = logits.shape[-1]
    loss = F.cross_entropy(logits.reshape(-1, V), labels.reshape(-1).clamp(min=0))
    keep = labels != -100
    return loss, (logits.argmax(-1)[keep] == labels[keep]).float().mean()


def acc_all_positions(logits, labels):
    V = logits.shape[-1]
    loss = F.cross_entropy(logits.reshape(-1, V), labels.reshape(-1))
    return loss, (logits.argmax(-1) == labels).float().mean()


def loss_sum(logits, labels):
    keep = labels != -100
    return F.cross_entropy(logits[keep], labels[keep], reduction="sum"), (logits[keep].argmax(-1) == labels[keep]).float().mean()


def loss_after_softmax(logits, labels):
    keep = labels != -100
    return F.cross_entropy(logits[keep].softmax(-1), labels[keep]), (logits[keep].argmax(-1) == labels[keep]).float().mean()


def loss_zeroed_mean(logits, labels):
    V = logits.shape[-1]
    keep = (labels != -100).reshape(-1)
    per = F.cross_entropy(logits.reshape(-1, V), labels.reshape(-1).clamp(min=0), reduction="none")
    return (per * keep).mean(), (logits.argmax(-1)[labels != -100] == labels[labels != -100]).float().mean()


def loss_item(logits, labels):
    loss, acc = ref.mlm_loss(logits, labels)
    return torch.tensor(loss.item()), acc


@pytest.mark.parametrize("fn,fragment", [
    (loss_all_positions, "averaged over all positions"),
    (acc_all_positions, "accuracy is computed over all positions"),
    (loss_sum, "take the mean"),
    (loss_after_softmax, "softmax is applied before"),
    (loss_zeroed_mean, "divide by the number of picked"),
    (lambda lg, lb: ref.mlm_loss(lg, lb)[0], "should return a pair (loss, accuracy)"),
    (loss_item, "does not carry gradients"),
])
def test_mlm_loss_mistakes(fn, fragment):
    fails_with(C.check_mlm_loss, fn, fragment)


# ------------------------------------------------------------------------------------------------ classifier head
class Head(nn.Module):
    def __init__(self, d_model, num_classes, dropout=0.1):
        super().__init__()
        self.pooler = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(d_model, num_classes)

    def forward(self, hidden):
        return self.classifier(self.dropout(torch.tanh(self.pooler(hidden[:, 0]))))


def head_variant(forward):
    return type("HeadVariant", (Head,), {"forward": forward})


def test_head_reference_passes(capsys):
    C.check_classifier_head(Head)
    assert "✓ ClassifierHead" in capsys.readouterr().out


@pytest.mark.parametrize("forward,fragment", [
    (lambda s, h: s.classifier(s.dropout(torch.tanh(s.pooler(h[:, -1])))), "pools the last position"),
    (lambda s, h: s.classifier(s.dropout(torch.tanh(s.pooler(h.mean(1))))), "pools the mean"),
    (lambda s, h: s.classifier(s.dropout(s.pooler(h[:, 0]))), "tanh after the pooler is missing"),
    (lambda s, h: s.classifier(s.dropout(h[:, 0])), "pooler (dense layer + tanh) is skipped"),
    (lambda s, h: s.classifier(s.dropout(torch.tanh(s.pooler(h[:, 0])))).softmax(-1), "returns probabilities"),
    (lambda s, h: s.classifier(s.dropout(torch.tanh(s.pooler(h[0])))), "hidden[0]"),
    (lambda s, h: s.classifier(torch.tanh(s.pooler(h[:, 0]))), "apply self.dropout"),
])
def test_head_mistakes(forward, fragment):
    fails_with(C.check_classifier_head, head_variant(forward), fragment)


def test_not_implemented():
    for check in (C.check_mask_tokens, C.check_mlm_loss):
        fails_with(check, not_implemented, "not implemented yet")

    class Todo(Embeddings):
        def forward(self, tokens, segments=None):
            raise NotImplementedError()

    class TodoHead(Head):
        def forward(self, hidden):
            raise NotImplementedError()

    fails_with(C.check_embeddings, Todo, "not implemented yet")
    fails_with(C.check_classifier_head, TodoHead, "not implemented yet")


def test_pretraining_helps_check():
    C.check_pretraining_helps(0.8, 0.5)
    with pytest.raises(CheckFailed, match="a gap of"):
        C.check_pretraining_helps(0.55, 0.5)
