"""Finding submissions in the layouts LMSs and nbgrader produce; zips unpacked safely; broken files reported."""
import json
import os
import zipfile

import nbformat
import pytest
from gradinghelpers import gid, tiny_lab, write

from instructor.grading.repair import InvalidNotebook, read_submission
from instructor.grading.submissions import find_submissions


def found(subs):
    return {(s.student, s.lab): (s.shown if s.path else None) for s in subs}


LABS_T = ["lab01_attention_numpy", "lab02_multihead_attention"]


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


