"""The grader's outputs: ``grades.csv``, one feedback page per student and lab, and ``grading.log``.

Written only by the trusted parent, after every sandbox is gone, from the gradebook (points, manual grades) and
the harness's results (messages, flags). The feedback page is built here from escaped text only: nothing a
student wrote (code, answers, messages that quote their values) can become markup or script in it, and a
Content-Security-Policy forbids scripts and outside resources on top of that.
"""
from __future__ import annotations

import csv
import dataclasses
import html
import json
from pathlib import Path

import nbformat
from nbgrader import utils as nbutils

from instructor.grading import settings
from instructor.grading.workspace import Workspace

#: characters of a student's code or answer shown per cell in the feedback
MAX_SHOWN = 20_000


@dataclasses.dataclass
class Result:
    student: str
    lab: str
    status: str                                   # graded | needs manual grading | missing | invalid | error
    scores: dict[str, float | None]               # grade id -> points (None: not graded yet)
    max_scores: dict[str, float]
    notes: list[str]
    shown: str = ""
    flags: list[str] = dataclasses.field(default_factory=list)
    messages: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(v for v in self.scores.values() if v is not None)

    @property
    def max(self) -> float:
        return sum(self.max_scores.values())

    @property
    def pending(self) -> list[str]:
        return [k for k, v in self.scores.items() if v is None]

    @property
    def shown_status(self) -> str:
        """The CSV's status: the state, plus ", review" when something was flagged."""
        return self.status + (", review" if self.flags else "")


def grade_cells(nb: nbformat.NotebookNode) -> dict[str, float]:
    """grade id -> points of the graded cells of a notebook, in notebook order."""
    return {c.metadata["nbgrader"]["grade_id"]: float(c.metadata["nbgrader"].get("points", 0)) for c in nb.cells
            if nbutils.is_grade(c)}


def scores_from_gradebook(ws: Workspace, student: str, lab: str, cells: dict[str, float]):
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(f"sqlite:///{ws.db}", settings.COURSE_ID) as gb:
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


def fmt(x) -> str:
    if x is None:
        return ""
    x = round(float(x), 2)
    return str(int(x)) if x == int(x) else f"{x:g}"


def result_of(ws: Workspace, student: str, lab: str, status: str, notes: list[str], shown: str) -> Result:
    source = nbformat.read(ws.path("source", None, lab), as_version=4)
    cells = grade_cells(source)
    path = ws.path("results", student, lab)
    harness = json.loads(path.read_text()) if path.exists() else {}
    flags = list(harness.get("flags", []))
    messages = {g: t["message"] for g, t in harness.get("tests", {}).items() if not t.get("passed")}
    if status in ("missing", "invalid", "error"):
        return Result(student, lab, status, {k: 0.0 for k in cells}, cells, notes, shown, flags, messages)
    scores = scores_from_gradebook(ws, student, lab, cells)
    if scores is None:
        return Result(student, lab, "error", {k: 0.0 for k in cells}, cells, notes + ["no grades in the gradebook"],
                      shown, flags, messages)
    r = Result(student, lab, "graded", scores, cells, notes, shown, flags, messages)
    if r.pending:
        r.status = "needs manual grading"
    return r


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
    with open(path, "w", newline="", encoding="utf-8", errors="replace") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["student", "lab", *columns, "total", "max", "status", "needs_manual_grading", "notes"])
        for r in results:
            notes = list(r.notes) + [f"REVIEW: {f}" for f in r.flags]
            w.writerow([r.student, r.lab, *[fmt(r.scores[c]) if c in r.scores else "" for c in columns],
                        fmt(r.total), fmt(r.max), r.shown_status, " ".join(r.pending), "; ".join(notes)])


