"""The instructor's grading pipeline: student versions of the labs, autograding, grades and feedback.

Built on nbgrader (0.9); the instructor guide (``book/instructor_guide.md``) explains the workflow.
Run from the repository root::

    python -m labsupport.grading release                       # make release
    python -m labsupport.grading grade SUBMISSIONS [--out grades]   # make grade SUBMISSIONS=...
    python -m labsupport.grading report [--out grades]         # CSV + feedback again, after manual grading

How ``notebooks/`` maps onto nbgrader's course directory
---------------------------------------------------------
Every lab ``notebooks/labNN_name.ipynb`` (the instructor version, with solutions and hidden tests) is one
nbgrader *assignment* ``labNN_name`` holding one notebook of the same name. The nbgrader course directory
is the git-ignored workspace ``_grading/``, rebuilt from the repository whenever needed::

    _grading/
      nbgrader_config.py              written by us; calls labsupport.nbgrader_config.configure()
      gradebook.db                    nbgrader's gradebook (cells, points, scores, manual grades)
      source/<lab>/<lab>.ipynb        copied from notebooks/ (never edit here: edit notebooks/)
      release/<lab>/<lab>.ipynb       the student version (nbgrader generate_assignment)
      submitted/<student>/<lab>/      left to nbgrader's own `collect` / `zip_collect` (never written by us)
      sanitized/<student>/<lab>/      the copies we grade: read from the submissions, repaired (see below)
      autograded/<student>/<lab>/     the executed copies with scores (nbgrader autograde)
      feedback/<student>/<lab>/       the feedback HTML (nbgrader generate_feedback)
      logs/<lab>/<student>.log        nbgrader's log of each autograding run
      scratch/                        HOME, TMPDIR and unpacked zips of the grading runs
      last_run.json                   what the last `grade` saw, for `report`

``release`` copies the student versions to ``release/<lab>/<lab>.ipynb`` and zips each into
``release/<lab>.zip``. ``grade`` writes ``grades/grades.csv`` and ``grades/feedback/<student>/<lab>.html``.

What ``grade`` does to each submission
--------------------------------------
1. Finds it (:func:`find_submissions`): nbgrader's ``<student>/<lab>/<lab>.ipynb``, per-student folders
   ``<student>/<lab>.ipynb``, flat LMS downloads ``<student>_<anything>_<lab>.ipynb`` and zips of any of these.
2. Reads it without ever writing to it; a file that is not a notebook is reported, not graded.
3. Repairs a copy (:func:`repair`): locked test cells are restored from the source (an edited or deleted
   one is reported), nbgrader metadata is restored from the source, duplicated cells are ignored.
4. Autogrades the copy with ``nbgrader autograde`` in a child process: the hidden tests are put back from
   the gradebook, each cell has a time limit (interrupted, then the rest runs; after a timeout the later
   cells get at most 60 s each), the kernel's HOME and TMPDIR point into ``_grading/scratch`` and it sees
   only a few environment variables, training labs get ``LABSUPPORT_SMOKE=1``.
5. Writes the CSV (sorted, no timestamps: the same folder gives the same CSV) and the feedback.

Isolation is limited: student code runs as the user who runs ``grade``. See the instructor guide for
running it in a container.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import nbformat
from nbgrader import utils as nbutils
from nbgrader.preprocessors import ClearOutput, Execute, NbGraderPreprocessor
from traitlets import Integer

from labsupport.nbgrader_config import CELL_TIMEOUT, COURSE_ID

__all__ = [
    "ClearGradedOutput", "HideHiddenTests", "GradingExecute", "Workspace", "Submission", "Result",
    "find_labs", "release", "find_submissions", "repair", "grade", "report", "main",
]

WORKSPACE = "_grading"
SOURCE = "notebooks"
RELEASE = "release"
OUT = "grades"
#: Seconds a whole submission may take before its grading process is killed (a safety net behind the
#: per-cell timeout, for a kernel that does not answer an interrupt).
SUBMISSION_TIMEOUT = 3600
LAB_PATTERN = "lab*.ipynb"
SKIP_NAMES = {"__MACOSX", ".ipynb_checkpoints", "__pycache__"}


# ------------------------------------------------------------------------------------------------
# nbgrader preprocessors used by labsupport.nbgrader_config
# ------------------------------------------------------------------------------------------------
class ClearGradedOutput(ClearOutput):
    """Clear the outputs of graded cells (solutions, tests, free-response answers) only.

    nbgrader's ``ClearOutput`` clears every cell; the student version of a lab keeps the figures and
    printouts of its explanation cells, which were made by the instructor's run.
    """

    def preprocess_cell(self, cell, resources, index):
        if nbutils.is_solution(cell) or nbutils.is_grade(cell):
            return super().preprocess_cell(cell, resources, index)
        return cell, resources


class GradingExecute(Execute):
    """nbgrader's ``Execute``, except that once a cell has run out of time, the cells after it get at most
    ``after_timeout`` seconds each.

    A student function with an infinite loop is usually called again by later cells (its test, the next
    exercises, the demonstrations); without this, each of those calls would cost the full time limit.
    """

    after_timeout = Integer(60, help="Time limit (s) of the cells after one that timed out").tag(config=True)

    def preprocess(self, nb, resources=None, km=None):
        self._timed_out = False
        return super().preprocess(nb, resources, km=km)

    def _get_timeout(self, cell):
        timeout = super()._get_timeout(cell)
        if getattr(self, "_timed_out", False) and self.after_timeout and (timeout is None or timeout > self.after_timeout):
            return self.after_timeout
        return timeout

    async def _async_handle_timeout(self, timeout, cell=None):
        self._timed_out = True
        return await super()._async_handle_timeout(timeout, cell)


class HideHiddenTests(NbGraderPreprocessor):
    """In feedback, replace the hidden-test region of test cells by a one-line note.

    The hidden lines are also taken out of the tracebacks (IPython shows the code around the failing
    line); the assertion *message* of a failing hidden test stays: it is written for the student.
    """

    begin = "### BEGIN HIDDEN TESTS"
    end = "### END HIDDEN TESTS"

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code" and nbutils.is_grade(cell) and self.begin in cell.source:
            hidden = _region_lines(cell.source, self.begin, self.end)
            cell.source = _strip_region(cell.source, self.begin, self.end, "# (hidden tests, not shown)")
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error":
                    out["traceback"] = [_drop_lines(frame, hidden) for frame in out.get("traceback", [])]
        return cell, resources


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_TB_CODE = re.compile(r"^\s*(?:-*>)?\s*\d+\s?(.*)$")   # "----> 3 code" or "      4 code"


def _region_lines(source: str, begin: str, end: str) -> set[str]:
    """The stripped, non-empty lines of the marked regions, markers included."""
    out, inside = set(), False
    for line in source.split("\n"):
        if begin in line:
            inside = True
        if inside and line.strip():
            out.add(line.strip())
        if end in line:
            inside = False
    return out


def _drop_lines(frame: str, hidden: set[str]) -> str:
    keep = []
    for line in frame.split("\n"):
        m = _TB_CODE.match(_ANSI.sub("", line))
        if m and m.group(1).strip() in hidden:
            continue
        keep.append(line)
    return "\n".join(keep)


def _strip_region(source: str, begin: str, end: str, replacement: str | None) -> str:
    out, inside = [], False
    for line in source.split("\n"):
        if begin in line:
            inside = True
            if replacement is not None:
                out.append(line[: len(line) - len(line.lstrip())] + replacement)
        elif end in line and inside:
            inside = False
        elif not inside:
            out.append(line)
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------
# the workspace: nbgrader's course directory
# ------------------------------------------------------------------------------------------------
def find_labs(source: str | Path = SOURCE) -> list[Path]:
    """The lab notebooks of the course, sorted: ``source/lab*.ipynb``."""
    return sorted(p for p in Path(source).glob(LAB_PATTERN) if p.is_file())


class Workspace:
    """nbgrader's course directory (``_grading/``), kept in step with the lab notebooks."""

    def __init__(self, root: str | Path = WORKSPACE, source: str | Path = SOURCE, timeout: int | None = None):
        # nbgrader runs the `alembic` command of its environment: make sure it is on PATH even when the
        # virtual environment is not activated (`.venv/bin/python -m labsupport.grading`)
        bindir = str(Path(sys.executable).parent)
        if bindir not in os.environ.get("PATH", "").split(os.pathsep):
            os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
        self.root = Path(root).resolve()
        self.source = Path(source).resolve()
        self.timeout = timeout
        self._api = None

    # paths
    def path(self, step: str, student: str | None, lab: str) -> Path:
        if step in ("source", "release"):
            return self.root / step / lab / f"{lab}.ipynb"
        return self.root / step / student / lab / f"{lab}.ipynb"

    @property
    def db(self) -> Path:
        return self.root / "gradebook.db"

    def write_config(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "nbgrader_config.py").write_text(
            "# Written by `python -m labsupport.grading` (make release / make grade), rewritten on each run.\n"
            "# The course's nbgrader settings live in labsupport/nbgrader_config.py: edit that file.\n"
            "from labsupport.nbgrader_config import configure\n\n"
            "configure(get_config())\n"
        )

    def config(self):
        from traitlets.config import Config

        from labsupport.nbgrader_config import configure

        c = configure(Config(), timeout=self.timeout)
        c.CourseDirectory.root = str(self.root)
        return c

    @property
    def api(self):
        if self._api is None:
            from nbgrader.apps import NbGraderAPI

            self._api = NbGraderAPI(config=self.config())
        return self._api

    def prepare(self, labs: list[str], force: bool = False) -> None:
        """Copy the labs into ``source/`` and run ``generate_assignment`` where a lab is new or changed."""
        self.write_config()
        for lab in labs:
            src = self.source / f"{lab}.ipynb"
            dst = self.path("source", None, lab)
            unchanged = dst.exists() and dst.read_bytes() == src.read_bytes()
            if unchanged and not force and self.path("release", None, lab).exists() and self._in_gradebook(lab):
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            result = self.api.generate_assignment(lab, force=True)
            if not result["success"] and "Cannot add or remove cells" in result.get("log", ""):
                raise SystemExit(
                    f"{lab} gained or lost graded cells since it was graded in {self.root}, and nbgrader's "
                    "gradebook cannot follow. Keep the grades.csv you need, then delete that folder (its "
                    "manual grades go with it) or pass a new --workspace.")
            if not result["success"]:
                raise RuntimeError(f"nbgrader generate_assignment {lab} failed:\n{result.get('log', '')}"
                                   f"\n{result.get('error', '')}")

    def _in_gradebook(self, lab: str) -> bool:
        if not self.db.exists():
            return False
        from nbgrader.api import Gradebook, MissingEntry

        with Gradebook(f"sqlite:///{self.db}", COURSE_ID) as gb:
            try:
                gb.find_notebook(lab, lab)
                return True
            except MissingEntry:
                return False


