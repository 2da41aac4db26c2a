"""labsupport.models.gpt: shapes, causality, the KV cache, sampling with and without it, GPT-2 small's count."""
import pytest
import torch

from labsupport.models import GPT, KVCache, count_parameters
from labsupport.training import sample, top_k_filter

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def small_gpt(**kw):
    torch.manual_seed(0)
    cfg = dict(max_len=32, d_model=32, num_heads=4, num_layers=2, dropout=0.0)
    cfg.update(kw)
    return GPT(vocab_size=17, **cfg).eval()


def test_gpt_shapes_and_causality():
    model = small_gpt()
    idx = torch.randint(0, 17, (3, 12))
    logits = model(idx)
    assert logits.shape == (3, 12, 17)
    idx2 = idx.clone()
    idx2[:, 7] = (idx2[:, 7] + 1) % 17
    logits2 = model(idx2)
    torch.testing.assert_close(logits[:, :7], logits2[:, :7], atol=1e-5, rtol=1e-5)
    assert (logits[:, 7:] - logits2[:, 7:]).abs().max() > 1e-4
    assert model.lm_head.weight is model.tok_embed.weight
    with pytest.raises(ValueError, match="max_len"):
        model(torch.zeros(1, 33, dtype=torch.long))
    with pytest.raises(TypeError, match="keyword arguments"):
        GPT(17)


def test_gpt_cache_forward_equals_full_forward():
    model = small_gpt()
    idx = torch.randint(0, 17, (2, 10))
    full = model(idx)
    cache = model.new_cache()
    parts = [model(idx[:, :6], cache=cache)]
    assert isinstance(cache, KVCache) and cache.length == 6
    for t in range(6, 10):
        parts.append(model(idx[:, t:t + 1], cache=cache))
    assert cache.length == 10 and cache[1].keys.shape == (2, 4, 10, 8) and cache.nbytes() == 2 * 2 * 2 * 4 * 10 * 8 * 4
    assert len(cache) == 2
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("temperature,top_k", [(0, None), (1.0, 5), (0.8, None)])
def test_kv_cache_generation_equals_no_cache(temperature, top_k):
    model = small_gpt()
    prompt = torch.randint(0, 17, (2, 5))
    outs = []
    for use_cache in (True, False):
        g = torch.Generator().manual_seed(3)
        outs.append(sample(model, prompt, 40, temperature=temperature, top_k=top_k, use_cache=use_cache, generator=g))
    assert outs[0].shape == (2, 45)  # runs past max_len=32: the context is cropped
    assert torch.equal(outs[0], outs[1])
    assert torch.equal(outs[0][:, :5], prompt)


def test_top_k_filter():
    logits = torch.tensor([[1.0, 5.0, 3.0, 2.0, 4.0]])
    out = top_k_filter(logits, 2)
    assert torch.isinf(out).sum() == 3 and out[0, 1] == 5 and out[0, 4] == 4
    assert torch.equal(top_k_filter(logits, None), logits)


def test_gpt2_small_parameter_count_on_meta():
    with torch.device("meta"):
        model = GPT.gpt2_small()
    assert count_parameters(model) == 124_439_808
    assert model.lm_head.weight is model.tok_embed.weight
