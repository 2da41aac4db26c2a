"""Grade one submission: run its notebook in a sandbox, call its functions from outside, decide every test cell.

For a repaired notebook (``sanitized/<student>/<lab>/<lab>.ipynb``):

1. a fresh sandbox runs every code cell except the test cells, in order (a cell that runs out of time or kills
   the sandbox is skipped in the next sandbox; the others run again);
2. the lab's hidden tests (:mod:`instructor.grading.hidden`), running *here*, call the student's functions in
   the sandbox through :class:`instructor.grading.remote.Remote` and get plain data back; each test cell passes
   or fails with a message for the student. A test that hangs or kills the sandbox fails, and the remaining tests
   get a fresh sandbox;
3. when :mod:`instructor.grading.scan` finds that the student's code could reach labsupport's references of the
   exercises, steps 1-2 run again with those references replaced by tripwires; a test that passed only with
   them is flagged for review. Suspicious code and everything the sandbox had to stop are flagged too.

The verdicts go to ``results/<student>/<lab>.json``; nothing the student's process says decides a point.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
import time
from pathlib import Path

import nbformat
from nbgrader import utils as nbutils

from instructor.grading import hidden, sandbox, scan
from instructor.grading.remote import ProtocolError, Remote, RemoteDied, RemoteError, RemoteTimeout
from instructor.grading.settings import Limits
from labsupport.checks.core import CheckFailed, explain_error
from labsupport.checks.subject import ModifiedArgument, Namespace, StudentCodeError
from labsupport.checks.wire import WireError

MAX_MESSAGE = 4000


@dataclasses.dataclass
class Outcome:
    passed: bool
    message: str = ""
    stopped: str = ""      #: why the sandbox had to be stopped during this test ("" if it did not)


@dataclasses.dataclass
class Pass:
    """What one pass over the notebook (one or more sandboxes) found."""

    tests: dict[str, Outcome]
    cells: dict[int, dict]
    notes: list[str]
    stops: list[str]
    sandboxes: int


def test_cells(nb: nbformat.NotebookNode) -> list[str]:
    """The grade ids of the autograded test cells, in notebook order."""
    return [c.metadata["nbgrader"]["grade_id"] for c in nb.cells
            if c.cell_type == "code" and nbutils.is_grade(c) and not nbutils.is_solution(c)]


def code_cells(nb: nbformat.NotebookNode) -> list[tuple[int, str]]:
    """``(index, source)`` of the cells the sandbox runs: every code cell except the test cells."""
    return [(i, c.source) for i, c in enumerate(nb.cells)
            if c.cell_type == "code" and not (nbutils.is_grade(c) and not nbutils.is_solution(c))]


def run_test(test: hidden.HiddenTest, student: Namespace, seed: int, timeout: int) -> Outcome:
    """One hidden test against the student's namespace; every way it can end becomes an :class:`Outcome`."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            test.fn(student, seed)
        return Outcome(True)
    except CheckFailed as err:
        return Outcome(False, err.message[:MAX_MESSAGE])
    except StudentCodeError as err:
        name = re.search(r"name '([^']+)' is not defined", err.message)
        return Outcome(False, explain_error(err, name.group(1) if name else test.grade_id)[:MAX_MESSAGE])
    except ModifiedArgument as err:
        return Outcome(False, explain_error(err, test.grade_id)[:MAX_MESSAGE])
    except RemoteTimeout:
        return Outcome(False, f"Stopped: this test took longer than {timeout} s (an infinite loop, or far too "
                              "slow), so its points are 0.", stopped=f"{test.grade_id}: timed out after {timeout} s")
    except RemoteDied as err:
        return Outcome(False, "Stopped: the notebook's process died while this test ran (out of memory, a crash, "
                              "or the code ended it), so its points are 0.", stopped=f"{test.grade_id}: {err}")
    except (ProtocolError, WireError) as err:
        return Outcome(False, "The notebook answered this test with data the grader cannot read, so its points "
                              "are 0.", stopped=f"{test.grade_id}: unreadable answer ({str(err)[:200]})")
    except Exception as err:  # noqa: BLE001 - a bug of the hidden test itself: visible, never points
        return Outcome(False, f"The grader could not run this test ({type(err).__name__}); your instructor has "
                              "been told.", stopped=f"{test.grade_id}: grader error {type(err).__name__}: "
                                                    f"{str(err)[:300]}")


def _summary(error: dict | None) -> str:
    if not error:
        return ""
    return f"{str(error.get('type', 'Error'))[:100]}: {str(error.get('message', ''))[:300]}"


