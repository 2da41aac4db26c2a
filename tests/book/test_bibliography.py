"""The bibliography: every cited key exists, every entry is cited (the page lists exactly the cited works and
says so), author-year labels are unambiguous, and the page carries no authoring notes."""
from __future__ import annotations

import functools
import importlib.util
import json
import re
from collections import Counter
from pathlib import Path

import yaml
from pybtex.database import parse_file

ROOT = Path(__file__).resolve().parents[2]
BOOK = ROOT / "book"
CITE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]+)`")


def outline() -> list[Path]:
    """The pages of the book (_toc.yml): a notebook not yet in the outline is not rendered, so not cited."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]
    return [next(p for p in (ROOT / f"{f}.md", ROOT / f"{f}.ipynb") if p.exists()) for f in files]


def cited_keys() -> Counter:
    """How often each key is cited in the pages of the book: chapters, and the labs' markdown cells."""
    texts = []
    for page in outline():
        if page.suffix == ".md":
            texts.append(page.read_text())
        else:
            cells = json.loads(page.read_text())["cells"]
            texts += ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]
    keys = Counter()
    for text in texts:
        for group in CITE.findall(text):
            keys.update(k.strip() for k in group.split(","))
    return keys


def entries():
    return parse_file(str(BOOK / "references.bib")).entries


def test_every_cited_key_exists_and_every_entry_is_cited():
    cited, bib = set(cited_keys()), set(entries())
    assert cited - bib == set(), f"cited but not in references.bib: {sorted(cited - bib)}"
    assert bib - cited == set(), f"in references.bib but cited nowhere: {sorted(bib - cited)}"


def test_page_lists_only_cited_works_and_says_so():
    page = (BOOK / "bibliography.md").read_text()
    assert ":all:" not in page, "`:all:` lists uncited entries too"
    assert ":style: author_year_list" in page, "the author-year text needs a list without [1]-[n] labels"
    prose = page.split("```")[0]
    assert "only those" in prose and "{cite" not in prose and "references.bib" not in prose


@functools.cache
def bibliography_style():
    spec = importlib.util.spec_from_file_location("bibliography_style", BOOK / "_ext" / "bibliography_style.py")
    style = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(style)
    return style


def label(entry) -> str:
    """The label of the bibliography list (book/_ext/bibliography_style.py), the same as the text's citations."""
    return bibliography_style().author_year_label(entry)


def test_author_year_labels_are_unambiguous():
    labels = Counter(label(e) for e in entries().values())
    assert [lab for lab, n in labels.items() if n > 1] == []
    bib = entries()
    assert label(bib["mikolov2013efficient"]).endswith("2013a")
    assert label(bib["mikolov2013distributed"]).endswith("2013b")


def test_undated_talk_is_cited_by_author_only():
    talk = entries()["agrawal_talk"]
    assert "year" not in talk.fields, "the talk has no date: no pseudo-year such as 'undated'"
    for p in BOOK.glob("*.md"):
        for role, _key in re.findall(r"\{(cite(?::[a-z]+)?)\}`([^`]*agrawal_talk[^`]*)`", p.read_text()):
            assert role == "cite:author", f"{p.name}: {role} would print 'Agrawal, n.d.'"
    assert cited_keys()["agrawal_talk"] >= 3


def test_works_used_in_the_text_are_cited():
    # issue 13: nucleus sampling, AdamW, BPE and the Llama 2 figures were used without a citation
    cited = cited_keys()
    for key in ("holtzman2020curious", "loshchilov2019decoupled", "sennrich2016neural", "touvron2023llama",
                "schuster2012japanese", "wu2016google", "milakov2018online"):
        assert cited[key] >= 1, key
