"""Finding the submissions in a folder or a zip, in the layouts nbgrader and the usual LMSs produce.

Zips are unpacked safely (no absolute paths, no ``..``, no links, bounded sizes) into the workspace's scratch
folder; the submitted files themselves are only ever read.
"""
from __future__ import annotations

import dataclasses
import os
import re
import shutil
import sys
import time
import zipfile
from pathlib import Path, PurePosixPath

SKIP_NAMES = {"__MACOSX", ".ipynb_checkpoints", "__pycache__"}
#: a zip member larger than this is skipped (a notebook is a few MB; a zip bomb is not)
MAX_MEMBER_BYTES = 200 << 20


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
            if (info.external_attr >> 16) & 0o170000 == 0o120000 or info.file_size > MAX_MEMBER_BYTES:
                continue  # a symbolic link, or too large to be a notebook
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
            if real.is_symlink():
                print(f"warning: {real.relative_to(root)} is a symbolic link; skipped", file=sys.stderr)
                continue
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