def grade_pass(nb, lab: str, tests: dict[str, hidden.HiddenTest], limits: Limits,
               sandboxed: bool, threads: int, deadline: float, tripwires: list[str] = ()) -> Pass:
    """Run the notebook and its hidden tests, in as many sandboxes as needed (see the module docstring)."""
    cells = code_cells(nb)
    first_test = next((i for i, c in enumerate(nb.cells) if nbutils.is_grade(c) and not nbutils.is_solution(c)),
                      len(nb.cells))
    number = {i: n + 1 for n, (i, _) in enumerate((i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code")}
    todo = [g for g in test_cells(nb)]
    missing = [g for g in todo if g not in tests]
    if missing:
        raise SystemExit(f"{lab}: no hidden test for the test cell(s) {missing}")
    outcomes: dict[str, Outcome] = {}
    out_cells: dict[int, dict] = {}
    notes: list[str] = []
    stops: list[str] = []
    skip: set[int] = set()
    sandboxes = 0
    while todo:
        if sandboxes > limits.restarts or time.monotonic() >= deadline:
            why = ("the time limit of the submission was reached" if time.monotonic() >= deadline
                   else "the notebook had to be restarted too often")
            for gid in todo:
                outcomes[gid] = Outcome(False, f"Not graded: {why}.", stopped=f"{gid}: not run ({why})")
            break
        proc = sandbox.start(limits, threads, sandboxed=sandboxed,
                             cpu_seconds=max(60, int(deadline - time.monotonic()) * 2))
        sandboxes += 1
        remote = Remote(proc)
        try:
            if tripwires:
                remote.deadline = time.monotonic() + 60
                remote.tripwire(list(tripwires))
            restart = False
            for i, source in cells:
                if i in skip:
                    continue
                remote.deadline = min(time.monotonic() + limits.cell_timeout, deadline)
                try:
                    r = remote.run_cell(i, source)
                except RemoteTimeout:
                    skip.add(i)
                    stops.append(f"code cell {number[i]} was stopped after {limits.cell_timeout} s (time limit)")
                    restart = True
                    break
                except RemoteError as err:
                    skip.add(i)
                    oom = proc.cgroup is not None and proc.cgroup.oom_killed()
                    stops.append(f"code cell {number[i]} {'ran out of memory' if oom else 'ended the notebook'} "
                                 f"({err})")
                    restart = True
                    break
                out_cells[i] = {"stdout": r["stdout"], "error": _summary(r["error"])}
                if not r["ok"] and i < first_test:
                    notes.append(f"code cell {number[i]} (set-up, before the first exercise) raised "
                                 f"{_summary(r['error'])[:120]}")
            if restart:
                continue
            while todo:
                gid = todo[0]
                remote.deadline = min(time.monotonic() + limits.test_timeout, deadline)
                outcome = run_test(tests[gid], Namespace(remote), hidden.seed_for(lab, gid), limits.test_timeout)
                outcomes[gid] = outcome
                todo.pop(0)
                if outcome.stopped:
                    stops.append(outcome.stopped)
                    if proc.cgroup is not None and proc.cgroup.oom_killed():
                        stops[-1] += " (out of memory)"
                    break  # the sandbox may be in any state now: the next test gets a fresh one
        finally:
            remote.close()
    notes = list(dict.fromkeys(notes))
    return Pass(outcomes, out_cells, notes, list(dict.fromkeys(stops)), sandboxes)


def grade_submission(nb, released, lab: str, limits: Limits, sandboxed: bool = True,
                     threads: int = 1, hidden_dir: Path | None = None) -> dict:
    """Everything the harness decides about one repaired notebook, as plain data (see the module docstring)."""
    started = time.monotonic()
    deadline = started + limits.submission_timeout
    tests = hidden.load(lab, hidden_dir or hidden.settings.HIDDEN)
    twins = sorted({t for test in tests.values() for t in test.twins})
    verdict = scan.scan(nb, released, twins)
    first = grade_pass(nb, lab, tests, limits, sandboxed, threads, deadline)
    flags = [f"the sandbox had to stop it: {s}" for s in first.stops]
    flags += [f"the notebook {reason}" for reason in verdict.suspicious]
    tripwire = None
    if verdict.reaches and twins and any(o.passed for o in first.tests.values()):
        tripwire = grade_pass(nb, lab, tests, limits, sandboxed, threads, deadline, twins)
        for gid, o in first.tests.items():
            if o.passed and not tripwire.tests[gid].passed:
                used = [t.split(":")[1] for t in tests[gid].twins] or twins
                flags.append(f"{gid} passes only while labsupport's {', '.join(used)} is there (does it call the "
                             "reference it was asked to write?)")
    return {
        "lab": lab, "sandboxed": sandboxed,
        "tests": {g: {"passed": o.passed, "message": o.message} for g, o in first.tests.items()},
        "cells": {str(i): c for i, c in first.cells.items()},
        "notes": first.notes, "flags": list(dict.fromkeys(flags)),
        "scan": {"suspicious": verdict.suspicious, "reaches": verdict.reaches},
        "sandboxes": first.sandboxes + (tripwire.sandboxes if tripwire else 0),
        "seconds": round(time.monotonic() - started, 2),
    }


def grade_file(ws_root: str, student: str, lab: str, limits: Limits, sandboxed: bool, threads: int,
               hidden_dir: str) -> dict:
    """:func:`grade_submission` on ``sanitized/<student>/<lab>/<lab>.ipynb`` of the workspace; writes and
    returns the results (the task of one grading process)."""
    import torch

    torch.set_num_threads(1)
    root = Path(ws_root)
    nb = nbformat.read(root / "sanitized" / student / lab / f"{lab}.ipynb", as_version=4)
    released = nbformat.read(root / "release" / lab / f"{lab}.ipynb", as_version=4)
    try:
        results = grade_submission(nb, released, lab, limits, sandboxed, threads, Path(hidden_dir))
    except sandbox.SandboxUnavailable:
        raise
    except SystemExit as err:
        results = {"lab": lab, "error": str(err), "tests": {}, "cells": {}, "notes": [str(err)], "flags": []}
    path = root / "results" / student / f"{lab}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, sort_keys=True))
    return results
