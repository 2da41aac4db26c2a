"""The grading pipeline end to end on the small fixture lab (tests/fixtures/lab00_fixture.ipynb: four exercises
worth 1, 2, 3, 4 points and a free-response question worth 2; hidden tests in tests/fixtures/hidden/lab00.py):
made-up submissions in mixed layouts, one per robustness case, then the CSV, the feedback, manual grading,
re-grading and the command line."""
from __future__ import annotations

import copy
import html
import json
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from gradinghelpers import FIXTURE, FIXTURE_HIDDEN, cell_of, gid, read_csv, save, snapshot, write

from instructor.grading import cli, sandbox
from instructor.grading.grade import grade
from instructor.grading.release import release
from instructor.grading.report import report
from instructor.grading.settings import Limits

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(sandbox.unavailable_reason() is not None,
                                 reason=f"no grading sandbox here: {sandbox.unavailable_reason()}")]
LIMITS = Limits(cell_timeout=10, test_timeout=10, submission_timeout=120)


@pytest.fixture(scope="module")
def fixture_course(tmp_path_factory):
    """The fixture lab released into a fresh workspace (shared by the tests of this module)."""
    base = tmp_path_factory.mktemp("course")
    (base / "src").mkdir()
    shutil.copy(FIXTURE, base / "src")
    zips = release(base / "src", base / "release", base / "ws")
    return base, zips


def make_submissions(base: Path, subs: Path) -> None:
    """Made-up submissions of the fixture lab: one student per robustness case, in mixed layouts."""
    src = nbformat.read(base / "src" / "lab00_fixture.ipynb", as_version=4)
    rel = nbformat.read(base / "release" / "lab00_fixture" / "lab00_fixture.ipynb", as_version=4)
    answers = {g: cell_of(src, g).source for g in ("add", "square", "mean", "reverse")}

    def solved(*names, start=rel):
        nb = copy.deepcopy(start)
        for n in names:
            cell_of(nb, n).source = answers[n]
        return nb

    nbgrader_layout = lambda s: subs / s / "lab00_fixture" / "lab00_fixture.ipynb"  # noqa: E731
    save(src, nbgrader_layout("alice"))                                        # the instructor's solution
    save(rel, subs / "bob" / "lab00_fixture.ipynb")                            # untouched student version
    save(solved("add", "mean"), subs / "carol_12345_lab00_fixture.ipynb")      # partial, LMS flat layout
    nb = solved("add", "square", "mean", "reverse")                            # raises at import
    nb.cells[1].source += "\nimport package_that_does_not_exist"
    save(nb, nbgrader_layout("dave"))
    nb = solved("add", "mean", "reverse")                                      # infinite loop in exercise 2
    cell_of(nb, "square").source = "def square(x):\n    while True:\n        pass"
    save(nb, nbgrader_layout("erin"))
    nb = solved("square", "mean", "reverse")                                   # tampered tests
    cell_of(nb, "add").source = "def add(a, b):\n    return 0"
    cell_of(nb, "test_add").source = "pass  # tests removed"
    cell_of(nb, "test_mean").metadata["nbgrader"]["points"] = 100
    nb.cells = [c for c in nb.cells if gid(c) != "test_square"]
    save(nb, nbgrader_layout("frank"))
    write(nbgrader_layout("gina"), '{"cells": [{"cell_type": "code", "source": "oops"')  # not valid JSON
    (subs / "harry" / "lab00_fixture").mkdir(parents=True)                      # missing notebook
    nb = solved("add", "square", "mean", "reverse")                            # writes where it should not
    nb.cells[1].source += (
        "\nimport os, tempfile"
        "\nfor p in ['../../pwned', os.path.expanduser('~/pwned_home'),"
        " os.path.join(tempfile.gettempdir(), 'pwned_tmp'), 'pwned_here']:"
        "\n    try:\n        open(p, 'w').write('x')\n    except OSError:\n        pass"
    )
    save(nb, nbgrader_layout("ivan"))


@pytest.fixture(scope="module")
def graded(fixture_course):
    base, _ = fixture_course
    subs = base / "subs"
    make_submissions(base, subs)
    before = snapshot(base, skip=(base / "ws",))
    results = grade(subs, base / "out", base / "src", base / "ws", limits=LIMITS, jobs=2, roster=["zoe"],
                    hidden_dir=FIXTURE_HIDDEN, log=lambda *a: None)
    after = snapshot(base, skip=(base / "ws", base / "out"))
    rows = {r["student"]: r for r in read_csv(base / "out" / "grades.csv")}
    return base, results, rows, before, after


def test_release_of_the_fixture_lab(fixture_course):
    base, zips = fixture_course
    assert zips == [base / "release" / "lab00_fixture.zip"]
    rel = nbformat.read(base / "release" / "lab00_fixture" / "lab00_fixture.ipynb", as_version=4)
    assert "set-up done" in json.dumps(rel.cells[1].outputs)       # explanation cells keep their outputs
    assert "NotImplementedError" in cell_of(rel, "add").source and "a + b" not in cell_of(rel, "add").source


