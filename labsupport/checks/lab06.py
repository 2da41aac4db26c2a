"""Self-checks of Lab 6, a GPT (decoder-only character model) with sampling and a KV cache.

Each check runs the student's function on fresh inputs, compares it with the reference (:mod:`labsupport.models.gpt`,
:mod:`labsupport.training`) and recognises the usual mistakes:

* bigram_loss: no add-one smoothing (an unseen pair gives an infinite loss), the counts normalised per column
  instead of per row, the pairs reversed (``next -> previous``), the previous character ignored (a unigram model),
  a sum instead of a mean;
* gpt_block_forward: the causal mask missing (the future leaks into the past), its polarity inverted or the upper
  triangle used, post-norm instead of pre-norm, a residual connection missing, the layer norms skipped;
* sample_next: sampling without temperature, multiplying by the temperature instead of dividing, top-k keeping
  ``k + 1`` (or ``k - 1``) tokens, top-k ignored, greedy argmax instead of sampling, a wrong shape;
* attend_with_cache: the cache not appended (only the new keys attend), concatenation along the wrong axis, the
  causal mask not shifted by the cache length, no causal mask on a multi-token chunk.
"""
from __future__ import annotations

import math

import torch

from labsupport.attention import AttentionCache, MultiHeadAttention, causal_mask, scaled_dot_product_attention
from labsupport.checks import CheckFailed, call, compare, describe_value, expect, one_thread, passed

__all__ = ["check_bigram_loss", "check_gpt_block_forward", "check_sample_next", "check_attend_with_cache",
           "reference_bigram_loss", "reference_sample_next", "reference_attend_with_cache", "tiny_block"]




# ------------------------------------------------------------------------------------------------------------
def reference_bigram_loss(train_ids, val_ids, vocab_size, alpha=1.0, transpose=False, per_column=False,
                          unigram=False, reduce="mean"):
    """Validation loss (nats per character) of the add-``alpha`` bigram model counted on ``train_ids``.

    The keyword flags reproduce typical mistakes (for the self-check's messages).
    """
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


def _bigram_data(seed=0, V=7):
    g = torch.Generator().manual_seed(seed)
    # a text with structure: mostly a fixed successor, sometimes random
    ids = [0]
    for _ in range(400):
        prev = ids[-1]
        ids.append((prev * 3 + 1) % V if torch.rand(1, generator=g).item() < 0.7 else int(torch.randint(0, V, (1,), generator=g)))
    ids = torch.tensor(ids)
    return ids[:300], ids[300:], V


@one_thread
def check_bigram_loss(bigram_loss) -> None:
    """Check ``bigram_loss(train_ids, val_ids, vocab_size)`` (add-one smoothing, nats per character)."""
    __tracebackhide__ = True
    train_ids, val_ids, V = _bigram_data(0)
    val_ids = torch.cat([val_ids, torch.tensor([6, 6, 6])])  # the pair (6, 6) is rare: smoothing matters
    got = call(bigram_loss, "bigram_loss", train_ids.clone(), val_ids.clone(), V)
    if isinstance(got, torch.Tensor):
        expect(got.numel() == 1, f"bigram_loss should return one number, got {describe_value(got)}.")
        got = got.item()
    expect(isinstance(got, (int, float)), f"bigram_loss should return a number, got {describe_value(got)}.")
    want = reference_bigram_loss(train_ids, val_ids, V).item()
    if math.isinf(got) or math.isnan(got):
        raise CheckFailed(f"bigram_loss returned {got}: some character pair of the validation text never occurs in "
                          "training, so its probability is 0 and -log 0 is infinite. Start every count at 1 "
                          "(add-one smoothing) before normalising.")
    for kw, msg in [
        (dict(per_column=True), "The counts are normalised per COLUMN; each ROW (one previous character) must sum to 1: "
                                "divide by counts.sum(dim=1, keepdim=True)."),
        (dict(transpose=True), "The pairs are reversed: count (previous, next) = (ids[:-1], ids[1:]) into row previous, "
                               "column next."),
        (dict(unigram=True), "This ignores the previous character (a unigram model): the probability of the next "
                             "character must come from the row of the previous one."),
        (dict(reduce="sum"), "It returns the total over the validation text; return the mean per character."),
        (dict(alpha=0.0), "There is no smoothing: start every count at 1."),
    ]:
        cand = reference_bigram_loss(train_ids, val_ids, V, **kw).item()
        if math.isfinite(cand) and abs(got - cand) < 1e-6 and abs(cand - want) > 1e-6:
            raise CheckFailed(f"bigram_loss is not right yet. {msg}")
    compare("bigram_loss(train_ids, val_ids, vocab_size)", torch.tensor(float(got)), torch.tensor(want), atol=1e-5)
    passed("bigram_loss", f"{want:.3f} nats/char on the check's toy text")


