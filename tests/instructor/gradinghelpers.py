"""Helpers shared by the grading tests (tests/instructor/test_*.py)."""
from __future__ import annotations

import copy
import csv
import hashlib
import os
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "lab00_fixture.ipynb"
FIXTURE_HIDDEN = ROOT / "tests" / "fixtures" / "hidden"
LABS = sorted((ROOT / "notebooks").glob("lab*.ipynb"))


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


def write(path: Path, text: str = "{}") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


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
        code("assert f(1) == 2",
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
    rel.cells[4].source = "def g(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()"
    rel.cells[6].source = "Explain.\n\nYOUR ANSWER HERE"
    return src, rel


