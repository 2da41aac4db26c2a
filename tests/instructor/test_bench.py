"""instructor.bench: the QUALITY probe and the bars, a tiny notebook run, the nanoGPT-style twin, the ratios."""
import nbformat
import pytest
import torch

from instructor.bench import labs, micro
from instructor.bench.nanogpt import from_labsupport
from labsupport.models import GPT


def test_quality_parsing_bars_and_table():
    q = labs.parse_quality("noise\nQUALITY={\"exact_match\": 0.999}\n")
    assert q == {"exact_match": 0.999} and labs.parse_quality("nothing") is None
    assert [b["ok"] for b in labs.check_bars("lab05", q)] == [True]
    assert [b["ok"] for b in labs.check_bars("lab05", {"exact_match": 0.98})] == [False]
    assert [b["ok"] for b in labs.check_bars("lab05", None)] == [False]  # a lab that defined no QUALITY fails
    assert [b["ok"] for b in labs.check_bars("lab04", {"prenorm_loss": 0.1, "postnorm_loss": 2.7})] == [True]
    assert labs.check_bars("lab01", None) == []  # no training, no bar
    row = {"lab": "lab05_translation", "wall_s": 80.2, "peak_mb": 512.3, "bars": labs.check_bars("lab05", q),
           "status": "ok"}
    table = labs.format_table([row])
    assert "| lab05_translation | 80 OVER | 512 | exact_match=0.999 | >= 0.990 ok | ok |" in table


@pytest.mark.slow
def test_run_lab_reads_quality_from_the_kernel(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = list(range(10**6))\nQUALITY = {'val_loss': 1.2}")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "lab06_tiny.ipynb"
    nbformat.write(nb, path)
    r = labs.run_lab(path, timeout=120)
    assert r["status"] == "ok" and r["quality"] == {"val_loss": 1.2} and r["bars"][0]["ok"]
    assert r["peak_mb"] > 20 and r["wall_s"] > 0
    bad = tmp_path / "lab98_bad.ipynb"
    nb.cells = [nbformat.v4.new_code_cell("raise ValueError('boom')")]
    nbformat.write(nb, bad)
    assert "boom" in labs.run_lab(bad, timeout=120)["status"]


def test_nanogpt_twin_computes_the_same_function():
    torch.manual_seed(0)
    ours = GPT(vocab_size=31, max_len=16, d_model=32, num_heads=4, num_layers=2, dropout=0.0).double().eval()
    theirs = from_labsupport(ours).double().eval()
    x = torch.randint(0, 31, (3, 16))
    with torch.no_grad():
        torch.testing.assert_close(theirs(x), ours(x), atol=1e-12, rtol=0)
    assert sum(p.numel() for p in theirs.parameters()) == sum(p.numel() for p in ours.parameters())
    with pytest.raises(ValueError, match="exact GELU"):
        from_labsupport(GPT(vocab_size=31, max_len=16, d_model=32, num_heads=4, num_layers=1, activation="gelu_tanh"))


def test_ratios_small_and_the_table():
    dev = torch.device("cpu")
    e = micro.bench_encoder_step(dev, B=2, L=8, D=16, H=2, layers=1, d_ff=32, vocab=11)
    assert e["max_abs_diff"] < 1e-4 and e["ratio"] > 0 and e["target"] == 1.0
    a = micro.bench_attention(dev, B=1, L=16, D=16, H=2)
    assert a[0]["max_abs_diff"] < 1e-5 and a[1]["target"] is None
    table = micro.format_micro([e, *a])
    assert "encoder training step vs nn.TransformerEncoderLayer" in table and "<= 1.0" in table
    calls = []
    r = micro.interleaved(lambda: calls.append("a"), lambda: calls.append("b"), dev, rounds=2, repeats=2)
    assert calls == ["a", "b"] + ["a", "a", "b", "b"] * 2 and r["ratio"] > 0
