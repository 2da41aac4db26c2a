"""The applications chapter quotes Lab 9's retrieval table: its numbers must be the ones the committed lab printed
(re-measured by nbval whenever the lab is tested)."""
from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROWS = {"pretrained MiniLM": "pretrained all-MiniLM-L6-v2", "TF-IDF": "TF-IDF word matching",
        "from scratch": "trained from scratch", "random weights": "the same BERT with random weights"}


def lab_table() -> dict[str, tuple[str, str, str]]:
    nb = json.loads((ROOT / "notebooks" / "lab09_pretrained_bert.ipynb").read_text())
    for cell in nb["cells"]:
        text = "".join("".join(o.get("text", "")) for o in cell.get("outputs", []))
        if text.startswith("search "):
            rows = {}
            for line in text.splitlines()[1:]:
                m = re.match(r"(.+?)\s+([\d.]+%)\s+([\d.]+%)\s+([\d.]+)$", line)
                if m:
                    rows[m.group(1)] = m.group(2, 3, 4)
            return rows
    raise AssertionError("Lab 9 printed no retrieval table")


def chapter_table() -> dict[str, tuple[str, str, str]]:
    text = (ROOT / "book" / "applications.md").read_text()
    block = text.split(":name: tbl-pretraining-bought", 1)[1].split(":::", 1)[0]
    rows = {}
    for item in block.split("* - ")[2:]:
        cells = [c.strip() for c in item.split("  - ")]
        rows[cells[0]] = tuple(cells[1:4])
    return rows


def test_the_chapter_quotes_the_labs_numbers():
    lab, chapter = lab_table(), chapter_table()
    assert set(lab) == set(ROWS)
    for name, words in ROWS.items():
        row = next(v for k, v in chapter.items() if words in k)
        assert row == lab[name], (name, row, lab[name])