def _write_zip(zpath: Path, files: list[tuple[Path, str]]) -> None:
    """A reproducible zip: sorted entries, fixed timestamps and permissions."""
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, arcname in sorted(files, key=lambda f: f[1]):
            info = zipfile.ZipInfo(arcname, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())


def release(source: str | Path = SOURCE, out: str | Path = RELEASE, workspace: str | Path = WORKSPACE,
            labs: list[str] | None = None) -> list[Path]:
    """Student versions of the labs into ``out/<lab>/<lab>.ipynb`` plus ``out/<lab>.zip``; returns the zips."""
    names = labs or [p.stem for p in find_labs(source)]
    if not names:
        raise SystemExit(f"no labs ({LAB_PATTERN}) in {source}: run from the repository root or pass --source")
    ws = Workspace(workspace, source)
    ws.prepare(names, force=True)
    out = Path(out)
    zips = []
    for lab in names:
        built = ws.root / "release" / lab
        dest = out / lab
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(built, dest)
        files = [(p, f"{lab}/{p.relative_to(dest).as_posix()}") for p in dest.rglob("*") if p.is_file()]
        zpath = out / f"{lab}.zip"
        _write_zip(zpath, files)
        zips.append(zpath)
        print(f"released {lab}: {dest / (lab + '.ipynb')} and {zpath}")
    return zips


