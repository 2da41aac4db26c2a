"""Mutation testing of the self-checks and the hidden tests (helpers of tests/checks/test_mutants.py).

A *mutant* is the instructor's solution of one exercise with a realistic mistake: a few textual replacements in
its solution cell (``replace``), or a whole new cell (``source``). For every mutant the test builds the lab's
namespace (the set-up cell and every solution cell, the mutated one in place of the original), then:

* runs the exercise's visible test cell (its self-check) there: it must fail with a :class:`CheckFailed` whose
  message contains every fragment of ``expect`` and no traceback of a library;
* runs the exercise's hidden test (instructor/grading/hidden/labNN.py) on the same namespace, through the same
  handles the grader uses: it must fail too.

The unmutated solution must pass both. A mutant that is genuinely equivalent to a right answer says why in
``equivalent`` (it must then pass both).
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import re
from functools import cache
from pathlib import Path

import nbformat
from nbgrader import utils as nbutils

ROOT = Path(__file__).resolve().parents[2]


@dataclasses.dataclass(frozen=True)
class Mutant:
    exercise: str                                  #: grade id of the solution cell
    name: str
    expect: tuple[str, ...] = ()                   #: fragments the self-check's message must contain
    replace: tuple[tuple[str, str], ...] = ()      #: (old, new) replacements in the solution cell's source
    source: str = ""                               #: or the whole new cell
    why: str = ""                                  #: the class of mistake (the issue's list)
    checked_by: str = ""                           #: the solution whose test cell catches it (default: its own)
    equivalent: str = ""                           #: why it is right after all (then it must pass)

    @property
    def id(self) -> str:
        return f"{self.exercise}-{self.name}"

    @property
    def test(self) -> str:
        return self.checked_by or self.exercise


def strip_markers(source: str) -> str:
    return "\n".join(line for line in source.split("\n")
                     if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION"))


@cache
def lab_cells(lab: str) -> tuple:
    """``(setup, solutions, tests)``: the set-up cells' sources, ``{grade_id: source}`` of the solution cells in
    order, and ``{solution grade_id: (test grade_id, test source)}``."""
    path = next((ROOT / "notebooks").glob(f"{lab}_*.ipynb"))
    nb = nbformat.read(path, as_version=4)
    first = next(i for i, c in enumerate(nb.cells) if nbutils.is_solution(c))
    setup = [c.source for c in nb.cells[:first] if c.cell_type == "code"]
    solutions, tests, last = {}, {}, None
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        nbg = c.metadata.get("nbgrader", {})
        if nbg.get("solution"):
            last = nbg["grade_id"]
            solutions[last] = strip_markers(c.source)
        elif nbg.get("grade") and last is not None:
            tests[last] = (nbg["grade_id"], c.source)
    return path.stem, tuple(setup), solutions, tests


def mutated_source(lab: str, m: Mutant) -> str:
    _, _, solutions, _ = lab_cells(lab)
    if m.source:
        return m.source
    text = solutions[m.exercise]
    for old, new in m.replace:
        assert old in text, f"{m.id}: {old!r} is not in the solution of {m.exercise}"
        text = text.replace(old, new)
    return text


@cache
def _setup_namespace(lab: str) -> dict:
    """The lab's set-up cells run once (some build datasets for seconds); each mutant starts from a copy."""
    from IPython.core.inputtransformer2 import TransformerManager

    _, setup, _, _ = lab_cells(lab)
    ns: dict = {"__name__": "__main__"}
    with contextlib.redirect_stdout(io.StringIO()):
        for i, src in enumerate(setup):
            exec(compile(TransformerManager().transform_cell(src), f"<{lab} set-up {i}>", "exec"), ns)
    return ns


def namespace(lab: str, mutant: Mutant | None = None) -> dict:
    """The set-up cells and every solution cell (``mutant``'s in place of its original) in a fresh dict."""
    _, _, solutions, _ = lab_cells(lab)
    ns = dict(_setup_namespace(lab))
    with contextlib.redirect_stdout(io.StringIO()):
        for gid, src in solutions.items():
            if mutant is not None and gid == mutant.exercise:
                src = mutated_source(lab, mutant)
            exec(compile(src, f"<{lab} solution {gid}>", "exec"), ns)
    return ns


def run_self_check(lab: str, exercise: str, ns: dict) -> str | None:
    """Run the exercise's visible test cell in ``ns``; ``None`` if it passes, else the check's message."""
    from labsupport.checks.core import CheckFailed

    _, _, _, tests = lab_cells(lab)
    _, source = tests[exercise]
    source = source.split("### BEGIN HIDDEN TESTS")[0]   # only the visible self-check (old notebooks had both)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(source, f"<{lab} test of {exercise}>", "exec"), ns)
    except CheckFailed as err:
        return err.message
    return None


def run_hidden_test(lab: str, exercise: str, ns: dict, seed: int | None = None) -> str | None:
    """Run the exercise's hidden test on ``ns`` through local handles; ``None`` if it passes, else its message."""
    from instructor.grading import hidden
    from instructor.grading.harness import run_test
    from labsupport.checks.subject import local_namespace

    stem, _, _, tests = lab_cells(lab)
    test_id, _ = tests[exercise]
    test = hidden.load(stem)[test_id]
    outcome = run_test(test, local_namespace(ns), hidden.seed_for(stem, test_id) if seed is None else seed, 60)
    assert not outcome.stopped or "grader error" not in outcome.stopped, outcome.stopped
    return None if outcome.passed else outcome.message


LIBRARY_TRACE = re.compile(r"Traceback \(most recent call last\)|site-packages/(torch|numpy)/")
