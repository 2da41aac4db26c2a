"""``make grade``: a folder (or zip) of submissions in, ``grades.csv`` and feedback out.

1. find the submissions (:mod:`.submissions`) and read each one, only reading the submitted file;
2. repair a copy (:mod:`.repair`) into ``_grading/sanitized/``;
3. grade each copy in its own sandbox (:mod:`.harness`), ``jobs`` at a time, each in a trusted grading process
   of its own; the verdicts go to ``_grading/results/``;
4. only then, in this process: nbgrader's gradebook (``autograde`` with the verdicts injected, no code run),
   the CSV, the feedback and the log (:mod:`.report`).
"""
from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import os
import shutil
import warnings
from pathlib import Path, PurePosixPath

import nbformat

from instructor.grading import settings
from instructor.grading.harness import grade_file
from instructor.grading.repair import InvalidNotebook, make_inert, read_submission, repair
from instructor.grading.report import Result, fmt, report
from instructor.grading.sandbox import SandboxUnavailable, unavailable_reason
from instructor.grading.settings import Limits
from instructor.grading.submissions import Submission, find_submissions
from instructor.grading.workspace import Workspace, find_labs

UNSAFE_WARNING = (
    "WARNING: --unsafe-no-sandbox: student code runs WITHOUT the sandbox, as the user running the grader, and "
    "can read and change every file that user can (the gradebook, the solutions, your home) and reach the "
    "network. Scores are still decided outside the student's process. Use it only for code you trust.")