# ------------------------------------------------------------------------------------------------
# finding the submissions
# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Submission:
    """One (student, lab) to grade: the file found for it (``None``: missing) and what we noticed."""

    student: str
    lab: str
    path: Path | None = None
    shown: str = ""                       # where it was found, relative to the submissions folder
    notes: list[str] = dataclasses.field(default_factory=list)


def _student_id(name: str) -> str:
    """A student id nbgrader can use as a folder name: letters, digits, '.', '_', '-'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")


_COPY_SUFFIX = r"(?:[ _-]*(?:\(\d+\)|copy\d*|-\d+|\d+))*"


def _lab_in_name(stem: str, labs: list[str]) -> str | None:
    """The lab a file name refers to: it contains the lab's name, or only its ``labNN`` prefix."""
    for lab in sorted(labs, key=len, reverse=True):
        if lab.lower() in stem.lower():
            return lab
    for m in re.finditer(r"lab[ _-]?(\d{1,2})(?!\d)", stem, re.IGNORECASE):
        hits = [lab for lab in labs if lab.lower().startswith(f"lab{int(m.group(1)):02d}")]
        if len(hits) == 1:
            return hits[0]
    return None


def _is_just_lab(stem: str, lab: str) -> bool:
    """``lab01_x``, ``lab01_x (1)``, ``lab01_x-Copy1``: the lab's own file name, maybe with a copy suffix."""
    return re.fullmatch(re.escape(lab) + _COPY_SUFFIX, stem, re.IGNORECASE) is not None


def _folder_student(folder: str, lab: str, student_regexp: str) -> str:
    # Moodle: "Ada Lovelace_123456_assignsubmission_file_"
    folder = re.sub(r"_\d+_assignsubmission_\w*$", "", folder)
    if _lab_in_name(folder, [lab]):        # an LMS folder named after the student *and* the lab
        m = re.search(student_regexp, folder)
        return m.group("student_id") if m else ""
    return folder


def _unpack(zpath: Path, dest: Path, depth: int = 0) -> list[tuple[PurePosixPath, Path, float, bool]]:
    """Extract a zip safely (no absolute paths, no '..'); returns (virtual path, real path, mtime, is_dir)."""
    import time

    found = []
    with zipfile.ZipFile(zpath) as zf:
        for info in zf.infolist():
            rel = PurePosixPath(info.filename)
            if rel.is_absolute() or ".." in rel.parts or not rel.parts:
                continue
            if any(part in SKIP_NAMES or part.startswith(".") for part in rel.parts):
                continue
            if info.is_dir():
                found.append((rel, dest.joinpath(*rel.parts), 0.0, True))
                continue
            target = dest.joinpath(*rel.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            mtime = time.mktime(info.date_time + (0, 0, -1))
            if rel.suffix.lower() == ".zip" and depth < 2:
                inner = dest / (str(rel) + ".d")
                found += [(rel.with_suffix("") / v, r, m, d) for v, r, m, d in _unpack(target, inner, depth + 1)]
            else:
                found.append((rel, target, mtime, False))
    return found


def _walk(root: Path, scratch: Path) -> list[tuple[PurePosixPath, Path, float, bool]]:
    """Every file and folder under ``root`` (a folder or a zip) as (path relative to root, real path, mtime,
    is_dir);
    zips are unpacked into ``scratch`` and their content appears under the zip's name without '.zip'."""
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)
    if root.is_file():
        if root.suffix.lower() != ".zip":
            raise SystemExit(f"{root} is neither a folder nor a .zip file")
        return _unpack(root, scratch / "root")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_NAMES and not d.startswith("."))
        for name in dirnames:
            real = Path(dirpath) / name
            found.append((PurePosixPath(real.relative_to(root).as_posix()), real, 0.0, True))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            real = Path(dirpath) / name
            rel = PurePosixPath(real.relative_to(root).as_posix())
            if name.lower().endswith(".zip"):
                try:
                    found += [(rel.with_suffix("") / v, r, m, d)
                              for v, r, m, d in _unpack(real, scratch / f"z{len(found)}")]
                except zipfile.BadZipFile:
                    print(f"warning: {rel} is not a valid zip file; skipped", file=sys.stderr)
            else:
                found.append((rel, real, real.stat().st_mtime, False))
    return found