# ------------------------------------------------------------------------------------------------------------
def tiny_block(seed: int = 0, d_model: int = 16, num_heads: int = 4):
    """A small labsupport GPTBlock (pre-norm, GELU) with non-trivial norm parameters, in eval mode."""
    from labsupport.models.gpt import GPTBlock

    torch.manual_seed(seed)
    block = GPTBlock(d_model=d_model, num_heads=num_heads, d_ff=4 * d_model, dropout=0.0).eval()
    with torch.no_grad():
        for norm in (block.norm1, block.norm2):
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.normal_(0, 0.1)
    return block


def _block_variant(block, x, mask="causal", norm_first=True, residual=True, norms=True):
    L = x.shape[1]
    m = {"causal": causal_mask(L), "none": None, "inverted": ~causal_mask(L),
         "upper": torch.ones(L, L, dtype=torch.bool).triu()}[mask]
    n1 = block.norm1 if norms else (lambda t: t)
    n2 = block.norm2 if norms else (lambda t: t)
    if norm_first:
        h = block.self_attn(n1(x), mask=m)[0]
        x = x + h if residual else h
        f = block.ff(n2(x))
        return x + f if residual else f
    x = n1(x + block.self_attn(x, mask=m)[0])
    return n2(x + block.ff(x))


@one_thread
def check_gpt_block_forward(gpt_block_forward) -> None:
    """Check ``gpt_block_forward(block, x)``: pre-norm block with causal self-attention."""
    __tracebackhide__ = True
    block = tiny_block(1)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 6, 16, generator=g)
    with torch.no_grad():
        got = call(gpt_block_forward, "gpt_block_forward", block, x.clone())
        want = block(x)
        expect(isinstance(got, torch.Tensor), f"gpt_block_forward should return a tensor, got {describe_value(got)}.")
        if got.shape == want.shape and not torch.allclose(got, want, atol=1e-5):
            for kw, msg in [
                (dict(mask="none"), "There is no causal mask: every position also sees the positions after it, so "
                                    "in training it could read the very character it must predict. Pass "
                                    "mask=causal_mask(L) to the attention."),
                (dict(mask="inverted"), "The mask polarity is inverted: True must mean 'may attend' (the lower "
                                        "triangle, the past and the present)."),
                (dict(mask="upper"), "The mask is the upper triangle: each position sees the FUTURE. Use the lower "
                                     "triangle (causal_mask)."),
                (dict(norm_first=False), "This is post-norm (norm after the residual sum); GPT-2 is pre-norm: "
                                         "x = x + attn(norm1(x)), then x = x + ff(norm2(x))."),
                (dict(residual=False), "A residual connection is missing: add each sub-layer's output to its input."),
                (dict(norms=False), "The layer norms are skipped: the sub-layers read norm1(x) and norm2(x)."),
            ]:
                if torch.allclose(got, _block_variant(block, x, **kw), atol=1e-5):
                    raise CheckFailed(f"gpt_block_forward is not right yet. {msg}")
            x2 = x.clone()
            x2[:, -1] = torch.randn(x.shape[0], x.shape[2], generator=g)
            got2 = call(gpt_block_forward, "gpt_block_forward", block, x2)
            if not torch.allclose(got[:, :-1], got2[:, :-1], atol=1e-5):
                raise CheckFailed("Changing the LAST position changes the outputs at earlier positions: the future "
                                  "leaks into the past. Use the causal mask in the self-attention.")
        compare("gpt_block_forward(block, x (2, 6, 16))", got, want, atol=1e-5)
    passed("gpt_block_forward")


