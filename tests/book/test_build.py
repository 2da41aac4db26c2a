"""The strict book build (Jupyter Book 1): zero warnings, every page of the outline rendered with its figures."""
import html
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HTML = ROOT / "_build" / "html"


def toc_files():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc["parts"]:
        files += [c["file"] for c in part["chapters"]]
    return files


def test_outline_files_exist():
    for f in toc_files():
        exists = any((ROOT / f"{f}{ext}").exists() for ext in (".md", ".ipynb"))
        assert exists, f"_toc.yml lists {f}, which does not exist"


def test_config_is_jupyter_book_1():
    assert not (ROOT / "myst.yml").exists(), "myst.yml is Jupyter Book 2's config; this course uses JB1"
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert cfg["only_build_toc_files"] is True
    assert cfg["sphinx"]["recursive_update"] is True  # otherwise sphinx: config: drops the launch buttons
    assert cfg["repository"]["url"].startswith("https://github.com/")


def test_model_answers_are_collapsed():
    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    from lab_answers import collapse_model_answers

    text = "### Question\n\nWhy?\n\n### BEGIN SOLUTION\nBecause $x$.\n\nSecond line.\n### END SOLUTION"
    out = collapse_model_answers(text)
    assert out.startswith("### Question\n\nWhy?\n\n:::{admonition} Model answer (for instructors)\n:class: dropdown\n")
    assert "Because $x$.\n\nSecond line.\n:::" in out and "BEGIN" not in out and "END SOLUTION" not in out
    assert collapse_model_answers("no markers here") == "no markers here"