def find_submissions(root: str | Path, labs: list[str], scratch: str | Path,
                     student_regexp: str = r"^(?P<student_id>[^_\s]+)_", roster: list[str] = (),
                     only_labs: list[str] | None = None) -> tuple[list[Submission], list[str]]:
    """Find the notebooks in a folder (or zip) of submissions; returns the submissions and warnings.

    Accepted layouts (zips of any of them, at any level, are unpacked):

    * nbgrader's ``<student>/<lab>/<lab>.ipynb`` (``submitted/`` of a course, ``nbgrader collect``,
      ``nbgrader zip_collect``); another notebook name inside ``<student>/<lab>/`` is accepted with a note;
    * per-student folders ``<student>/<lab>.ipynb`` (also Moodle's ``Name_123_assignsubmission_file_/``);
    * flat LMS downloads ``<student>_<anything>_<lab>.ipynb`` (Canvas: ``jsmith_late_123_456_lab01_x.ipynb``);
      the student id is what ``student_regexp`` (group ``student_id``) finds in the file or folder name,
      by default everything before the first underscore.

    A file names its lab by containing the lab's name (``lab01_attention_numpy``) or its prefix (``lab01``).
    For each student and lab seen, the newest file wins (a note says so). Every (student, lab) without a
    notebook, for the labs being graded and the students seen or listed in ``roster``, is "missing".
    """
    root = Path(root)
    files = _walk(root, Path(scratch))
    warnings: list[str] = []
    candidates: dict[tuple[str, str], list[tuple[int, float, str, Path]]] = {}
    students: set[str] = {_student_id(s) for s in roster if _student_id(s)}
    labs_seen: set[str] = set()
    for rel, real, mtime, is_dir in files:
        parts = rel.parts
        dirs = parts if is_dir else parts[:-1]
        lab_dirs = [i for i, d in enumerate(dirs) if d in labs]
        for i in lab_dirs:                   # <student>/<lab>/ exists: the student took part
            if i >= 1 and _student_id(dirs[i - 1]):
                students.add(_student_id(dirs[i - 1]))
        if is_dir or rel.suffix.lower() != ".ipynb":
            continue
        stem = rel.stem
        lab = dirs[lab_dirs[-1]] if lab_dirs else _lab_in_name(stem, labs)
        if lab is None:
            warnings.append(f"{rel}: not recognised as one of the labs; skipped")
            continue
        if lab_dirs and lab_dirs[-1] >= 1 and lab_dirs[-1] == len(dirs) - 1:
            student = dirs[-2]                                           # <student>/<lab>/<file>
        elif _is_just_lab(stem, lab) and dirs and dirs[-1] not in labs + ["archive", "extracted"]:
            student = _folder_student(dirs[-1], lab, student_regexp)     # <student>/<lab>.ipynb
        else:
            m = re.search(student_regexp, rel.name)                     # <student>_..._<lab>.ipynb
            student = m.group("student_id") if m else ""
        student = _student_id(student)
        if not student or _lab_in_name(student, labs) == student or student in labs:
            warnings.append(f"{rel}: cannot tell which student it belongs to; skipped "
                            "(see the accepted layouts, or pass --student-regexp)")
            continue
        # rank: the lab's own file name first, then the newest, then the path
        rank = 0 if _is_just_lab(stem, lab) else 1
        candidates.setdefault((student, lab), []).append((rank, mtime, str(rel), real))
        students.add(student)
        labs_seen.add(lab)

    graded_labs = [lab for lab in labs if lab in (only_labs if only_labs else labs_seen)]
    subs = []
    for student in sorted(students):
        for lab in graded_labs:
            found = candidates.get((student, lab))
            sub = Submission(student, lab)
            if found:
                # newest first; among equally new files, the lab's own name first
                found.sort(key=lambda f: (-f[1], f[0], f[2]))
                _, _, shown, real = found[0]
                sub.path, sub.shown = real, shown
                if lab.lower() not in PurePosixPath(shown).stem.lower():
                    sub.notes.append(f"graded '{PurePosixPath(shown).name}' (expected {lab}.ipynb)")
                if len(found) > 1:
                    sub.notes.append(f"{len(found)} notebooks for this lab; graded the newest, '{shown}'")
            subs.append(sub)
    return subs, warnings


# ------------------------------------------------------------------------------------------------
# reading and repairing a submission
# ------------------------------------------------------------------------------------------------
class InvalidNotebook(Exception):
    """The submitted file is not a notebook we can grade."""


