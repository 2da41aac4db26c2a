"""The instructor's grading pipeline (labsupport.grading, on nbgrader).

Quick tests cover finding submissions in the layouts LMSs and nbgrader produce, reading broken files and
repairing tampered notebooks. The slow ones run nbgrader for real: the robustness cases on the small fixture
lab ``tests/fixtures/lab00_fixture.ipynb`` (four exercises worth 1, 2, 3, 4 points and a free-response
question worth 2), and every lab of the course: release -> the student version hides the solutions ->
the instructor's solution gets full marks -> the untouched student version gets zero.
"""
from __future__ import annotations

import copy
import csv
import hashlib
import html
import json
import os
import re
import shutil
import zipfile
from pathlib import Path

import nbformat
import pytest

from labsupport import grading
from labsupport.grading import (
    InvalidNotebook, Result, find_submissions, read_submission, repair, write_csv,
)

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "lab00_fixture.ipynb"
LABS = sorted((ROOT / "notebooks").glob("lab*.ipynb"))
NOT_IMPLEMENTED = "not implemented yet"


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def gid(cell):
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def cell_of(nb, grade_id):
    return next(c for c in nb.cells if gid(c) == grade_id)


def save(nb, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def snapshot(root: Path, skip: tuple[Path, ...] = ()) -> dict[str, tuple]:
    """Every file and folder under root with its content hash, size, mode and modification time."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        if any(d == s or s in d.parents for s in skip):
            dirnames[:] = []
            continue
        for name in dirnames:
            if d / name not in skip:
                out[str((d / name).relative_to(root)) + "/"] = ("dir",)
        for name in filenames:
            p = d / name
            st = p.stat()
            out[str(p.relative_to(root))] = (hashlib.sha256(p.read_bytes()).hexdigest(), st.st_size,
                                             st.st_mode, st.st_mtime_ns)
    return out


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def tiny_lab():
    """A minimal source notebook and its student version, built by hand (no nbgrader run)."""
    def code(source, **nbg):
        c = nbformat.v4.new_code_cell(source)
        if nbg:
            c.metadata["nbgrader"] = {"schema_version": 3, **nbg}
        return c

    def md(source, **nbg):
        c = nbformat.v4.new_markdown_cell(source)
        if nbg:
            c.metadata["nbgrader"] = {"schema_version": 3, **nbg}
        return c

    src = nbformat.v4.new_notebook()
    src.cells = [
        code("import math"),
        code("def f(x):\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION",
             grade_id="f", solution=True, grade=False, locked=False),
        code("assert f(1) == 2\n### BEGIN HIDDEN TESTS\nassert f(5) == 6\n### END HIDDEN TESTS",
             grade_id="test_f", solution=False, grade=True, locked=True, points=2),
        md("Some text"),
        code("def g(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION",
             grade_id="g", solution=True, grade=False, locked=False),
        code("assert g(1) == 2", grade_id="test_g", solution=False, grade=True, locked=True, points=3),
        md("Explain.\n\n### BEGIN SOLUTION\nBecause.\n### END SOLUTION",
           grade_id="explain", solution=True, grade=True, locked=False, points=1),
        code("print('end')"),
    ]
    for i, c in enumerate(src.cells):
        c.id = f"c{i}"
    rel = copy.deepcopy(src)
    rel.cells[1].source = "def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()"
    rel.cells[2].source = "assert f(1) == 2"
    rel.cells[4].source = "def g(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()"
    rel.cells[6].source = "Explain.\n\nYOUR ANSWER HERE"
    return src, rel


# ------------------------------------------------------------------------------------------------
# quick: finding submissions
# ------------------------------------------------------------------------------------------------
LABS_T = ["lab01_attention_numpy", "lab02_multihead_attention"]


def write(path: Path, text: str = "{}") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def found(subs):
    return {(s.student, s.lab): (s.shown if s.path else None) for s in subs}


def test_find_submissions_in_every_accepted_layout(tmp_path):
    subs_dir = tmp_path / "subs"
    write(subs_dir / "amy" / "lab01_attention_numpy" / "lab01_attention_numpy.ipynb")       # nbgrader
    write(subs_dir / "ben" / "lab02_multihead_attention.ipynb")                             # per student
    write(subs_dir / "Cleo Park_4431_assignsubmission_file_" / "lab01_attention_numpy.ipynb")  # Moodle
    write(subs_dir / "dan_LATE_123_456_lab01_attention_numpy.ipynb")                        # Canvas flat
    write(subs_dir / "eve_77_lab01.ipynb")                                                   # lab prefix only
    with zipfile.ZipFile(subs_dir / "fay_1_2_lab01_attention_numpy.zip", "w") as zf:        # per-student zip
        zf.writestr("lab01_attention_numpy.ipynb", "{}")
    write(subs_dir / "notes.txt", "not a notebook")
    write(subs_dir / "random.ipynb")                                                         # no lab: skipped
    subs, warnings = find_submissions(subs_dir, LABS_T, tmp_path / "scratch")
    got = found(subs)
    assert got[("amy", "lab01_attention_numpy")] == "amy/lab01_attention_numpy/lab01_attention_numpy.ipynb"
    assert got[("ben", "lab02_multihead_attention")] == "ben/lab02_multihead_attention.ipynb"
    assert got[("Cleo_Park", "lab01_attention_numpy")].startswith("Cleo Park_4431")
    assert got[("dan", "lab01_attention_numpy")] == "dan_LATE_123_456_lab01_attention_numpy.ipynb"
    by = {(s.student, s.lab): s for s in subs}
    assert by["dan", "lab01_attention_numpy"].notes == []                  # an LMS name is not "renamed"
    assert by["eve", "lab01_attention_numpy"].notes == ["graded 'eve_77_lab01.ipynb' (expected "
                                                        "lab01_attention_numpy.ipynb)"]
    assert got[("eve", "lab01_attention_numpy")] == "eve_77_lab01.ipynb"
    assert got[("fay", "lab01_attention_numpy")] == "fay_1_2_lab01_attention_numpy/lab01_attention_numpy.ipynb"
    # both labs were seen, so everyone is expected to have both: the ones not found are missing
    assert got[("amy", "lab02_multihead_attention")] is None
    assert got[("ben", "lab01_attention_numpy")] is None
    assert len(subs) == 6 * 2
    assert any("random.ipynb" in w for w in warnings)
    assert [(s.student, s.lab) for s in subs] == sorted((s.student, s.lab) for s in subs)


def test_find_submissions_whole_zip_and_nbgrader_zip_collect_layout(tmp_path):
    # an LMS "download all" zip wrapping nbgrader's submitted/ layout
    zpath = tmp_path / "download.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("submitted/amy/lab01_attention_numpy/lab01_attention_numpy.ipynb", "{}")
        zf.writestr("submitted/bob/lab01_attention_numpy/", "")                # empty folder: missing
        zf.writestr("../evil/lab01_attention_numpy.ipynb", "{}")              # zip-slip: ignored
    subs, _ = find_submissions(zpath, LABS_T, tmp_path / "scratch")
    assert found(subs) == {("amy", "lab01_attention_numpy"):
                           "submitted/amy/lab01_attention_numpy/lab01_attention_numpy.ipynb",
                           ("bob", "lab01_attention_numpy"): None}
    assert not (tmp_path / "evil").exists()
    # nbgrader zip_collect's input: downloaded/<lab>/archive/<student>_..._<file>
    dl = tmp_path / "downloaded"
    write(dl / "lab01_attention_numpy" / "archive" / "kim_attempt_2026-01-30_lab01_attention_numpy.ipynb")
    subs, _ = find_submissions(dl, LABS_T, tmp_path / "scratch")
    assert found(subs) == {("kim", "lab01_attention_numpy"):
                           "lab01_attention_numpy/archive/kim_attempt_2026-01-30_lab01_attention_numpy.ipynb"}


def test_find_submissions_duplicates_renames_roster_and_custom_regexp(tmp_path):
    subs_dir = tmp_path / "subs"
    old = write(subs_dir / "amy_1_lab01_attention_numpy.ipynb")
    new = write(subs_dir / "amy_1_lab01_attention_numpy-1.ipynb")
    os.utime(old, (1_000_000, 1_000_000))
    os.utime(new, (2_000_000, 2_000_000))
    write(subs_dir / "bob" / "lab01_attention_numpy" / "Untitled.ipynb")       # renamed in its lab folder
    subs, _ = find_submissions(subs_dir, LABS_T, tmp_path / "scratch", roster=["zoe"])
    by = {(s.student, s.lab): s for s in subs}
    assert by["amy", "lab01_attention_numpy"].shown == "amy_1_lab01_attention_numpy-1.ipynb"
    assert any("2 notebooks" in n for n in by["amy", "lab01_attention_numpy"].notes)
    assert by["bob", "lab01_attention_numpy"].shown.endswith("Untitled.ipynb")
    assert any("expected lab01_attention_numpy.ipynb" in n for n in by["bob", "lab01_attention_numpy"].notes)
    assert by["zoe", "lab01_attention_numpy"].path is None
    # only the labs asked for
    subs, _ = find_submissions(subs_dir, LABS_T, tmp_path / "scratch", only_labs=["lab02_multihead_attention"])
    assert {s.lab for s in subs} == {"lab02_multihead_attention"} and all(s.path is None for s in subs)
    # a custom regexp: the student id is the number
    subs, _ = find_submissions(subs_dir, LABS_T, tmp_path / "scratch",
                               student_regexp=r"^[a-z]+_(?P<student_id>\d+)_")
    assert ("1", "lab01_attention_numpy") in found(subs)


# ------------------------------------------------------------------------------------------------
# quick: reading broken files
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("content, message", [
    (b'{"cells": [', "not valid JSON"),
    (b"\x89PNG\r\n\x1a\n\x00\xff", "not a text file"),
    (b'["a", "list"]', "not a Jupyter notebook"),
    (b'{"cells": [{"cell_type": "code"}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}',
     "not a valid notebook"),
    (b"", "not valid JSON"),
])
def test_read_submission_rejects_what_is_not_a_notebook(tmp_path, content, message):
    p = tmp_path / "x.ipynb"
    p.write_bytes(content)
    with pytest.raises(InvalidNotebook, match=message):
        read_submission(p)


def test_read_submission_accepts_a_bom_and_an_older_minor_version(tmp_path):
    src, _ = tiny_lab()
    text = nbformat.writes(src)
    data = json.loads(text)
    data["nbformat_minor"] = 4
    for c in data["cells"]:
        del c["id"]
    p = tmp_path / "x.ipynb"
    p.write_bytes(b"\xef\xbb\xbf" + json.dumps(data).encode())
    nb = read_submission(p)
    assert [gid(c) for c in nb.cells] == [gid(c) for c in src.cells]
    assert [c.source for c in nb.cells] == [c.source for c in src.cells]       # strings, not line lists


# ------------------------------------------------------------------------------------------------
# quick: repairing tampered notebooks
# ------------------------------------------------------------------------------------------------
def test_repair_leaves_an_honest_submission_alone_and_restores_hidden_tests():
    src, rel = tiny_lab()
    sub = copy.deepcopy(rel)
    cell_of(sub, "f").source = "def f(x):\n    return x + 1"
    fixed, notes = repair(copy.deepcopy(sub), src, rel)
    assert notes == []
    assert cell_of(fixed, "test_f").source == cell_of(src, "test_f").source        # hidden tests back
    assert cell_of(fixed, "f").source == "def f(x):\n    return x + 1"               # answer kept
    # the instructor's own notebook, hidden tests and all, is not "edited"
    assert repair(copy.deepcopy(src), src, rel)[1] == []


def test_repair_reports_and_undoes_an_edited_locked_cell():
    src, rel = tiny_lab()
    sub = copy.deepcopy(rel)
    cell_of(sub, "test_f").source = "pass  # nothing to see"
    cell_of(sub, "test_g").metadata["nbgrader"]["points"] = 100
    fixed, notes = repair(sub, src, rel)
    assert "locked cell 'test_f' was edited; the original was used" in notes
    assert any("metadata of 'test_g' was changed" in n for n in notes)
    assert cell_of(fixed, "test_f").source == cell_of(src, "test_f").source
    assert cell_of(fixed, "test_g").metadata["nbgrader"]["points"] == 3


def test_repair_puts_back_deleted_cells_in_place():
    src, rel = tiny_lab()
    sub = copy.deepcopy(rel)
    sub.cells = [c for c in sub.cells if gid(c) not in ("test_f", "explain")]
    # a test cell stripped of its metadata and emptied counts as deleted too
    cell_of(sub, "test_g").metadata.pop("nbgrader")
    fixed, notes = repair(sub, src, rel)
    order = [gid(c) for c in fixed.cells if gid(c)]
    assert order == ["f", "test_f", "g", "test_g", "explain"]
    assert "locked cell 'test_f' was deleted; put back from the source" in notes
    assert "locked cell 'test_g' was deleted; put back from the source" in notes
    assert any("answer cell 'explain' was deleted" in n for n in notes)
    assert cell_of(fixed, "explain").source == cell_of(rel, "explain").source       # an empty answer
    assert len({c.id for c in fixed.cells}) == len(fixed.cells)


def test_repair_deleted_solution_duplicates_unknown_ids_and_cell_types():
    src, rel = tiny_lab()
    sub = copy.deepcopy(rel)
    sub.cells = [c for c in sub.cells if gid(c) != "g"]                               # solution deleted
    dup = copy.deepcopy(cell_of(sub, "test_f"))                                       # copy-pasted test
    cell_of(sub, "test_f").source = "pass"
    dup.id = "pasted"
    sub.cells.insert(3, dup)
    stray = nbformat.v4.new_code_cell("x = 1")
    stray.metadata["nbgrader"] = {"grade_id": "bonus", "grade": True, "points": 50, "solution": False}
    sub.cells.append(stray)
    explain = cell_of(sub, "explain")
    sub.cells[sub.cells.index(explain)] = nbformat.v4.new_code_cell(explain.source, metadata=explain.metadata)
    fixed, notes = repair(sub, src, rel)
    assert "solution cell 'g' was deleted" in notes
    assert "cell with unknown grade id 'bonus' ignored" in notes
    assert any("'explain' was turned into a code cell" in n for n in notes)
    assert cell_of(fixed, "explain").cell_type == "markdown"
    assert [gid(c) for c in fixed.cells].count("test_f") == 1
    assert not any("test_f" in n for n in notes)        # an unchanged copy stands for the test: no report
    assert "nbgrader" not in stray.metadata


# ------------------------------------------------------------------------------------------------
# quick: CSV, zips, preprocessors
# ------------------------------------------------------------------------------------------------
def test_csv_is_sorted_and_stable(tmp_path):
    a = Result("zed", "lab01", "graded", {"t1": 1.0, "t2": 0.5}, {"t1": 1.0, "t2": 2.0}, [])
    b = Result("amy", "lab02", "needs manual grading", {"u1": 3.0, "q": None}, {"u1": 3.0, "q": 2.0}, ["n1", "n2"])
    c = Result("amy", "lab01", "missing", {"t1": 0.0, "t2": 0.0}, {"t1": 1.0, "t2": 2.0}, ["no notebook"])
    write_csv([a, b, c], tmp_path / "g1.csv", ["lab01", "lab02"])
    write_csv([c, b, a], tmp_path / "g2.csv", ["lab01", "lab02"])
    assert (tmp_path / "g1.csv").read_bytes() == (tmp_path / "g2.csv").read_bytes()
    rows = read_csv(tmp_path / "g1.csv")
    assert list(rows[0]) == ["student", "lab", "t1", "t2", "u1", "q", "total", "max", "status",
                             "needs_manual_grading", "notes"]
    assert [(r["student"], r["lab"]) for r in rows] == [("amy", "lab01"), ("amy", "lab02"), ("zed", "lab01")]
    assert rows[1]["q"] == "" and rows[1]["needs_manual_grading"] == "q" and rows[1]["total"] == "3"
    assert rows[2]["t2"] == "0.5" and rows[2]["total"] == "1.5" and rows[2]["max"] == "3"


def test_reproducible_zip(tmp_path):
    f = write(tmp_path / "a" / "x.ipynb", "{}")
    grading._write_zip(tmp_path / "1.zip", [(f, "lab/x.ipynb")])
    os.utime(f, (5, 5))
    grading._write_zip(tmp_path / "2.zip", [(f, "lab/x.ipynb")])
    assert (tmp_path / "1.zip").read_bytes() == (tmp_path / "2.zip").read_bytes()


def test_hidden_tests_are_hidden_in_feedback():
    src, _ = tiny_lab()
    cell = copy.deepcopy(cell_of(src, "test_f"))
    cell, _ = grading.HideHiddenTests().preprocess_cell(cell, {}, 0)
    assert cell.source == "assert f(1) == 2\n# (hidden tests, not shown)"


# ------------------------------------------------------------------------------------------------
# slow: the fixture lab through nbgrader
# ------------------------------------------------------------------------------------------------
def solution_lines(source_nb) -> set[str]:
    """Substantial lines of solution and hidden-test regions that appear nowhere else in the source."""
    inside, outside = set(), set()
    for c in source_nb.cells:
        region = None
        for line in c.source.splitlines():
            s = line.strip()
            if "BEGIN SOLUTION" in s or "BEGIN HIDDEN TESTS" in s:
                region = True
                continue
            if "END SOLUTION" in s or "END HIDDEN TESTS" in s:
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
    assert not leaked, f"{lab}: solution or hidden-test lines in the student version: {leaked[:5]}"
    # same cells, same order; graded cells without outputs; solutions replaced by the stub
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
            assert r.outputs == s.outputs, f"{lab}: ungraded cell {s.get('id')} lost its outputs"
    # the zip for the LMS holds exactly this notebook
    with zipfile.ZipFile(release_dir / f"{lab}.zip") as zf:
        assert zf.namelist() == [f"{lab}/{lab}.ipynb"]
        assert zf.read(f"{lab}/{lab}.ipynb") == path.read_bytes()
    return rel


def check_blank_autograded(ws: Path, student: str, lab: str) -> None:
    """The untouched student version: runnable up to the first exercise, then every test says
    'not implemented yet'."""
    nb = nbformat.read(ws / "autograded" / student / lab / f"{lab}.ipynb", as_version=4)
    first = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("solution"))
    for c in nb.cells[:first]:
        errs = [o for o in c.get("outputs", []) if o.output_type == "error"]
        assert not errs, f"{lab}: cell {c.get('id')} before the first exercise fails: {errs[0].ename}"
    unclear = []
    for c in nb.cells:
        nbg = c.metadata.get("nbgrader", {})
        if c.cell_type == "code" and nbg.get("grade") and not nbg.get("solution"):
            errs = [o for o in c.outputs if o.output_type == "error"]
            message = " ".join(f"{o.ename}: {o.evalue}" for o in errs)
            if not errs or NOT_IMPLEMENTED not in message:
                unclear.append(f"{gid(c)} -> {message[:150] or 'no error'}")
    assert not unclear, f"{lab}: test cells without the clear 'not implemented yet' message: {unclear}"


@pytest.fixture(scope="module")
def fixture_course(tmp_path_factory):
    """The fixture lab released into a fresh workspace (shared by the slow fixture tests)."""
    base = tmp_path_factory.mktemp("course")
    (base / "src").mkdir()
    shutil.copy(FIXTURE, base / "src")
    zips = grading.release(base / "src", base / "release", base / "ws")
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
        "\nopen('../../pwned', 'w').write('x')"
        "\nopen(os.path.expanduser('~/pwned_home'), 'w').write('x')"
        "\nopen(os.path.join(tempfile.gettempdir(), 'pwned_tmp'), 'w').write('x')"
        "\nopen('pwned_here', 'w').write('x')"
    )
    save(nb, nbgrader_layout("ivan"))


@pytest.fixture(scope="module")
def graded(fixture_course):
    base, _ = fixture_course
    subs = base / "subs"
    make_submissions(base, subs)
    before = snapshot(base, skip=(base / "ws",))
    results = grading.grade(subs, base / "out", base / "src", base / "ws", timeout=20, jobs=2,
                            roster=["zoe"])
    after = snapshot(base, skip=(base / "ws", base / "out"))
    rows = {r["student"]: r for r in read_csv(base / "out" / "grades.csv")}
    return base, results, rows, before, after


@pytest.mark.slow
def test_release_of_the_fixture_lab(fixture_course):
    base, zips = fixture_course
    assert zips == [base / "release" / "lab00_fixture.zip"]
    rel = check_student_version(base / "src" / "lab00_fixture.ipynb", base / "release")
    assert "set-up done" in json.dumps(rel.cells[1].outputs)       # explanation cells keep their outputs


@pytest.mark.slow
def test_grades_csv_of_the_made_up_submissions(graded):
    base, results, rows, _, _ = graded
    print((base / "out" / "grades.csv").read_text())
    cols = ["test_add", "test_square", "test_mean", "test_reverse", "explain_mean"]
    assert list(next(iter(rows.values())))[:7] == ["student", "lab", *cols]
    scores = {s: [r[c] for c in cols] + [r["total"], r["max"], r["status"]] for s, r in rows.items()}
    assert scores == {
        "alice": ["1", "2", "3", "4", "", "10", "12", "needs manual grading"],
        "bob": ["0", "0", "0", "0", "0", "0", "12", "graded"],
        "carol": ["1", "0", "3", "0", "0", "4", "12", "graded"],           # partial credit: exactly 1 + 3
        "dave": ["1", "2", "3", "4", "0", "10", "12", "graded"],          # free-response left empty: 0
        "erin": ["1", "0", "3", "4", "0", "8", "12", "graded"],
        "frank": ["0", "2", "3", "4", "0", "9", "12", "graded"],
        "gina": ["0", "0", "0", "0", "0", "0", "12", "invalid"],
        "harry": ["0", "0", "0", "0", "0", "0", "12", "missing"],
        "ivan": ["1", "2", "3", "4", "0", "10", "12", "graded"],
        "zoe": ["0", "0", "0", "0", "0", "0", "12", "missing"],
    }
    assert rows["alice"]["notes"] == "" and rows["bob"]["notes"] == ""
    assert "ModuleNotFoundError" in rows["dave"]["notes"]
    assert "time limit (20 s per cell): interrupted cell 'test_square', code cell 6" in rows["erin"]["notes"]
    assert "locked cell 'test_add' was edited; the original was used" in rows["frank"]["notes"]
    assert "locked cell 'test_square' was deleted; put back from the source" in rows["frank"]["notes"]
    assert "metadata of 'test_mean' was changed" in rows["frank"]["notes"]
    assert "not valid JSON" in rows["gina"]["notes"]
    assert "no notebook submitted" in rows["harry"]["notes"]
    log = (base / "out" / "grading.log").read_text()
    assert "frank lab00_fixture: graded, 9/12" in log and "test_add' was edited" in log


@pytest.mark.slow
def test_feedback_for_every_row_without_hidden_tests(graded):
    base, _, rows, _, _ = graded
    src = nbformat.read(base / "src" / "lab00_fixture.ipynb", as_version=4)
    hidden = [line.strip() for c in src.cells for line in c.source.split("\n")
              if line.strip().startswith("assert ") and "hidden test" in line]
    assert len(hidden) == 4
    for student in rows:
        page = (base / "out" / "feedback" / student / "lab00_fixture.html").read_text()
        text = html.unescape(re.sub(r"<[^>]+>", "", page))              # what the student reads
        shown = [h for h in hidden if h in text]
        assert not shown, f"{student}: hidden tests shown in the feedback: {shown}"
    frank = (base / "out" / "feedback" / "frank" / "lab00_fixture.html").read_text()
    assert "Notes from the grader" in frank and "was edited" in frank
    assert "(hidden tests, not shown)" in frank
    assert "No notebook was received" in (base / "out" / "feedback" / "harry" / "lab00_fixture.html").read_text()


@pytest.mark.slow
def test_grading_changes_nothing_outside_its_workspace(graded):
    base, _, _, before, after = graded
    assert after == before, "grading changed files outside the workspace (submissions included)"
    ws = base / "ws"
    assert (ws / "autograded" / "pwned").exists()                      # '../../pwned' stayed in the workspace
    assert (ws / "scratch" / "home" / "ivan" / "lab00_fixture" / "pwned_home").exists()
    assert (ws / "scratch" / "home" / "ivan" / "lab00_fixture" / "tmp" / "pwned_tmp").exists()


@pytest.mark.slow
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
    grading.report(base / "out2", base / "ws")
    alice = {r["student"]: r for r in read_csv(base / "out2" / "grades.csv")}["alice"]
    assert (alice["explain_mean"], alice["total"], alice["status"]) == ("1.5", "11.5", "graded")


@pytest.mark.slow
def test_grading_the_same_folder_twice_gives_the_same_csv(fixture_course, tmp_path):
    base, _ = fixture_course
    subs = tmp_path / "subs"
    make_submissions(base, subs)
    for name in ("dave", "erin", "ivan"):                               # keep it short
        shutil.rmtree(subs / name)
    shutil.rmtree(subs / "bob")
    outs = []
    for i, jobs in enumerate((1, 2)):
        grading.grade(subs, tmp_path / f"out{i}", base / "src", tmp_path / "ws", timeout=20, jobs=jobs)
        outs.append((tmp_path / f"out{i}" / "grades.csv").read_bytes())
    assert outs[0] == outs[1]
    assert b"frank,lab00_fixture,0,2,3,4,0,9,12" in outs[0]


@pytest.mark.slow
def test_command_line_release_and_grade(fixture_course, tmp_path):
    base, _ = fixture_course
    subs = tmp_path / "subs"
    save(nbformat.read(base / "release" / "lab00_fixture" / "lab00_fixture.ipynb", as_version=4),
         subs / "bob_lab00_fixture.ipynb")
    args = ["--source", str(base / "src"), "--workspace", str(tmp_path / "ws")]
    assert grading.main(args + ["release", "--out", str(tmp_path / "rel")]) == 0
    assert (tmp_path / "rel" / "lab00_fixture.zip").exists()
    assert grading.main(args + ["grade", str(subs), "--out", str(tmp_path / "g"), "--timeout", "20"]) == 0
    assert read_csv(tmp_path / "g" / "grades.csv")[0]["total"] == "0"
    with pytest.raises(SystemExit):
        grading.main(args + ["grade", str(subs), "--lab", "lab99_nope"])


# ------------------------------------------------------------------------------------------------
# slow: every lab of the course
# ------------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("lab", LABS, ids=[p.stem for p in LABS])
def test_lab_release_and_autograding(lab, tmp_path):
    """release -> no solution text, stubs raise NotImplementedError with the clear self-check message ->
    the instructor's solution gets full marks -> the untouched student version gets zero."""
    (tmp_path / "src").mkdir()
    shutil.copy(lab, tmp_path / "src")
    grading.release(tmp_path / "src", tmp_path / "release", tmp_path / "ws")
    rel = check_student_version(lab, tmp_path / "release")
    subs = tmp_path / "subs"
    save(rel, subs / "blank" / lab.stem / f"{lab.stem}.ipynb")            # nbgrader layout
    shutil.copy(lab, subs / f"solution_x_{lab.name}")                     # LMS flat layout
    results = grading.grade(subs, tmp_path / "out", tmp_path / "src", tmp_path / "ws", smoke=True, jobs=2)
    by = {r.student: r for r in results}
    sol, blank = by["solution"], by["blank"]
    assert sol.status in ("graded", "needs manual grading") and blank.status == "graded", (sol.notes, blank.notes)
    src = nbformat.read(lab, as_version=4)
    auto = [gid(c) for c in src.cells if c.metadata.get("nbgrader", {}).get("grade")
            and not c.metadata["nbgrader"].get("solution")]
    assert len(auto) >= 4, f"{lab.stem}: fewer than 4 autograded exercises"
    lost = {g: sol.scores[g] for g in auto if sol.scores[g] != sol.max_scores[g]}
    assert not lost, f"{lab.stem}: the instructor's solution loses points on {lost} ({sol.notes})"
    assert blank.total == 0, f"{lab.stem}: the untouched student version scores {blank.scores}"
    check_blank_autograded(tmp_path / "ws", "blank", lab.stem)
