"""The student's path in JupyterLab, in Chromium: Lab 1's student version (student/, i.e. the release step's
output) in the JupyterLab that `make lab` starts (`jupyter/lab student`), token-less on 127.0.0.1, in a
temporary folder with its own Jupyter config, data and runtime folders.

* the student's JupyterLab has no nbgrader instructor tools (the instructor's, `jupyter/lab instructor`, has);
* Run All stops at the first unsolved exercise and the failure is in view (the course's plugin, jupyter/share);
* a typical wrong answer shows only the check's message (no traceback), a right answer the pass line.
"""
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import browserkit as bk  # noqa: E402

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
LAB = "lab01_attention_numpy"
NAIVE_SOFTMAX = '''def softmax(x, axis=-1):
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)
'''
STABLE_SOFTMAX = '''def softmax(x, axis=-1):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)
'''


@contextlib.contextmanager
def jupyterlab(role: str, folder: Path):
    """`jupyter/lab ROLE` serving ``folder``; yields its base URL. Jupyter's own folders are in ``folder``."""
    port = bk.free_port()
    home = folder / ".home"
    env = dict(os.environ, JUPYTER=str(Path(sys.executable).with_name("jupyter")),
               JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_DATA_DIR=str(home / "data"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"), IPYTHONDIR=str(home / "ipython"),
               JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"), PYTHONDONTWRITEBYTECODE="1")
    env.pop("JUPYTER_CONFIG_PATH", None)
    env.pop("JUPYTER_PATH", None)
    args = [str(ROOT / "jupyter" / "lab"), role, "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
            "--IdentityProvider.token=", "--ServerApp.password=", f"--ServerApp.root_dir={folder}",
            "--ServerApp.port_retries=0", "--LabApp.news_url=",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--ServerApp.disable_check_xsrf=True"]  # the test deletes sessions with plain HTTP
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--allow-root")  # CI runs as root in a container
    log = open(folder / ".jupyterlab.log", "w")
    proc = subprocess.Popen(args, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    log.flush()
                    started = (folder / ".jupyterlab.log").read_text()
                    raise RuntimeError(f"JupyterLab did not start:\n{started}") from None
                time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def student_lab(chromium, tmp_path_factory):
    folder = tmp_path_factory.mktemp("student_lab")
    shutil.copy(ROOT / "student" / f"{LAB}.ipynb", folder / f"{LAB}.ipynb")
    with jupyterlab("student", folder) as base:
        yield base


def sessions_of(base) -> list[dict]:
    with urllib.request.urlopen(f"{base}/api/sessions", timeout=5) as r:
        return [s for s in json.load(r) if s["path"].endswith(f"{LAB}.ipynb")]


def open_lab(chromium, base):
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    watch = bk.Watch(base).attach(context)
    page = watch.watch_page(context.new_page())
    for s in sessions_of(base):  # each test starts its own kernel (a new page reusing one raced Run All)
        urllib.request.urlopen(urllib.request.Request(f"{base}/api/sessions/{s['id']}", method="DELETE"))
    page.goto(f"{base}/lab/tree/{LAB}.ipynb", timeout=90000)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90000)
    # the notebook's kernel is running and idle; on a busy machine JupyterLab sometimes asks which kernel
    # to start (its kernel specs arrive after the notebook): accept its proposal, the notebook's own kernel
    deadline = time.time() + 90
    while True:
        accept = page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept")
        if accept.count() and accept.first.is_visible():
            accept.first.click()
        sessions = sessions_of(base)
        ready = page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').count()
        if ready and any((s.get("kernel") or {}).get("execution_state") == "idle" for s in sessions):
            break
        if time.time() > deadline:
            bk.screenshot(page, "jupyterlab-no-kernel")
            raise RuntimeError(f"no idle kernel for {LAB}: {sessions}")
        page.wait_for_timeout(300)
    return context, watch, page


def menu(page, top: str, command: str):
    page.click(f"#jp-MainMenu .lm-MenuBar-item:has-text('{top}')")
    page.click(f'.lm-Menu-item[data-command="{command}"]')


def run_all(page):
    menu(page, "Run", "runmenu:run-all")
    try:
        page.wait_for_selector("[data-course-failure=shown]", timeout=120000)
    except Exception:
        bk.screenshot(page, "jupyterlab-run-all-timeout")
        raise


def cell_index(page, starts_with: str) -> int:
    sources = page.eval_on_selector_all(".jp-Notebook .jp-Cell", "cells => cells.map(c => "
                                        "(c.querySelector('.cm-content') || {}).innerText || '')")
    return next(i for i, s in enumerate(sources) if s.strip().startswith(starts_with))


def output_of(page, index: int) -> str:
    return page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".jp-OutputArea").inner_text()


def set_source_and_run(page, index: int, code: str):
    """Replace cell ``index``'s code as a student would (select all, type), then Shift+Enter."""
    editor = page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".cm-content")
    editor.click()
    page.keyboard.press("Control+a")
    page.keyboard.insert_text(code)
    page.keyboard.press("Shift+Enter")


def run_cell(page, index: int):
    page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".jp-InputPrompt").click()
    page.keyboard.press("Shift+Enter")