@pytest.fixture(scope="module")
def built_book():
    env = dict(os.environ, LABSUPPORT_STATIC="1")
    env.pop("MPLBACKEND", None)  # the inline backend must draw the figures
    jb = Path(sys.executable).with_name("jupyter-book")
    proc = subprocess.run([str(jb), "build", ".", "--warningiserror", "--keep-going"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1500)
    log = proc.stdout + proc.stderr
    return proc.returncode, log


@pytest.mark.slow
def test_book_builds_without_warnings(built_book):
    code, log = built_book
    warnings = [line for line in log.splitlines() if "WARNING" in line and "Kernel is running over TCP" not in line]
    assert code == 0 and not warnings, "book build failed or warned:\n" + "\n".join(warnings[:40]) + log[-3000:]


@pytest.mark.slow
def test_every_page_is_rendered_with_its_figures(built_book):
    for f in toc_files():
        page = HTML / f"{f}.html"
        assert page.exists(), f"{page} was not built"
    # chapters with executed figures: the images are really in the page (an agg backend would drop them)
    for f in ["book/self_attention", "notebooks/lab01_attention_numpy"]:
        html = (HTML / f"{f}.html").read_text()
        assert len(re.findall(r"<img[^>]+\.png", html)) >= 2, f"{f}: figures missing"
    lab = (HTML / "notebooks/lab01_attention_numpy.html").read_text()
    assert "tag_hide-input" in lab, "solution cells of the labs should be collapsed behind a toggle"
    assert "mathjax/tex-chtml.js" in lab, "MathJax should load from the bundled copy"
    assert "binder" in lab.lower() and "colab" in lab.lower(), "launch buttons missing"
    for f in toc_files():
        if f.startswith("notebooks/"):
            page = (HTML / f"{f}.html").read_text()
            assert 'id="begin-solution"' not in page, f"{f}: nbgrader's markers rendered as headings"
            assert "Model answer (for instructors)" in page, f"{f}: the free-response model answer is not collapsed"
    bib = (HTML / "book/bibliography.html").read_text()
    assert "attention is all you need" in bib.lower()


def chapter_pages():
    return [f for f in toc_files() if f.startswith("book/") and (ROOT / f"{f}.md").read_text().count("code-cell")]


@pytest.mark.slow
def test_every_chapter_figure_has_a_number_and_a_caption(built_book):
    # a figure drawn by a code cell is an <img> of _images/; it must sit in a numbered, captioned <figure>
    missing = {}
    for f in chapter_pages():
        page = (HTML / f"{f}.html").read_text()
        images = re.findall(r'<img[^>]+src="\.\./_images/[^"]+"', page)
        figures = re.findall(r"<figure.*?</figure>", page, re.S)
        captioned = [fig for fig in figures if "_images/" in fig and 'class="caption-number"' in fig]
        in_figures = sum(len(re.findall(r"<img[^>]+_images/", fig)) for fig in captioned)
        if len(images) != in_figures:
            missing[f] = len(images) - in_figures
    assert not missing, f"figures without a number and caption: {missing}"


@pytest.mark.slow
def test_bibliography_page_lists_the_cited_works_without_numbers(built_book):
    here = Path(__file__).with_name("test_bibliography.py")
    spec = importlib.util.spec_from_file_location("bibliography_checks", here)
    checks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(checks)
    cited_keys = checks.cited_keys

    bib = (HTML / "book/bibliography.html").read_text()
    body = bib[bib.index('id="bibliography"'):]
    entries = re.findall(r'<div class="citation" id="id\d+"', body)
    assert len(entries) == len(cited_keys()), "the page should list each cited work once, and nothing else"
    labels = [html.unescape(re.sub(r"<[^>]+>", "", lab)) for lab in
              re.findall(r'<span class="label">(.*?)</span></span>', body)]
    assert len(labels) == len(entries) and not any(re.fullmatch(r"\[\d+\]", lab) for lab in labels), labels[:3]
    assert "[Vaswani et al., 2017]" in labels and "[Mikolov et al., 2013a]" in labels and "[Agrawal]" in labels
    assert "{cite}" not in body and "references.bib" not in body
    intro = (HTML / "book/intro.html").read_text()
    assert "undated" not in intro and "n.d." not in intro


@pytest.mark.slow
def test_glued_numbers_match_the_printed_ones(built_book):
    # the CLIP paragraph quotes the cell's own same-class rate (it once said "almost always" for 77.6 %)
    page = html.unescape(re.sub(r"<[^>]+>", "", (HTML / "book/applications.html").read_text()))
    printed = float(re.search(r"of the same digit class for ([\d.]+)%", page).group(1))
    quoted = int(re.search(r"belongs to the same digit class for (\d+)%", page).group(1))
    assert quoted == round(printed)
    assert "almost always" not in page


# What a code box shows without scrolling at a 1280-pixel-wide window (both sidebars open): 79 characters,
# PEP 8's limit too, so the labs read well in a narrow JupyterLab panel as well.
CODE_WIDTH = 79


def overwide_lines(page: Path, limit: int = CODE_WIDTH) -> list[str]:
    """Lines of code and of output that a reader sees in ``page`` and that are wider than ``limit``.

    Collapsed cell inputs (tag hide-input: solutions, test cells, figure code) are skipped; the box of an
    opened toggle scrolls. Every other ``<pre>`` counts: code cells, their outputs, code blocks in the
    text and in exercise solutions.
    """
    text = re.sub(r'<details class="admonition hide above-input">.*?</details>', "", page.read_text(), flags=re.S)
    lines = []
    for pre in re.findall(r"<pre[^>]*>(.*?)</pre>", text, re.S):
        lines += [line for line in html.unescape(re.sub(r"<[^>]+>", "", pre)).splitlines() if len(line) > limit]
    return lines


@pytest.mark.slow
def test_code_and_output_lines_fit_the_page(built_book):
    too_wide = {}
    for f in toc_files():
        bad = overwide_lines(HTML / f"{f}.html")
        if bad:
            too_wide[f] = bad
    report = "\n".join(f"{f}: {len(b)} lines, e.g. {b[0]!r}" for f, b in too_wide.items())
    assert not too_wide, f"lines wider than {CODE_WIDTH} characters scroll sideways in the book:\n{report}"


if __name__ == "__main__":  # python tests/test_book.py [PAGE.html ...]: list the too-wide lines of built pages
    pages = [Path(p) for p in sys.argv[1:]] or [HTML / f"{f}.html" for f in toc_files()]
    for page in pages:
        for line in overwide_lines(page):
            print(f"{page.relative_to(HTML) if page.is_relative_to(HTML) else page}: {len(line):3d} {line}")
