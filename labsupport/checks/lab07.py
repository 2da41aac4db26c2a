"""Self-checks of Lab 7, BERT: embeddings, masked-language-model masking and loss, the [CLS] classifier head.

Each check runs the student's code on fresh inputs, compares it with the reference twin in
:mod:`labsupport.models.bert` and recognises the usual mistakes:

* embeddings: the segment or the position embedding left out, positions looked up by token id instead of by
  position, no LayerNorm, the LayerNorm applied before the positions are added, ``segments=None`` not handled;
* mask_tokens: special tokens (padding, [CLS], [SEP]) picked, every position labelled (the loss would then count
  unmasked tokens), labels holding the masked input instead of the original token, the 15% applied after the
  80% (12% picked), every picked token replaced by [MASK] (no 80/10/10), the 80/10/10 shares wrong, random
  replacements that are special tokens, tokens changed that were not picked, the input tensor modified in place,
  ``mask_prob`` ignored;
* mlm_loss: the loss or the accuracy averaged over all positions instead of the picked ones, a sum instead of a
  mean, a softmax applied before the cross-entropy, only the loss returned;
* classifier head: the last position or the mean over positions pooled instead of [CLS] (position 0), the batch
  axis indexed (``hidden[0]``), the tanh or the pooler left out, probabilities returned instead of logits.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from labsupport.checks import CheckFailed, call, compare, describe_value, expect, one_thread, passed
from labsupport.models import bert as ref

SPECIAL_IDS = (0, 1, 2, 3, 4)  # <pad>, <bos> (= [CLS]), <eos> (= [SEP]), <unk>, <mask>
PAD, CLS, SEP, UNK, MASK = SPECIAL_IDS


# ----------------------------------------------------------------------------------------------------------------
# Exercise: the embeddings
# ----------------------------------------------------------------------------------------------------------------
@one_thread
def check_embeddings(embeddings_cls) -> None:
    """Check a ``BertEmbeddings(vocab_size, max_len, d_model, num_segments=2, dropout=0.1)`` class whose
    ``forward(tokens, segments=None)`` returns ``norm(token[t] + segment[s] + position[0..L-1])`` (then dropout)."""
    __tracebackhide__ = True
    torch.manual_seed(0)
    V, max_len, D = 12, 12, 16
    emb = call(embeddings_cls, "BertEmbeddings", V, max_len, D, 2, 0.0)
    for name in ("token", "segment", "position", "norm"):
        expect(hasattr(emb, name), f"BertEmbeddings has no attribute `{name}`: keep the layers created in __init__.")
    emb.eval()
    with torch.no_grad():  # visible, distinct values (the default LayerNorm starts at weight 1, bias 0)
        for p in emb.parameters():
            p.normal_()
    tokens = torch.randint(0, V, (3, 7), generator=torch.Generator().manual_seed(1))
    segments = torch.zeros_like(tokens)
    segments[:, 4:] = 1
    tok, seg, pos = emb.token.weight[tokens], emb.segment.weight[segments], emb.position.weight[:7]
    norm = emb.norm
    with torch.no_grad():
        want = norm(tok + seg + pos)
        got = call(lambda t, s: emb(t, s), "BertEmbeddings.forward", tokens, segments)
        compare("BertEmbeddings(tokens (3, 7), segments (3, 7))", got, want, atol=1e-5, hints=[
            (norm(tok + pos), "The segment embedding is missing: add self.segment(segments)."),
            (norm(tok + seg), "The position embedding is missing: add self.position(torch.arange(L)) "
                              "(the same vector for position i in every sequence)."),
            (norm(tok + seg + emb.position.weight[tokens]),
             "The positions are looked up with the token ids; look them up with 0, 1, ..., L-1 (torch.arange(L))."),
            (tok + seg + pos, "The LayerNorm is missing: BERT normalises the sum of the three embeddings."),
            (norm(tok + seg) + pos, "The LayerNorm comes before the positions are added; normalise the full sum."),
            (norm(tok) + seg + pos, "Only the token embedding is normalised; normalise the sum of all three."),
        ])
        got = call(lambda t: emb(t), "BertEmbeddings.forward", tokens)
        compare("BertEmbeddings(tokens) with segments=None (all sentence A)", got, norm(tok + emb.segment.weight[0] + pos),
                atol=1e-5, hints=[
                    (norm(tok + pos), "With segments=None, use segment 0 for every token (torch.zeros_like(tokens)); "
                                      "the segment vector of sentence A is still added."),
                ])
        short = tokens[:, :3]
        compare("BertEmbeddings on a shorter batch (3, 3)", call(lambda t: emb(t), "BertEmbeddings.forward", short),
                norm(emb.token.weight[short] + emb.segment.weight[0] + emb.position.weight[:3]), atol=1e-5)
    passed("BertEmbeddings")


# ----------------------------------------------------------------------------------------------------------------
# Exercise: BERT's masking
# ----------------------------------------------------------------------------------------------------------------
def _mlm_batch(B: int = 400, L: int = 40, V: int = 60, seed: int = 0) -> torch.Tensor:
    """Sequences ``[CLS] w w ... w [SEP] <pad> ...`` of random lengths, ordinary ids in ``5..V-1``."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(len(SPECIAL_IDS), V, (B, L), generator=g)
    lengths = torch.randint(L // 2, L + 1, (B,), generator=g)
    pos = torch.arange(L)[None, :]
    tokens[pos >= lengths[:, None]] = PAD
    tokens[:, 0] = CLS
    tokens[torch.arange(B), lengths - 1] = SEP
    return tokens


@one_thread
def check_mask_tokens(mask_tokens) -> None:
    """Check ``mask_tokens(tokens, mask_id, vocab_size, special_ids, mask_prob=0.15, generator=None)``."""
    __tracebackhide__ = True
    V = 60
    tokens = _mlm_batch(V=V)
    original = tokens.clone()
    got = call(mask_tokens, "mask_tokens", tokens, MASK, V, SPECIAL_IDS, 0.15, torch.Generator().manual_seed(3))
    expect(isinstance(got, (tuple, list)) and len(got) == 2,
           f"mask_tokens should return a pair (inputs, labels), but it returned {describe_value(got)}.")
    inputs, labels = got
    for name, t in (("inputs", inputs), ("labels", labels)):
        expect(isinstance(t, torch.Tensor), f"`{name}` should be a torch.Tensor, but it is {describe_value(t)}.")
        expect(t.shape == tokens.shape, f"`{name}` should have the shape of `tokens` {tuple(tokens.shape)}, "
                                        f"but it has shape {tuple(t.shape)}.")
        expect(t.dtype == torch.long, f"`{name}` should hold integer ids (torch.long), but its dtype is {t.dtype}.")
    expect(torch.equal(tokens, original),
           "mask_tokens changed the `tokens` tensor it was given (in place). Work on a copy (tokens.clone()) or "
           "build new tensors with torch.where: the caller still needs the original batch.")
    special = torch.zeros_like(tokens, dtype=torch.bool)
    for s in SPECIAL_IDS:
        special |= tokens == s
    picked = labels != ref.IGNORE_INDEX
    expect(bool((~picked).any()),
           "Every position has a label, so the loss would be computed on all tokens, most of which the model can "
           f"see unchanged. Put {ref.IGNORE_INDEX} (IGNORE_INDEX) in `labels` wherever a token was not picked.")
    if bool((picked & special).any()):
        which = sorted({int(t) for t in tokens[picked & special].unique()})
        names = {PAD: "<pad>", CLS: "[CLS] (<bos>)", SEP: "[SEP] (<eos>)", UNK: "<unk>", MASK: "<mask>"}
        raise CheckFailed(
            "Special tokens were picked for masking: " + ", ".join(names.get(w, str(w)) for w in which) + ". "
            "Only ordinary tokens may be picked: build a boolean `special` mask (tokens equal to any of "
            "special_ids) and pick among ~special."
        )
    if bool((labels[picked] == inputs[picked]).all()) and bool((inputs[picked] == MASK).all()):
        raise CheckFailed("`labels` holds the masked inputs ([MASK]) instead of the original tokens: the label of "
                          "a picked position is the token that was there before masking.")
    n_ordinary = int((~special).sum())
    rate = int(picked.sum()) / n_ordinary
    if abs(rate - 0.15 * 0.8) < 0.015:
        raise CheckFailed(f"{100 * rate:.1f}% of the ordinary tokens were picked, about 15% x 80%: it seems only the "
                          "[MASK]ed ones are labelled. Pick 15%, label all picked tokens, then decide for each "
                          "picked one: [MASK] (80%), random token (10%) or unchanged (10%).")
    expect(bool((labels[picked] == tokens[picked]).all()),
           "At the picked positions `labels` should hold the original token (the one the model must guess).")
    expect(bool((inputs[~picked] == tokens[~picked]).all()),
           "Tokens that were not picked were changed in `inputs`; only picked positions may be replaced.")
    expect(abs(rate - 0.15) < 0.02,
           f"{100 * rate:.1f}% of the ordinary tokens were picked; expected about 15% (mask_prob). Pick each ordinary "
           "token independently with probability mask_prob (torch.rand(...) < mask_prob).")
    masked = picked & (inputs == MASK)
    changed = picked & (inputs != tokens) & (inputs != MASK)
    kept = picked & (inputs == tokens)
    n = int(picked.sum())
    fm, fr, fk = int(masked.sum()) / n, int(changed.sum()) / n, int(kept.sum()) / n
    shares = f"(measured: {100 * fm:.0f}% [MASK], {100 * fr:.0f}% random, {100 * fk:.0f}% unchanged)"
    if fm > 0.97:
        raise CheckFailed(f"Every picked token became [MASK] {shares}. BERT replaces 80% of the picked tokens by "
                          "[MASK], 10% by a random token and leaves 10% unchanged, so the model cannot rely on "
                          "seeing [MASK] at exactly the positions it is tested on.")
    bad_random = changed & torch.isin(inputs, torch.tensor(SPECIAL_IDS))
    expect(not bool(bad_random.any()),
           "Some random replacements are special tokens (padding, [CLS], ...). Draw the random tokens from the "
           "ordinary ids only (those not in special_ids).")
    expect(abs(fm - 0.8) < 0.04 and abs(fr - 0.1) < 0.03 and abs(fk - 0.1) < 0.03,
           f"The shares of the picked tokens are off {shares}; expected 80% [MASK], 10% random, 10% unchanged. "
           "Draw one uniform number u per position: u < 0.8 -> [MASK], 0.8 <= u < 0.9 -> random, else keep.")
    got = call(mask_tokens, "mask_tokens", tokens, MASK, V, SPECIAL_IDS, 0.5, torch.Generator().manual_seed(4))
    rate = int((got[1] != ref.IGNORE_INDEX).sum()) / n_ordinary
    expect(abs(rate - 0.5) < 0.03, f"With mask_prob=0.5, {100 * rate:.0f}% of the ordinary tokens were picked: "
                                   "use the mask_prob argument instead of a fixed 0.15.")
    passed("mask_tokens", f"{100 * fm:.0f}% [MASK], {100 * fr:.0f}% random, {100 * fk:.0f}% unchanged")


# ----------------------------------------------------------------------------------------------------------------
# Exercise: the masked-LM loss
# ----------------------------------------------------------------------------------------------------------------
@one_thread
def check_mlm_loss(mlm_loss) -> None:
    """Check ``mlm_loss(logits (B, L, V), labels (B, L)) -> (loss, accuracy)`` over the picked positions only."""
    __tracebackhide__ = True
    g = torch.Generator().manual_seed(5)
    B, L, V = 4, 9, 11
    logits = torch.randn(B, L, V, generator=g) * 2
    targets = torch.randint(0, V, (B, L), generator=g)
    picked = torch.rand(B, L, generator=g) < 0.3
    picked[0, 1] = True
    # make a few picked predictions right, so the accuracy is neither 0 nor 1
    right = picked & (torch.rand(B, L, generator=g) < 0.5)
    targets = torch.where(right, logits.argmax(-1), targets)
    labels = torch.where(picked, targets, torch.full_like(targets, ref.IGNORE_INDEX))
    got = call(mlm_loss, "mlm_loss", logits, labels)
    expect(isinstance(got, (tuple, list)) and len(got) == 2,
           f"mlm_loss should return a pair (loss, accuracy), but it returned {describe_value(got)}.")
    loss, acc = got
    want_loss, want_acc = ref.mlm_loss(logits, labels)
    flat, all_targets = logits.reshape(-1, V), labels.reshape(-1).clamp(min=0)
    compare("the loss (first item)", loss if isinstance(loss, torch.Tensor) else torch.tensor(float(loss)), want_loss,
            atol=1e-5, hints=[
                (F.cross_entropy(flat, all_targets), "The loss is averaged over all positions; only the picked "
                 f"positions (label != {ref.IGNORE_INDEX}) count."),
                (F.cross_entropy(logits[picked], labels[picked], reduction="sum"),
                 "It is the sum over the picked positions; take the mean."),
                (F.cross_entropy(logits[picked].softmax(-1), labels[picked]),
                 "A softmax is applied before the cross-entropy; F.cross_entropy expects raw logits."),
                ((F.cross_entropy(flat, all_targets, reduction="none") * picked.reshape(-1)).mean(),
                 "The unpicked positions are zeroed but still counted in the mean: divide by the number of picked "
                 "positions, not by B * L."),
            ])
    expect(isinstance(loss, torch.Tensor) and loss.dim() == 0,
           f"The loss should be a scalar tensor (0 dimensions), but it is {describe_value(loss)}.")
    acc_value = float(acc)
    want = float(want_acc)
    all_acc = float((logits.argmax(-1) == labels).float().mean())
    if abs(acc_value - want) > 1e-5:
        if abs(acc_value - all_acc) < 1e-5:
            raise CheckFailed("The accuracy is computed over all positions (the unpicked ones, labelled "
                              f"{ref.IGNORE_INDEX}, count as wrong); compute it over the picked positions only.")
        raise CheckFailed(f"The accuracy (second item) should be {want:.4f} (the share of picked positions where the "
                          f"largest logit is the label), but it is {acc_value:.4f}.")
    # gathered inputs: (N, V) logits with (N,) labels
    got = call(mlm_loss, "mlm_loss", logits[picked], labels[picked])
    compare("mlm_loss on gathered logits (N, V) and labels (N,) (loss)", got[0], want_loss, atol=1e-5)
    # a trainable input: the loss must carry gradients
    x = logits.clone().requires_grad_(True)
    loss = call(mlm_loss, "mlm_loss", x, labels)[0]
    expect(isinstance(loss, torch.Tensor) and loss.requires_grad,
           "The loss does not carry gradients (did you call .item() or build it from numbers?). Return a tensor.")
    passed("mlm_loss", f"loss {float(want_loss):.3f}, accuracy {want:.3f} on {int(picked.sum())} positions")


# ----------------------------------------------------------------------------------------------------------------
# Exercise: the [CLS] classifier head
# ----------------------------------------------------------------------------------------------------------------
@one_thread
def check_classifier_head(head_cls) -> None:
    """Check ``ClassifierHead(d_model, num_classes, dropout)`` whose ``forward(hidden (B, L, D))`` returns
    ``classifier(dropout(tanh(pooler(hidden[:, 0]))))`` of shape ``(B, num_classes)``."""
    __tracebackhide__ = True
    torch.manual_seed(0)
    B, L, D, C = 4, 7, 16, 3
    head = call(head_cls, "ClassifierHead", D, C, 0.1)
    for name in ("pooler", "classifier"):
        expect(hasattr(head, name), f"ClassifierHead has no attribute `{name}`: keep the layers created in __init__.")
    head.eval()
    hidden = torch.randn(B, L, D, generator=torch.Generator().manual_seed(6))
    pool, cls = head.pooler, head.classifier
    with torch.no_grad():
        got = call(head, "ClassifierHead.forward", hidden)
        want = cls(torch.tanh(pool(hidden[:, 0])))
        if isinstance(got, torch.Tensor) and got.dim() >= 2 and got.shape[0] == L and got.shape[0] != B:
            raise CheckFailed("The output has one row per position, not per sequence: `hidden[0]` is the first "
                              "sequence of the batch; the [CLS] position of every sequence is `hidden[:, 0]`.")
        compare("ClassifierHead(hidden (4, 7, 16))", got, want, atol=1e-5, hints=[
            (cls(torch.tanh(pool(hidden[:, -1]))), "It pools the last position; BERT classifies from the [CLS] token "
                                                   "at position 0 (hidden[:, 0])."),
            (cls(torch.tanh(pool(hidden.mean(1)))), "It pools the mean over positions; this exercise uses the [CLS] "
                                                    "token at position 0 (hidden[:, 0])."),
            (cls(pool(hidden[:, 0])), "The tanh after the pooler is missing."),
            (cls(hidden[:, 0]), "The pooler (dense layer + tanh) is skipped."),
            (cls(torch.tanh(pool(hidden[:, 0]))).softmax(-1), "It returns probabilities; return the logits "
                                                              "(F.cross_entropy applies the softmax itself)."),
        ])
    head.train()
    out = call(head, "ClassifierHead.forward", hidden)
    expect(isinstance(out, torch.Tensor) and out.requires_grad,
           "In training mode the output should carry gradients (no torch.no_grad() or .detach() inside forward).")
    expect(_uses_dropout(head, hidden),
           "In training mode the output never changes between calls: apply self.dropout to the pooled vector "
           "(dropout is only active in model.train() mode).")
    passed("ClassifierHead")


def _uses_dropout(head: nn.Module, hidden: torch.Tensor) -> bool:
    """True when two training-mode calls give different outputs (dropout is active somewhere)."""
    with torch.no_grad():
        outs = [head(hidden) for _ in range(3)]
    return any(not torch.allclose(outs[0], o) for o in outs[1:])


# ----------------------------------------------------------------------------------------------------------------
# The result of the lab
# ----------------------------------------------------------------------------------------------------------------
def check_pretraining_helps(pretrained_acc: float, scratch_acc: float, margin: float = 0.10) -> None:
    """The lab's claim: with the same labelled examples and fine-tuning budget, the pretrained encoder is better on
    held-out data than the same encoder trained from scratch, by at least ``margin`` (absolute accuracy)."""
    __tracebackhide__ = True
    gap = pretrained_acc - scratch_acc
    expect(gap >= margin, f"The pretrained model reached {100 * pretrained_acc:.1f}% and the one trained from scratch "
                          f"{100 * scratch_acc:.1f}%: a gap of {100 * gap:.1f} points, less than {100 * margin:.0f}.")
    passed("pretraining helps", f"{100 * pretrained_acc:.1f}% vs {100 * scratch_acc:.1f}% from scratch")


__all__ = ["check_embeddings", "check_mask_tokens", "check_mlm_loss", "check_classifier_head",
           "check_pretraining_helps", "SPECIAL_IDS"]