def read_submission(path: Path) -> nbformat.NotebookNode:
    """Read a submitted file (read-only) as an nbformat-4 notebook, or raise :class:`InvalidNotebook`."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise InvalidNotebook(f"not a text file ({err.reason} at byte {err.start})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise InvalidNotebook(f"not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from None
    if not isinstance(data, dict) or "cells" not in data and "worksheets" not in data:
        raise InvalidNotebook("valid JSON but not a Jupyter notebook (no cells)")
    try:
        import logging
        import warnings

        from nbformat.validator import normalize

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            logging.getLogger("traitlets").disabled = True     # nbformat logs schema errors there
            try:
                nb = nbformat.reads(text, as_version=4)
            finally:
                logging.getLogger("traitlets").disabled = False
            _, nb = normalize(nb)
            nb = nbformat.from_dict(nb)
            nbformat.validate(nb)
    except Exception as err:  # noqa: BLE001 - any schema problem makes it ungradable
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InvalidNotebook(f"not a valid notebook ({msg[:200]})") from None
    return nb


def _norm(source) -> str:
    if isinstance(source, list):
        source = "".join(source)
    return "\n".join(line.rstrip() for line in str(source).strip().splitlines())


def _grade_id(cell) -> str | None:
    md = cell.get("metadata", {}).get("nbgrader")
    if isinstance(md, dict) and isinstance(md.get("grade_id"), str):
        return md["grade_id"]
    return None


def _fresh(cell) -> nbformat.NotebookNode:
    """A copy of a source cell ready to be run: no outputs."""
    new = nbformat.from_dict(json.loads(json.dumps(cell)))
    if new.cell_type == "code":
        new.outputs, new.execution_count = [], None
    return new


def _unchanged(cell, released) -> bool:
    """Is a locked cell as released? (a submission made from the instructor's version still has the
    hidden tests: that is not an edit)"""
    shown = _strip_region(cell.source, HideHiddenTests.begin, HideHiddenTests.end, None)
    return cell.cell_type == released.cell_type and _norm(shown) == _norm(released.source)


def _cell_kind(cell) -> str:
    md = cell.metadata["nbgrader"]
    if md.get("solution") and md.get("grade"):
        return "answer"
    if md.get("solution"):
        return "solution"
    if md.get("grade"):
        return "test"
    return "locked"


def repair(nb: nbformat.NotebookNode, source: nbformat.NotebookNode,
           released: nbformat.NotebookNode) -> tuple[nbformat.NotebookNode, list[str]]:
    """Make a submitted notebook safe to autograde, and say what was wrong with it.

    * a locked cell (tests, read-only cells) is replaced by the instructor's version (with the hidden
      tests); if its text differs from the released one it was edited: reported;
    * a deleted locked cell or free-response answer cell is put back where it belongs (after the graded
      cell that precedes it in the source): reported;
    * a deleted solution cell is reported (its exercise then fails);
    * the nbgrader metadata of every graded cell is restored from the source (points, ids, cell type),
      cells with an unknown id lose it, duplicated cells (copy-pasted in Jupyter) count once.
    """
    notes: list[str] = []
    src = {_grade_id(c): c for c in source.cells if _grade_id(c)}
    rel = {_grade_id(c): c for c in released.cells if _grade_id(c)}
    order = [_grade_id(c) for c in source.cells if _grade_id(c)]
    cells = list(nb.cells)

    # which cell stands for each graded cell: the first, or the first unchanged one for locked cells
    chosen: dict[str, int] = {}
    for i, cell in enumerate(cells):
        gid = _grade_id(cell)
        if gid is None:
            if "nbgrader" in cell.get("metadata", {}):
                del cell.metadata["nbgrader"]
            continue
        if gid not in src:
            notes.append(f"cell with unknown grade id '{gid}' ignored")
            del cell.metadata["nbgrader"]
            continue
        if gid in chosen:
            j = chosen[gid]
            locked = _cell_kind(src[gid]) in ("test", "locked")
            if locked and not _unchanged(cells[j], rel[gid]) and _unchanged(cell, rel[gid]):
                chosen[gid] = i
                del cells[j].metadata["nbgrader"]
            else:
                del cell.metadata["nbgrader"]
            continue
        chosen[gid] = i

    for gid, i in chosen.items():
        kind = _cell_kind(src[gid])
        cell = cells[i]
        if kind in ("test", "locked"):
            if not _unchanged(cell, rel[gid]):
                notes.append(f"locked cell '{gid}' was edited; the original was used")
            elif any(cell.metadata["nbgrader"].get(k) != src[gid].metadata["nbgrader"].get(k)
                     for k in ("grade", "solution", "locked", "points")):
                notes.append(f"the nbgrader metadata of '{gid}' was changed; the original was used")
            cells[i] = _fresh(src[gid])
        else:
            if cell.cell_type != src[gid].cell_type:
                notes.append(f"cell '{gid}' was turned into a {cell.cell_type} cell; changed back")
                new = _fresh(src[gid])
                new.source = cell.source
                cells[i] = new
            else:
                cell.metadata["nbgrader"] = json.loads(json.dumps(src[gid].metadata["nbgrader"]))

    # put back what was deleted, after the nearest graded cell that precedes it in the source
    ids = {_grade_id(c): c for c in cells if _grade_id(c)}
    for k, gid in enumerate(order):
        if gid in ids:
            continue
        kind = _cell_kind(src[gid])
        if kind == "solution":
            notes.append(f"solution cell '{gid}' was deleted")
            continue
        new = _fresh(src[gid]) if kind in ("test", "locked") else _fresh(rel[gid])
        before = next((g for g in reversed(order[:k]) if g in ids), None)
        after = next((g for g in order[k + 1:] if g in ids), None)
        if before is not None:
            pos = next(i for i, c in enumerate(cells) if c is ids[before]) + 1
        elif after is not None:
            pos = next(i for i, c in enumerate(cells) if c is ids[after])
        else:
            pos = len(cells)
        cells.insert(pos, new)
        ids[gid] = new
        what = "answer cell" if kind == "answer" else "locked cell"
        notes.append(f"{what} '{gid}' was deleted; put back from the source" +
                     (" (empty answer)" if kind == "answer" else ""))
    # cell ids (nbformat 4.5) must stay unique after cells were put back
    seen: set[str] = set()
    for i, cell in enumerate(cells):
        if "id" in cell:
            while cell.id in seen:
                cell.id = f"{cell.id[:55]}-{i}"
            seen.add(cell.id)
    nb.cells = cells
    return nb, notes


# ------------------------------------------------------------------------------------------------
# autograding
# ------------------------------------------------------------------------------------------------
#: The variables of our environment a grading run inherits (plus every LABSUPPORT_*); the rest (tokens,
#: credentials, the current folder) stays out of the student code's reach.
ENV_KEEP = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TZ", "USER", "LOGNAME",
            "PYTHONPATH", "VIRTUAL_ENV", "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS",
            "MKL_NUM_THREADS")


def _kernel_env(ws: Workspace, student: str, lab: str, smoke: bool, jobs: int = 1) -> dict[str, str]:
    """The environment of a grading run: a scratch HOME and TMPDIR, no bytecode written, fixed hashing,
    only the variables of :data:`ENV_KEEP`."""
    home = ws.root / "scratch" / "home" / student / lab
    if home.exists():
        shutil.rmtree(home)
    (home / "tmp").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k in ENV_KEEP or k.startswith("LABSUPPORT_")}
    if jobs > 1 and "OMP_NUM_THREADS" not in env:       # parallel kernels share the cores
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    env.update(HOME=str(home), TMPDIR=str(home / "tmp"), IPYTHONDIR=str(home / ".ipython"),
               MPLCONFIGDIR=str(ws.root / "scratch" / "mplconfig"), MPLBACKEND="agg",
               PYTHONDONTWRITEBYTECODE="1", PYTHONHASHSEED="0", LABSUPPORT_STATIC="1")
    if smoke:
        env["LABSUPPORT_SMOKE"] = "1"
    else:
        env.pop("LABSUPPORT_SMOKE", None)
    return env


def autograde_one(ws: Workspace, student: str, lab: str, timeout: int, smoke: bool,
                  submission_timeout: int = SUBMISSION_TIMEOUT, jobs: int = 1) -> tuple[bool, str]:
    """``nbgrader autograde LAB --student STUDENT --force`` in a child process, on the copy in
    ``sanitized/``; returns (ok, message)."""
    log = ws.root / "logs" / lab / f"{student}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "nbgrader", "autograde", lab, f"--student={student}", "--force",
           f"--Execute.timeout={timeout}", "--CourseDirectory.submitted_directory=sanitized"]
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=ws.root, env=_kernel_env(ws, student, lab, smoke, jobs), stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=submission_timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return False, f"grading took longer than {submission_timeout} s and was stopped"
    if rc == 0 and ws.path("autograded", student, lab).exists():
        return True, ""
    text = log.read_text(errors="replace")
    if "UnresponsiveKernelError" in text or "became unresponsive" in text:
        return False, "the kernel did not answer an interrupt (a loop in compiled code?); not graded"
    if "DeadKernelError" in text or "Kernel died" in text:
        return False, "the kernel died while running the notebook (crash or out of memory); not graded"
    return False, f"nbgrader autograde failed (see {log.relative_to(ws.root.parent)})"


def _run_notes(nb: nbformat.NotebookNode, timeout: int) -> list[str]:
    """What went wrong in an autograded notebook that the scores alone do not say."""
    notes, stopped = [], []
    first_exercise = next((i for i, c in enumerate(nb.cells) if nbutils.is_solution(c)), len(nb.cells))
    code_no = 0
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        code_no += 1
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if not errors:
            continue
        names = {o.get("ename") for o in errors}
        gid = _grade_id(cell)
        where = f"cell '{gid}'" if gid else f"code cell {code_no}"
        if "CellTimeoutError" in names or ("KeyboardInterrupt" in names):
            stopped.append(where)
        elif i < first_exercise:
            notes.append(f"{where} (set-up, before the first exercise) raised {errors[0].get('ename')}")
    if stopped:
        notes.insert(0, f"time limit ({timeout} s per cell): interrupted {', '.join(stopped)}")
    return notes


# ------------------------------------------------------------------------------------------------
# results: the gradebook, the CSV and the feedback
# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Result:
    student: str
    lab: str
    status: str                                   # graded | needs manual grading | missing | invalid | error
    scores: dict[str, float | None]               # grade id -> points (None: not graded yet)
    max_scores: dict[str, float]
    notes: list[str]
    shown: str = ""

    @property
    def total(self) -> float:
        return sum(v for v in self.scores.values() if v is not None)

    @property
    def max(self) -> float:
        return sum(self.max_scores.values())

    @property
    def pending(self) -> list[str]:
        return [k for k, v in self.scores.items() if v is None]


def _grade_cells(nb: nbformat.NotebookNode) -> dict[str, float]:
    """grade id -> points of the graded cells of a notebook, in notebook order."""
    return {_grade_id(c): float(c.metadata["nbgrader"].get("points", 0)) for c in nb.cells
            if _grade_id(c) and c.metadata["nbgrader"].get("grade")}


def _scores_from_gradebook(ws: Workspace, student: str, lab: str, cells: dict[str, float]):
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(f"sqlite:///{ws.db}", COURSE_ID) as gb:
        try:
            sub = gb.find_submission_notebook(lab, lab, student)
        except MissingEntry:
            return None
        grades = {g.name: g for g in sub.grades}
        scores = {}
        for gid in cells:
            g = grades.get(gid)
            if g is None:                      # not in the gradebook: the cell never ran
                scores[gid] = 0.0
            else:                              # nbgrader's rule: a manual score overrides the autograder's
                score = g.manual_score if g.manual_score is not None else g.auto_score
                scores[gid] = None if score is None else float(score)
        return scores


def _fmt(x) -> str:
    if x is None:
        return ""
    x = round(float(x), 2)
    return str(int(x)) if x == int(x) else f"{x:g}"


def write_csv(results: list[Result], path: Path, labs: list[str]) -> None:
    """``grades.csv``: one row per student and lab; one column per graded cell (its grade id)."""
    order = {lab: i for i, lab in enumerate(labs)}
    results = sorted(results, key=lambda r: (r.student, order.get(r.lab, 99), r.lab))
    columns: list[str] = []
    for lab in labs:
        for r in results:
            if r.lab == lab:
                columns += [k for k in r.max_scores if k not in columns]
                break
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["student", "lab", *columns, "total", "max", "status", "needs_manual_grading", "notes"])
        for r in results:
            w.writerow([r.student, r.lab, *[_fmt(r.scores[c]) if c in r.scores else "" for c in columns],
                        _fmt(r.total), _fmt(r.max), r.status, " ".join(r.pending), "; ".join(r.notes)])


_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:50em;margin:2em auto}} .box{{border:1px solid #c33;
background:#fee;padding:0.5em 1em}}</style></head>
<body><h1>{title}</h1>{body}</body></html>
"""


