"""Hidden tests of Lab 6 (GPT): the self-checks on other inputs, then the old hidden cases through handles."""
from __future__ import annotations

import math

import torch

from instructor.grading.hidden import hidden_test
from labsupport.checks import lab06 as checks
from labsupport.checks.core import build, call, call_with, compare, expect, method


@hidden_test("test_bigram_loss", twins=["labsupport.checks.lab06:reference_bigram_loss"])
def test_bigram_loss(student, seed):
    checks.check_bigram_loss(student.bigram_loss, seed=seed)
    t = torch.tensor([0, 1, 0, 1, 0, 1])
    for val, want, what in (([0, 1], -math.log(4 / 5), "P(1 | 0) = (3 + 1) / (3 + 2)"),
                            ([1, 1], -math.log(1 / 4), "an unseen pair: (0 + 1) / (2 + 2)")):
        shown = f"bigram_loss({t.tolist()}, {val}, 2) ({what})"
        got = checks.loss_number(shown, call(student.bigram_loss, "bigram_loss", t, torch.tensor(val), 2))
        compare(shown, torch.tensor(got, dtype=torch.float64), torch.tensor(want, dtype=torch.float64), atol=1e-6)


@hidden_test("test_gpt_block_forward", twins=["labsupport.models.gpt:GPTBlock.forward"])
def test_gpt_block_forward(student, seed):
    checks.check_gpt_block_forward(student.gpt_block_forward, seed=seed)
    fn = student.gpt_block_forward
    g = torch.Generator().manual_seed(seed)
    block = build(fn, checks.tiny_block, seed + 7, 8, 2)
    twin = checks.tiny_block(seed + 7, 8, 2)
    x = torch.randn(3, 5, 8, generator=g)
    with torch.no_grad():
        compare("gpt_block_forward(block (d_model 8, 2 heads), x (3, 5, 8))", call(fn, "gpt_block_forward", block, x),
                twin(x), atol=1e-5)
    x2 = x.clone()
    x2[:, 3:] = torch.randn(3, 2, 8, generator=g)
    y1, y2 = call(fn, "gpt_block_forward", block, x), call(fn, "gpt_block_forward", block, x2)
    compare("the outputs at positions 0-2 after positions 3-4 changed (no leak from the future)", y2[:, :3],
            y1[:, :3], atol=1e-5)
    block = build(fn, checks.tiny_block, seed + 8, 8, 2, dropout=0.4, training=True)
    twin = checks.tiny_block(seed + 8, 8, 2, dropout=0.4, training=True)
    got = call_with(fn, "gpt_block_forward", (block, x), seed=seed + 9)
    with torch.no_grad():
        torch.manual_seed(seed + 9)
        want = twin(x)
    compare("gpt_block_forward in training mode (dropout 0.4 / 0.2 / 0.6, a fixed seed)", got, want, atol=1e-5)


@hidden_test("test_sample_next", twins=["labsupport.checks.lab06:reference_sample_next",
                                        "labsupport.training:top_k_filter"])
def test_sample_next(student, seed):
    checks.check_sample_next(student.sample_next, seed=seed)
    fn = student.sample_next

    def generator(s):
        g = build(fn, torch.Generator)
        method(g, "manual_seed", "torch.Generator.manual_seed", s)
        return g

    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0]]).repeat(20000, 1)
    ids = call_with(fn, "sample_next", (logits, 1.0), {"top_k": 2, "generator": generator(seed + 1)})
    expect(isinstance(ids, torch.Tensor) and ids.shape == (20000,), "sample_next must return one id per row.")
    expect(set(ids.tolist()) == {1, 3}, "With top_k=2 only the two largest logits (ids 1 and 3) may be drawn, and "
                                        f"both should be; the draws used ids {sorted(set(ids.tolist()))}.")
    share = float((ids == 1).double().mean())
    expect(abs(share - math.e / (math.e + 1)) < 0.02,
           f"With top_k=2 the kept two are renormalised: id 1 should be drawn {100 * math.e / (math.e + 1):.0f}% of "
           f"the time, it was drawn {100 * share:.0f}%.")
    ids = call_with(fn, "sample_next", (logits,), {"temperature": 0.05, "generator": generator(seed + 2)})
    expect(isinstance(ids, torch.Tensor) and float((ids == 1).double().mean()) > 0.99,
           "A low temperature (0.05) should be almost greedy: the largest logit drawn more than 99% of the time.")


@hidden_test("test_attend_with_cache", twins=["labsupport.checks.lab06:reference_attend_with_cache",
                                              "labsupport.attention:AttentionCache"])
def test_attend_with_cache(student, seed):
    checks.check_attend_with_cache(student.attend_with_cache, seed=seed)
    fn = student.attend_with_cache
    attn = build(fn, checks.tiny_attention, seed + 5, 12, 3)
    twin = checks.tiny_attention(seed + 5, 12, 3)
    seq = torch.randn(1, 6, 12, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        full = checks.reference_attend_with_cache(twin, seq)[0]
    got = call(fn, "attend_with_cache", attn, seq[:, :4], None, None)
    expect(isinstance(got, tuple) and len(got) == 3, "attend_with_cache must return (output, keys, values).")
    out, k, v = got
    got = call(fn, "attend_with_cache", attn, seq[:, 4:], k, v)
    expect(isinstance(got, tuple) and len(got) == 3, "attend_with_cache must return (output, keys, values).")
    out2, k, v = got
    compare("a prefill of 4 then 2 new positions (d_model 12, 3 heads), outputs", torch.cat([out, out2], 1), full,
            atol=1e-5)
    expect(tuple(k.shape) == (1, 3, 6, 4) and tuple(v.shape) == (1, 3, 6, 4),
           f"after 6 positions the keys and values should be (1, 3, 6, 4), got {tuple(k.shape)} and "
           f"{tuple(v.shape)}.")
