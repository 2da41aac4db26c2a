"""Self-checks of Lab 7, BERT: embeddings, masked-language-model masking and loss, the [CLS] classifier head.

Each check runs the student's code on inputs made from ``seed`` (the notebook uses the default, grading uses
others), compares it with the reference twin in :mod:`labsupport.models.bert` and recognises the typical mistakes
of :data:`MISTAKES` (each one the reference *with that mistake*, plus what to tell the student):

* embeddings (weights the check loads; eval mode and training mode with a fixed seed): the segment or the
  position embedding left out, positions looked up by token id, no LayerNorm or one in the wrong place,
  ``segments=None`` not handled, the dropout forgotten or before the LayerNorm;
* mask_tokens (by the structure and the shares of many masked tokens, with the lab's ids and with other special
  ids, ``mask_id``, ``vocab_size`` and ``mask_prob``, and by reproducibility with the ``generator``): special tokens
  picked, every position labelled, labels that are not the original tokens, only the [MASK]ed ones labelled,
  ``mask_prob`` or ``mask_id`` ignored, no 80/10/10, random replacements that are special or not drawn from the
  whole vocabulary, unpicked tokens changed, the generator ignored or replaced;
* mlm_loss: the loss or the accuracy over all positions, a sum, a softmax before the cross-entropy, zeroed
  positions counted in the mean, label 0 dropped, numbers instead of scalar tensors, only the loss returned;
* classifier head (eval and training mode): another position or the mean pooled, the batch axis indexed, the tanh
  or the pooler left out, another activation, probabilities returned, the dropout forgotten or misplaced.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from labsupport.checks.core import (
    CheckFailed,
    Handle,
    Mistake,
    build,
    call,
    call_with,
    candidates,
    compare,
    describe_value,
    error_hints,
    expect,
    method,
    passed,
    probe,
)
from labsupport.device import torch_threads
from labsupport.models import bert as ref

__all__ = ["MISTAKES", "CHECKS", "SPECIAL_IDS", "check_embeddings", "check_mask_tokens", "check_mlm_loss",
           "check_classifier_head", "check_pretraining_helps", "embeddings_state", "head_state", "mlm_batch"]

SPECIAL_IDS = (0, 1, 2, 3, 4)  # <pad>, <bos> (= [CLS]), <eos> (= [SEP]), <unk>, <mask>
PAD, CLS, SEP, UNK, MASK = SPECIAL_IDS
IGNORE = ref.IGNORE_INDEX


def _gen(seed: int, case: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1009 + case)


def _module(cls, name: str, args: tuple, shapes: dict[str, tuple]) -> Handle:
    """The student's ``cls(*args)`` (a handle), after checking that it is a module with the parameters the
    exercise's ``__init__`` creates."""
    m = call(cls, name, *args)
    expect(isinstance(m, Handle) and m.is_module,
           f"`{name}(...)` should make a torch module (an nn.Module), but it made {describe_value(m)}.")
    params = probe(m, "parameters")
    missing = [n for n in shapes if n not in params]
    expect(not missing, f"{name} has no parameter(s) {', '.join(missing)}: keep the layers created in __init__ "
                        "with their names.")
    for n, shape in shapes.items():
        expect(tuple(params[n].shape) == shape, f"{name}'s `{n}` has shape {tuple(params[n].shape)}; expected "
                                                f"{shape} for {name}{args}: keep __init__ as given.")
    return m


def _load(m: Handle, name: str, state: dict, training: bool) -> None:
    method(m, "load_state_dict", f"{name}.load_state_dict", state, strict=False)
    probe(m, "set_training", training)


def _not_random_in_eval(m: Handle, name: str, inputs: tuple, got) -> None:
    """In eval mode two calls on the same inputs must agree (dropout is off)."""
    again = call(m, name, *inputs)
    if isinstance(got, torch.Tensor) and isinstance(again, torch.Tensor) and got.shape == again.shape and \
            not torch.equal(got, again):
        raise CheckFailed(f"In eval mode the output of {name} changes from one call to the next: dropout is active "
                          "although the module is in eval mode. Use the module's own self.dropout, which switches off "
                          "in eval mode (F.dropout would need training=self.training).")


def _module_hints(mistakes, args, state, training, inputs, seed=None):
    """``(output, message)`` of each mistaken class of ``mistakes``, built here with ``args``, loaded with
    ``state``, in ``training`` mode, on ``inputs`` (``seed``: torch's RNG right before the forward)."""
    out = []
    for m in mistakes:
        try:
            module = m.fn(*args)
            module.load_state_dict(state, strict=False)
            module.train(training)
            with torch.no_grad():
                if seed is not None:
                    torch.manual_seed(seed)
                out.append((module(*inputs), m.message))
        except Exception:  # noqa: BLE001 - a mistake that cannot handle this input gives no hint
            continue
    return out