def _notes_box(notes: list[str], extra: str = "") -> str:
    if not notes and not extra:
        return ""
    items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return (f'<div class="box" style="border:1px solid #c33;background:#fee;padding:0.5em 1em;margin:1em">'
            f"<b>Notes from the grader</b><ul>{items}</ul>{extra}</div>")


def _feedback(ws: Workspace, r: Result, out: Path, smoke_note: bool) -> None:
    dest = out / "feedback" / r.student / f"{r.lab}.html"
    dest.parent.mkdir(parents=True, exist_ok=True)
    title = f"{r.lab}: feedback for {r.student}"
    if r.status in ("missing", "invalid", "error"):
        what = {"missing": "No notebook was received for this lab.",
                "invalid": "The file received could not be graded.",
                "error": "Your notebook could not be graded automatically."}[r.status]
        body = (f"<p>{html.escape(what)}</p>{_notes_box(r.notes)}"
                f"<p>Score: {_fmt(r.total)} / {_fmt(r.max)}</p>")
        dest.write_text(_PAGE.format(title=html.escape(title), body=body), encoding="utf-8")
        return
    result = ws.api.generate_feedback(r.lab, r.student, force=True)
    src = ws.root / "feedback" / r.student / r.lab / f"{r.lab}.html"
    if not result["success"] or not src.exists():
        r.notes.append("feedback could not be generated (see grading.log)")
        body = f"<p>Score: {_fmt(r.total)} / {_fmt(r.max)}</p>{_notes_box(r.notes)}"
        dest.write_text(_PAGE.format(title=html.escape(title), body=body), encoding="utf-8")
        return
    page = src.read_text(encoding="utf-8")
    extra = ""
    if smoke_note:
        extra = ("<p>Training was cut to a few steps while grading (LABSUPPORT_SMOKE=1): training results "
                 "and quality checks in the ungraded cells below say nothing about your model.</p>")
    box = _notes_box(r.notes, extra)
    if box:
        page = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + box, page, count=1)
    dest.write_text(page, encoding="utf-8")


