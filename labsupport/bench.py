"""``make bench``: run every lab as a student would and measure time, memory and quality; plus two micro-benchmarks.

Usage::

    python -m labsupport.bench                       # every notebooks/labNN_*.ipynb, then the micro-benchmarks
    python -m labsupport.bench --labs 5 6            # a subset of the labs
    python -m labsupport.bench --micro-only          # only the micro-benchmarks
    python -m labsupport.bench --no-micro --json bench.json

**Labs.** Each notebook runs top to bottom in a fresh kernel (nbclient, working directory ``notebooks/``), exactly
as committed (the solution version). Wall seconds cover the whole run, kernel start included. Peak memory is the
largest total resident set size (RSS) of all processes started by this command (the kernel and anything it
spawns), polled every 50 ms. The quality metric is read from the lines starting with ``RESULT:`` that a training
lab prints (:func:`labsupport.training.report_result`), e.g. ``RESULT: exact_match=99.9% bar>=99.0%``.

The environment variable ``OMP_WAIT_POLICY`` defaults to ``PASSIVE`` here (set it to override): OpenMP worker
threads then sleep while waiting instead of spinning, which costs nothing on an idle machine and avoids a 5-30x
slow-down of small PyTorch workloads when other processes share the CPU cores.

**Micro-benchmarks**, as time ratios (labsupport / PyTorch; 1.0 = as fast, 2.0 = twice as slow):

* attention: :func:`labsupport.attention.scaled_dot_product_attention` against
  ``F.scaled_dot_product_attention`` (fused kernels), forward and forward + backward;
* an encoder training step: a model built from :class:`labsupport.blocks.Encoder` against the same model built
  from ``nn.TransformerEncoderLayer`` with the same weights (forward, backward, Adam step).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import threading
import time
from pathlib import Path

RESULT_RE = re.compile(r"^RESULT:\s*(?P<name>[^=\s]+)=(?P<value>.+?)\s+bar(?P<op>[<>]=)(?P<bar>.+)$")
ROOT = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------------------------------------------
# Running the labs
# ----------------------------------------------------------------------------------------------------------------
class _PeakRSS:
    """Poll the total RSS of this process's descendants (the kernel tree) in a background thread."""

    def __init__(self, interval: float = 0.05):
        import psutil

        self.psutil, self.interval, self.peak = psutil, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        me = self.psutil.Process()
        while not self._stop.is_set():
            total = 0
            for p in me.children(recursive=True):
                try:
                    total += p.memory_info().rss
                except (self.psutil.NoSuchProcess, self.psutil.AccessDenied):
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def parse_results(nb) -> list[dict]:
    """The ``RESULT:`` lines of an executed notebook: ``[{"name", "value", "op", "bar"}, ...]``."""
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            text = out.get("text", "") if out.get("output_type") == "stream" else out.get("data", {}).get("text/plain", "")
            for line in str(text).splitlines():
                m = RESULT_RE.match(line.strip())
                if m:
                    found.append(m.groupdict())
    return found


def lab_number(path: Path) -> int:
    m = re.match(r"lab(\d+)", path.name)
    return int(m.group(1)) if m else -1


def run_lab(path: Path, timeout: int = 1200) -> dict:
    """Execute one notebook in a fresh kernel; return wall seconds, peak MB, results, status."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:  # start from a clean notebook, as a student opening it fresh
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    status = "ok"
    start = time.perf_counter()
    with _PeakRSS() as mem:
        try:
            client.execute()
        except CellExecutionError as err:
            status = "error: " + (str(err).strip().splitlines() or ["?"])[-1][:120]
        except Exception as err:  # timeouts, dead kernels
            status = f"error: {type(err).__name__}: {str(err)[:120]}"
    wall = time.perf_counter() - start
    return {"lab": path.stem, "wall_s": wall, "peak_mb": mem.peak / 2**20, "results": parse_results(nb), "status": status}


# ----------------------------------------------------------------------------------------------------------------
# Micro-benchmarks
# ----------------------------------------------------------------------------------------------------------------
def _time(fn, device, repeats: int = 20, warmup: int = 3) -> float:
    """Median seconds per call of ``fn`` (synchronising CUDA)."""
    import torch

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_attention(device, B=8, H=8, L=256, d=64) -> dict:
    """labsupport's scaled dot-product attention vs ``F.scaled_dot_product_attention``, causal mask."""
    import torch
    import torch.nn.functional as F

    from labsupport.attention import causal_mask, scaled_dot_product_attention

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(B, H, L, d, generator=g).to(device).requires_grad_() for _ in range(3))
    mask = causal_mask(L, device=device)
    ours_out = scaled_dot_product_attention(q, k, v, mask)[0]
    torch_out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    max_diff = (ours_out - torch_out).abs().max().item()

    def fwd(ours):
        with torch.no_grad():
            return scaled_dot_product_attention(q, k, v, mask)[0] if ours else F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

    def fwd_bwd(ours):
        out = scaled_dot_product_attention(q, k, v, mask)[0] if ours else F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out.sum().backward()

    res = {"shape": f"B={B} H={H} L={L} d={d}", "max_abs_diff": max_diff}
    for name, fn in (("forward", fwd), ("forward+backward", fwd_bwd)):
        t_ours = _time(lambda: fn(True), device)
        t_torch = _time(lambda: fn(False), device)
        res[name] = {"labsupport_ms": 1e3 * t_ours, "torch_ms": 1e3 * t_torch, "ratio": t_ours / t_torch}
    return res


