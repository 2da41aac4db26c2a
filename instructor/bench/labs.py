"""Run each lab as a student would, and check the quality it reached against this bench's bars.

Each notebook runs top to bottom in a fresh kernel (nbclient, working directory ``notebooks/``), exactly as
committed (the solution version). Wall seconds cover the whole run, kernel start included. Peak memory is the
largest total resident set size of all processes started by this command (the kernel and anything it spawns),
polled every 50 ms. Then one more cell runs in the same kernel and prints ``json.dumps(QUALITY)``: every training
lab ends by defining ``QUALITY = {"metric": value, ...}``; the labs print their results for the reader, the bench
reads this dict and compares it with :data:`BARS` (the labs' own asserts use the same bars).
"""
from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

#: Each training lab's quality bars: ``(metric, op, bar)``; ``bar`` is a number or the name of another metric.
BARS: dict[str, list[tuple[str, str, float | str]]] = {
    "lab02": [("accuracy_previous_token", ">=", 0.99), ("accuracy_first_token", ">=", 0.99)],
    "lab04": [("prenorm_loss", "<", "postnorm_loss")],
    "lab05": [("exact_match", ">=", 0.99)],
    "lab06": [("val_loss", "<=", 1.50)],
    "lab07": [("pretraining_gain", ">=", 0.10)],
    "lab08": [("test_acc", ">=", 0.97)],
    "lab09": [("tokens_match", ">=", 1.0), ("hidden_max_diff", "<=", 1e-4), ("pretrained_mrr", ">", "tfidf_mrr"),
              ("pretrained_mrr", ">", "scratch_mrr"), ("previous_token_share", ">=", 0.9)],
}
#: Every lab's wall-time target on 2 CPU cores (issue 12).
WALL_TARGET_S = 75.0

QUALITY_CELL = "import json as _json\nprint('QUALITY=' + _json.dumps(globals().get('QUALITY')))"
_OPS = {">=": float.__ge__, "<=": float.__le__, ">": float.__gt__, "<": float.__lt__}


class PeakRSS:
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


def lab_number(path: Path) -> int:
    m = re.match(r"lab(\d+)", path.name)
    return int(m.group(1)) if m else -1


def lab_key(path: Path) -> str:
    return path.name[:5]


def parse_quality(text: str) -> dict | None:
    """The dict printed by :data:`QUALITY_CELL` (``None`` when the lab defines no ``QUALITY``)."""
    for line in text.splitlines():
        if line.startswith("QUALITY="):
            return json.loads(line[len("QUALITY="):])
    return None


def check_bars(lab: str, quality: dict | None) -> list[dict]:
    """``[{"metric", "value", "op", "bar", "ok"}, ...]`` for the bars of ``lab``; a missing metric fails its bar."""
    rows = []
    for metric, op, bar in BARS.get(lab, []):
        value = None if quality is None else quality.get(metric)
        bar_value = quality.get(bar) if isinstance(bar, str) and quality else bar
        ok = value is not None and bar_value is not None and _OPS[op](float(value), float(bar_value))
        rows.append({"metric": metric, "value": value, "op": op, "bar": bar, "bar_value": bar_value, "ok": ok})
    return rows


def run_lab(path: Path, timeout: int = 1200) -> dict:
    """Execute one notebook in a fresh kernel; wall seconds, peak MB, quality and its bars, status."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:  # start from a clean notebook, as a student opening it fresh
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    probe = nbformat.v4.new_code_cell(QUALITY_CELL)
    nb.cells.append(probe)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    status, quality = "ok", None
    start = time.perf_counter()
    with PeakRSS() as mem:
        try:
            client.execute()
            quality = parse_quality("".join(o.get("text", "") for o in probe.outputs))
        except CellExecutionError as err:
            status = "error: " + (str(err).strip().splitlines() or ["?"])[-1][:120]
        except Exception as err:  # timeouts, dead kernels
            status = f"error: {type(err).__name__}: {str(err)[:120]}"
    wall = time.perf_counter() - start
    bars = check_bars(lab_key(path), quality)
    return {"lab": path.stem, "wall_s": wall, "peak_mb": mem.peak / 2**20, "quality": quality, "bars": bars,
            "status": status}


def _fmt(v) -> str:
    return "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


def format_table(rows: list[dict]) -> str:
    lines = [f"| lab | wall s (target <= {WALL_TARGET_S:.0f}) | peak MB | quality reached | bar | status |",
             "|---|---:|---:|---|---|---|"]
    for r in rows:
        wall_ok = "ok" if r["wall_s"] <= WALL_TARGET_S else "OVER"
        reached = "; ".join(f"{b['metric']}={_fmt(b['value'])}" for b in r["bars"]) or "-"
        bars = "; ".join(f"{b['op']} {_fmt(b['bar'])} {'ok' if b['ok'] else 'MISSED'}" for b in r["bars"]) or "-"
        lines.append(f"| {r['lab']} | {r['wall_s']:.0f} {wall_ok} | {r['peak_mb']:.0f} | {reached} | {bars} | "
                     f"{r['status']} |")
    return "\n".join(lines)
