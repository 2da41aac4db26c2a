"""Every lab of the course through release and sandboxed grading: the student version hides the solutions,
the instructor's solution gets full marks, the untouched student version gets zero with a clear 'not implemented
yet' for every test, and every test cell has its hidden test."""
from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import nbformat
import pytest
from gradinghelpers import LABS, gid, save

from instructor.grading import hidden, sandbox
from instructor.grading.grade import grade
from instructor.grading.harness import test_cells as graded_cells
from instructor.grading.preprocessors import WIDGET_VIEW
from instructor.grading.release import release
from instructor.grading.settings import Limits

NOT_IMPLEMENTED = "not implemented yet"


def solution_lines(source_nb) -> set[str]:
    """Substantial lines of solution regions that appear nowhere else in the source."""
    inside, outside = set(), set()
    for c in source_nb.cells:
        region = None
        for line in c.source.splitlines():
            s = line.strip()
            if "BEGIN SOLUTION" in s:
                region = True
                continue
            if "END SOLUTION" in s:
                region = None
                continue
            (inside if region else outside).add(s)
    return {s for s in inside - outside if len(s) >= 6}


def check_student_version(source_path: Path, release_dir: Path) -> nbformat.NotebookNode:
    """The checks every released lab must pass; returns the student version."""
    lab = source_path.stem
    path = release_dir / lab / f"{lab}.ipynb"
    text = path.read_text()
    rel = nbformat.reads(text, as_version=4)
    src = nbformat.read(source_path, as_version=4)
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        assert marker not in text, f"{lab}: '{marker}' left in the student version"
    everything = "\n".join(c.source for c in rel.cells) + "\n" + "\n".join(
        json.dumps(c.get("outputs", [])) for c in rel.cells)
    leaked = sorted(s for s in solution_lines(src) if s in everything)
    assert not leaked, f"{lab}: solution lines in the student version: {leaked[:5]}"
    assert [c.get("id") for c in rel.cells] == [c.get("id") for c in src.cells]
    for s, r in zip(src.cells, rel.cells):
        nbg = s.metadata.get("nbgrader", {})
        if nbg.get("solution") and s.cell_type == "code":
            assert "raise NotImplementedError()" in r.source, f"{lab}: {gid(s)} has no stub"
        if nbg.get("solution") and s.cell_type == "markdown":
            assert "YOUR ANSWER HERE" in r.source
        if r.cell_type == "code" and (nbg.get("solution") or nbg.get("grade")):
            assert r.outputs == [], f"{lab}: graded cell {gid(s)} kept its outputs"
        elif r.cell_type == "code":
            kept = [o for o in s.outputs if WIDGET_VIEW not in o.get("data", {})]
            assert r.outputs == kept, f"{lab}: ungraded cell {s.get('id')} lost its outputs"
    with zipfile.ZipFile(release_dir / f"{lab}.zip") as zf:
        assert zf.namelist() == [f"{lab}/{lab}.ipynb"]
        assert zf.read(f"{lab}/{lab}.ipynb") == path.read_bytes()
    return rel


@pytest.mark.parametrize("lab", LABS, ids=[p.stem for p in LABS])
def test_every_test_cell_has_a_hidden_test_and_no_hidden_code_is_in_the_notebook(lab):
    nb = nbformat.read(lab, as_version=4)
    tests = hidden.load(lab.stem)
    cells = graded_cells(nb)
    assert len(cells) >= 4, f"{lab.stem}: fewer than 4 autograded exercises"
    assert sorted(tests) == sorted(cells), f"{lab.stem}: hidden tests {sorted(tests)} vs test cells {cells}"
    text = lab.read_text()
    assert "BEGIN HIDDEN TESTS" not in text, f"{lab.stem}: hidden tests in the notebook the student's kernel runs"
    for t in tests.values():
        for twin in t.twins:
            module, _, name = twin.partition(":")
            assert module.startswith("labsupport.") and name, twin


@pytest.mark.slow
@pytest.mark.skipif(sandbox.unavailable_reason() is not None,
                    reason=f"no grading sandbox here: {sandbox.unavailable_reason()}")
@pytest.mark.parametrize("lab", LABS, ids=[p.stem for p in LABS])
def test_lab_release_and_sandboxed_grading(lab, tmp_path):
    (tmp_path / "src").mkdir()
    shutil.copy(lab, tmp_path / "src")
    release(tmp_path / "src", tmp_path / "release", tmp_path / "ws")
    rel = check_student_version(lab, tmp_path / "release")
    subs = tmp_path / "subs"
    save(rel, subs / "blank" / lab.stem / f"{lab.stem}.ipynb")            # nbgrader layout
    shutil.copy(lab, subs / f"solution_x_{lab.name}")                     # LMS flat layout
    results = grade(subs, tmp_path / "out", tmp_path / "src", tmp_path / "ws", jobs=2, log=lambda *a: None,
                    limits=Limits(submission_timeout=900))
    by = {r.student: r for r in results}
    sol, blank = by["solution"], by["blank"]
    assert sol.status == "needs manual grading" and blank.status == "graded", (sol.notes, blank.notes)
    auto = graded_cells(nbformat.read(lab, as_version=4))
    lost = {g: (sol.scores[g], sol.messages.get(g)) for g in auto if sol.scores[g] != sol.max_scores[g]}
    assert not lost, f"{lab.stem}: the instructor's solution loses points: {lost} ({sol.notes})"
    assert not sol.flags, f"{lab.stem}: the instructor's solution is flagged: {sol.flags}"
    assert blank.total == 0, f"{lab.stem}: the untouched student version scores {blank.scores}"
    unclear = {g: m[:150] for g, m in blank.messages.items() if NOT_IMPLEMENTED not in m}
    assert not unclear, f"{lab.stem}: tests without the clear 'not implemented yet' message: {unclear}"
    assert not [n for n in blank.notes if "set-up" in n], f"{lab.stem}: the set-up fails: {blank.notes}"