def bench_encoder_step(device, B=32, L=128, D=128, H=4, layers=2, d_ff=512, vocab=100) -> dict:
    """One training step of an encoder classifier built from labsupport.blocks.Encoder vs nn.TransformerEncoder."""
    import torch
    from torch import nn

    from labsupport.blocks import Encoder

    class Model(nn.Module):
        def __init__(self, ours: bool):
            super().__init__()
            self.embed = nn.Embedding(vocab, D)
            if ours:
                self.encoder = Encoder(layers, D, H, d_ff, dropout=0.0, norm_first=True)
            else:
                layer = nn.TransformerEncoderLayer(D, H, d_ff, dropout=0.0, batch_first=True, norm_first=True)
                self.encoder = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(D), enable_nested_tensor=False)
            self.head = nn.Linear(D, vocab)

        def forward(self, x):
            return self.head(self.encoder(self.embed(x)))

    torch.manual_seed(0)
    theirs = Model(False).to(device)
    ours = Model(True).to(device)
    ours.embed.load_state_dict(theirs.embed.state_dict())
    ours.head.load_state_dict(theirs.head.state_dict())
    ours.encoder.load_from_torch(theirs.encoder)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, vocab, (B, L), generator=g).to(device)
    y = torch.randint(0, vocab, (B, L), generator=g).to(device)
    loss_fn = nn.CrossEntropyLoss()
    with torch.no_grad():
        diff = (ours(x) - theirs(x)).abs().max().item()

    def make_step(model):
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)

        def step():
            loss = loss_fn(model(x).reshape(-1, vocab), y.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return step

    t_ours = _time(make_step(ours), device, repeats=10)
    t_torch = _time(make_step(theirs), device, repeats=10)
    return {"shape": f"B={B} L={L} D={D} H={H} layers={layers} d_ff={d_ff}", "max_abs_diff_logits": diff,
            "labsupport_ms": 1e3 * t_ours, "torch_ms": 1e3 * t_torch, "ratio": t_ours / t_torch}


# ----------------------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------------------
def format_table(rows: list[dict], device: str) -> str:
    lines = ["| lab | wall s | peak MB | device | metric reached | bar | status |",
             "|---|---:|---:|---|---|---|---|"]
    for r in rows:
        metrics = "; ".join(f"{m['name']}={m['value']}" for m in r["results"]) or "-"
        bars = "; ".join(f"{m['op']} {m['bar']}" for m in r["results"]) or "-"
        lines.append(f"| {r['lab']} | {r['wall_s']:.0f} | {r['peak_mb']:.0f} | {device} | {metrics} | {bars} | {r['status']} |")
    return "\n".join(lines)


def format_micro(micro: dict) -> str:
    lines = ["| benchmark | shape | labsupport ms | PyTorch ms | ratio (labsupport / PyTorch) | max abs difference |",
             "|---|---|---:|---:|---:|---:|"]
    a = micro.get("attention")
    if a:
        for k in ("forward", "forward+backward"):
            lines.append(f"| attention {k} vs F.scaled_dot_product_attention | {a['shape']} | "
                         f"{a[k]['labsupport_ms']:.2f} | {a[k]['torch_ms']:.2f} | {a[k]['ratio']:.2f} | {a['max_abs_diff']:.1e} |")
    e = micro.get("encoder_step")
    if e:
        lines.append(f"| encoder training step vs nn.TransformerEncoderLayer | {e['shape']} | "
                     f"{e['labsupport_ms']:.1f} | {e['torch_ms']:.1f} | {e['ratio']:.2f} | {e['max_abs_diff_logits']:.1e} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m labsupport.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--labs", type=int, nargs="*", help="lab numbers to run (default: all notebooks/labNN_*.ipynb)")
    ap.add_argument("--micro-only", action="store_true", help="only the micro-benchmarks")
    ap.add_argument("--no-micro", action="store_true", help="skip the micro-benchmarks")
    ap.add_argument("--timeout", type=int, default=1200, help="seconds per notebook cell (default 1200)")
    ap.add_argument("--notebooks", default=str(ROOT / "notebooks"), help="folder of the lab notebooks")
    ap.add_argument("--json", help="also write the measurements to this JSON file")
    args = ap.parse_args(argv)

    # The kernels inherit this: OpenMP threads then sleep instead of spinning while they wait, which changes nothing
    # on an idle machine but keeps a shared (loaded) machine from slowing PyTorch down 5-30x. Set before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    from labsupport.device import describe, get_device

    device = get_device()
    dev = describe(device)
    report: dict = {"device": dev, "torch": torch.__version__, "labs": [], "micro": {}}
    failed = False
    if not args.micro_only:
        paths = sorted(Path(args.notebooks).glob("lab[0-9][0-9]_*.ipynb"))
        if args.labs:
            paths = [p for p in paths if lab_number(p) in set(args.labs)]
            missing = set(args.labs) - {lab_number(p) for p in paths}
            if missing:
                print(f"no notebook for lab(s) {sorted(missing)} in {args.notebooks}", file=sys.stderr)
        for p in paths:
            print(f"running {p.name} ...", flush=True)
            r = run_lab(p, args.timeout)
            print(f"  {r['wall_s']:.0f} s, peak {r['peak_mb']:.0f} MB, {r['status']}", flush=True)
            report["labs"].append(r)
            failed |= r["status"] != "ok"
        if report["labs"]:
            print("\nLabs, run top to bottom in a fresh kernel:\n")
            print(format_table(report["labs"], dev))
    if not args.no_micro:
        print("\nrunning the micro-benchmarks ...", flush=True)
        report["micro"]["attention"] = bench_attention(device)
        report["micro"]["encoder_step"] = bench_encoder_step(device)
        print(f"\nMicro-benchmarks on {dev} (torch {torch.__version__}; the ratio is labsupport's time over PyTorch's):\n")
        print(format_micro(report["micro"]))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
