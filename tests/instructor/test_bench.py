"""labsupport.bench: RESULT parsing, the tables, a tiny notebook run, the micro-benchmarks on small shapes."""
import nbformat
import pytest
import torch

from labsupport import bench


def test_parse_results_and_tables():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x")]
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text=(
        "noise\nRESULT: exact_match=99.9% bar>=99.0%\nRESULT: val_loss=1.39 nats/char bar<=1.50 nats/char\n"))]
    res = bench.parse_results(nb)
    assert res == [{"name": "exact_match", "value": "99.9%", "op": ">=", "bar": "99.0%"},
                   {"name": "val_loss", "value": "1.39 nats/char", "op": "<=", "bar": "1.50 nats/char"}]
    table = bench.format_table([{"lab": "lab05_translation", "wall_s": 80.2, "peak_mb": 512.3, "results": res[:1],
                                 "status": "ok"}], "cpu (2 threads)")
    assert "| lab05_translation | 80 | 512 | cpu (2 threads) | exact_match=99.9% | >= 99.0% | ok |" in table


def test_report_result_line_is_parsed(capsys):
    from labsupport.training import report_result
    assert report_result("val_loss", 1.3912, 1.5, higher_is_better=False, digits=2, unit=" nats/char")
    assert not report_result("acc", 0.5, 0.9)
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["RESULT: val_loss=1.39 nats/char bar<=1.50 nats/char", "RESULT: acc=0.5 bar>=0.9"]
    assert bench.RESULT_RE.match(lines[0]).group("bar") == "1.50 nats/char"


@pytest.mark.slow
def test_run_lab_on_a_tiny_notebook(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = list(range(10**6))\nprint('RESULT: metric=1.0 bar>=0.5')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "lab99_tiny.ipynb"
    nbformat.write(nb, path)
    r = bench.run_lab(path, timeout=120)
    assert r["status"] == "ok" and r["results"][0]["value"] == "1.0"
    assert r["peak_mb"] > 20 and r["wall_s"] > 0
    bad = tmp_path / "lab98_bad.ipynb"
    nb.cells = [nbformat.v4.new_code_cell("raise ValueError('boom')")]
    nbformat.write(nb, bad)
    assert "boom" in bench.run_lab(bad, timeout=120)["status"]


def test_micro_benchmarks_small():
    dev = torch.device("cpu")
    a = bench.bench_attention(dev, B=1, H=2, L=16, d=8)
    assert a["max_abs_diff"] < 1e-5 and a["forward"]["ratio"] > 0
    e = bench.bench_encoder_step(dev, B=2, L=8, D=16, H=2, layers=1, d_ff=32, vocab=11)
    assert e["max_abs_diff_logits"] < 1e-4 and e["ratio"] > 0
    assert "attention forward" in bench.format_micro({"attention": a, "encoder_step": e})
