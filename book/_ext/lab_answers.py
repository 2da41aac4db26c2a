"""Sphinx extension of the book: the model answers of the labs' free-response questions appear collapsed.

A free-response cell of a lab is a markdown cell with nbgrader metadata ``solution: true, grade: true``. Its
model answer sits between nbgrader's markers ``### BEGIN SOLUTION`` and ``### END SOLUTION`` (the student
release replaces that region with "YOUR ANSWER HERE"). Rendered as they are, the markers would become two
headings and the answer would be in plain view; this turns the region into a dropdown, as the code solutions
of the labs are collapsed too. The notebooks themselves are not changed: only the text the book reads.
"""
import json
import re

MARKERS = re.compile(r"^[ \t]*#+[ \t]*BEGIN SOLUTION[ \t]*\n(.*?)^[ \t]*#+[ \t]*END SOLUTION[ \t]*(?:\n|\Z)",
                     re.MULTILINE | re.DOTALL)
DROPDOWN = ":::{{admonition}} Model answer (for instructors)\n:class: dropdown\n{answer}\n:::\n"


def collapse_model_answers(text: str) -> str:
    """Replace every BEGIN/END SOLUTION region of a markdown text by a collapsed admonition."""
    return MARKERS.sub(lambda m: DROPDOWN.format(answer=m.group(1).rstrip()), text)


def _on_source_read(app, docname, source):
    if not docname.startswith("notebooks/"):
        return
    try:
        nb = json.loads(source[0])
    except ValueError:
        return
    changed = False
    for cell in nb.get("cells", []):
        grading = cell.get("metadata", {}).get("nbgrader", {})
        if cell.get("cell_type") != "markdown" or not grading.get("solution"):
            continue
        text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        new = collapse_model_answers(text)
        if new != text:
            cell["source"], changed = new, True
    if changed:
        source[0] = json.dumps(nb)


def setup(app):
    app.connect("source-read", _on_source_read)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
