"""Self-checks of Lab 6, a GPT (decoder-only character model) with sampling and a KV cache.

Each check runs the student's function on inputs made from ``seed`` (the notebook uses the default, grading uses
others), compares it with the reference (:mod:`labsupport.models.gpt`, :mod:`labsupport.attention`,
:mod:`labsupport.training`) and recognises the typical mistakes of :data:`MISTAKES` (each one the reference *with
that mistake*, plus what to tell the student):

* bigram_loss: no add-one smoothing, the counts normalised per column, the pairs reversed, the previous character
  ignored, a sum instead of a mean, bits instead of nats, repeated pairs counted once, the table sized from the
  data instead of ``vocab_size``, the training text evaluated;
* gpt_block_forward (in eval mode and in training mode with a fixed seed, so dropout placement shows): the causal
  mask missing, inverted or upper-triangular, post-norm, a residual connection or the layer norms missing,
  dropouts forgotten, doubled or applied to the residual sum;
* sample_next (by the frequencies of many draws, and by reproducibility with the ``generator``): temperature not
  applied or multiplied, top-k keeping k + 1 or ignored, the others set to 0 instead of -inf, greedy argmax, a
  softmax over the batch, the generator ignored or replaced by one of its own;
* attend_with_cache (prefill, single steps and a chunk, compared step by step): the cache not appended or not
  used, no causal mask, values extended with the cached keys, new positions put first, no output projection, and
  the crashes of a mask that is not shifted or a concatenation along the wrong axis.
"""
from __future__ import annotations

import math

import torch

from labsupport.attention import AttentionCache, MultiHeadAttention, causal_mask, scaled_dot_product_attention
from labsupport.checks.core import (
    CheckFailed,
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
)
from labsupport.device import torch_threads

__all__ = ["MISTAKES", "CHECKS", "check_bigram_loss", "check_gpt_block_forward", "check_sample_next",
           "check_attend_with_cache", "reference_bigram_loss", "reference_sample_next", "reference_attend_with_cache",
           "tiny_block", "tiny_attention", "loss_number", "sampling_logits", "token_frequencies"]


def _gen(seed: int, case: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1009 + case)


def _identity(t):
    return t


# ------------------------------------------------------------------------------------------------------------
# Exercise 1: the bigram baseline
# ------------------------------------------------------------------------------------------------------------
def reference_bigram_loss(train_ids, val_ids, vocab_size, alpha=1.0, transpose=False, per_column=False,
                          unigram=False, reduce="mean"):
    """Validation loss (nats per character) of the add-``alpha`` bigram model counted on ``train_ids``, a 0-d
    float64 tensor. The keyword flags reproduce typical mistakes."""
    counts = torch.full((vocab_size, vocab_size), float(alpha), dtype=torch.float64)
    a, b = (train_ids[1:], train_ids[:-1]) if transpose else (train_ids[:-1], train_ids[1:])
    counts.index_put_((a, b), torch.ones(len(a), dtype=torch.float64), accumulate=True)
    if unigram:
        p = counts.sum(0) / counts.sum()
        lp = p.log()[val_ids[1:]]
    else:
        probs = counts / (counts.sum(0, keepdim=True) if per_column else counts.sum(1, keepdim=True))
        lp = probs.log()[val_ids[:-1], val_ids[1:]]
    return -(lp.sum() if reduce == "sum" else lp.mean())


def _bigram(**flags):
    def bigram_loss(train_ids, val_ids, vocab_size):
        return float(reference_bigram_loss(train_ids, val_ids, vocab_size, **flags))
    return bigram_loss


def _bigram_bits(train_ids, val_ids, vocab_size):
    return float(reference_bigram_loss(train_ids, val_ids, vocab_size)) / math.log(2)


def _bigram_on_train(train_ids, val_ids, vocab_size):
    return float(reference_bigram_loss(train_ids, train_ids, vocab_size))


def _bigram_once(train_ids, val_ids, vocab_size):
    counts = torch.ones(vocab_size, vocab_size, dtype=torch.float64)
    counts[train_ids[:-1], train_ids[1:]] += 1  # a repeated index is added once
    probs = counts / counts.sum(1, keepdim=True)
    return -probs[val_ids[:-1], val_ids[1:]].log().mean().item()


def _bigram_data_vocab(train_ids, val_ids, vocab_size):
    return float(reference_bigram_loss(train_ids, val_ids, int(max(train_ids.max(), val_ids.max())) + 1))


def _bigram_uniform(train_ids, val_ids, vocab_size):
    return math.log(vocab_size)


def _bigram_val_reversed(train_ids, val_ids, vocab_size):
    counts = torch.ones(vocab_size, vocab_size, dtype=torch.float64)
    counts.index_put_((train_ids[:-1], train_ids[1:]), torch.ones(len(train_ids) - 1, dtype=torch.float64),
                      accumulate=True)
    probs = counts / counts.sum(1, keepdim=True)
    return -probs[val_ids[1:], val_ids[:-1]].log().mean().item()