def _result(ws: Workspace, student: str, lab: str, status: str, notes: list[str], shown: str) -> Result:
    source = nbformat.read(ws.path("source", None, lab), as_version=4)
    cells = _grade_cells(source)
    if status in ("missing", "invalid", "error"):
        return Result(student, lab, status, {k: 0.0 for k in cells}, cells, notes, shown)
    scores = _scores_from_gradebook(ws, student, lab, cells)
    if scores is None:
        return Result(student, lab, "error", {k: 0.0 for k in cells}, cells,
                      notes + ["no grades in the gradebook"], shown)
    r = Result(student, lab, "graded", scores, cells, notes, shown)
    if r.pending:
        r.status = "needs manual grading"
    return r


def _uses_training(ws: Workspace, lab: str) -> bool:
    source = nbformat.read(ws.path("source", None, lab), as_version=4)
    return any("labsupport.training" in c.source for c in source.cells if c.cell_type == "code")


def report(out: str | Path = OUT, workspace: str | Path = WORKSPACE) -> list[Result]:
    """Write ``out/grades.csv`` and the feedback again from the gradebook, for what the last
    ``grade`` run saw (use it after grading free-response answers in formgrader)."""
    ws = Workspace(workspace)
    state = json.loads((ws.root / "last_run.json").read_text())
    out = Path(out)
    fb = out / "feedback"
    if fb.exists():
        shutil.rmtree(fb)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for item in state["submissions"]:
        r = _result(ws, item["student"], item["lab"], item["status"], list(item["notes"]), item["shown"])
        smoke = state["smoke"] and _uses_training(ws, r.lab)
        _feedback(ws, r, out, smoke)
        results.append(r)
    write_csv(results, out / "grades.csv", state["labs"])
    return results


