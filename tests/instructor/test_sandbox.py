"""The sandbox itself: what a submission's process can see and do (needs Linux, root and bubblewrap)."""
from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from instructor.grading import grade as grading
from instructor.grading import sandbox
from instructor.grading.remote import Remote, RemoteDied
from instructor.grading.settings import Limits

needs_sandbox = pytest.mark.skipif(sandbox.unavailable_reason() is not None,
                                   reason=f"no grading sandbox here: {sandbox.unavailable_reason()}")


def test_refuses_to_grade_without_a_sandbox(monkeypatch, tmp_path):
    monkeypatch.setattr(grading, "unavailable_reason", lambda: "bwrap not found: install it")
    with pytest.raises(SystemExit, match="cannot grade safely: bwrap not found") as info:
        grading.grade(tmp_path, tmp_path / "out")
    assert "--unsafe-no-sandbox" in str(info.value)


def test_says_what_is_missing(monkeypatch):
    monkeypatch.setattr(sandbox.os, "geteuid", lambda: 1000)
    assert "root" in sandbox.unavailable_reason()
    monkeypatch.setattr(sandbox.shutil, "which", lambda tool: None)
    assert "bubblewrap" in sandbox.unavailable_reason()
    monkeypatch.setattr(sandbox.sys, "platform", "darwin")
    assert "Linux" in sandbox.unavailable_reason()


PROBE = r"""
import json, os, socket
out = {"uid": os.getuid(), "pids": sorted(int(p) for p in os.listdir('/proc') if p.isdigit()),
       "root": sorted(os.listdir('/')), "env": sorted(os.environ)}
for name, path in [("etc_shadow", "/etc/shadow"), ("home", "{HOME}"), ("repo_notebooks", "{REPO}/notebooks")]:
    try:
        out[name] = sorted(os.listdir(path)) if os.path.isdir(path) else open(path).read()
    except OSError as e:
        out[name] = type(e).__name__
for name, path in [("usr", "/usr/x"), ("venv", "{VENV}/x"), ("tmp", "/tmp/x"), ("home_dir", os.path.expanduser("~/x"))]:
    try:
        open(path, "w").write("x")
        out["write_" + name] = "ok"
    except OSError as e:
        out["write_" + name] = type(e).__name__
s = socket.socket(); s.settimeout(2)
try:
    s.connect(("127.0.0.1", {PORT})); out["net"] = "connected"
except OSError as e:
    out["net"] = type(e).__name__
print(json.dumps(out))
"""


@needs_sandbox
@pytest.mark.slow
def test_what_the_sandbox_sees_and_may_do(tmp_path):
    import sys

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    code = (PROBE.replace("{HOME}", str(Path.home())).replace("{REPO}", str(Path(__file__).resolve().parents[2]))
            .replace("{VENV}", sys.prefix).replace("{PORT}", str(listener.getsockname()[1])))
    proc = sandbox.start(Limits(memory_mb=1024), threads=1)
    remote = Remote(proc)
    remote.deadline = time.monotonic() + 60
    try:
        got = json.loads(remote.run_cell(0, code)["stdout"])
        mem = remote.run_cell(1, "import numpy as np\nx = np.ones((2 << 30) // 8)")
        assert not mem["ok"] and mem["error"]["type"] == "MemoryError"
        with pytest.raises(RemoteDied):
            remote.run_cell(2, "import os\nos.kill(os.getpid(), 9)")
    finally:
        remote.close()
        listener.close()
    assert sandbox.UID_BASE <= got["uid"] < sandbox.UID_BASE + sandbox.UID_COUNT
    assert got["pids"] == [1, 2] or max(got["pids"]) < 10          # its own PID namespace
    # the system's folders plus the top folders of the Python installation and labsupport (/work here, wherever
    # the checkout lives on another machine)
    code_tops = {Path(d).parts[1] for d in sandbox._python_dirs()}
    assert set(got["root"]) <= {"bin", "dev", "etc", "grader", "home", "lib", "lib32", "lib64", "libx32", "proc",
                                "root", "sbin", "tmp", "usr", "opt", "srv", "var"} | code_tops
    assert got["etc_shadow"] == "FileNotFoundError"
    # of the instructor's home, at most the folders that lead to the Python installation are there
    on_the_way = {Path(p).relative_to(Path.home()).parts[0] for p in (sys.prefix, sys.base_prefix)
                  if Path(p).is_relative_to(Path.home())}
    assert got["home"] in ("FileNotFoundError", "PermissionError") or set(got["home"]) <= on_the_way, got["home"]
    assert got["repo_notebooks"] == "FileNotFoundError"
    assert got["write_usr"] in ("OSError", "PermissionError") and got["write_venv"] in ("OSError", "PermissionError")
    assert got["write_tmp"] == "ok" and got["write_home_dir"] == "ok"
    assert got["net"] in ("ConnectionRefusedError", "OSError", "TimeoutError")
    assert not [k for k in got["env"] if "TOKEN" in k or k.startswith(("SSH", "AWS", "GITHUB"))]
    assert sandbox.processes_of(proc.uid) == []
