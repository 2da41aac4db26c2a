"""Launch buttons open something that runs, never the instructor's solutions.

* ``student/<lab>.ipynb`` is exactly what the release step makes of ``notebooks/<lab>.ipynb`` (refresh:
  ``python book/_ext/student_labs.py``), with no solution or hidden test in it;
* in the built book, a lab page's Binder and Colab buttons open that student version; a chapter page offers
  Binder only, on the notebook that ``binder/postBuild`` makes of the chapter with jupytext;
* that postBuild step really makes one valid notebook per chapter, with every code cell of the chapter;
* Binder starts the student's JupyterLab (``binder/start`` sets what ``jupyter/lab student`` sets).
"""
import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "book" / "_ext"))
import course_site  # noqa: E402
import student_labs  # noqa: E402

LABS = sorted(p.stem for p in (ROOT / "notebooks").glob("lab[0-9][0-9]_*.ipynb"))
CHAPTERS = sorted(p.stem for p in (ROOT / "book").glob("*.md") if "format_name: myst" in p.read_text())


def test_student_versions_are_the_release_of_the_labs():
    problems = student_labs.stale()
    assert not problems, ("student/ is out of date; run `.venv/bin/python book/_ext/student_labs.py`:\n  "
                          + "\n  ".join(problems))


@pytest.mark.parametrize("lab", LABS)
def test_student_version_has_no_solutions(lab):
    path = ROOT / "student" / f"{lab}.ipynb"
    assert path.exists(), f"no student/{lab}.ipynb: run `.venv/bin/python book/_ext/student_labs.py`"
    student = json.loads(path.read_text())
    text = "\n".join("".join(c["source"]) for c in student["cells"])
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        assert marker not in text, f"student/{lab}.ipynb contains {marker}"
    assert "raise NotImplementedError()" in text
    # every line of an instructor solution that is long enough to be specific is gone
    source = json.loads((ROOT / "notebooks" / f"{lab}.ipynb").read_text())
    for cell in source["cells"]:
        body = "".join(cell["source"])
        if cell["cell_type"] == "code" and "### BEGIN SOLUTION" in body:
            solution = body.split("### BEGIN SOLUTION")[1].split("### END SOLUTION")[0]
            specific = [line.strip() for line in solution.splitlines() if len(line.strip()) > 30]
            assert not [line for line in specific if line in text], f"{lab}: a solution line is in student/"


def test_launch_targets(tmp_path):
    (tmp_path / "student").mkdir()
    (tmp_path / "student" / "lab01_x.ipynb").write_text("{}")
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "ch.md").write_text("# chapter")
    assert course_site.launch_targets("notebooks/lab01_x", tmp_path) == ("student/lab01_x.ipynb", True)
    assert course_site.launch_targets("notebooks/lab02_y", tmp_path) is None  # no student version: no button
    assert course_site.launch_targets("book/ch", tmp_path) == ("book/ch.ipynb", False)


def launch_links(page: Path) -> dict[str, str]:
    """{'Binder': url, 'Colab': url} of a built page's launch menu."""
    text = page.read_text()
    links = {}
    for href, body in re.findall(r'<a href="([^"]+)"[^>]*>(.*?)</a>', text, re.S):
        href = html.unescape(href)
        for provider, host in (("Binder", "mybinder.org"), ("Colab", "colab.research.google.com")):
            if host in href and "btn__text-container" in body:
                links[provider] = href
    return links


@pytest.mark.slow
def test_launch_buttons_in_the_built_book(book_html):
    problems = []
    for lab in LABS:
        links = launch_links(book_html / "notebooks" / f"{lab}.html")
        want = f"student/{lab}.ipynb"
        if set(links) != {"Binder", "Colab"}:
            problems.append(f"{lab}: launch buttons {sorted(links)}, expected Binder and Colab")
        for provider, url in links.items():
            if not url.endswith(want) or "notebooks/" in url:
                problems.append(f"{lab}: {provider} opens {url}, not {want}")
    for chapter in CHAPTERS:
        links = launch_links(book_html / "book" / f"{chapter}.html")
        if "Colab" in links:
            problems.append(f"{chapter}: a Colab button, but Colab cannot run a markdown chapter")
        if not links.get("Binder", "").endswith(f"urlpath=lab/tree/book/{chapter}.ipynb"):
            problems.append(f"{chapter}: Binder opens {links.get('Binder')}, not book/{chapter}.ipynb")
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_binder_post_build_makes_a_notebook_of_every_chapter(tmp_path):
    pytest.importorskip("jupytext")
    line = next(line for line in (ROOT / "binder" / "postBuild").read_text().splitlines()
                if line.startswith("jupytext"))
    (tmp_path / "book").mkdir()
    for md in (ROOT / "book").glob("*.md"):
        shutil.copy(md, tmp_path / "book" / md.name)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, check=True, capture_output=True, timeout=300)
    import nbformat

    for chapter in CHAPTERS:
        nb = nbformat.read(tmp_path / "book" / f"{chapter}.ipynb", as_version=4)
        nbformat.validate(nb)
        md = (ROOT / "book" / f"{chapter}.md").read_text()
        expected = len(re.findall(r"^```\{code-cell\}", md, re.M))
        got = sum(c.cell_type == "code" for c in nb.cells)
        assert got == expected, f"{chapter}: {got} code cells in Binder's notebook, {expected} in the chapter"
        assert nb.metadata.kernelspec.name == "python3"


def test_binder_starts_the_students_jupyterlab():
    out = subprocess.run([str(ROOT / "binder" / "start"), "env"], capture_output=True, text=True, check=True,
                         env={k: v for k, v in os.environ.items() if not k.startswith("JUPYTER")}).stdout
    env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert env["JUPYTER_PATH"].split(os.pathsep)[0] == str(ROOT / "jupyter" / "share")
    assert env["JUPYTER_CONFIG_PATH"].split(os.pathsep)[0] == str(ROOT / "jupyter" / "student")
    lab = (ROOT / "jupyter" / "lab").read_text()
    assert '"$here/share' in lab and '"$here/student' in lab, "jupyter/lab and binder/start differ"


def test_make_site_reads_the_labs_from_student():
    """`make site` (COURSE_SITE=student) renders each lab page from its student version; the default book
    keeps the instructor version (collapsed solutions)."""
    assert "COURSE_SITE=student" in (ROOT / "Makefile").read_text()
    lab = LABS[0]
    instructor = (ROOT / "notebooks" / f"{lab}.ipynb").read_text()
    for mode, expected in (("student", (ROOT / "student" / f"{lab}.ipynb").read_text()), ("", instructor)):
        app = SimpleNamespace(config=SimpleNamespace(course_site=mode), srcdir=str(ROOT))
        source = [instructor]
        course_site._on_source_read(app, f"notebooks/{lab}", source)
        assert source[0] == expected, f"COURSE_SITE={mode!r}"
        assert ("BEGIN SOLUTION" in source[0]) == (mode == ""), f"COURSE_SITE={mode!r}"
    chapter = ["# a chapter"]
    course_site._on_source_read(SimpleNamespace(config=SimpleNamespace(course_site="student"), srcdir=str(ROOT)),
                                "book/intro", chapter)
    assert chapter == ["# a chapter"]