# ----------------------------------------------------------------------------------------------------------------
# Exercise 1: the embeddings
# ----------------------------------------------------------------------------------------------------------------
class _Embeddings(ref.BertEmbeddings):
    """BertEmbeddings with a mistake, chosen by the class attributes (the defaults are right)."""

    segment_used, positions_by, norm_at, dropout_at, none_segments = True, "arange", "sum", "last", "zeros"

    def forward(self, tokens, segments=None):
        if segments is None and self.none_segments == "zeros":
            segments = torch.zeros_like(tokens)
        tok = self.token(tokens)
        seg = self.segment(segments) if segments is not None and self.segment_used else 0.0
        pos = {"arange": lambda: self.position(torch.arange(tokens.shape[1])), "none": lambda: 0.0,
               "token_ids": lambda: self.position(tokens)}[self.positions_by]()
        drop = self.dropout if self.dropout_at == "before_norm" else (lambda t: t)
        if self.norm_at == "sum":
            x = self.norm(drop(tok + seg + pos))
        elif self.norm_at == "none":
            x = tok + seg + pos
        elif self.norm_at == "before_positions":
            x = self.norm(tok + seg) + pos
        else:  # token only
            x = self.norm(tok) + seg + pos
        return self.dropout(x) if self.dropout_at == "last" else x


def _emb(**attrs):
    return type("BertEmbeddings", (_Embeddings,), attrs)


EMB_TRAINING = ("In training mode (dropout active, a fixed seed) the output differs, although it is right in eval "
                "mode: apply the module's own dropout once, to the normalised sum: return "
                "self.dropout(self.norm(x)).")

error_hints("BertEmbeddings", [
    (r"index out of range in self|index \d+ is out of bounds",
     "An embedding table was indexed with ids it does not have: token ids go to self.token, segment ids (0 or 1) "
     "to self.segment, the positions 0..L-1 (torch.arange(L)) to self.position."),
    (r"must be Tensor, not NoneType|NoneType",
     "With segments=None there are no segment ids: use segment 0 for every token, torch.zeros_like(tokens)."),
    (r"must match the size of tensor b|expanded size",
     "The three embeddings do not line up: the positions are torch.arange(L) with L = tokens.shape[1] (tokens is "
     "(B, L)), giving one (L, d_model) vector per position for every sequence."),
])


def embeddings_state(seed: int, vocab_size: int, max_len: int, d_model: int, num_segments: int = 2) -> dict:
    """Weights for a BertEmbeddings with visible, distinct values (the LayerNorm not at its 1/0 start)."""
    g = _gen(seed, 11)
    return {"token.weight": torch.randn(vocab_size, d_model, generator=g),
            "segment.weight": torch.randn(num_segments, d_model, generator=g),
            "position.weight": torch.randn(max_len, d_model, generator=g),
            "norm.weight": 0.5 + torch.rand(d_model, generator=g),
            "norm.bias": 0.1 * torch.randn(d_model, generator=g)}


def _emb_shapes(V, max_len, D, S=2):
    return {"token.weight": (V, D), "segment.weight": (S, D), "position.weight": (max_len, D),
            "norm.weight": (D,), "norm.bias": (D,)}


@torch_threads(1)
def check_embeddings(embeddings_cls, *, seed: int = 0) -> None:
    """Check a ``BertEmbeddings(vocab_size, max_len, d_model, num_segments=2, dropout=0.1)`` class whose
    ``forward(tokens, segments=None)`` returns ``dropout(norm(token[t] + segment[s] + position[0..L-1]))``, in
    eval mode and in training mode."""
    mistakes = MISTAKES["embeddings"]
    V, max_len, D, S, p = 12, 12, 16, 2, 0.3
    args = (V, max_len, D, S, p)
    emb = _module(embeddings_cls, "BertEmbeddings", args, _emb_shapes(V, max_len, D, S))
    state = embeddings_state(seed, V, max_len, D, S)
    _load(emb, "BertEmbeddings", state, training=False)
    twin = ref.BertEmbeddings(*args)
    twin.load_state_dict(state)
    twin.eval()
    g = _gen(seed, 1)
    tokens = torch.randint(0, V, (3, 7), generator=g)
    segments = (torch.arange(7)[None, :] >= torch.randint(2, 6, (3, 1), generator=g)).long()
    for inputs, what in (((tokens, segments), "BertEmbeddings(tokens (3, 7), segments (3, 7))"),
                         ((tokens,), "BertEmbeddings(tokens (3, 7)) with segments=None (all sentence A)"),
                         ((tokens[:, :3],), "BertEmbeddings on a shorter batch, tokens (3, 3)")):
        got = call(emb, "BertEmbeddings", *inputs)
        _not_random_in_eval(emb, "BertEmbeddings", inputs, got)
        with torch.no_grad():
            want = twin(*inputs)
        order = mistakes if len(inputs) == 2 else sorted(mistakes, key=lambda m: m.name != "segments_none_skipped")
        compare(what, got, want, atol=1e-5, hints=_module_hints(order, args, state, False, inputs))
    # training mode: the same seed must give the same dropout mask in the same place
    probe(emb, "set_training", True)
    twin.train()
    s = seed + 3
    got = call_with(emb, "BertEmbeddings", (tokens, segments), seed=s)
    with torch.no_grad():
        torch.manual_seed(s)
        want = twin(tokens, segments)
    what = f"BertEmbeddings(tokens, segments) in training mode (dropout {p}, a fixed seed)"
    hints = _module_hints(mistakes, args, state, True, (tokens, segments), seed=s)
    try:
        compare(what, got, want, atol=1e-5, hints=hints)
    except CheckFailed as err:
        if "is not right yet" in err.message:
            raise
        raise CheckFailed(f"{EMB_TRAINING}\n({err.message})") from None
    passed("BertEmbeddings")


