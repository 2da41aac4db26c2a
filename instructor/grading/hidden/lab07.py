"""Hidden tests of Lab 7 (BERT): the self-checks on other inputs, then the old hidden cases through handles."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from instructor.grading.hidden import hidden_test
from labsupport.checks import lab07 as checks
from labsupport.checks.core import build, call, call_with, compare, expect, method, probe
from labsupport.models import bert as ref


@hidden_test("test_embeddings", twins=["labsupport.models.bert:BertEmbeddings.forward"])
def test_embeddings(student, seed):
    checks.check_embeddings(student.BertEmbeddings, seed=seed)
    V, max_len, D = 20, 10, 8
    emb = call(student.BertEmbeddings, "BertEmbeddings", V, max_len, D, 2, 0.0)
    state = checks.embeddings_state(seed + 1, V, max_len, D)
    method(emb, "load_state_dict", "BertEmbeddings.load_state_dict", state, strict=False)
    probe(emb, "set_training", False)
    twin = ref.BertEmbeddings(V, max_len, D, 2, 0.0)
    twin.load_state_dict(state)
    twin.eval()
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, V, (2, 6), generator=g)
    with torch.no_grad():
        for inputs, what in (((tokens,), "tokens (2, 6)"), ((tokens, torch.ones_like(tokens)), "all in segment 1"),
                             ((torch.full((1, 10), 7),), "one token repeated over all 10 positions")):
            compare(f"BertEmbeddings(vocab 20, max_len 10, d_model 8) on {what}",
                    call(emb, "BertEmbeddings", *inputs), twin(*inputs), atol=1e-5)


@hidden_test("test_mask_tokens", twins=["labsupport.models.bert:mask_tokens"])
def test_mask_tokens(student, seed):
    checks.check_mask_tokens(student.mask_tokens, seed=seed)
    fn = student.mask_tokens
    t = torch.randint(5, 30, (300, 50), generator=torch.Generator().manual_seed(seed))
    t[:, 0], t[:, -1], t[:, 40:-1] = 1, 2, 0

    def masked(p, s):
        g = build(fn, torch.Generator)
        method(g, "manual_seed", "torch.Generator.manual_seed", s)
        got = call_with(fn, "mask_tokens", (t, 4, 30, (0, 1, 2, 3, 4), p, g))
        expect(isinstance(got, tuple) and len(got) == 2 and all(isinstance(x, torch.Tensor) for x in got),
               "mask_tokens must return a pair of tensors (inputs, labels).")
        return got

    inputs, labels = masked(0.15, seed + 1)
    picked = labels != ref.IGNORE_INDEX
    expect(not bool(picked[:, 0].any() or picked[:, 40:].any()), "[CLS], [SEP] and padding must never be picked.")
    rate = float(picked.double().sum()) / (300 * 39)
    expect(0.13 < rate < 0.17, f"About 15% of the ordinary tokens should be picked, {100 * rate:.1f}% were.")
    share = float((inputs[picked] == 4).double().mean())
    expect(0.75 < share < 0.85, f"About 80% of the picked tokens should become [MASK], {100 * share:.1f}% did.")
    inputs, labels = masked(0.0, seed + 2)
    expect(torch.equal(inputs, t) and bool((labels == ref.IGNORE_INDEX).all()),
           "With mask_prob=0 nothing may change: inputs equal to tokens, every label IGNORE_INDEX.")


@hidden_test("test_mlm_loss", twins=["labsupport.models.bert:mlm_loss"])
def test_mlm_loss(student, seed):
    checks.check_mlm_loss(student.mlm_loss, seed=seed)
    fn = student.mlm_loss
    logits = torch.zeros(1, 3, 4)
    logits[0, 0, 2] = 5.0
    for labels, acc, what in (([[2, -100, -100]], 1.0, "one picked position, predicted right"),
                              ([[2, 1, -100]], 0.5, "two picked positions, one right (all scores 0 at the second)")):
        labels = torch.tensor(labels)
        got = call(fn, "mlm_loss", logits, labels)
        expect(isinstance(got, tuple) and len(got) == 2, "mlm_loss must return a pair (loss, accuracy).")
        keep = labels[0] != ref.IGNORE_INDEX
        compare(f"the loss ({what})", got[0], F.cross_entropy(logits[0, keep], labels[0, keep]), atol=1e-6)
        compare(f"the accuracy ({what})", got[1], torch.tensor(acc), atol=1e-6, dtype=False)


@hidden_test("test_classifier_head", twins=["labsupport.models.bert:ClassifierHead.forward",
                                            "labsupport.models.bert:ClassifierHead.pool"])
def test_classifier_head(student, seed):
    checks.check_classifier_head(student.ClassifierHead, seed=seed)
    head = call(student.ClassifierHead, "ClassifierHead", 6, 2, 0.0)
    state = checks.head_state(seed + 1, 6, 2)
    method(head, "load_state_dict", "ClassifierHead.load_state_dict", state, strict=False)
    probe(head, "set_training", False)
    twin = ref.ClassifierHead(6, 2, 0.0)
    twin.load_state_dict(state)
    twin.eval()
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 5, 6, generator=g)
    y = x.clone()
    y[:, 1:] = torch.randn(3, 4, 6, generator=g)
    with torch.no_grad():
        out = call(head, "ClassifierHead", x)
        compare("ClassifierHead(6, 2) on hidden (3, 5, 6)", out, twin(x), atol=1e-5)
        compare("the logits when only positions 1-4 changed (only position 0 may matter)",
                call(head, "ClassifierHead", y), out, atol=1e-5)
