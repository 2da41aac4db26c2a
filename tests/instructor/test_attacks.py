"""The attack suite: hostile Lab 1 submissions graded in one run with honest students before and after each.

Asserts what the instructor guide's threat model claims: every attacker gets no auto-graded point or is flagged
for review, every honest student gets full marks, nothing outside the grading area changes, no process
survives, the instructor's environment and files stay unread, no connection leaves the sandbox, and the
feedback carries no markup a student wrote. Needs the sandbox (Linux, root, bubblewrap); skipped otherwise.
"""
from __future__ import annotations

import copy
import hashlib
import os
import re
import secrets
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import nbformat
import pytest
from attacks_lab01 import ATTACKS, Attack
from gradinghelpers import ROOT, cell_of, gid, read_csv, save

from instructor.grading import sandbox
from instructor.grading.grade import grade
from instructor.grading.release import release
from instructor.grading.settings import Limits

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(sandbox.unavailable_reason() is not None,
                                 reason=f"no grading sandbox here: {sandbox.unavailable_reason()}")]
LAB = "lab01_attention_numpy"
AUTO = ["test_softmax", "test_attention_scores", "test_apply_mask", "test_sdpa", "test_masks"]


def honest_notebook(src, rel):
    """The student version with every exercise solved (the instructor's solution code) and an answer."""
    nb = copy.deepcopy(rel)
    for c in nb.cells:
        g = gid(c)
        if g and c.metadata["nbgrader"].get("solution"):
            c.source = "\n".join(line for line in cell_of(src, g).source.split("\n")
                                  if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION"))
    return nb


def attack_notebook(rel, attack: Attack, fill: dict) -> nbformat.NotebookNode:
    nb = copy.deepcopy(rel)

    def sub(text):
        for k, v in fill.items():
            text = text.replace("{" + k + "}", str(v))
        return text

    if attack.cell:
        nb.cells.insert(2, nbformat.v4.new_code_cell(sub(attack.cell)))
    for g, source in attack.solutions.items():
        cell_of(nb, g).source = sub(source)
    if attack.answer:
        cell_of(nb, "explain_scale").source = sub(attack.answer)
    if attack.name == "tamper_cells":
        cell_of(nb, "test_softmax").source = "pass  # tests removed"
        for g in AUTO:
            cell_of(nb, g).metadata["nbgrader"]["points"] = 100
        bonus = nbformat.v4.new_code_cell("print('free points')")
        bonus.metadata["nbgrader"] = {"grade": True, "grade_id": "bonus", "locked": True, "points": 50,
                                      "schema_version": 3, "solution": False}
        nb.cells.append(bonus)
        nb.cells = [c for c in nb.cells if gid(c) != "test_masks"]
    return nb


def tree_hash(root: Path, skip: tuple[Path, ...] = ()) -> dict[str, str]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        dirnames[:] = [n for n in dirnames if d / n not in skip]
        for name in filenames:
            p = d / name
            if p.is_file() and not p.is_symlink():
                out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def repo_hash() -> dict[str, str]:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True).stdout.split("\0")
    return {f: hashlib.sha256((ROOT / f).read_bytes()).hexdigest() for f in files if f and (ROOT / f).is_file()}