def test_grades_csv_of_the_made_up_submissions(graded):
    base, results, rows, _, _ = graded
    cols = ["test_add", "test_square", "test_mean", "test_reverse", "explain_mean"]
    assert list(next(iter(rows.values())))[:7] == ["student", "lab", *cols]
    scores = {s: [r[c] for c in cols] + [r["total"], r["max"], r["status"]] for s, r in rows.items()}
    assert scores == {
        "alice": ["1", "2", "3", "4", "", "10", "12", "needs manual grading"],
        "bob": ["0", "0", "0", "0", "0", "0", "12", "graded"],
        "carol": ["1", "0", "3", "0", "0", "4", "12", "graded"],           # partial credit: exactly 1 + 3
        "dave": ["1", "2", "3", "4", "0", "10", "12", "graded"],          # free-response left empty: 0
        "erin": ["1", "0", "3", "4", "0", "8", "12", "graded, review"],   # stopped twice: flagged
        "frank": ["0", "2", "3", "4", "0", "9", "12", "graded"],
        "gina": ["0", "0", "0", "0", "0", "0", "12", "invalid"],
        "harry": ["0", "0", "0", "0", "0", "0", "12", "missing"],
        "ivan": ["1", "2", "3", "4", "0", "10", "12", "graded, review"],  # reaches for ~: flagged
        "zoe": ["0", "0", "0", "0", "0", "0", "12", "missing"],
    }
    assert rows["alice"]["notes"] == "" and rows["bob"]["notes"] == ""
    assert "ModuleNotFoundError" in rows["dave"]["notes"]
    assert "test_square: timed out after 10 s" in rows["erin"]["notes"]
    assert "was stopped after 10 s (time limit)" in rows["erin"]["notes"]  # the demo cell that calls square
    assert "locked cell 'test_add' was edited; the original was used" in rows["frank"]["notes"]
    assert "locked cell 'test_square' was deleted; put back from the source" in rows["frank"]["notes"]
    assert "metadata of 'test_mean' was changed" in rows["frank"]["notes"]
    assert "not valid JSON" in rows["gina"]["notes"]
    assert "no notebook submitted" in rows["harry"]["notes"]
    log = (base / "out" / "grading.log").read_text()
    assert "frank lab00_fixture: graded, 9/12" in log and "test_add' was edited" in log


def test_feedback_for_every_row_without_hidden_test_code(graded):
    base, _, rows, _, _ = graded
    hidden_code = [line.strip() for line in (FIXTURE_HIDDEN / "lab00.py").read_text().splitlines()
                   if line.strip().startswith("expect(")]
    assert len(hidden_code) == 8
    for student in rows:
        page = (base / "out" / "feedback" / student / "lab00_fixture.html").read_text()
        text = html.unescape(re.sub(r"<[^>]+>", "", page))              # what the student reads
        shown = [h for h in hidden_code if h in text]
        assert not shown, f"{student}: hidden test code shown in the feedback: {shown}"
    frank = (base / "out" / "feedback" / "frank" / "lab00_fixture.html").read_text()
    assert "Notes from the grader" in frank and "was edited" in frank
    assert "add(2, 3) should be 5." in html.unescape(frank)             # the failing test's message
    assert "No notebook was received" in (base / "out" / "feedback" / "harry" / "lab00_fixture.html").read_text()


def test_grading_changes_nothing_outside_its_workspace(graded):
    base, _, _, before, after = graded
    assert after == before, "grading changed files outside the workspace (submissions included)"
    assert not [p for p in base.rglob("pwned*")], "a submission wrote outside its sandbox"


def test_free_response_needs_manual_grading_then_report_uses_it(graded):
    from nbgrader.api import Gradebook

    base, _, rows, _, _ = graded
    assert rows["alice"]["needs_manual_grading"] == "explain_mean"
    url = f"sqlite:///{base / 'ws' / 'gradebook.db'}"
    with Gradebook(url, "transformer-networks") as gb:
        g = gb.find_grade("explain_mean", "lab00_fixture", "lab00_fixture", "alice")
        assert g.needs_manual_grade and g.auto_score is None
        assert not gb.find_grade("explain_mean", "lab00_fixture", "lab00_fixture", "bob").needs_manual_grade
        g.manual_score = 1.5                                            # what formgrader does
        gb.db.commit()
    report(base / "out2", base / "ws")
    alice = {r["student"]: r for r in read_csv(base / "out2" / "grades.csv")}["alice"]
    assert (alice["explain_mean"], alice["total"], alice["status"]) == ("1.5", "11.5", "graded")


def test_grading_the_same_folder_twice_gives_the_same_outputs(fixture_course, tmp_path):
    base, _ = fixture_course
    subs = tmp_path / "subs"
    make_submissions(base, subs)
    for name in ("dave", "erin", "ivan", "bob"):                       # keep it short
        shutil.rmtree(subs / name)
    outs = []
    for i, jobs in enumerate((1, 2)):
        grade(subs, tmp_path / f"out{i}", base / "src", tmp_path / "ws", limits=LIMITS, jobs=jobs,
              hidden_dir=FIXTURE_HIDDEN, log=lambda *a: None)
        out = tmp_path / f"out{i}"
        outs.append({p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()})
    assert outs[0] == outs[1]
    assert b"frank,lab00_fixture,0,2,3,4,0,9,12" in outs[0][Path("grades.csv")]


def test_command_line_release_and_grade(fixture_course, tmp_path):
    base, _ = fixture_course
    subs = tmp_path / "subs"
    save(nbformat.read(base / "release" / "lab00_fixture" / "lab00_fixture.ipynb", as_version=4),
         subs / "bob_lab00_fixture.ipynb")
    args = ["--source", str(base / "src"), "--workspace", str(tmp_path / "ws")]
    assert cli.main(args + ["release", "--out", str(tmp_path / "rel")]) == 0
    assert (tmp_path / "rel" / "lab00_fixture.zip").exists()
    assert cli.main(args + ["grade", str(subs), "--out", str(tmp_path / "g"), "--timeout", "20",
                            "--hidden", str(FIXTURE_HIDDEN)]) == 0
    assert read_csv(tmp_path / "g" / "grades.csv")[0]["total"] == "0"
    with pytest.raises(SystemExit):
        cli.main(args + ["grade", str(subs), "--lab", "lab99_nope"])