def _threads(limits: Limits, jobs: int) -> int:
    return limits.threads or max(1, (os.cpu_count() or 1) // max(1, jobs))


def _record(ws: Workspace, s: Submission, got) -> str:
    """Put one submission's verdicts into the gradebook; returns its status."""
    if isinstance(got, str) or got is None or got.get("error"):
        s.notes.append(got if isinstance(got, str) else (got or {}).get("error", "not graded"))
        return "error"
    s.notes += got["notes"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")              # SQLAlchemy's SAWarnings from inside nbgrader
        result = ws.api.autograde(s.lab, s.student, force=True, create=True)
    if not result["success"]:
        s.notes.append("nbgrader could not record the grades (see _grading/logs)")
        (ws.root / "logs" / s.lab).mkdir(parents=True, exist_ok=True)
        (ws.root / "logs" / s.lab / f"{s.student}.log").write_text(result.get("log", "") + str(result.get("error", "")))
        return "error"
    return "graded"


def grade(submissions: str | Path, out: str | Path = settings.OUT, source: str | Path = settings.SOURCE,
          workspace: str | Path = settings.WORKSPACE, labs: list[str] | None = None, limits: Limits | None = None,
          jobs: int = 1, student_regexp: str | None = None, roster: list[str] = (), sandboxed: bool = True,
          hidden_dir: str | Path = settings.HIDDEN, log=print) -> list[Result]:
    """Grade a folder (or zip) of submissions into ``out/grades.csv`` and ``out/feedback/``.

    ``labs`` restricts (or forces) the labs graded; by default every lab for which a notebook is found.
    ``sandboxed=False`` is the explicit opt-out of the sandbox (see ``--unsafe-no-sandbox``).
    """
    limits = limits or Limits()
    if sandboxed:
        reason = unavailable_reason()
        if reason:
            raise SystemExit(f"cannot grade safely: {reason}\nGrading runs every submission in a sandbox so that "
                             "student code can neither change its grade nor read or harm anything else. If you "
                             "trust every submission, `--unsafe-no-sandbox` grades without it.")
    else:
        log(UNSAFE_WARNING)
    all_labs = [p.stem for p in find_labs(source)]
    if not all_labs:
        raise SystemExit(f"no labs ({settings.LAB_PATTERN}) in {source}: run from the repository root or pass --source")
    unknown = [lab for lab in labs or [] if lab not in all_labs]
    if unknown:
        raise SystemExit(f"unknown lab(s) {unknown}; the labs are {all_labs}")
    submissions = Path(submissions)
    if not submissions.exists():
        raise SystemExit(f"{submissions} does not exist")
    ws = Workspace(workspace, source)
    inside = [ws.root / d for d in ("sanitized", "autograded", "feedback", "scratch", "release", "source", "results")]
    if any(p == submissions.resolve() or p in submissions.resolve().parents for p in inside):
        raise SystemExit(f"{submissions} is inside the grading workspace's own folders; grade a copy, "
                         f"or nbgrader's collected {ws.root / 'submitted'}")
    subs, warnings = find_submissions(submissions, all_labs, ws.root / "scratch" / "unpacked",
                                      student_regexp or r"^(?P<student_id>[^_\s]+)_", roster, labs)
    for w in warnings:
        log(f"warning: {w}")
    if not subs:
        raise SystemExit(f"no lab notebooks found in {submissions} (see `python -m instructor.grading grade -h`)")
    graded_labs = [lab for lab in all_labs if any(s.lab == lab for s in subs)]
    ws.prepare(graded_labs)

    # 1-2. read and repair a copy of each submission into sanitized/
    todo: list[Submission] = []
    status: dict[tuple[str, str], str] = {}
    for s in subs:
        for step in ("sanitized", "autograded", "feedback"):
            d = ws.root / step / s.student / s.lab
            if d.exists():
                shutil.rmtree(d)
        ws.path("results", s.student, s.lab).unlink(missing_ok=True)
        if s.path is None:
            status[s.student, s.lab] = "missing"
            s.notes.append("no notebook submitted")
            continue
        try:
            nb = read_submission(s.path)
        except InvalidNotebook as err:
            status[s.student, s.lab] = "invalid"
            s.notes.append(f"'{PurePosixPath(s.shown).name}' is {err}")
            continue
        src = nbformat.read(ws.path("source", None, s.lab), as_version=4)
        rel = nbformat.read(ws.path("release", None, s.lab), as_version=4)
        nb, notes = repair(nb, src, rel)
        nb = make_inert(nb, src)
        s.notes += notes
        dest = ws.path("sanitized", s.student, s.lab)
        dest.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, dest)
        todo.append(s)

    # 3. the sandboxed runs and the hidden tests, each submission in a trusted process of its own; 4. as each
    # one's sandbox is gone, its verdicts go into nbgrader's gradebook (autograde with them injected: no code runs)
    threads = _threads(limits, jobs)
    pending = list(todo)
    for _attempt in range(2):            # a grading process that died takes its pool down: retry once in a new one
        if not pending:
            break
        broken = []
        with concurrent.futures.ProcessPoolExecutor(max_workers=max(1, jobs),
                                                    mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(grade_file, str(ws.root), s.student, s.lab, limits, sandboxed, threads,
                                   str(hidden_dir)): s for s in pending}
            for fut in concurrent.futures.as_completed(futures):
                s = futures[fut]
                try:
                    got = fut.result()
                except SandboxUnavailable as err:
                    raise SystemExit(f"cannot grade safely: {err}") from None
                except concurrent.futures.process.BrokenProcessPool:
                    broken.append(s)
                    continue
                except Exception as err:  # noqa: BLE001 - a crashed grading process: this submission only
                    got = f"the grading process failed ({type(err).__name__}: {err})"
                status[s.student, s.lab] = _record(ws, s, got)
        pending = broken
    for s in pending:
        status[s.student, s.lab] = "error"
        s.notes.append("the grading process died twice; not graded")
    state = {"labs": graded_labs, "warnings": warnings, "submissions": [
        {"student": s.student, "lab": s.lab, "status": status[s.student, s.lab], "notes": s.notes, "shown": s.shown}
        for s in subs]}
    (ws.root / "last_run.json").write_text(json.dumps(state, indent=1))
    results = report(out, ws.root)
    for r in sorted(results, key=lambda r: (r.student, r.lab)):
        log(f"{r.student:20s} {r.lab:28s} {fmt(r.total):>6s}/{fmt(r.max):<4s} {r.shown_status}"
            + (f"  ({'; '.join(r.notes + r.flags)})" if r.notes or r.flags else ""))
    log(f"wrote {Path(out) / 'grades.csv'} and {Path(out) / 'feedback'}/")
    return results
