"""Lab 6 self-checks: the reference passes, each typical mistake is caught with its specific message."""
import pytest
import torch

from labsupport.attention import causal_mask, scaled_dot_product_attention
from labsupport.checks import CheckFailed
from labsupport.checks import lab06 as C
from checkhelpers import not_implemented


def fails(check, fn, *needles):
    with pytest.raises(CheckFailed) as err:
        check(fn)
    for n in needles:
        assert n in err.value.message, err.value.message
    return err.value.message


# bigram ---------------------------------------------------------------------------------------------------
def student_bigram(train_ids, val_ids, V):
    counts = torch.ones(V, V)
    for a, b in zip(train_ids[:-1].tolist(), train_ids[1:].tolist()):
        counts[a, b] += 1
    probs = counts / counts.sum(1, keepdim=True)
    return -probs[val_ids[:-1], val_ids[1:]].log().mean()


def test_bigram(capsys):
    C.check_bigram_loss(student_bigram)
    C.check_bigram_loss(lambda t, v, V: float(C.reference_bigram_loss(t, v, V)))
    assert capsys.readouterr().out.count("✓ bigram_loss") == 2
    fails(C.check_bigram_loss, lambda t, v, V: C.reference_bigram_loss(t, v, V, alpha=0.0), "add-one smoothing")
    fails(C.check_bigram_loss, lambda t, v, V: C.reference_bigram_loss(t, v, V, per_column=True), "COLUMN")
    fails(C.check_bigram_loss, lambda t, v, V: C.reference_bigram_loss(t, v, V, transpose=True), "reversed")
    fails(C.check_bigram_loss, lambda t, v, V: C.reference_bigram_loss(t, v, V, unigram=True), "unigram")
    fails(C.check_bigram_loss, lambda t, v, V: C.reference_bigram_loss(t, v, V, reduce="sum"), "mean per character")
    fails(C.check_bigram_loss, lambda t, v, V: C.reference_bigram_loss(t, v, V, alpha=0.5), "wrong values")
    fails(C.check_bigram_loss, not_implemented, "not implemented yet")


# GPT block --------------------------------------------------------------------------------------------------
def student_block(block, x):
    mask = causal_mask(x.shape[1], device=x.device)
    x = x + block.dropout1(block.self_attn(block.norm1(x), mask=mask)[0])
    return x + block.dropout2(block.ff(block.norm2(x)))


def test_gpt_block(capsys):
    C.check_gpt_block_forward(student_block)
    assert "✓ gpt_block_forward" in capsys.readouterr().out
    v = lambda **kw: (lambda b, x: C._block_variant(b, x, **kw))
    fails(C.check_gpt_block_forward, v(mask="none"), "no causal mask")
    fails(C.check_gpt_block_forward, v(mask="inverted"), "polarity is inverted")
    fails(C.check_gpt_block_forward, v(mask="upper"), "upper triangle")
    fails(C.check_gpt_block_forward, v(norm_first=False), "post-norm")
    fails(C.check_gpt_block_forward, v(residual=False), "residual")
    fails(C.check_gpt_block_forward, v(norms=False), "layer norms are skipped")
    # some other leak: attention over a mask that lets position 0 see the last position
    def leaky(b, x):
        m = causal_mask(x.shape[1]).clone()
        m[0, -1] = True
        x = x + b.self_attn(b.norm1(x), mask=m)[0]
        return x + b.ff(b.norm2(x))
    fails(C.check_gpt_block_forward, leaky, "future leaks")
    fails(C.check_gpt_block_forward, not_implemented, "not implemented yet")


# sampling -------------------------------------------------------------------------------------------------
def student_sample(logits, temperature=1.0, top_k=None, generator=None, variant=None):
    if variant != "no_temp":
        logits = logits * temperature if variant == "mul_temp" else logits / temperature
    if top_k is not None and variant != "no_topk":
        k = top_k + 1 if variant == "k_plus_1" else top_k
        kth = torch.topk(logits, k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if variant == "argmax":
        return logits.argmax(-1)
    out = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)
    return out if variant == "keepdim" else out.squeeze(-1)


def test_sample_next(capsys):
    C.check_sample_next(student_sample)
    C.check_sample_next(C.reference_sample_next)
    # a different but correct sampler (Gumbel-max trick) passes too: the check is statistical
    def gumbel(logits, temperature=1.0, top_k=None, generator=None):
        from labsupport.training import top_k_filter
        u = torch.rand(logits.shape, generator=generator).clamp_min(1e-12)
        return (top_k_filter(logits / temperature, top_k) - torch.log(-torch.log(u))).argmax(-1)
    C.check_sample_next(gumbel)
    assert capsys.readouterr().out.count("✓ sample_next") == 3
    v = lambda name: (lambda *a, **k: student_sample(*a, **k, variant=name))
    fails(C.check_sample_next, v("no_temp"), "temperature is not applied")
    fails(C.check_sample_next, v("mul_temp"), "you multiplied")
    fails(C.check_sample_next, v("k_plus_1"), "keeps k+1")
    fails(C.check_sample_next, v("no_topk"), "no effect")
    fails(C.check_sample_next, v("argmax"), "greedy")
    fails(C.check_sample_next, v("keepdim"), "Squeeze")
    fails(C.check_sample_next, not_implemented, "not implemented yet")


# KV cache -------------------------------------------------------------------------------------------------
def student_cache(attn, x, past_k, past_v, variant=None):
    q = attn.split_heads(attn.q_proj(x))
    k = attn.split_heads(attn.k_proj(x))
    v = attn.split_heads(attn.v_proj(x))
    new_k, new_v = k, v
    if past_k is not None:
        dim = 1 if variant == "axis" else 2
        k = torch.cat([past_k, k], dim=dim)
        v = torch.cat([past_v, v], dim=dim)
    L, T = q.shape[2], k.shape[2]
    mask = {None: causal_mask(L, T), "no_offset": causal_mask(L), "no_mask": None, "not_appended": causal_mask(L, T),
            "axis": causal_mask(L, T)}[variant]
    out, _ = scaled_dot_product_attention(q, k, v, mask)
    out = attn.out_proj(attn.merge_heads(out))
    if variant == "not_appended":
        return out, new_k, new_v
    return out, k, v


def test_attend_with_cache(capsys):
    C.check_attend_with_cache(student_cache)
    C.check_attend_with_cache(C.reference_attend_with_cache)
    assert capsys.readouterr().out.count("✓ attend_with_cache") == 2
    v = lambda name: (lambda *a: student_cache(*a, variant=name))
    fails(C.check_attend_with_cache, v("not_appended"), "cache is not appended")
    fails(C.check_attend_with_cache, v("axis"), "dim 2")
    fails(C.check_attend_with_cache, v("no_offset"), "causal_mask(L_new, T + L_new)")
    fails(C.check_attend_with_cache, v("no_mask"), "no causal mask")
    fails(C.check_attend_with_cache, not_implemented, "not implemented yet")
    fails(C.check_attend_with_cache, lambda *a: student_cache(*a)[0], "(output, keys, values)")