NO_SMOOTHING = ("Some character pair of the validation text never occurs in training, so its probability is 0 "
                "and -log 0 is infinite: start every count at 1 (add-one smoothing) before normalising.")


def loss_number(what: str, got) -> float:
    """A loss returned as one number: a Python number or a one-element tensor/array (the notebook takes
    ``float(...)`` of it); anything else fails with a message."""
    if isinstance(got, bool):
        raise CheckFailed(f"{what} should be a number (the mean loss), but it is {got!r}.")
    if isinstance(got, (int, float)):
        return float(got)
    if isinstance(got, torch.Tensor):
        expect(got.numel() == 1, f"{what} should be one number (the mean loss over the validation pairs), but it "
                                 f"is a {describe_value(got)}: take the mean of the per-pair losses.")
        expect(got.is_floating_point(), f"{what} should be a floating-point number, but it is {describe_value(got)}.")
        return float(got.reshape(()))
    if hasattr(got, "dtype") and hasattr(got, "size") and getattr(got, "size", 0) == 1:  # a NumPy number
        return float(got)
    raise CheckFailed(f"{what} should be a number, but it is a {describe_value(got)}.")


def _bigram_data(seed: int, case: int, V: int):
    """A toy text with structure (mostly a fixed successor) over the ids ``0..V-2`` (id ``V-1`` never occurs:
    the table must still be ``vocab_size`` wide) in which one pair never occurs, and a validation text that ends
    with that pair (so smoothing matters)."""
    g = _gen(seed, case)
    used = V - 1
    a0 = int(torch.randint(0, used, (1,), generator=g))
    b0 = ((a0 * 3 + 1) % used + 1 + int(torch.randint(0, used - 1, (1,), generator=g))) % used  # not the successor
    ids = [int(torch.randint(0, used, (1,), generator=g))]
    for _ in range(399):
        prev = ids[-1]
        nxt = (prev * 3 + 1) % used
        if torch.rand(1, generator=g).item() >= 0.7:
            nxt = int(torch.randint(0, used, (1,), generator=g))
        ids.append((prev * 3 + 1) % used if (prev, nxt) == (a0, b0) else nxt)
    return torch.tensor(ids[:300]), torch.tensor(ids[300:] + [a0, b0])


@torch_threads(1)
def check_bigram_loss(bigram_loss, *, seed: int = 0) -> None:
    """Check ``bigram_loss(train_ids, val_ids, vocab_size)``: add-one smoothing, mean nats per character."""
    mistakes = MISTAKES["bigram_loss"]
    want = None
    for case, V in ((1, 7 + seed % 3), (2, 11)):
        train, val = _bigram_data(seed, case, V)
        what = f"bigram_loss(train_ids, val_ids, vocab_size={V}) on a toy text"
        got = loss_number(what, call(bigram_loss, "bigram_loss", train, val, V))
        if not math.isfinite(got):
            raise CheckFailed(f"{what} returned {got}. {NO_SMOOTHING}")
        want = float(reference_bigram_loss(train, val, V))
        hints = [(torch.tensor(float(c), dtype=torch.float64), m) for c, m in candidates(mistakes, train, val, V)
                 if isinstance(c, float) and math.isfinite(c)]
        compare(what, torch.tensor(got, dtype=torch.float64), torch.tensor(want, dtype=torch.float64), atol=1e-5,
                hints=hints)
    passed("bigram_loss", f"{want:.3f} nats/char on the check's toy text")


# ------------------------------------------------------------------------------------------------------------
# Exercise 2: the GPT block
# ------------------------------------------------------------------------------------------------------------
def tiny_block(seed: int = 0, d_model: int = 16, num_heads: int = 4, *, dropout: float = 0.0,
               training: bool = False):
    """A small labsupport GPTBlock (pre-norm, GELU) with non-trivial norm parameters, in eval mode unless
    ``training``. With ``dropout > 0`` the three dropouts get distinct rates (``dropout1``: ``dropout``, the
    feed-forward's inner one: ``dropout / 2``, ``dropout2``: ``1.5 * dropout``), so each one's placement shows;
    the attention weights get no dropout (the exercise does not place that one)."""
    from labsupport.models.gpt import GPTBlock

    torch.manual_seed(seed)
    block = GPTBlock(d_model=d_model, num_heads=num_heads, d_ff=4 * d_model, dropout=dropout)
    with torch.no_grad():
        for norm in (block.norm1, block.norm2):
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.normal_(0, 0.1)
    block.self_attn.dropout = 0.0
    block.dropout1.p, block.ff.dropout.p, block.dropout2.p = dropout, dropout / 2, 1.5 * dropout
    return block.train(training)


