"""The student versions of the labs, kept in ``student/``: what the book's launch buttons open.

Binder and Colab open files of the repository, so the student version of each lab (no solutions, no hidden
tests) must be in it; the instructor versions in ``notebooks/`` are what the book shows. ``student/<lab>.ipynb``
is exactly what the release step (``make release``, nbgrader's ``generate_assignment``) makes of
``notebooks/<lab>.ipynb``: this script calls the release function into a scratch folder and copies the
notebooks over, and ``tests/browser/test_launch.py`` fails when a lab changed and ``student/`` was not
refreshed::

    .venv/bin/python book/_ext/student_labs.py           # refresh student/ (after changing a lab)
    .venv/bin/python book/_ext/student_labs.py --check   # exit status 1 and the stale labs when out of date
"""
from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STUDENT = ROOT / "student"
SOURCE = ROOT / "notebooks"


def _release_function():
    """The course's release function (instructor/grading/release.py)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from instructor.grading.release import release

    return release


def released(scratch: Path, source: Path = SOURCE) -> dict[str, bytes]:
    """{lab: student notebook bytes} as the release step makes them from ``source``, built in ``scratch``."""
    release = _release_function()
    with contextlib.redirect_stdout(io.StringIO()):
        release(source=str(source), out=str(scratch / "release"), workspace=str(scratch / "workspace"))
    return {p.parent.name: p.read_bytes() for p in sorted((scratch / "release").glob("*/*.ipynb"))
            if p.stem == p.parent.name}


def stale(student: Path = STUDENT, source: Path = SOURCE) -> list[str]:
    """What is out of date in ``student``: one line per lab that differs, is missing or has no source."""
    with tempfile.TemporaryDirectory(prefix="student_labs_") as tmp:
        fresh = released(Path(tmp), source)
    problems = []
    for lab, data in fresh.items():
        path = student / f"{lab}.ipynb"
        if not path.exists():
            problems.append(f"{lab}: missing from {student.name}/")
        elif path.read_bytes() != data:
            problems.append(f"{lab}: {student.name}/{lab}.ipynb differs from the release of notebooks/{lab}.ipynb")
    for path in sorted(student.glob("*.ipynb")):
        if path.stem not in fresh:
            problems.append(f"{path.stem}: in {student.name}/ but not a lab of notebooks/")
    return problems


def refresh(student: Path = STUDENT, source: Path = SOURCE) -> list[Path]:
    """Write the student version of every lab to ``student/<lab>.ipynb``; remove the ones of deleted labs."""
    with tempfile.TemporaryDirectory(prefix="student_labs_") as tmp:
        fresh = released(Path(tmp), source)
    student.mkdir(exist_ok=True)
    for path in student.glob("*.ipynb"):
        if path.stem not in fresh:
            path.unlink()
    written = []
    for lab, data in fresh.items():
        path = student / f"{lab}.ipynb"
        if not path.exists() or path.read_bytes() != data:
            path.write_bytes(data)
            written.append(path)
    readme = student / "README.md"
    if not readme.exists():
        shutil.copyfile(Path(__file__).with_name("student_README.md"), readme)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report whether student/ is up to date")
    args = parser.parse_args(argv)
    if args.check:
        problems = stale()
        print("\n".join(problems) or "student/ is up to date")
        return 1 if problems else 0
    for path in refresh():
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