def grade(submissions: str | Path, out: str | Path = OUT, source: str | Path = SOURCE,
          workspace: str | Path = WORKSPACE, labs: list[str] | None = None, timeout: int | None = None,
          smoke: bool = True, jobs: int = 1, student_regexp: str | None = None, roster: list[str] = (),
          submission_timeout: int = SUBMISSION_TIMEOUT, log=print) -> list[Result]:
    """Autograde a folder (or zip) of submissions into ``out/grades.csv`` and ``out/feedback/``.

    The submitted files are only read: each is copied (and repaired) into the workspace, which is where
    the student code runs. ``labs`` restricts (or forces) the labs graded; by default, every lab for which
    at least one notebook is found. ``timeout`` is per cell (default
    :data:`labsupport.nbgrader_config.CELL_TIMEOUT`); ``smoke`` sets ``LABSUPPORT_SMOKE=1`` so that
    training labs train for a few steps only (graded exercises do not depend on training).
    """
    timeout = int(timeout or CELL_TIMEOUT)
    all_labs = [p.stem for p in find_labs(source)]
    if not all_labs:
        raise SystemExit(f"no labs ({LAB_PATTERN}) in {source}: run from the repository root or pass --source")
    unknown = [lab for lab in labs or [] if lab not in all_labs]
    if unknown:
        raise SystemExit(f"unknown lab(s) {unknown}; the labs are {all_labs}")
    submissions = Path(submissions)
    if not submissions.exists():
        raise SystemExit(f"{submissions} does not exist")
    ws = Workspace(workspace, source, timeout=timeout)
    inside = [ws.root / d for d in ("sanitized", "autograded", "feedback", "scratch", "release", "source")]
    if any(p == submissions.resolve() or p in submissions.resolve().parents for p in inside):
        raise SystemExit(f"{submissions} is inside the grading workspace's own folders; grade a copy, "
                         f"or nbgrader's collected {ws.root / 'submitted'}")
    subs, warnings = find_submissions(submissions, all_labs, ws.root / "scratch" / "unpacked",
                                      student_regexp or r"^(?P<student_id>[^_\s]+)_", roster, labs)
    for w in warnings:
        log(f"warning: {w}")
    if not subs:
        raise SystemExit(f"no lab notebooks found in {submissions} (see `python -m labsupport.grading grade -h`)")
    graded_labs = [lab for lab in all_labs if any(s.lab == lab for s in subs)]
    ws.prepare(graded_labs)

    # 1. read and repair a copy of each submission into submitted/
    todo: list[Submission] = []
    status: dict[tuple[str, str], str] = {}
    for s in subs:
        for step in ("sanitized", "autograded", "feedback"):
            d = ws.root / step / s.student / s.lab
            if d.exists():
                shutil.rmtree(d)
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
        s.notes += notes
        dest = ws.path("sanitized", s.student, s.lab)
        dest.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, dest)
        todo.append(s)

    # 2. autograde the copies, each in its own process
    def run(s: Submission):
        return autograde_one(ws, s.student, s.lab, timeout, smoke, submission_timeout, jobs)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        outcomes = list(pool.map(run, todo))
    for s, (ok, msg) in zip(todo, outcomes):
        if ok:
            status[s.student, s.lab] = "graded"
            executed = nbformat.read(ws.path("autograded", s.student, s.lab), as_version=4)
            s.notes += _run_notes(executed, timeout)
        else:
            status[s.student, s.lab] = "error"
            s.notes.append(msg)

    # 3. remember what this run saw (for `report`), then the CSV and the feedback
    state = {"labs": graded_labs, "smoke": smoke, "submissions": [
        {"student": s.student, "lab": s.lab, "status": status[s.student, s.lab], "notes": s.notes,
         "shown": s.shown} for s in subs]}
    (ws.root / "last_run.json").write_text(json.dumps(state, indent=1))
    results = report(out, ws.root)
    with open(Path(out) / "grading.log", "w", encoding="utf-8") as fh:
        for w in warnings:
            fh.write(f"warning: {w}\n")
        for r in sorted(results, key=lambda r: (r.student, r.lab)):
            line = (f"{r.student} {r.lab}: {r.status}, {_fmt(r.total)}/{_fmt(r.max)}"
                    + (f" [{r.shown}]" if r.shown else "") + "".join(f"\n    - {n}" for n in r.notes))
            fh.write(line + "\n")
    for r in sorted(results, key=lambda r: (r.student, r.lab)):
        log(f"{r.student:20s} {r.lab:28s} {_fmt(r.total):>6s}/{_fmt(r.max):<4s} {r.status}"
            + (f"  ({'; '.join(r.notes)})" if r.notes else ""))
    log(f"wrote {Path(out) / 'grades.csv'} and {Path(out) / 'feedback'}/")
    return results


# ------------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labsupport.grading", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", default=WORKSPACE, help="nbgrader's course directory (default: _grading)")
    parser.add_argument("--source", default=SOURCE, help="folder of the instructor labs (default: notebooks)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("release", help="student versions of the labs into release/ (and a zip per lab)")
    p.add_argument("--out", default=RELEASE)
    p.add_argument("--lab", action="append", help="only this lab (repeatable)")

    p = sub.add_parser("grade", help="autograde a folder or zip of submissions",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description=find_submissions.__doc__.split("\n\n", 1)[1])
    p.add_argument("submissions", help="folder (or .zip) of submitted notebooks")
    p.add_argument("--out", default=OUT, help="where grades.csv and feedback/ go (default: grades)")
    p.add_argument("--lab", action="append", help="grade this lab only (repeatable); default: every lab found")
    p.add_argument("--timeout", type=int, default=None, help="seconds per cell (default 300)")
    p.add_argument("--submission-timeout", type=int, default=SUBMISSION_TIMEOUT,
                   help=f"seconds per submission before its grading is killed (default {SUBMISSION_TIMEOUT})")
    p.add_argument("--full", action="store_true", help="run training cells in full (no LABSUPPORT_SMOKE=1)")
    p.add_argument("--jobs", type=int, default=1, help="submissions graded in parallel (default 1)")
    p.add_argument("--student-regexp", default=None,
                   help=r"regexp with a group (?P<student_id>...) applied to file/folder names "
                        r"(default: ^(?P<student_id>[^_\s]+)_)")
    p.add_argument("--roster", default=None, help="file with one student id per line: absent ones are 'missing'")

    p = sub.add_parser("report", help="grades.csv and feedback again from the gradebook (after manual grading)")
    p.add_argument("--out", default=OUT)

    args = parser.parse_args(argv)
    if args.command == "release":
        release(args.source, args.out, args.workspace, args.lab)
    elif args.command == "grade":
        roster = []
        if args.roster:
            roster = [ln.strip() for ln in Path(args.roster).read_text().splitlines() if ln.strip()]
        grade(args.submissions, args.out, args.source, args.workspace, args.lab, args.timeout, not args.full,
              args.jobs, args.student_regexp, roster, args.submission_timeout)
    else:
        results = report(args.out, args.workspace)
        print(f"wrote {Path(args.out) / 'grades.csv'} ({len(results)} rows) and the feedback")
    return 0


if __name__ == "__main__":
    sys.exit(main())
