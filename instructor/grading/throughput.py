"""Grading throughput: the same folder of Lab 1 solutions graded with and without the sandbox, in one run.

    python -m instructor.grading.throughput [--students 40] [--jobs 2] [--repeats 1]

Prints a table: seconds in all, seconds per submission, and the ratio sandboxed / unsandboxed (the cost of the
isolation; both runs use the same harness, out of the student's process). The two modes alternate when
``--repeats`` > 1, so that a busy machine slows both alike. Needs the sandbox (Linux, root, bubblewrap).
"""
from __future__ import annotations

import argparse
import copy
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import nbformat

from instructor.grading import settings
from instructor.grading.grade import grade
from instructor.grading.release import release

LAB = "lab01_attention_numpy"


def solved(src, rel):
    nb = copy.deepcopy(rel)
    by_id = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in src.cells}
    for c in nb.cells:
        nbg = c.metadata.get("nbgrader", {})
        if nbg.get("solution") and c.cell_type == "code":
            c.source = "\n".join(line for line in by_id[nbg["grade_id"]].source.split("\n")
                                 if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION"))
    return nb


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--students", type=int, default=40)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="grading-throughput-"))
    try:
        (base / "src").mkdir()
        shutil.copy(settings.ROOT / "notebooks" / f"{LAB}.ipynb", base / "src")
        release(base / "src", base / "release", base / "ws")
        src = nbformat.read(base / "src" / f"{LAB}.ipynb", as_version=4)
        rel = nbformat.read(base / "release" / LAB / f"{LAB}.ipynb", as_version=4)
        nb = solved(src, rel)
        for i in range(args.students):
            path = base / "subs" / f"student{i:03d}" / f"{LAB}.ipynb"
            path.parent.mkdir(parents=True)
            nbformat.write(nb, path)
        times = {True: [], False: []}
        quiet = lambda *a: None  # noqa: E731
        for r in range(args.repeats):
            for sandboxed in (True, False) if r % 2 == 0 else (False, True):
                ws = base / f"ws-{sandboxed}-{r}"
                shutil.copytree(base / "ws", ws)
                start = time.perf_counter()
                results = grade(base / "subs", base / f"out-{sandboxed}-{r}", base / "src", ws, jobs=args.jobs,
                                sandboxed=sandboxed, log=quiet)
                times[sandboxed].append(time.perf_counter() - start)
                full = sum(1 for x in results if x.total == 11)
                assert full == args.students, f"only {full} of {args.students} got full marks"
        s, u = statistics.median(times[True]), statistics.median(times[False])
        print(f"{args.students} Lab 1 solutions, {args.jobs} jobs, median of {args.repeats} run(s) per mode")
        print(f"{'mode':<14}{'seconds':>10}{'s/submission':>15}")
        print(f"{'sandboxed':<14}{s:>10.1f}{s / args.students:>15.2f}")
        print(f"{'unsandboxed':<14}{u:>10.1f}{u / args.students:>15.2f}")
        print(f"ratio sandboxed / unsandboxed: {s / u:.2f} (target <= 1.2)")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
