"""Sphinx extension of the book: the labs as a reader sees them, without nbgrader's machinery.

The notebooks in ``notebooks/`` are the instructor versions, and they keep what nbgrader and the grader need.
The book changes only the text it reads (``source-read``), never the files:

* **Model answers collapsed.** A free-response cell is a markdown cell with nbgrader metadata ``solution: true,
  grade: true``. Its model answer sits between nbgrader's markers ``### BEGIN SOLUTION`` and ``### END
  SOLUTION`` (the student release replaces that region with "YOUR ANSWER HERE"). Rendered as they are, the
  markers would become two headings and the answer would be in plain view; the region becomes a dropdown
  instead, as the code solutions of the labs are collapsed too.
* **Code solutions without markers.** In a code cell the two marker lines are dropped, so the collapsed
  solution shows only the code.
* **Stubs shown.** In the student version (``make site`` reads ``student/``) a solution cell holds the stub
  ("YOUR CODE HERE"): it is the exercise, so it is shown rather than collapsed behind a "Solution" toggle.
* **The Colab set-up cell collapsed** (tag ``colab``, book/_ext/colab_cell.py): it is for a fresh Python, not for
  a reader of the book, so it gets ``hide-input`` and a toggle labelled "Colab set-up".

And the figures of a lab are numbered by lab: the labs' part of the outline is not numbered (a lab's title
carries its number), so Sphinx would count their figures on from one lab to the next ("Fig. 14" in Lab 5).
Lab N's k-th figure is "Fig. LN.k" instead, which neither repeats within the book nor looks like a chapter's
"Fig. 5.1".
"""
import json
import re

MARKERS = re.compile(r"^[ \t]*#+[ \t]*BEGIN SOLUTION[ \t]*\n(.*?)^[ \t]*#+[ \t]*END SOLUTION[ \t]*(?:\n|\Z)",
                     re.MULTILINE | re.DOTALL)
MARKER_LINE = re.compile(r"^[ \t]*#+[ \t]*(BEGIN|END) SOLUTION[ \t]*$")
DROPDOWN = ":::{{admonition}} Model answer (for instructors)\n:class: dropdown\n{answer}\n:::\n"
COLAB_TAG = "colab"
COLAB_PROMPTS = {"code_prompt_show": "Colab set-up", "code_prompt_hide": "Hide the Colab set-up"}
LAB_PAGE = re.compile(r"^notebooks/lab(\d+)_")
STUB = "YOUR CODE HERE"  # what the student release puts in place of a code solution


def collapse_model_answers(text: str) -> str:
    """Replace every BEGIN/END SOLUTION region of a markdown text by a collapsed admonition."""
    return MARKERS.sub(lambda m: DROPDOWN.format(answer=m.group(1).rstrip()), text)


def drop_solution_markers(code: str) -> str:
    """A code cell's source without the lines ``### BEGIN SOLUTION`` and ``### END SOLUTION``."""
    return "\n".join(line for line in code.split("\n") if not MARKER_LINE.match(line))


def book_cell(cell: dict) -> bool:
    """Change one notebook cell (a JSON dict) into what the book shows; True if it changed."""
    text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
    metadata = cell.setdefault("metadata", {})
    changed = False
    if cell.get("cell_type") == "markdown" and metadata.get("nbgrader", {}).get("solution"):
        new = collapse_model_answers(text)
    elif cell.get("cell_type") == "code":
        new = drop_solution_markers(text)
        tags = metadata.setdefault("tags", [])
        if metadata.get("nbgrader", {}).get("solution") and STUB in text and "hide-input" in tags:
            tags.remove("hide-input")  # the student version's stub (make site): the exercise itself, shown
            metadata.get("mystnb", {}).pop("code_prompt_show", None)
            metadata.get("mystnb", {}).pop("code_prompt_hide", None)
            changed = True
        if COLAB_TAG in tags and "hide-input" not in tags:
            tags.append("hide-input")
            metadata.setdefault("mystnb", {}).update(COLAB_PROMPTS)
            changed = True
    else:
        return False
    if new != text:
        cell["source"], changed = new, True
    return changed


def _on_source_read(app, docname, source):
    if not docname.startswith("notebooks/"):
        return
    try:
        nb = json.loads(source[0])
    except ValueError:
        return
    changed = False
    for cell in nb.get("cells", []):
        changed |= book_cell(cell)
    if changed:
        source[0] = json.dumps(nb)


def number_lab_figures(fignumbers: dict) -> None:
    """Renumber, in place, the figures (and any other numbered element) of each lab page as ("LN", k)."""
    for docname, by_type in fignumbers.items():
        lab = LAB_PAGE.match(docname)
        if not lab:
            continue
        for numbers in by_type.values():
            in_order = sorted(numbers, key=lambda figure_id: numbers[figure_id][-1])
            for k, figure_id in enumerate(in_order, 1):
                numbers[figure_id] = (f"L{int(lab.group(1))}", k)


def _on_env_get_updated(app, env):
    number_lab_figures(env.toc_fignumbers)
    return []


def setup(app):
    app.connect("source-read", _on_source_read)
    # after Sphinx's own numbering (TocTreeCollector, priority 500)
    app.connect("env-get-updated", _on_env_get_updated, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