# ------------------------------------------------------------------------------------------------------------
def reference_sample_next(logits, temperature=1.0, top_k=None, generator=None):
    """Sample one id per row of ``logits (B, V)`` after temperature scaling and top-k filtering."""
    from labsupport.training import top_k_filter

    probs = torch.softmax(top_k_filter(logits / temperature, top_k), dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _probs(logits_row, temperature=1.0, k=None):
    from labsupport.training import top_k_filter

    return torch.softmax(top_k_filter(logits_row[None] / temperature, k), -1)[0]


@one_thread
def check_sample_next(sample_next) -> None:
    """Check ``sample_next(logits (B, V), temperature=1.0, top_k=None, generator=None) -> ids (B,)``
    by the frequencies of many draws."""
    __tracebackhide__ = True
    row = torch.tensor([2.0, 1.0, 0.5, 0.0, -0.5, -1.0])
    N = 20000
    logits = row.repeat(N, 1)

    def freqs(**kw):
        g = torch.Generator().manual_seed(0)
        out = call(sample_next, "sample_next", logits.clone(), generator=g, **kw)
        expect(isinstance(out, torch.Tensor), f"sample_next should return a tensor of ids, got {describe_value(out)}.")
        if out.shape == (N, 1):
            raise CheckFailed(f"sample_next should return one id per row, shape (B,) = ({N},); got (B, 1). "
                              "Squeeze the last axis.")
        expect(out.shape == (N,), f"sample_next should return shape (B,) = ({N},), got {tuple(out.shape)}.")
        expect(not out.dtype.is_floating_point, f"sample_next should return integer ids, got dtype {out.dtype}.")
        return torch.bincount(out.long(), minlength=6).double() / N

    def close(f, p):
        return (f - p).abs().max().item() < 0.015

    f1 = freqs(temperature=1.0)
    if (f1 == 1.0).any():
        raise CheckFailed("sample_next always returns the same token: that is greedy decoding (argmax). Draw from "
                          "the softmax probabilities, e.g. torch.multinomial(probs, 1, generator=generator).")
    compare("token frequencies of sample_next(temperature=1.0) over 20,000 draws", f1, _probs(row), atol=0.015)
    for T in (0.5, 2.0):
        fT = freqs(temperature=T)
        if not close(fT, _probs(row, T)):
            if close(fT, _probs(row)):
                raise CheckFailed(f"With temperature={T} the samples follow the temperature-1 distribution: the "
                                  "temperature is not applied. Divide the logits by it before the softmax.")
            if close(fT, _probs(row, 1.0 / T)):
                raise CheckFailed(f"With temperature={T} the distribution is sharpened/flattened the wrong way: "
                                  "divide the logits by the temperature (you multiplied).")
            compare(f"token frequencies with temperature={T}", fT, _probs(row, T), atol=0.015)
    for k in (1, 3):
        fk = freqs(temperature=1.0, top_k=k)
        kept = int((fk > 0).sum())
        if kept == k + 1:
            raise CheckFailed(f"With top_k={k} the samples use {kept} different tokens: top-k keeps k+1. Keep exactly "
                              "the k largest logits (torch.topk(logits, k)) and set the rest to -inf.")
        if kept == k - 1 and k > 1:
            raise CheckFailed(f"With top_k={k} the samples use only {kept} different tokens: top-k keeps k-1.")
        if kept > k and close(fk, _probs(row)):
            raise CheckFailed(f"top_k={k} has no effect: keep only the k largest logits (set the others to -inf "
                              "before the softmax).")
        compare(f"token frequencies with top_k={k}", fk, _probs(row, 1.0, k), atol=0.015)
    fkT = freqs(temperature=0.7, top_k=4)
    compare("token frequencies with temperature=0.7, top_k=4", fkT, _probs(row, 0.7, 4), atol=0.015)
    passed("sample_next")


# ------------------------------------------------------------------------------------------------------------
def reference_attend_with_cache(attn, x, past_k=None, past_v=None):
    """Causal self-attention of the new positions ``x (B, L, D)`` with cached keys/values ``(B, H, T, D/H)``.

    Returns ``(output (B, L, D), keys (B, H, T + L, D/H), values (B, H, T + L, D/H))``: the library's cached
    attention (:class:`labsupport.attention.AttentionCache`), the one the GPT of the lab runs.
    """
    cache = AttentionCache(past_k, past_v)
    out, _ = attn(x, is_causal=True, cache=cache, need_weights=False)
    return out, cache.keys, cache.values


def _call_cached(fn, attn, x, k, v, what):
    __tracebackhide__ = True
    try:
        return fn(attn, x, k, v)
    except NotImplementedError:
        raise CheckFailed("`attend_with_cache` is not implemented yet: replace the `raise NotImplementedError()` "
                          "line in its cell with your code, run that cell, then run this check again.") from None
    except Exception as err:
        hint = ""
        if "Sizes of tensors must match" in str(err):
            hint = ("\nThe past and new keys/values must be concatenated along the position axis, dim 2 of "
                    "(B, H, T, D/H): torch.cat([past_k, k], dim=2).")
        elif "must match the size" in str(err) or "broadcast" in str(err):
            hint = ("\nThe mask must be (L_new, T + L_new), shifted so the last new token sees everything: "
                    "causal_mask(L_new, T + L_new).")
        raise CheckFailed(f"With {what}, attend_with_cache raised {type(err).__name__}: {err}{hint}") from None


@one_thread
def check_attend_with_cache(attend_with_cache) -> None:
    """Check ``attend_with_cache(attn, x, past_k, past_v) -> (output, keys, values)``: prefill, one-token steps
    and a multi-token chunk all agree with attention over the whole sequence."""
    __tracebackhide__ = True
    torch.manual_seed(3)
    attn = MultiHeadAttention(16, 4).eval()
    g = torch.Generator().manual_seed(4)
    seq = torch.randn(2, 7, 16, generator=g)
    with torch.no_grad():
        full, _, _ = reference_attend_with_cache(attn, seq)
        # 1) prefill of 3 tokens with an empty cache
        got = call(attend_with_cache, "attend_with_cache", attn, seq[:, :3], None, None)
        expect(isinstance(got, (tuple, list)) and len(got) == 3,
               f"attend_with_cache should return (output, keys, values), got {describe_value(got)}.")
        out, k, v = got
        expect(isinstance(k, torch.Tensor) and k.shape == (2, 4, 3, 4),
               f"after a prefill of 3 tokens the keys should have shape (B, H, T, D/H) = (2, 4, 3, 4), got "
               f"{describe_value(k)}.")
        if not torch.allclose(out, full[:, :3], atol=1e-5):
            nomask = attn(seq[:, :3])[0]
            if torch.allclose(out, nomask, atol=1e-5):
                raise CheckFailed("The prefill (several new tokens at once) has no causal mask: position 0 sees "
                                  "positions 1 and 2. Use causal_mask(L_new, T + L_new).")
        compare("output of the prefill (3 tokens, empty cache)", out, full[:, :3], atol=1e-5)
        # 2) one token at a time
        for t in (3, 4):
            got = _call_cached(attend_with_cache, attn, seq[:, t:t + 1], k, v,
                               f"one new token after {t} cached ones")
            out, k2, v2 = got
            if isinstance(k2, torch.Tensor) and k2.shape == (2, 4, 1, 4):
                raise CheckFailed("The cache is not appended: the returned keys hold only the new token. "
                                  "Concatenate the past keys/values with the new ones along the position axis "
                                  "(dim 2) and return all of them.")
            expect(isinstance(k2, torch.Tensor) and k2.shape == (2, 4, t + 1, 4),
                   f"after {t + 1} tokens the keys should have shape (2, 4, {t + 1}, 4), got {describe_value(k2)}.")
            compare(f"output for the new token at position {t} (with {t} cached)", out, full[:, t:t + 1], atol=1e-5)
            k, v = k2, v2
        # 3) a chunk of two new tokens after five cached ones
        out, k3, v3 = _call_cached(attend_with_cache, attn, seq[:, 5:7], k, v, "2 new tokens after 5 cached ones")
        if not torch.allclose(out, full[:, 5:7], atol=1e-5):
            q = attn.split_heads(attn.q_proj(seq[:, 5:7]))
            unmasked = scaled_dot_product_attention(q, k3, v3)[0]
            if torch.allclose(out, attn.out_proj(attn.merge_heads(unmasked)), atol=1e-5):
                raise CheckFailed("With 2 new tokens after 5 cached ones, the first new token sees the second: the "
                                  "causal mask is missing. Use causal_mask(L_new, T + L_new).")
        compare("output for 2 new tokens after 5 cached", out, full[:, 5:7], atol=1e-5)
        compare("keys after 7 tokens", k3, reference_attend_with_cache(attn, seq)[1], atol=1e-5)
    passed("attend_with_cache")