_STYLE = """body{font-family:sans-serif;max-width:52em;margin:2em auto;padding:0 1em;line-height:1.4}
pre{background:#f6f6f6;padding:.6em;overflow-x:auto;white-space:pre-wrap;word-break:break-word}
.box{border:1px solid #c33;background:#fee;padding:.5em 1em;margin:1em 0}
.ok{color:#060}.bad{color:#a00}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em}"""
_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>{title}</title><style>{style}</style></head>
<body><h1>{title}</h1>{body}</body></html>
"""


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _pre(text: str) -> str:
    text = str(text)
    if len(text) > MAX_SHOWN:
        text = text[:MAX_SHOWN] + f"\n[... {len(text) - MAX_SHOWN:,} more characters not shown]"
    return f"<pre>{_e(text)}</pre>"


def feedback_html(ws: Workspace, r: Result) -> str:
    """The student's feedback page for one lab (escaped text only; see the module docstring)."""
    title = f"{r.lab}: feedback for {r.student}"
    parts = [f"<p><b>Score: {fmt(r.total)} / {fmt(r.max)}</b>"
             + (f" ({len(r.pending)} answer(s) wait for your instructor's grading)" if r.pending else "") + "</p>"]
    if r.status == "missing":
        parts.append("<p>No notebook was received for this lab.</p>")
    elif r.status == "invalid":
        parts.append("<p>The file received could not be graded.</p>")
    elif r.status == "error":
        parts.append("<p>Your notebook could not be graded automatically.</p>")
    if r.notes:
        parts.append('<div class="box"><b>Notes from the grader</b><ul>'
                     + "".join(f"<li>{_e(n)}</li>" for n in r.notes) + "</ul></div>")
    graded = ws.path("autograded", r.student, r.lab)
    cells = nbformat.read(graded, as_version=4).cells if graded.exists() and r.status not in (
        "missing", "invalid", "error") else []
    by_id = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in cells}
    rows, details = [], []
    source = nbformat.read(ws.path("source", None, r.lab), as_version=4)
    solution_before: dict[str, str] = {}
    last_solution = None
    for c in source.cells:   # which solution cell each test cell checks: the one just before it
        nbg = c.metadata.get("nbgrader", {})
        if nbg.get("solution") and not nbg.get("grade"):
            last_solution = nbg["grade_id"]
        elif nbg.get("grade") and not nbg.get("solution") and last_solution:
            solution_before[nbg["grade_id"]] = last_solution
    for gid, points in r.max_scores.items():
        score = r.scores.get(gid)
        src_cell = next(c for c in source.cells if c.metadata.get("nbgrader", {}).get("grade_id") == gid)
        manual = bool(src_cell.metadata["nbgrader"].get("solution"))
        if score is None:
            verdict = "waits for your instructor"
        elif manual:
            verdict = "graded by your instructor"
        elif score >= points:
            verdict = '<span class="ok">passed</span>'
        else:
            verdict = '<span class="bad">not passed</span>'
        rows.append(f"<tr><td>{_e(gid)}</td><td>{fmt(score) if score is not None else '-'} / {fmt(points)}</td>"
                    f"<td>{verdict}</td></tr>")
        body = [f"<h2>{_e(gid)}: {fmt(score) if score is not None else '-'} / {fmt(points)}</h2>"]
        if not manual and gid in r.messages and (score is None or score < points):
            body.append(_pre(r.messages[gid]))
        shown = by_id.get(solution_before.get(gid) if not manual else gid)
        if shown is not None:
            what = "your answer" if manual else "your code"
            text = shown.source
            if shown.cell_type != "code":   # as Markdown shows it: make_inert's (or the student's) &lt; reads as <
                text = text.replace("&lt;", "<")
            body.append(f"<details><summary>{what}</summary>{_pre(text)}</details>")
        details.append("".join(body))
    if rows:
        parts.append("<table><tr><th>graded cell</th><th>points</th><th>result</th></tr>" + "".join(rows)
                     + "</table>")
    parts += details
    return _PAGE.format(title=_e(title), style=_STYLE, body="\n".join(parts))


def report(out: str | Path = settings.OUT, workspace: str | Path = settings.WORKSPACE) -> list[Result]:
    """Write ``out/grades.csv``, the feedback and ``grading.log`` for what the last ``grade`` saw (run it again
    after grading free-response answers in formgrader)."""
    import shutil

    ws = Workspace(workspace)
    state = json.loads((ws.root / "last_run.json").read_text())
    out = Path(out)
    fb = out / "feedback"
    if fb.exists():
        shutil.rmtree(fb)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for item in state["submissions"]:
        r = result_of(ws, item["student"], item["lab"], item["status"], list(item["notes"]), item["shown"])
        dest = fb / r.student / f"{r.lab}.html"
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(feedback_html(ws, r), encoding="utf-8", errors="replace")
        results.append(r)
    write_csv(results, out / "grades.csv", state["labs"])
    with open(out / "grading.log", "w", encoding="utf-8", errors="replace") as fh:
        for w in state.get("warnings", []):
            fh.write(f"warning: {w}\n")
        for r in sorted(results, key=lambda r: (r.student, r.lab)):
            fh.write(f"{r.student} {r.lab}: {r.shown_status}, {fmt(r.total)}/{fmt(r.max)}"
                     + (f" [{r.shown}]" if r.shown else "")
                     + "".join(f"\n    - {n}" for n in r.notes) + "".join(f"\n    - REVIEW: {f}" for f in r.flags)
                     + "\n")
    return results