class Listener:
    """A TCP server on the host's loopback that records every connection (none may arrive)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port, self.connections, self._stop = self.sock.getsockname()[1], [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                conn, addr = self.sock.accept()
                self.connections.append(addr)
                conn.close()
            except OSError:
                continue

    def stop(self):
        self._stop.set()
        self.thread.join()
        self.sock.close()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("attacks")
    (base / "src").mkdir()
    shutil.copy(ROOT / "notebooks" / f"{LAB}.ipynb", base / "src")
    release(base / "src", base / "release", base / "ws")
    src = nbformat.read(base / "src" / f"{LAB}.ipynb", as_version=4)
    rel = nbformat.read(base / "release" / LAB / f"{LAB}.ipynb", as_version=4)
    canary = "CANARY-" + secrets.token_hex(8)
    home = base / "home"
    home.mkdir()
    (home / "canary.txt").write_text(canary)
    listener = Listener()
    run_id = secrets.token_hex(4)
    subs = base / "subs"
    honest = honest_notebook(src, rel)
    names, kinds = {}, {}
    for i in range(len(ATTACKS) + 1):                       # honest, attacker, honest, attacker, ..., honest
        names[f"s{2 * i:03d}_honest"] = None
        if i < len(ATTACKS):
            names[f"s{2 * i + 1:03d}_{ATTACKS[i].name}"] = ATTACKS[i]
    classmate = subs / "s000_honest" / f"{LAB}.ipynb"
    fill = {"HOME": home, "WS": base / "ws", "OUT": base / "out", "SUBS": subs, "CLASSMATE": classmate,
            "REPO": ROOT, "PORT": listener.port, "RUN": run_id}
    for student, attack in names.items():
        nb = honest if attack is None else attack_notebook(rel, attack, fill)
        save(nb, subs / student / f"{LAB}.ipynb")
        kinds[student] = attack
    before = (tree_hash(base, skip=(base / "ws", base / "out")), repo_hash(), set(os.listdir("/tmp")))
    saved_env = dict(os.environ)
    os.environ.update({"INSTRUCTOR_TOKEN": canary, "HOME": str(home)})
    started = time.monotonic()
    try:
        results = grade(subs, base / "out", base / "src", base / "ws", jobs=2, log=lambda *a: None,
                        limits=Limits(cell_timeout=10, test_timeout=10, submission_timeout=120, memory_mb=2048,
                                      tmp_mb=256, restarts=2))
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
    seconds = time.monotonic() - started
    csv_right_after = (base / "out" / "grades.csv").read_bytes()
    time.sleep(6)                                           # what a detached process would have had time for
    listener.stop()
    after = (tree_hash(base, skip=(base / "ws", base / "out")), repo_hash(), set(os.listdir("/tmp")))
    left = {uid: sandbox.processes_of(uid) for uid in range(sandbox.UID_BASE, sandbox.UID_BASE + 8)}
    rows = {r["student"]: r for r in read_csv(base / "out" / "grades.csv")}
    by = {r.student: r for r in results}
    return dict(base=base, rows=rows, results=by, kinds=kinds, before=before, after=after, canary=canary,
                listener=listener, left=left, run_id=run_id, csv_right_after=csv_right_after, seconds=seconds)


def auto_points(r) -> float:
    return sum(r.scores[g] or 0 for g in AUTO if g in r.scores)


def test_every_honest_student_gets_full_marks(run):
    for student, attack in run["kinds"].items():
        if attack is None:
            r = run["results"][student]
            assert auto_points(r) == 11 and r.status == "needs manual grading" and not r.flags, (student, r.notes,
                                                                                                r.flags)


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_every_attacker_gets_nothing_or_is_flagged(run, attack):
    student = next(s for s, a in run["kinds"].items() if a is attack)
    r = run["results"][student]
    points, flagged = auto_points(r), bool(r.flags)
    if attack.expect == "zero":
        assert points == 0, f"{attack.name}: {points} points ({r.notes}, {r.flags})"
    elif attack.expect == "flagged":
        assert flagged, f"{attack.name}: not flagged ({points} points, {r.notes})"
    else:
        assert points == 0 or flagged
    assert r.max == 13                                      # the points of the source, whatever the notebook said


def test_the_twin_callers_are_flagged_by_the_tripwire_pass(run):
    for name in ("call_twin", "call_twin_obfuscated"):
        r = run["results"][next(s for s, a in run["kinds"].items() if a and a.name == name)]
        assert any("passes only while labsupport's" in f for f in r.flags), r.flags
        assert any("test_softmax" in f for f in r.flags)


def test_nothing_outside_the_grading_area_changed(run):
    (files_before, repo_before, tmp_before), (files_after, repo_after, tmp_after) = run["before"], run["after"]
    assert files_after == files_before, "files outside the workspace changed (submissions, the home)"
    changed = {f for f in repo_before.keys() | repo_after.keys() if repo_before.get(f) != repo_after.get(f)}
    assert not changed, f"the repository changed: {sorted(changed)[:10]}"
    assert not (ROOT / "pwned.txt").exists()
    new_tmp = {n for n in tmp_after - tmp_before if run["run_id"] in n}
    assert not new_tmp, f"written into the host's /tmp: {new_tmp}"
    assert (run["base"] / "out" / "grades.csv").read_bytes() == run["csv_right_after"], "grades.csv rewritten"


def test_no_process_is_left(run):
    assert not any(run["left"].values()), f"sandbox processes still running: {run['left']}"


def test_the_instructors_secrets_stay_unread(run):
    assert run["listener"].connections == [], "a sandbox reached the host's loopback"
    for folder in (run["base"] / "out", run["base"] / "ws"):
        for p in folder.rglob("*"):
            if p.is_file() and p.suffix in (".csv", ".html", ".json", ".ipynb", ".log", ".txt"):
                text = p.read_text(errors="replace")
                assert run["canary"] not in text, f"the canary leaked into {p}"
                assert "FOUND-SECRETS" not in text, f"hidden tests or solutions were read ({p})"


def test_feedback_carries_no_student_markup(run):
    for page in (run["base"] / "out" / "feedback").rglob("*.html"):
        text = page.read_text()
        # no tag of the student's: no <script>, no <iframe>, no tag with an event handler (escaped text may
        # still read "onerror=", harmlessly)
        low = text.lower()
        assert "<script" not in low and "<iframe" not in low and not re.search(r"<[^>]*\son\w+=", low), page
        assert "Content-Security-Policy" in text
    student = next(s for s, a in run["kinds"].items() if a and a.name == "feedback_html")
    page = (run["base"] / "out" / "feedback" / student / f"{LAB}.html").read_text()
    assert "&lt;script&gt;" in page                         # shown as text, escaped
    assert len(page) < 2_000_000


def test_outputs_are_capped_in_bytes(run):
    student = next(s for s, a in run["kinds"].items() if a and a.name == "huge_output")
    sizes = [p.stat().st_size for p in run["base"].rglob("*") if p.is_file() and student in str(p)]
    assert sizes and max(sizes) < 5_000_000, sizes


def test_write_the_attack_table(run):
    """Not an assertion of its own: the table of what each attack got, for the instructor guide."""
    lines = ["| attack | class | points (of 11 auto) | flagged | harm outside the grading area |",
             "|---|---|---|---|---|"]
    for student, attack in run["kinds"].items():
        if attack is None:
            continue
        r = run["results"][student]
        lines.append(f"| {attack.name} ({attack.what}) | {attack.kind} | {auto_points(r):g} | "
                     f"{'yes' if r.flags else 'no'} | none |")
    lines.append(f"\n{len(ATTACKS)} attackers and {len(ATTACKS) + 1} honest students graded in "
                 f"{run['seconds']:.0f} s with 2 jobs.")
    out = ROOT / "_build" / "attack_table.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    assert len(lines) == len(ATTACKS) + 3
