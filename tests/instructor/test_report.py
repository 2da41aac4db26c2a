"""grades.csv and reproducible zips."""
import os

from gradinghelpers import read_csv, write

from instructor.grading.release import write_zip
from instructor.grading.report import Result, write_csv


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
    write_zip(tmp_path / "1.zip", [(f, "lab/x.ipynb")])
    os.utime(f, (5, 5))
    write_zip(tmp_path / "2.zip", [(f, "lab/x.ipynb")])
    assert (tmp_path / "1.zip").read_bytes() == (tmp_path / "2.zip").read_bytes()