# ----------------------------------------------------------------------------------------------------------------
# Exercise 2: BERT's masking
# ----------------------------------------------------------------------------------------------------------------
def mlm_batch(seed: int, B: int, L: int, words, pad: int, cls: int, sep: int) -> torch.Tensor:
    """Sequences ``[CLS] w w ... w [SEP] <pad> ...`` of random lengths, the words ``w`` drawn from ``words``."""
    g = _gen(seed, 21)
    words = torch.as_tensor(list(words))
    tokens = words[torch.randint(len(words), (B, L), generator=g)]
    lengths = torch.randint(L // 2, L + 1, (B,), generator=g)
    tokens[torch.arange(L)[None, :] >= lengths[:, None]] = pad
    tokens[:, 0] = cls
    tokens[torch.arange(B), lengths - 1] = sep
    return tokens


def _masker(pick_specials=False, label_all=False, labels_from_inputs=False, only_masked=False, rate=None,
            fixed_prob=False, shares=(0.8, 0.1), random_ids="ordinary", change_unpicked=False, fixed_mask_id=False,
            use_generator=True, own_generator=False):
    """``mask_tokens`` with a mistake (the defaults are right)."""
    def mask_tokens(tokens, mask_id, vocab_size, special_ids, mask_prob=0.15, generator=None):
        gen = torch.Generator().manual_seed(0) if own_generator else (generator if use_generator else None)
        p = 0.15 if fixed_prob else (rate if rate is not None else mask_prob)
        special = torch.zeros_like(tokens, dtype=torch.bool)
        for s in special_ids:
            special |= tokens == s
        picked = torch.rand(tokens.shape, generator=gen) < p
        if not pick_specials:
            picked &= ~special
        u = torch.rand(tokens.shape, generator=gen)
        if random_ids == "ordinary":
            pool = torch.tensor([i for i in range(vocab_size) if i not in set(special_ids)])
        elif random_ids == "any":
            pool = torch.arange(vocab_size)
        elif random_ids == "after_specials":
            pool = torch.arange(len(special_ids), vocab_size)
        else:  # up to the largest id of the batch
            pool = torch.tensor([i for i in range(int(tokens.max()) + 1) if i not in set(special_ids)])
        rnd = pool[torch.randint(len(pool), tokens.shape, generator=gen)]
        m, r = shares
        inputs = tokens.clone()
        inputs[picked & (u < m)] = 4 if fixed_mask_id else mask_id
        swap = picked & (u >= m) & (u < m + r)
        inputs[swap] = rnd[swap]
        if change_unpicked:
            inputs[~picked & ~special & (u < 0.05)] = mask_id
        keep = picked & (u < m) if only_masked else picked
        labels = torch.where(keep, inputs if labels_from_inputs else tokens, torch.full_like(tokens, IGNORE))
        if label_all:
            labels = tokens.clone()
        return inputs, labels
    return mask_tokens


LABEL_ALL = ("Every position has a label, so the loss would also count the tokens the model sees unchanged. Put "
             f"IGNORE_INDEX ({IGNORE}) in `labels` wherever a token was not picked.")
SPECIAL_PICKED = ("Special tokens were picked for masking; only ordinary tokens may be picked: build a boolean "
                  "`special` mask (tokens equal to any of special_ids) and pick among ~special.")
LABELS_MASKED = ("`labels` holds the masked inputs ([MASK]) instead of the original tokens: the label of a picked "
                 "position is the token that was there before masking.")
ONLY_MASKED = ("Only the [MASK]ed tokens are labelled (about mask_prob x 80% of the ordinary tokens are): pick "
               "mask_prob of them, label ALL picked tokens, then decide for each picked one: [MASK] (80%), random "
               "token (10%) or unchanged (10%).")
LABELS_NOT_ORIGINAL = "At the picked positions `labels` should hold the original token (the one the model must guess)."
UNPICKED_CHANGED = "Tokens that were not picked were changed in `inputs`; only picked positions may be replaced."
PROB_IGNORED = ("The share of picked tokens does not follow mask_prob (about 15% were picked): use the mask_prob "
                "argument instead of a fixed 0.15.")
RATE_OFF = ("The share of picked ordinary tokens is off: pick each ordinary token independently with probability "
            "mask_prob (torch.rand(tokens.shape, generator=generator) < mask_prob).")
ALL_MASK = ("Every picked token became [MASK]. BERT replaces 80% of the picked tokens by [MASK], 10% by a random "
            "token and leaves 10% unchanged, so the model cannot rely on seeing [MASK] exactly where it is tested.")
MASK_ID_IGNORED = ("The picked tokens were not replaced by `mask_id`: use the mask_id argument (the [MASK] id is "
                   "not always 4).")
RANDOM_SPECIAL = ("Some random replacements are special tokens: draw the random tokens from the ordinary ids only "
                  "(the ids in range(vocab_size) that are not in special_ids).")
RANDOM_RANGE = ("The random replacements never use the ordinary ids that do not occur in the batch: draw them "
                "uniformly from all ordinary ids of range(vocab_size).")
SHARES_OFF = ("The shares of the picked tokens are off; expected 80% [MASK], 10% random, 10% unchanged. Draw one "
              "uniform number u per position: u < 0.8 -> [MASK], 0.8 <= u < 0.9 -> random, else keep.")
MASK_GEN_IGNORED = ("The masks do not come from `generator`: with the same generator seed they change when the "
                    "global random state changes. Pass generator=generator to every torch.rand / torch.randint call.")
MASK_GEN_OWN = ("The masks stay the same when the generator you are given is seeded differently: use the "
                "`generator` argument as it is (do not make or reseed a generator inside the function).")

error_hints("mask_tokens", [
    (r"not implemented for 'Long'|rand_like",
     "torch.rand_like(tokens) needs a float tensor: draw with torch.rand(tokens.shape, generator=generator)."),
    (r"unexpected keyword argument 'generator'",
     "That random function takes no generator: use torch.rand(shape, generator=generator) and "
     "torch.randint(low, high, shape, generator=generator)."),
    (r"'(list|tuple)' object has no attribute|unsupported operand type\(s\).*(list|tuple)",
     "special_ids may be a list or a tuple of ids: compare the tokens with each id in a loop, or use "
     "torch.isin(tokens, torch.tensor(list(special_ids)))."),
])


def _masking(what, got, tokens, mask_id, vocab_size, special_ids, p):
    """Check one ``(inputs, labels)`` result; returns the shares ``([MASK], random, unchanged)`` of the picked."""
    expect(isinstance(got, tuple) and len(got) == 2,
           f"mask_tokens should return a pair (inputs, labels), but it returned {describe_value(got)}.")
    inputs, labels = got
    for name, t in (("inputs", inputs), ("labels", labels)):
        expect(isinstance(t, torch.Tensor), f"`{name}` should be a torch.Tensor, but it is {describe_value(t)}.")
        expect(t.shape == tokens.shape, f"`{name}` should have the shape of `tokens` {tuple(tokens.shape)}, but it "
                                        f"has shape {tuple(t.shape)}.")
        expect(t.dtype == torch.long, f"`{name}` should hold integer ids (torch.long), but its dtype is {t.dtype}.")
    special = torch.isin(tokens, torch.tensor(list(special_ids)))
    picked = labels != IGNORE
    n_ordinary = int((~special).sum())
    rate = int(picked.sum()) / n_ordinary
    measured = f"({what}: {100 * rate:.1f}% of the ordinary tokens picked, mask_prob={p})"
    if p == 0:
        expect(not bool(picked.any()) and torch.equal(inputs, tokens),
               f"With mask_prob=0 nothing may be picked or changed {measured}: inputs must equal tokens and every "
               f"label be {IGNORE}.")
        return None
    expect(not bool(picked.all()), LABEL_ALL)
    if bool((picked & special).any()):
        which = sorted({int(t) for t in tokens[picked & special].unique()})
        raise CheckFailed(f"{SPECIAL_PICKED} (picked special ids: {which}, {what})")
    if bool((labels[picked] == mask_id).all()) and bool((inputs[picked] == mask_id).all()):
        raise CheckFailed(LABELS_MASKED)
    if abs(rate - 0.8 * p) < 0.015 and abs(rate - p) > 0.02:
        raise CheckFailed(f"{ONLY_MASKED} {measured}")
    expect(bool((labels[picked] == tokens[picked]).all()), LABELS_NOT_ORIGINAL)
    expect(bool((inputs[~picked] == tokens[~picked]).all()), UNPICKED_CHANGED)
    if abs(rate - p) > 0.02:
        if abs(p - 0.15) > 0.05 and abs(rate - 0.15) < 0.02:
            raise CheckFailed(f"{PROB_IGNORED} {measured}")
        raise CheckFailed(f"{RATE_OFF} {measured}")
    masked = picked & (inputs == mask_id)
    changed = picked & (inputs != tokens) & (inputs != mask_id)
    kept = picked & (inputs == tokens)
    n = int(picked.sum())
    fm, fr, fk = int(masked.sum()) / n, int(changed.sum()) / n, int(kept.sum()) / n
    shares = (f"(measured: {100 * fm:.0f}% [MASK], {100 * fr:.0f}% random, {100 * fk:.0f}% unchanged; mask_id="
              f"{mask_id}, special_ids={tuple(special_ids)})")
    if fm > 0.97:
        raise CheckFailed(f"{ALL_MASK} {shares}")
    if fm < 0.5 and int(changed.sum()) > 0:
        top = torch.bincount(inputs[changed]).max()
        if int(top) > 0.5 * int(changed.sum()):
            raise CheckFailed(f"{MASK_ID_IGNORED} {shares}")
    if bool((changed & special).any() or (changed & torch.isin(inputs, torch.tensor(list(special_ids)))).any()):
        raise CheckFailed(f"{RANDOM_SPECIAL} {shares}")
    ordinary = torch.tensor([i for i in range(vocab_size) if i not in set(special_ids)])
    absent = ordinary[~torch.isin(ordinary, tokens)]
    if len(absent) and int(changed.sum()) >= 100:
        expect(bool(torch.isin(inputs[changed], absent).any()), f"{RANDOM_RANGE} (never used: {absent.tolist()})")
    n_ord = len(ordinary)
    expect(abs(fm - 0.8) < 0.04 and abs(fr - 0.1 * (1 - 1 / n_ord)) < 0.03 and abs(fk - 0.1 - 0.1 / n_ord) < 0.03,
           f"{SHARES_OFF} {shares}")
    return fm, fr, fk


@torch_threads(1)
def check_mask_tokens(mask_tokens, *, seed: int = 0) -> None:
    """Check ``mask_tokens(tokens, mask_id, vocab_size, special_ids, mask_prob=0.15, generator=None)`` on the lab's
    ids and on other ones, and that the masks come from ``generator``."""
    def run(tokens, mask_id, V, special_ids, p, gen_seed, global_seed, generator=True):
        args = (tokens, mask_id, V, special_ids, p)
        if generator:
            g = build(mask_tokens, torch.Generator)
            method(g, "manual_seed", "torch.Generator.manual_seed", gen_seed)
            args = args + (g,)
        return call_with(mask_tokens, "mask_tokens", args, seed=global_seed)

    V = 60
    lab = mlm_batch(seed, 1000, 40, range(5, V), PAD, CLS, SEP)
    what = f"the lab's ids (mask_id={MASK}, vocab_size={V}, special_ids={SPECIAL_IDS})"
    first = run(lab, MASK, V, SPECIAL_IDS, 0.15, seed + 1, seed + 2)
    fm, fr, fk = _masking(what, first, lab, MASK, V, SPECIAL_IDS, 0.15)
    # other ids: the arguments must be used, not the lab's values
    specials, V2 = [0, 2, 5, 9], 50
    words = [i for i in range(40) if i not in specials]  # ids 40..49 never occur: random tokens must reach them
    other = mlm_batch(seed + 1, 800, 40, words, 0, 2, 9)
    _masking(f"mask_id=5, vocab_size={V2}, special_ids={specials}, mask_prob=0.3",
             run(other, 5, V2, specials, 0.3, seed + 3, seed + 4), other, 5, V2, specials, 0.3)
    _masking("mask_prob=0", run(lab[:50], MASK, V, SPECIAL_IDS, 0.0, seed + 5, seed + 6), lab[:50], MASK, V,
             SPECIAL_IDS, 0.0)
    # the generator: the same seed gives the same masks whatever the global random state, another seed others
    again = run(lab, MASK, V, SPECIAL_IDS, 0.15, seed + 1, seed + 7)
    expect(isinstance(again, tuple) and len(again) == 2 and all(isinstance(t, torch.Tensor) for t in again),
           "mask_tokens should return a pair of tensors (inputs, labels).")
    expect(torch.equal(first[0], again[0]) and torch.equal(first[1], again[1]), MASK_GEN_IGNORED)
    other_seed = run(lab, MASK, V, SPECIAL_IDS, 0.15, seed + 8, seed + 2)
    expect(not torch.equal(first[1], other_seed[1]), MASK_GEN_OWN)
    # generator=None (the default): torch's global random state
    _masking("generator=None", run(lab, MASK, V, SPECIAL_IDS, 0.15, 0, seed + 9, generator=False), lab, MASK, V,
             SPECIAL_IDS, 0.15)
    passed("mask_tokens", f"{100 * fm:.0f}% [MASK], {100 * fr:.0f}% random, {100 * fk:.0f}% unchanged")


# ----------------------------------------------------------------------------------------------------------------
# Exercise 3: the masked-LM loss
# ----------------------------------------------------------------------------------------------------------------
def _mlm(keep="not_ignore", loss_over="picked", acc_over="picked", reduction="mean", softmax=False,
         zeroed_mean=False, returns="pair", loss_item=False, acc_item=False, acc_count=False):
    """``mlm_loss`` with a mistake (the defaults are right)."""
    def mlm_loss(logits, labels):
        V = logits.shape[-1]
        flat, lab = logits.reshape(-1, V), labels.reshape(-1)
        k = lab != IGNORE if keep == "not_ignore" else lab > 0
        if zeroed_mean:
            loss = (F.cross_entropy(flat, lab.clamp(min=0), reduction="none") * k).mean()
        elif loss_over == "all":
            loss = F.cross_entropy(flat, lab.clamp(min=0))
        else:
            x = flat[k].softmax(-1) if softmax else flat[k]
            loss = F.cross_entropy(x, lab[k], reduction=reduction)
        right = (flat.argmax(-1) == lab)
        acc = right.float().mean() if acc_over == "all" else (right[k].float().sum() if acc_count
                                                               else right[k].float().mean())
        if returns == "loss":
            return loss
        return (loss.item() if loss_item else loss), (acc.item() if acc_item else acc)
    return mlm_loss


MLM_PAIR = "mlm_loss should return a pair (loss, accuracy)"
LOSS_NUMBER = ("The loss should be a scalar tensor (0-d) that carries gradients, but it is a Python number: do not "
               "call .item() or float() on it.")
ACC_NUMBER = ("The accuracy should be a scalar tensor (0-d), as the exercise asks, but it is a Python number: keep "
              "it a tensor (no .item()).")

error_hints("mlm_loss", [
    (r"Expected target size|Expected input batch_size|only batches of spatial targets",
     "F.cross_entropy takes logits (N, V) with labels (N,): flatten first, logits.reshape(-1, V) and "
     "labels.reshape(-1)."),
    (r"mean\(\): could not infer output dtype|Input dtype must be either a floating point",
     "A boolean or integer tensor has no mean: turn the comparison into floats first, (pred == labels).float()."),
    (r"shape of the mask",
     "A boolean mask must have the shape of the axes it indexes: flatten the logits to (N, V) and the labels to "
     "(N,) together before selecting the picked positions."),
])


def _scalar(what: str, value, message: str):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise CheckFailed(f"{what}: {message}")
    expect(isinstance(value, torch.Tensor), f"{what} should be a scalar tensor, but it is {describe_value(value)}.")
    expect(value.dim() == 0, f"{what} should be a scalar tensor (0 dimensions), but it is {describe_value(value)}.")


@torch_threads(1)
def check_mlm_loss(mlm_loss, *, seed: int = 0) -> None:
    """Check ``mlm_loss(logits (B, L, V), labels (B, L)) -> (loss, accuracy)`` over the picked positions only
    (also for gathered ``(N, V)`` logits with ``(N,)`` labels); the loss carries gradients."""
    mistakes = MISTAKES["mlm_loss"]
    g = _gen(seed, 5)
    B, L, V = 4, 9, 11
    logits = torch.randn(B, L, V, generator=g) * 2
    targets = torch.randint(0, V, (B, L), generator=g)
    picked = torch.rand(B, L, generator=g) < 0.3
    picked[0, 1] = picked[1, 2] = picked[2, 3] = True
    right = picked & (torch.rand(B, L, generator=g) < 0.5)  # some right predictions: accuracy neither 0 nor 1
    targets = torch.where(right, logits.argmax(-1), targets)
    targets[1, 2] = 0  # label 0 is a label like any other
    targets[2, 3] = int(logits[2, 3].argmax())
    labels = torch.where(picked, targets, torch.full_like(targets, IGNORE))

    def pair(got):
        expect(isinstance(got, tuple) and len(got) == 2, f"{MLM_PAIR}, but it returned {describe_value(got)}.")
        return got

    want_loss, want_acc = ref.mlm_loss(logits, labels)
    for what, lg, lb in ((f"({B}, {L}, {V}) logits with ({B}, {L}) labels", logits, labels),
                         (f"gathered logits ({int(picked.sum())}, {V}) with labels ({int(picked.sum())},)",
                          logits[picked], labels[picked])):
        loss, acc = pair(call(mlm_loss, "mlm_loss", lg, lb))
        cands = [(c, m) for c, m in candidates(mistakes, lg, lb) if isinstance(c, tuple) and len(c) == 2]
        _scalar(f"the loss (first item) for {what}", loss, LOSS_NUMBER)
        compare(f"the loss (first item) for {what}", loss, want_loss, atol=1e-5,
                hints=[(c[0], m) for c, m in cands])
        _scalar(f"the accuracy (second item) for {what}", acc, ACC_NUMBER)
        compare(f"the accuracy (second item) for {what}", acc, want_acc, atol=1e-6, dtype=False,
                hints=[(c[1], m) for c, m in cands])
    x = logits.clone().requires_grad_(True)
    loss = pair(call_with(mlm_loss, "mlm_loss", (x, labels), grad=True))[0]
    expect(isinstance(loss, torch.Tensor) and loss.requires_grad,
           "The loss does not carry gradients (did you call .item(), .detach() or build it from numbers?). Return the "
           "tensor F.cross_entropy gives.")
    passed("mlm_loss", f"loss {float(want_loss):.3f}, accuracy {float(want_acc):.3f} on {int(picked.sum())} positions")


# ----------------------------------------------------------------------------------------------------------------
# Exercise 4: the [CLS] classifier head
# ----------------------------------------------------------------------------------------------------------------
class _Head(ref.ClassifierHead):
    """ClassifierHead with a mistake, chosen by the class attributes (the defaults are right)."""

    pool_at, activation, pooler_used, dropout_at, softmax = "cls", "tanh", True, "pooled", False

    def forward(self, hidden):
        h = {"cls": lambda: hidden[:, 0], "last": lambda: hidden[:, -1], "mean": lambda: hidden.mean(1),
             "batch0": lambda: hidden[0]}[self.pool_at]()
        if self.dropout_at == "before_pooler":
            h = self.dropout(h)
        if self.pooler_used:
            h = self.pooler(h)
        h = {"tanh": torch.tanh, "none": lambda t: t, "relu": torch.relu, "sigmoid": torch.sigmoid}[self.activation](h)
        if self.dropout_at == "pooled":
            h = self.dropout(h)
        out = self.classifier(h)
        if self.dropout_at == "after_classifier":
            out = self.dropout(out)
        return out.softmax(-1) if self.softmax else out


def _head(**attrs):
    return type("ClassifierHead", (_Head,), attrs)


HEAD_BATCH0 = ("The output has one row per position, not per sequence: `hidden[0]` is the first sequence of the "
               "batch; the [CLS] position of every sequence is `hidden[:, 0]`.")
HEAD_TRAINING = ("In training mode (dropout active, a fixed seed) the output differs, although it is right in eval "
                 "mode: apply the module's own dropout once, to the pooled vector: "
                 "self.classifier(self.dropout(torch.tanh(self.pooler(hidden[:, 0])))).")


def head_state(seed: int, d_model: int, num_classes: int) -> dict:
    g = _gen(seed, 12)
    return {"pooler.weight": torch.randn(d_model, d_model, generator=g) / d_model ** 0.5,
            "pooler.bias": 0.1 * torch.randn(d_model, generator=g),
            "classifier.weight": torch.randn(num_classes, d_model, generator=g),
            "classifier.bias": 0.1 * torch.randn(num_classes, generator=g)}


def _head_shapes(D, C):
    return {"pooler.weight": (D, D), "pooler.bias": (D,), "classifier.weight": (C, D), "classifier.bias": (C,)}


@torch_threads(1)
def check_classifier_head(head_cls, *, seed: int = 0) -> None:
    """Check ``ClassifierHead(d_model, num_classes, dropout)`` whose ``forward(hidden (B, L, D))`` returns
    ``classifier(dropout(tanh(pooler(hidden[:, 0]))))`` of shape ``(B, num_classes)``, in eval and training mode."""
    mistakes = MISTAKES["classifier_head"]
    B, L, D, C, p = 4, 7, 16, 3, 0.3
    args = (D, C, p)
    head = _module(head_cls, "ClassifierHead", args, _head_shapes(D, C))
    state = head_state(seed, D, C)
    _load(head, "ClassifierHead", state, training=False)
    twin = ref.ClassifierHead(*args)
    twin.load_state_dict(state)
    twin.eval()
    hidden = torch.randn(B, L, D, generator=_gen(seed, 6))
    got = call(head, "ClassifierHead", hidden)
    _not_random_in_eval(head, "ClassifierHead", (hidden,), got)
    with torch.no_grad():
        want = twin(hidden)
    if isinstance(got, torch.Tensor) and got.dim() == 2 and got.shape[0] == L:
        raise CheckFailed(HEAD_BATCH0)
    compare(f"ClassifierHead(hidden {tuple(hidden.shape)}) in eval mode", got, want, atol=1e-5,
            hints=_module_hints(mistakes, args, state, False, (hidden,)))
    grads = probe(head, "gradients", hidden)["grads"]
    twin.zero_grad()
    twin(hidden).sum().backward()
    for n, p_ in twin.named_parameters():
        expect(isinstance(grads.get(n), torch.Tensor),
               f"ClassifierHead's `{n}` gets no gradient: the output must be computed from it without "
               "torch.no_grad() or .detach(), so that training updates it.")
        compare(f"the gradient of the sum of the logits with respect to `{n}`", grads[n], p_.grad, atol=1e-4)
    probe(head, "set_training", True)
    twin.train()
    s = seed + 7
    got = call_with(head, "ClassifierHead", (hidden,), seed=s, grad=True)
    expect(isinstance(got, torch.Tensor) and got.requires_grad,
           "In training mode the output should carry gradients (no torch.no_grad() or .detach() inside forward).")
    with torch.no_grad():
        torch.manual_seed(s)
        want = twin(hidden)
    hints = _module_hints(mistakes, args, state, True, (hidden,), seed=s)
    try:
        compare(f"ClassifierHead(hidden) in training mode (dropout {p}, a fixed seed)", got.detach(), want,
                atol=1e-5, hints=hints)
    except CheckFailed as err:
        if "is not right yet" in err.message:
            raise
        raise CheckFailed(f"{HEAD_TRAINING}\n({err.message})") from None
    passed("ClassifierHead")


# ----------------------------------------------------------------------------------------------------------------
# The result of the lab
# ----------------------------------------------------------------------------------------------------------------
def check_pretraining_helps(pretrained_acc: float, scratch_acc: float, margin: float = 0.10) -> None:
    """The lab's claim: with the same labelled examples and fine-tuning budget, the pretrained encoder is better on
    held-out data than the same encoder trained from scratch, by at least ``margin`` (absolute accuracy)."""
    gap = pretrained_acc - scratch_acc
    expect(gap >= margin, f"The pretrained model reached {100 * pretrained_acc:.1f}% and the one trained from scratch "
                          f"{100 * scratch_acc:.1f}%: a gap of {100 * gap:.1f} points, less than {100 * margin:.0f}.")
    passed("pretraining helps", f"{100 * pretrained_acc:.1f}% vs {100 * scratch_acc:.1f}% from scratch")


# ----------------------------------------------------------------------------------------------------------------
# the typical mistakes, each as the reference with that mistake
# ----------------------------------------------------------------------------------------------------------------
MISTAKES: dict[str, list[Mistake]] = {
    "embeddings": [
        Mistake("no_segment", "The segment embedding is missing: add self.segment(segments).",
                _emb(segment_used=False)),
        Mistake("no_position", "The position embedding is missing: add self.position(torch.arange(L)) (the same "
                               "vector for position i in every sequence).", _emb(positions_by="none")),
        Mistake("positions_by_token", "The positions are looked up with the token ids; look them up with 0, 1, ..., "
                                      "L-1 (torch.arange(L)).", _emb(positions_by="token_ids")),
        Mistake("no_norm", "The LayerNorm is missing: BERT normalises the sum of the three embeddings.",
                _emb(norm_at="none")),
        Mistake("norm_before_positions", "The LayerNorm comes before the positions are added; normalise the full "
                                         "sum.", _emb(norm_at="before_positions")),
        Mistake("norm_token_only", "Only the token embedding is normalised; normalise the sum of all three.",
                _emb(norm_at="token_only")),
        Mistake("segments_none_skipped", "With segments=None, use segment 0 for every token "
                                         "(torch.zeros_like(tokens)); the segment vector of sentence A is still "
                                         "added.", _emb(none_segments="skip")),
        Mistake("no_dropout", "The dropout is missing: in training mode BERT drops out the normalised embeddings, "
                              "return self.dropout(self.norm(x)).", _emb(dropout_at="none")),
        Mistake("dropout_before_norm", "The dropout comes before the LayerNorm; BERT normalises first, then drops "
                                       "out: return self.dropout(self.norm(x)).", _emb(dropout_at="before_norm")),
    ],
    "mask_tokens": [
        Mistake("specials_picked", SPECIAL_PICKED, _masker(pick_specials=True)),
        Mistake("label_all", LABEL_ALL, _masker(label_all=True)),
        Mistake("labels_from_inputs", LABELS_MASKED, _masker(labels_from_inputs=True, shares=(1.0, 0.0))),
        Mistake("only_masked_labelled", ONLY_MASKED, _masker(only_masked=True)),
        Mistake("rate_wrong", RATE_OFF, _masker(rate=0.3)),
        Mistake("mask_prob_ignored", PROB_IGNORED, _masker(fixed_prob=True)),
        Mistake("all_mask", ALL_MASK, _masker(shares=(1.0, 0.0))),
        Mistake("shares_wrong", SHARES_OFF, _masker(shares=(0.1, 0.1))),
        Mistake("random_share_wrong", SHARES_OFF, _masker(shares=(0.8, 0.2))),
        Mistake("random_any_id", RANDOM_SPECIAL, _masker(random_ids="any")),
        Mistake("random_after_specials", RANDOM_SPECIAL, _masker(random_ids="after_specials")),
        Mistake("random_from_batch", RANDOM_RANGE, _masker(random_ids="batch")),
        Mistake("unpicked_changed", UNPICKED_CHANGED, _masker(change_unpicked=True)),
        Mistake("mask_id_fixed", MASK_ID_IGNORED, _masker(fixed_mask_id=True)),
        Mistake("generator_ignored", MASK_GEN_IGNORED, _masker(use_generator=False)),
        Mistake("own_generator", MASK_GEN_OWN, _masker(own_generator=True)),
    ],
    "mlm_loss": [
        Mistake("loss_all_positions", "The loss is averaged over all positions; only the picked positions "
                                      f"(label != {IGNORE}) count.", _mlm(loss_over="all")),
        Mistake("accuracy_all_positions", "The accuracy is computed over all positions (the unpicked ones, labelled "
                                          f"{IGNORE}, count as wrong); compute it over the picked positions only.",
                _mlm(acc_over="all")),
        Mistake("sum", "It is the sum over the picked positions; take the mean.", _mlm(reduction="sum")),
        Mistake("softmax_first", "A softmax is applied before the cross-entropy; F.cross_entropy expects raw "
                                 "logits.", _mlm(softmax=True)),
        Mistake("zeroed_mean", "The unpicked positions are zeroed but still counted in the mean: divide by the "
                               "number of picked positions, not by B * L.", _mlm(zeroed_mean=True)),
        Mistake("label_zero_dropped", f"Positions labelled 0 were left out: only IGNORE_INDEX ({IGNORE}) marks the "
                                      "positions that were not picked; keep labels != IGNORE_INDEX.",
                _mlm(keep="positive")),
        Mistake("accuracy_count", "The accuracy is the number of right predictions; divide it by the number of "
                                  "picked positions (.float().mean()).", _mlm(acc_count=True)),
        Mistake("only_loss", MLM_PAIR, _mlm(returns="loss")),
        Mistake("loss_item", LOSS_NUMBER, _mlm(loss_item=True)),
        Mistake("accuracy_item", ACC_NUMBER, _mlm(acc_item=True)),
    ],
    "classifier_head": [
        Mistake("last_position", "It pools the last position; BERT classifies from the [CLS] token at position 0 "
                                 "(hidden[:, 0]).", _head(pool_at="last")),
        Mistake("mean_pool", "It pools the mean over positions; this exercise uses the [CLS] token at position 0 "
                             "(hidden[:, 0]).", _head(pool_at="mean")),
        Mistake("batch_axis", HEAD_BATCH0, _head(pool_at="batch0")),
        Mistake("no_tanh", "The tanh after the pooler is missing.", _head(activation="none")),
        Mistake("relu", "The pooler's activation is a ReLU; BERT's pooler uses tanh.", _head(activation="relu")),
        Mistake("no_pooler", "The pooler's dense layer is skipped: pooled = torch.tanh(self.pooler(hidden[:, 0])).",
                _head(pooler_used=False)),
        Mistake("softmax", "It returns probabilities; return the logits (F.cross_entropy applies the softmax "
                           "itself).", _head(softmax=True)),
        Mistake("no_dropout", "The dropout is missing: in training mode BERT drops out the pooled vector, "
                              "self.classifier(self.dropout(pooled)).", _head(dropout_at="none")),
        Mistake("dropout_before_pooler", "The dropout is applied before the pooler; BERT drops out the pooled vector "
                                         "(after the tanh), right before the classifier.",
                _head(dropout_at="before_pooler")),
        Mistake("dropout_after_classifier", "The dropout is applied to the logits; drop out the pooled vector, "
                                            "before the classifier.", _head(dropout_at="after_classifier")),
    ],
}

#: check name -> check, the keys of :data:`MISTAKES`
CHECKS = {"embeddings": check_embeddings, "mask_tokens": check_mask_tokens, "mlm_loss": check_mlm_loss,
          "classifier_head": check_classifier_head}