def _block(mask="causal", norm_first=True, residual="both", norms=True, drop="right", ff_norm="norm2"):
    """The block's forward with a mistake (the defaults are right)."""
    def gpt_block_forward(block, x):
        L = x.shape[1]
        m = {"causal": causal_mask(L), "none": None, "inverted": ~causal_mask(L),
             "upper": torch.ones(L, L, dtype=torch.bool).triu()}[mask]
        n1 = block.norm1 if norms else _identity
        n2 = (block.norm2 if ff_norm == "norm2" else block.norm1) if norms else _identity
        d1 = _identity if drop in ("none", "first_missing") else block.dropout1
        d2 = _identity if drop in ("none", "second_missing") else (block.dropout1 if drop == "first_twice"
                                                                   else block.dropout2)
        if not norm_first:
            x = n1(x + d1(block.self_attn(x, mask=m)[0]))
            return n2(x + d2(block.ff(x)))
        h = block.self_attn(n1(x), mask=m)[0]
        if drop == "on_sum":
            x = block.dropout1(x + h)
        else:
            x = x + d1(h) if residual in ("both", "second_missing") else d1(h)
        f = block.ff(n2(x))
        return x + d2(f) if residual in ("both", "first_missing") else d2(f)
    return gpt_block_forward


BLOCK_LEAK = ("Changing the LAST position changes the outputs at earlier positions: the future leaks into the past. "
              "Use the causal mask in the self-attention (mask=causal_mask(L), L = x.shape[1]).")
BLOCK_EVAL_RANDOM = ("In eval mode the output changes from one call to the next: dropout is active although the "
                     "block is in eval mode. Use the block's dropout modules (block.dropout1, block.dropout2), which "
                     "switch off in eval mode (F.dropout would need training=block.training).")
BLOCK_TRAINING = ("In training mode (dropout active, the same random seed) the output differs from GPT-2's block, "
                  "although it is right in eval mode: check the dropouts. Each sub-layer's output goes through its "
                  "own dropout module once, before it is added: x = x + block.dropout1(attn_out), then "
                  "x + block.dropout2(ff_out) (use the block's modules, not F.dropout with a rate of your own).")

error_hints("gpt_block_forward", [
    (r"must match the size of tensor b|expanded size|shape .* doesn't match the broadcast shape",
     "The causal mask must be (L, L) with L = x.shape[1], the number of positions (x is (B, L, D)): "
     "causal_mask(x.shape[1], device=x.device)."),
])


def _seeded(mistakes, seed: int):
    """The mistakes with torch's RNG reseeded before each one (dropout then draws the same masks)."""
    def reseed(fn):
        def run(*args, **kwargs):
            torch.manual_seed(seed)
            return fn(*args, **kwargs)
        return run
    return [Mistake(m.name, m.message, reseed(m.fn)) for m in mistakes]


def _hint(got, want, hints, atol=1e-5):
    """The message of the first hint whose candidate ``got`` matches (and the right answer does not)."""
    if not isinstance(got, torch.Tensor):
        return None
    for cand, message in hints:
        if isinstance(cand, torch.Tensor) and cand.shape == got.shape and not (
                cand.shape == want.shape and torch.allclose(cand, want, atol=1e-9)) and \
                torch.allclose(got.double(), cand.double(), atol=atol):
            return message
    return None


@torch_threads(1)
def check_gpt_block_forward(gpt_block_forward, *, seed: int = 0) -> None:
    """Check ``gpt_block_forward(block, x)``: pre-norm block with causal self-attention and residual dropouts,
    in eval mode and in training mode (dropout placement with a fixed seed)."""
    mistakes = MISTAKES["gpt_block_forward"]
    g = _gen(seed, 1)
    B, L, D, H = 2, 6, 16, 4
    x = torch.randn(B, L, D, generator=g)
    # eval mode: dropout must be off (the block's rates are not zero)
    block = build(gpt_block_forward, tiny_block, seed + 1, D, H, dropout=0.2)
    twin = tiny_block(seed + 1, D, H, dropout=0.2)
    got = call(gpt_block_forward, "gpt_block_forward", block, x)
    with torch.no_grad():
        want = twin(x)
        hints = candidates(mistakes, twin, x)
    what = f"gpt_block_forward(block in eval mode, x {tuple(x.shape)})"
    if isinstance(got, torch.Tensor) and got.shape == want.shape and not torch.allclose(got, want, atol=1e-5):
        message = _hint(got, want, hints)
        if message:
            raise CheckFailed(f"{what} is not right yet. {message}")
        again = call(gpt_block_forward, "gpt_block_forward", block, x)
        if isinstance(again, torch.Tensor) and again.shape == got.shape and not torch.allclose(got, again):
            raise CheckFailed(BLOCK_EVAL_RANDOM)
        x2 = x.clone()
        x2[:, -1] = torch.randn(B, D, generator=g)
        got2 = call(gpt_block_forward, "gpt_block_forward", block, x2)
        if isinstance(got2, torch.Tensor) and got2.shape == got.shape and \
                not torch.allclose(got[:, :-1], got2[:, :-1], atol=1e-5):
            raise CheckFailed(BLOCK_LEAK)
    compare(what, got, want, atol=1e-5, hints=hints)
    # training mode: the same seed must give the same dropout masks in the same places
    block = build(gpt_block_forward, tiny_block, seed + 2, D, H, dropout=0.2, training=True)
    twin = tiny_block(seed + 2, D, H, dropout=0.2, training=True)
    s = seed + 3
    got = call_with(gpt_block_forward, "gpt_block_forward", (block, x), seed=s)
    with torch.no_grad():
        torch.manual_seed(s)
        want = twin(x)
        hints = candidates(_seeded(mistakes, s), twin, x)
    what = f"gpt_block_forward(block in training mode, dropout 0.2 / 0.1 / 0.3, x {tuple(x.shape)})"
    message = _hint(got, want, hints)
    if message:
        raise CheckFailed(f"{what} is not right yet. {message}")
    try:
        compare(what, got, want, atol=1e-5)
    except CheckFailed as err:
        raise CheckFailed(f"{BLOCK_TRAINING}\n({err.message})") from None
    passed("gpt_block_forward")


