"""``make bench``: ``python -m instructor.bench [--labs 5 6] [--micro-only | --no-micro] [--json FILE]``.

The labs run as a student's would, with OpenMP's default wait policy. On a machine shared with other jobs set
``OMP_WAIT_POLICY=PASSIVE`` (the kernels inherit it): worker threads then sleep while waiting instead of
spinning, which avoids a 5-30x slow-down of small PyTorch workloads when other processes hold the cores, but on
an idle machine it makes the labs slower (Lab 8: 93 s instead of 62 s on 2 cores), so it is not the default.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m instructor.bench",
                                 description="Run the labs as a student would and measure speed ratios.")
    ap.add_argument("--labs", type=int, nargs="*", help="lab numbers to run (default: all notebooks/labNN_*.ipynb)")
    ap.add_argument("--micro-only", action="store_true", help="only the speed ratios")
    ap.add_argument("--no-micro", action="store_true", help="skip the speed ratios")
    ap.add_argument("--timeout", type=int, default=1200, help="seconds per notebook cell (default 1200)")
    ap.add_argument("--notebooks", default=str(ROOT / "notebooks"), help="folder of the lab notebooks")
    ap.add_argument("--json", help="also write the measurements to this JSON file")
    args = ap.parse_args(argv)

    import torch

    from instructor.bench import labs, micro
    from labsupport.device import describe, get_device

    device = get_device()
    dev = describe(device)
    report: dict = {"device": dev, "torch": torch.__version__, "labs": [], "micro": []}
    failed = False
    if not args.micro_only:
        paths = sorted(Path(args.notebooks).glob("lab[0-9][0-9]_*.ipynb"))
        if args.labs:
            paths = [p for p in paths if labs.lab_number(p) in set(args.labs)]
            missing = set(args.labs) - {labs.lab_number(p) for p in paths}
            if missing:
                print(f"no notebook for lab(s) {sorted(missing)} in {args.notebooks}", file=sys.stderr)
        for p in paths:
            print(f"running {p.name} ...", flush=True)
            r = labs.run_lab(p, args.timeout)
            print(f"  {r['wall_s']:.0f} s, peak {r['peak_mb']:.0f} MB, {r['status']}", flush=True)
            report["labs"].append(r)
            failed |= r["status"] != "ok" or not all(b["ok"] for b in r["bars"])
        if report["labs"]:
            print(f"\nLabs, run top to bottom in a fresh kernel on {dev}:\n")
            print(labs.format_table(report["labs"]))
    if not args.no_micro:
        print("\nmeasuring the speed ratios ...", flush=True)
        report["micro"] = micro.run_all(device)
        print(f"\nSpeed ratios on {dev} (torch {torch.__version__}; labsupport's time over the other's, "
              "interleaved in this run):\n")
        print(micro.format_micro(report["micro"]))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