def wait_idle(page):
    page.wait_for_timeout(300)
    page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=120000)


def assert_only_the_message(text: str):
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines and lines[0].lstrip().startswith("✗"), f"the check's message should come first:\n{text}"
    assert "Traceback" not in text and 'File "' not in text and "labsupport" not in text, \
        f"a failing check should show only its message, not a traceback:\n{text}"
    assert len(lines) <= 6, f"{len(lines)} lines for one failing check:\n{text}"


def test_student_jupyterlab_has_no_instructor_tools(chromium, student_lab, tmp_path):
    context, watch, page = open_lab(chromium, student_lab)
    try:
        student_menus = page.eval_on_selector_all("#jp-MainMenu .lm-MenuBar-item", "m => m.map(e => e.innerText)")
    finally:
        context.close()
    shutil.copy(ROOT / "student" / f"{LAB}.ipynb", tmp_path / f"{LAB}.ipynb")
    with jupyterlab("instructor", tmp_path) as base:
        context, _, page = open_lab(chromium, base)
        try:
            page.wait_for_selector("#jp-MainMenu .lm-MenuBar-item:has-text('Nbgrader')", timeout=30000)
        finally:
            context.close()
    assert "Nbgrader" not in student_menus, f"the student's JupyterLab shows nbgrader's menu: {student_menus}"
    assert not watch.external, watch.external


def test_run_all_stops_at_the_first_unsolved_exercise_in_view(chromium, student_lab):
    context, watch, page = open_lab(chromium, student_lab)
    try:
        run_all(page)
        wait_idle(page)
        failing = page.locator("[data-course-failure=shown]")
        active = failing.evaluate("c => c.classList.contains('jp-mod-active')")
        source = failing.locator(".cm-content").inner_text()
        message = failing.locator(".jp-OutputArea").inner_text()
        box = failing.locator(".jp-OutputArea").bounding_box()
        viewport = page.locator(".jp-WindowedPanel-outer").first.bounding_box()
        later = cell_index(page, "check_attention_scores")
        later_output = output_of(page, later)
        if not (viewport["y"] <= box["y"] and box["y"] + box["height"] <= viewport["y"] + viewport["height"]):
            bk.screenshot(page, "jupyterlab-run-all")
    finally:
        context.close()
    assert source.strip().startswith("check_softmax("), f"Run All should stop at the first check, not {source!r}"
    assert active, "the failing cell should be the active one"
    assert "not implemented" in message.lower(), message
    assert_only_the_message(message)
    assert viewport["y"] <= box["y"] and box["y"] + box["height"] <= viewport["y"] + viewport["height"], \
        f"the failure is out of sight after Run All: output at {box}, notebook view {viewport}"
    assert not later_output.strip(), "Run All did not stop at the failure"
    assert not watch.external and not watch.errors, (watch.external, watch.errors)


def test_wrong_answer_shows_the_message_right_answer_the_pass_line(chromium, student_lab):
    context, watch, page = open_lab(chromium, student_lab)
    try:
        run_all(page)  # the imports and the demos above the first exercise
        wait_idle(page)
        solution = cell_index(page, "def softmax")
        check = cell_index(page, "check_softmax(")
        set_source_and_run(page, solution, NAIVE_SOFTMAX)
        wait_idle(page)
        run_cell(page, check)
        wait_idle(page)
        wrong = output_of(page, check)
        set_source_and_run(page, solution, STABLE_SOFTMAX)
        wait_idle(page)
        run_cell(page, check)
        wait_idle(page)
        right = output_of(page, check)
        if "all checks passed" not in right:
            bk.screenshot(page, "jupyterlab-answers")
    finally:
        context.close()
    assert_only_the_message(wrong)
    assert "large" in wrong.lower() or "overflow" in wrong.lower() or "nan" in wrong.lower(), \
        f"the naive softmax should fail on large inputs:\n{wrong}"
    assert right.strip() == "✓ softmax: all checks passed", right
    assert not watch.external and not watch.errors, (watch.external, watch.errors)