# ------------------------------------------------------------------------------------------------------------
# Exercise 3: sampling with temperature and top-k
# ------------------------------------------------------------------------------------------------------------
def reference_sample_next(logits, temperature=1.0, top_k=None, generator=None):
    """Sample one id per row of ``logits (B, V)`` after temperature scaling and top-k filtering."""
    from labsupport.training import top_k_filter

    probs = torch.softmax(top_k_filter(logits / temperature, top_k), dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _sampler(temp="divide", k_shift=0, top_k_used=True, fill=float("-inf"), greedy=False, dim=-1,
             use_generator=True, own_generator=False):
    """``sample_next`` with a mistake (the defaults are right)."""
    def sample_next(logits, temperature=1.0, top_k=None, generator=None):
        if temp == "divide":
            logits = logits / temperature
        elif temp == "multiply":
            logits = logits * temperature
        if top_k is not None and top_k_used:
            kth = torch.topk(logits, min(top_k + k_shift, logits.shape[-1]), dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, fill)
        if greedy:
            return logits.argmax(-1)
        probs = torch.softmax(logits, dim=dim)
        gen = torch.Generator().manual_seed(0) if own_generator else (generator if use_generator else None)
        return torch.multinomial(probs, 1, generator=gen).squeeze(-1)
    return sample_next


#: draws per check; the rows alternate between two different logit vectors
SAMPLES = 30_000
#: largest difference of a token's frequency from its probability that a right sampler may show (about 6
#: standard deviations for 15,000 draws of one row)
FREQ_TOL = 0.025

GEN_IGNORED = ("The draws do not come from `generator`: with the same generator seed they change when the global "
               "random state changes. Pass it on: torch.multinomial(probs, 1, generator=generator) (and to every "
               "other random function you call).")
GEN_OWN = ("The draws stay the same when the generator you are given is seeded differently: do not make or "
           "reseed a generator inside the function, use the `generator` argument as it is.")
OUTSIDE_TOP_K = ("Tokens outside the k largest logits of their row were drawn: keep exactly the k largest logits of "
                 "each row (torch.topk(logits, k, dim=-1).values[:, -1:] is each row's k-th largest) and set the "
                 "others to -inf before the softmax.")

error_hints("sample_next", [
    (r"must match the size of tensor b \(0\)|selected index k out of range|k not in range",
     "torch.topk(logits, k) got a k that does not fit: keep exactly top_k logits, torch.topk(logits, top_k, dim=-1)."),
    (r"must match the size of tensor b|expanded size",
     "The k-th largest logit of each row must keep its axis to broadcast against the (B, V) logits: "
     "torch.topk(logits, top_k, dim=-1).values[:, -1:] (note the -1:, or keepdim)."),
    (r"probability tensor contains either|invalid multinomial distribution",
     "torch.multinomial takes probabilities (non-negative, finite): the softmax of the filtered logits, not the "
     "logits themselves."),
])


def sampling_logits(seed: int, n: int = SAMPLES) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits (n, 6), rows (2, 6))``: the rows of ``logits`` alternate between the two rows of ``rows``, two
    different orders of well-separated values, the second shifted by +1.5 (the same distribution after the
    softmax, but not the same top-k threshold)."""
    g = _gen(seed, 3)
    base = torch.tensor([2.2, 1.2, 0.5, 0.0, -0.6, -1.3]) + 0.1 * torch.randn(6, generator=g)
    rows = torch.stack([base[torch.randperm(6, generator=g)], base[torch.randperm(6, generator=g)] + 1.5])
    return rows.repeat(n // 2, 1), rows


def token_frequencies(ids: torch.Tensor, V: int = 6) -> torch.Tensor:
    """``(2, V)``: how often each id was drawn in the even rows and in the odd rows."""
    ids = ids.long()
    return torch.stack([torch.bincount(ids[r::2], minlength=V)[:V].double() / len(ids[r::2]) for r in (0, 1)])


def _probs(rows, temperature=1.0, k=None):
    from labsupport.training import top_k_filter

    return torch.softmax(top_k_filter(rows.double() / temperature, k), -1)


def _ids(out, what: str, n: int, V: int = 6) -> torch.Tensor:
    if out is None:
        raise CheckFailed(f"{what} returned None. Did you forget the `return` statement?")
    expect(isinstance(out, torch.Tensor), f"{what} should return a tensor of ids, but it returned "
                                          f"{describe_value(out)}.")
    if out.shape == (n, 1):
        raise CheckFailed(f"{what} should return one id per row, shape (B,) = ({n},); it returned (B, 1). Squeeze "
                          "the last axis: torch.multinomial(probs, 1, ...).squeeze(-1).")
    expect(out.shape == (n,), f"{what} should return shape (B,) = ({n},), but it returned {tuple(out.shape)}.")
    expect(not out.dtype.is_floating_point and out.dtype != torch.bool,
           f"{what} should return integer token ids, but their dtype is {out.dtype} (did you return the "
           "probabilities?).")
    expect(bool(((out >= 0) & (out < V)).all()), f"{what} returned ids outside 0..{V - 1}, the vocabulary.")
    return out


def _sampling_hint(f, want, mistakes, logits, temperature, top_k, gen_seed, global_seed):
    """The message of a mistake whose own frequencies (drawn here, as the student's were) match ``f``."""
    for m in mistakes:
        try:
            torch.manual_seed(global_seed)
            out = m.fn(logits.clone(), temperature, top_k, generator=torch.Generator().manual_seed(gen_seed))
        except Exception:  # noqa: BLE001 - a mistake that cannot handle this input gives no hint
            continue
        if not isinstance(out, torch.Tensor) or out.shape != (len(logits),) or out.dtype.is_floating_point:
            continue
        fm = token_frequencies(out)
        same_support = torch.equal(fm > 0, f > 0)
        distinct = (fm - want).abs().max() > 2 * FREQ_TOL or not torch.equal(fm > 0, want > 0)
        if distinct and same_support and (fm - f).abs().max() < FREQ_TOL:
            return m.message
    return None


@torch_threads(1)
def check_sample_next(sample_next, *, seed: int = 0) -> None:
    """Check ``sample_next(logits (B, V), temperature=1.0, top_k=None, generator=None) -> ids (B,)`` by the
    frequencies of many draws, and that the draws come from ``generator``."""
    mistakes = MISTAKES["sample_next"]
    logits, rows = sampling_logits(seed)
    n = len(logits)

    def draw(temperature, top_k, gen_seed, global_seed, positional=False, generator=True):
        args, kwargs = (logits,), {}
        if positional:
            args = (logits, temperature, top_k)
        else:
            kwargs = {"temperature": temperature, "top_k": top_k}
        if generator:
            g = build(sample_next, torch.Generator)
            method(g, "manual_seed", "torch.Generator.manual_seed", gen_seed)
            kwargs["generator"] = g
        out = call_with(sample_next, "sample_next", args, kwargs, seed=global_seed)
        return _ids(out, f"sample_next(logits ({n}, 6), temperature={temperature}, top_k={top_k})", n)

    configs = [(1.0, None), (0.5, None), (2.0, None), (1.0, 3), (1.0, 1), (0.7, 4), (1.5, 2)]
    for i, (temperature, top_k) in enumerate(configs):
        gen_seed, global_seed = seed * 100 + i, seed * 100 + 50 + i
        f = token_frequencies(draw(temperature, top_k, gen_seed, global_seed, positional=(i == 5)))
        want = _probs(rows, temperature, top_k)
        outside = bool(((f > 0) & (want == 0)).any())
        worst = float((f - want).abs().max())
        if outside or worst > FREQ_TOL:
            message = _sampling_hint(f, want, mistakes, logits, temperature, top_k, gen_seed, global_seed)
            what = f"sample_next(logits, temperature={temperature}, top_k={top_k})"
            if message:
                raise CheckFailed(f"{what} is not right yet. {message}")
            if outside:
                raise CheckFailed(f"{what}: {OUTSIDE_TOP_K}")
            r, j = divmod(int((f - want).abs().argmax()), f.shape[1])
            raise CheckFailed(
                f"The token frequencies of {what} over {n:,} draws differ from softmax(top-k(logits / temperature)):"
                f" in row {r}, token {j} was drawn {100 * float(f[r, j]):.1f}% of the time, where its probability "
                f"is {100 * float(want[r, j]):.1f}%. Divide the logits by the temperature, keep the top_k largest "
                "of each row (the others -inf), softmax over the last axis, then torch.multinomial.")
    # reproducible draws from the generator it is given
    first = draw(0.9, 4, seed + 7, 1)
    expect(torch.equal(first, draw(0.9, 4, seed + 7, 2)), GEN_IGNORED)
    expect(not torch.equal(first, draw(0.9, 4, seed + 8, 1)), GEN_OWN)
    # generator=None: torch's global random state
    f = token_frequencies(draw(0.8, None, 0, seed + 9, generator=False))
    expect(float((f - _probs(rows, 0.8)).abs().max()) <= FREQ_TOL,
           "Without a generator (generator=None) the draws do not follow softmax(logits / temperature): "
           "torch.multinomial(probs, 1, generator=None) uses torch's global random state.")
    passed("sample_next")


# ------------------------------------------------------------------------------------------------------------
# Exercise 4: attention with a KV cache
# ------------------------------------------------------------------------------------------------------------
def tiny_attention(seed: int = 0, d_model: int = 16, num_heads: int = 4) -> MultiHeadAttention:
    """A small labsupport MultiHeadAttention in eval mode (its weights from ``seed``)."""
    torch.manual_seed(seed)
    return MultiHeadAttention(d_model, num_heads).eval()


def reference_attend_with_cache(attn, x, past_k=None, past_v=None):
    """Causal self-attention of the new positions ``x (B, L, D)`` with cached keys/values ``(B, H, T, D/H)``.

    Returns ``(output (B, L, D), keys (B, H, T + L, D/H), values (B, H, T + L, D/H))``: the library's cached
    attention (:class:`labsupport.attention.AttentionCache`), the one the GPT of the lab runs.
    """
    cache = AttentionCache(past_k, past_v)
    out, _ = attn(x, is_causal=True, cache=cache, need_weights=False)
    return out, cache.keys, cache.values


def _cached(append=True, use_cache=True, dim=2, mask="shifted", values_from="past_v", order="past_first",
            out_proj=True, v_proj="v_proj"):
    """``attend_with_cache`` with a mistake (the defaults are right)."""
    def attend_with_cache(attn, x, past_k, past_v):
        q = attn.split_heads(attn.q_proj(x))
        k = attn.split_heads(attn.k_proj(x))
        v = attn.split_heads(getattr(attn, v_proj)(x))
        new_k, new_v = k, v
        if past_k is not None and use_cache:
            pv = past_k if values_from == "past_k" else past_v
            k = torch.cat([past_k, k] if order == "past_first" else [k, past_k], dim=dim)
            v = torch.cat([pv, v] if order == "past_first" else [v, pv], dim=dim)
        L, T = q.shape[2], k.shape[2]
        m = {"shifted": causal_mask(L, T), "unshifted": causal_mask(L), "none": None}[mask]
        out = attn.merge_heads(scaled_dot_product_attention(q, k, v, m)[0])
        out = attn.out_proj(out) if out_proj else out
        return (out, k, v) if append else (out, new_k, new_v)
    return attend_with_cache


CACHE_SHIFT = ("The mask must be (L, T + L) for L new positions after T cached ones, its diagonal shifted by T: "
               "causal_mask(L, T + L) (causal_mask(L) fits only an empty cache).")
CACHE_AXIS = ("The past and new keys/values are concatenated along the position axis, dim 2 of (B, H, T, D/H): "
              "torch.cat([past_k, k], dim=2).")
error_hints("attend_with_cache", [
    (r"Sizes of tensors must match except in dimension", CACHE_AXIS),
    (r"at non-singleton dimension 3|must match the size of tensor b", CACHE_SHIFT),
    (r"'tuple' object has no attribute",
     "scaled_dot_product_attention returns a pair (output, weights): take the output, "
     "`out, _ = scaled_dot_product_attention(q, k, v, mask)`."),
    (r"NoneType|got None",
     "past_k and past_v are None when the cache is empty (the prefill): concatenate only when past_k is not None."),
])


def _triple(got, what: str):
    expect(isinstance(got, tuple) and len(got) == 3,
           f"attend_with_cache {what} should return (output, keys, values), but it returned {describe_value(got)}.")
    return got


@torch_threads(1)
def check_attend_with_cache(attend_with_cache, *, seed: int = 0) -> None:
    """Check ``attend_with_cache(attn, x, past_k, past_v) -> (output, keys, values)``: a prefill, one-position
    steps and a chunk of two, each given the right cache, agree with attention over the whole sequence; so does
    a prefill followed by a chunk that uses the cache the function itself returned."""
    mistakes = MISTAKES["attend_with_cache"]
    B, D, H = 2, 16, 4
    attn = build(attend_with_cache, tiny_attention, seed + 3, D, H)
    twin = tiny_attention(seed + 3, D, H)
    seq = torch.randn(B, 7, D, generator=_gen(seed, 4))
    with torch.no_grad():
        full, keys, values = reference_attend_with_cache(twin, seq)

    def step(lo, hi, what):
        past_k, past_v = (None, None) if lo == 0 else (keys[:, :, :lo].clone(), values[:, :, :lo].clone())
        x = seq[:, lo:hi]
        out, k, v = _triple(call(attend_with_cache, "attend_with_cache", attn, x, past_k, past_v), what)
        with torch.no_grad():
            cands = [c for c in candidates(mistakes, twin, x, past_k, past_v)
                     if isinstance(c[0], tuple) and len(c[0]) == 3]
        compare(f"the output {what}", out, full[:, lo:hi], atol=1e-5, hints=[(c[0], m) for c, m in cands])
        compare(f"the keys returned {what}", k, keys[:, :, :hi], atol=1e-5, hints=[(c[1], m) for c, m in cands])
        compare(f"the values returned {what}", v, values[:, :, :hi], atol=1e-5,
                hints=[(c[2], m) for c, m in cands])

    step(0, 3, "for a prefill of 3 positions (empty cache: past_k = past_v = None)")
    step(3, 4, "for 1 new position after 3 cached ones")
    step(4, 5, "for 1 new position after 4 cached ones")
    step(5, 7, "for 2 new positions after 5 cached ones")
    out1, k1, v1 = _triple(call(attend_with_cache, "attend_with_cache", attn, seq[:, :4], None, None), "")
    out2, _, _ = _triple(call(attend_with_cache, "attend_with_cache", attn, seq[:, 4:], k1, v1), "")
    expect(isinstance(out1, torch.Tensor) and isinstance(out2, torch.Tensor),
           "attend_with_cache should return the output as a tensor.")
    compare("the outputs of a prefill of 4 positions, then 3 new ones with the cache your function returned",
            torch.cat([out1, out2], dim=1), full, atol=1e-5)
    passed("attend_with_cache")


# ------------------------------------------------------------------------------------------------------------
# the typical mistakes, each as the reference with that mistake
# ------------------------------------------------------------------------------------------------------------
MISTAKES: dict[str, list[Mistake]] = {
    "bigram_loss": [
        Mistake("no_smoothing", NO_SMOOTHING, _bigram(alpha=0.0)),
        Mistake("per_column", "The counts are normalised per COLUMN; each ROW (one previous character) must sum "
                              "to 1: divide by counts.sum(dim=1, keepdim=True).", _bigram(per_column=True)),
        Mistake("pairs_reversed", "The pairs are reversed: count (previous, next) = (ids[:-1], ids[1:]) into row "
                                  "previous, column next.", _bigram(transpose=True)),
        Mistake("unigram", "This ignores the previous character (a unigram model): the probability of the next "
                           "character must come from the row of the previous one.", _bigram(unigram=True)),
        Mistake("sum", "It returns the total over the validation text; return the mean per character.",
                _bigram(reduce="sum")),
        Mistake("bits", "It is in bits (log base 2); the loss is in nats: use the natural logarithm, .log().",
                _bigram_bits),
        Mistake("counted_once", "Repeated pairs were counted once: `counts[a, b] += 1` with repeated indices adds "
                                "1 only once. Use counts.index_put_((a, b), ones, accumulate=True).", _bigram_once),
        Mistake("uniform", "The loss is ln(vocab_size), that of uniform guessing: the pair counts never reached the "
                           "table. counts.index_put_((rows, cols), ones, accumulate=True) adds them (without "
                           "accumulate=True it only writes ones).", _bigram_uniform),
        Mistake("vocab_from_data", "The table is sized from the characters that occur, not vocab_size: a "
                                   "character that never occurs still gets its smoothed count in every row. Use "
                                   "vocab_size x vocab_size counts.", _bigram_data_vocab),
        Mistake("training_text", "It evaluates the model on the training text: average -log P(next | previous) "
                                 "over the pairs of val_ids.", _bigram_on_train),
        Mistake("val_pairs_reversed", "The validation pairs are looked up reversed: the row is the previous "
                                      "character val_ids[:-1], the column the next one val_ids[1:].",
                _bigram_val_reversed),
    ],
    "gpt_block_forward": [
        Mistake("no_mask", "There is no causal mask: every position also sees the positions after it, so in "
                           "training it could read the very character it must predict. Pass mask=causal_mask(L) to "
                           "the attention.", _block(mask="none")),
        Mistake("mask_inverted", "The mask polarity is inverted: True must mean 'may attend' (the lower triangle, "
                                 "the past and the present).", _block(mask="inverted")),
        Mistake("mask_upper", "The mask is the upper triangle: each position sees the FUTURE. Use the lower "
                              "triangle (causal_mask).", _block(mask="upper")),
        Mistake("post_norm", "This is post-norm (norm after the residual sum); GPT-2 is pre-norm: "
                             "x = x + attn(norm1(x)), then x = x + ff(norm2(x)).", _block(norm_first=False)),
        Mistake("no_residual", "The residual connections are missing: add each sub-layer's output to its input, "
                               "x = x + block.dropout1(attn_out), then x + block.dropout2(ff_out).",
                _block(residual="none")),
        Mistake("attention_residual_missing", "The attention sub-layer's residual connection is missing: "
                                              "x = x + block.dropout1(attn_out), not x = block.dropout1(attn_out).",
                _block(residual="first_missing")),
        Mistake("ff_residual_missing", "The feed-forward sub-layer's residual connection is missing: "
                                       "return x + block.dropout2(ff_out).", _block(residual="second_missing")),
        Mistake("no_norms", "The layer norms are skipped: the sub-layers read norm1(x) and norm2(x).",
                _block(norms=False)),
        Mistake("norm1_twice", "The feed-forward sub-layer reads norm1(x); it has its own layer norm: "
                               "block.ff(block.norm2(x)).", _block(ff_norm="norm1")),
        Mistake("no_dropout", "The residual dropouts are missing: in training mode each sub-layer's output goes "
                              "through dropout before it is added, x + block.dropout1(attn_out) and "
                              "x + block.dropout2(ff_out).", _block(drop="none")),
        Mistake("dropout1_missing", "The attention sub-layer's dropout is missing: "
                                    "x = x + block.dropout1(attn_out).", _block(drop="first_missing")),
        Mistake("dropout2_missing", "The feed-forward sub-layer's dropout is missing: "
                                    "return x + block.dropout2(block.ff(block.norm2(x))).",
                _block(drop="second_missing")),
        Mistake("dropout1_twice", "block.dropout1 is used for both sub-layers; the feed-forward output goes through "
                                  "block.dropout2 (the two may have different rates).", _block(drop="first_twice")),
        Mistake("dropout_on_sum", "The dropout is applied to the residual sum; drop out only the sub-layer's "
                                  "output, then add: x + block.dropout1(attn_out).", _block(drop="on_sum")),
    ],
    "sample_next": [
        Mistake("no_temperature", "The temperature is not applied: divide the logits by `temperature` before the "
                                  "softmax.", _sampler(temp="none")),
        Mistake("times_temperature", "The logits are multiplied by the temperature; divide them by it (a "
                                     "temperature below 1 sharpens the distribution).", _sampler(temp="multiply")),
        Mistake("top_k_plus_one", "Top-k keeps k + 1 tokens: keep exactly the k largest logits of each row.",
                _sampler(k_shift=1)),
        Mistake("top_k_minus_one", "Top-k keeps only k - 1 tokens: keep exactly the k largest logits of each row "
                                   "(the k-th largest is torch.topk(logits, k).values[:, -1:]).",
                _sampler(k_shift=-1)),
        Mistake("top_k_ignored", "top_k has no effect: keep only the k largest logits of each row (set the others "
                                 "to -inf before the softmax).", _sampler(top_k_used=False)),
        Mistake("top_k_zero_fill", "The logits outside the top k were set to 0, not -inf: exp(0) still gives them "
                                   "probability. Fill them with float('-inf').", _sampler(fill=0.0)),
        Mistake("greedy", "It always returns the most likely token (greedy argmax): draw from the softmax "
                          "probabilities with torch.multinomial(probs, 1, generator=generator).",
                _sampler(greedy=True)),
        Mistake("softmax_over_batch", "The softmax runs over the batch axis (dim 0); each row's logits make one "
                                      "distribution: torch.softmax(logits, dim=-1).", _sampler(dim=0)),
        Mistake("generator_ignored", GEN_IGNORED, _sampler(use_generator=False)),
        Mistake("own_generator", GEN_OWN, _sampler(own_generator=True)),
    ],
    "attend_with_cache": [
        Mistake("not_appended", "The cache is not appended: the returned keys and values hold only the new "
                                "positions. Concatenate the past keys/values with the new ones along the position "
                                "axis (dim 2) and return all of them.", _cached(append=False)),
        Mistake("cache_ignored", "The cached keys and values are ignored: the new queries must also attend to the "
                                 "past ones, torch.cat([past_k, k], dim=2) (likewise the values) before the "
                                 "attention.", _cached(use_cache=False)),
        Mistake("no_mask", "With several new positions at once there is no causal mask: the first new position "
                           "sees the ones after it. Use causal_mask(L, T + L) (L new positions after T cached "
                           "ones).", _cached(mask="none")),
        Mistake("mask_not_shifted", CACHE_SHIFT, _cached(mask="unshifted")),
        Mistake("wrong_axis", CACHE_AXIS, _cached(dim=1)),
        Mistake("values_from_keys", "The values were extended with the cached KEYS: "
                                    "v = torch.cat([past_v, v], dim=2).", _cached(values_from="past_k")),
        Mistake("new_first", "The new keys/values were put before the cached ones; the cache keeps the positions "
                             "in order: torch.cat([past_k, k], dim=2).", _cached(order="new_first")),
        Mistake("values_from_k_proj", "The values are projected with k_proj: "
                                      "v = attn.split_heads(attn.v_proj(x)).", _cached(v_proj="k_proj")),
        Mistake("no_out_proj", "The output projection is missing: finish with "
                               "attn.out_proj(attn.merge_heads(output)).", _cached(out_proj=False)),
    ],
}

#: check name -> check, the keys of :data:`MISTAKES`
CHECKS = {"bigram_loss": check_bigram_loss, "gpt_block_forward": check_gpt_block_forward,
          "sample_next": check_sample_next, "attend_with_cache": check_attend_with_cache}
