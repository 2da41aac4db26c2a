"""Reading a submitted notebook (only reading it) and repairing a copy so that it can be graded.

A locked cell (tests, read-only explanations) is put back as the instructor wrote it; deleted cells come back
where they belong; nbgrader metadata (points, ids) is restored from the source; what was tampered with is
reported. Markdown is made inert for the instructor's browser (formgrader): raw HTML is escaped and
attachments are dropped. Student code is never run here.
"""
from __future__ import annotations

import json
import logging
import re
import warnings
from pathlib import Path

import nbformat

#: a submitted file larger than this is not read (a lab notebook with its figures is a few MB)
MAX_NOTEBOOK_BYTES = 50 << 20
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"


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


class InvalidNotebook(Exception):
    """The submitted file is not a notebook we can grade."""


def read_submission(path: Path) -> nbformat.NotebookNode:
    """Read a submitted file (read-only) as an nbformat-4 notebook, or raise :class:`InvalidNotebook`."""
    if path.stat().st_size > MAX_NOTEBOOK_BYTES:
        raise InvalidNotebook(f"larger than {MAX_NOTEBOOK_BYTES >> 20} MB")
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
    shown = _strip_region(cell.source, BEGIN_HIDDEN, END_HIDDEN, None)
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


_TAG_START = re.compile(r"<(?=[A-Za-z!/?])")


def make_inert(nb: nbformat.NotebookNode, source: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """What the instructor's browser may safely show (formgrader renders the graded copy as HTML).

    Markdown and raw cells have their raw HTML escaped (a ``<`` that could open a tag becomes ``&lt;``, which
    Markdown and MathJax still show as ``<``) and their attachments dropped; code cells lose their submitted
    outputs (the graded copy gets the grader's own); the notebook's metadata is the source's, and a cell keeps
    only its nbgrader metadata and tags.
    """
    for cell in nb.cells:
        if cell.cell_type in ("markdown", "raw"):
            cell.source = _TAG_START.sub("&lt;", cell.source)
            cell.pop("attachments", None)
        elif cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        keep = {k: cell.metadata[k] for k in ("nbgrader", "tags") if k in cell.metadata}
        cell.metadata = nbformat.from_dict(keep)
    nb.metadata = nbformat.from_dict(json.loads(json.dumps(source.metadata)))
    return nb
