"""Repairing a tampered submission (a copy; the submitted file is only read) and making its markdown inert."""
import copy

import nbformat
from gradinghelpers import cell_of, gid, tiny_lab

from instructor.grading.repair import make_inert, repair


def test_repair_leaves_an_honest_submission_alone():
    src, rel = tiny_lab()
    sub = copy.deepcopy(rel)
    cell_of(sub, "f").source = "def f(x):\n    return x + 1"
    fixed, notes = repair(copy.deepcopy(sub), src, rel)
    assert notes == []
    assert cell_of(fixed, "test_f").source == cell_of(src, "test_f").source
    assert cell_of(fixed, "f").source == "def f(x):\n    return x + 1"               # answer kept
    # the instructor's own notebook is not "edited"
    assert repair(copy.deepcopy(src), src, rel)[1] == []


def test_repair_reports_and_undoes_an_edited_locked_cell():
    src, rel = tiny_lab()
    sub = copy.deepcopy(rel)
    cell_of(sub, "test_f").source = "pass  # nothing to see"
    cell_of(sub, "test_g").metadata["nbgrader"]["points"] = 100
    fixed, notes = repair(sub, src, rel)
    assert "locked cell 'test_f' was edited; the original was used" in notes
    assert any("metadata of 'test_g' was changed" in n for n in notes)
    assert cell_of(fixed, "test_f").source == cell_of(src, "test_f").source
    assert cell_of(fixed, "test_g").metadata["nbgrader"]["points"] == 3


def test_repair_puts_back_deleted_cells_in_place():
    src, rel = tiny_lab()
    sub = copy.deepcopy(rel)
    sub.cells = [c for c in sub.cells if gid(c) not in ("test_f", "explain")]
    # a test cell stripped of its metadata and emptied counts as deleted too
    cell_of(sub, "test_g").metadata.pop("nbgrader")
    fixed, notes = repair(sub, src, rel)
    order = [gid(c) for c in fixed.cells if gid(c)]
    assert order == ["f", "test_f", "g", "test_g", "explain"]
    assert "locked cell 'test_f' was deleted; put back from the source" in notes
    assert "locked cell 'test_g' was deleted; put back from the source" in notes
    assert any("answer cell 'explain' was deleted" in n for n in notes)
    assert cell_of(fixed, "explain").source == cell_of(rel, "explain").source       # an empty answer
    assert len({c.id for c in fixed.cells}) == len(fixed.cells)


def test_repair_deleted_solution_duplicates_unknown_ids_and_cell_types():
    src, rel = tiny_lab()
    sub = copy.deepcopy(rel)
    sub.cells = [c for c in sub.cells if gid(c) != "g"]                               # solution deleted
    dup = copy.deepcopy(cell_of(sub, "test_f"))                                       # copy-pasted test
    cell_of(sub, "test_f").source = "pass"
    dup.id = "pasted"
    sub.cells.insert(3, dup)
    stray = nbformat.v4.new_code_cell("x = 1")
    stray.metadata["nbgrader"] = {"grade_id": "bonus", "grade": True, "points": 50, "solution": False}
    sub.cells.append(stray)
    explain = cell_of(sub, "explain")
    sub.cells[sub.cells.index(explain)] = nbformat.v4.new_code_cell(explain.source, metadata=explain.metadata)
    fixed, notes = repair(sub, src, rel)
    assert "solution cell 'g' was deleted" in notes
    assert "cell with unknown grade id 'bonus' ignored" in notes
    assert any("'explain' was turned into a code cell" in n for n in notes)
    assert cell_of(fixed, "explain").cell_type == "markdown"
    assert [gid(c) for c in fixed.cells].count("test_f") == 1
    assert not any("test_f" in n for n in notes)        # an unchanged copy stands for the test: no report
    assert "nbgrader" not in stray.metadata




def test_make_inert_escapes_markup_and_drops_outputs_and_metadata():
    src, rel = tiny_lab()
    sub = copy.deepcopy(rel)
    answer = cell_of(sub, "explain")
    answer.source = 'Because.<script>alert(1)</script><img src=x onerror="alert(2)"> and $a < b$, 1<2'
    answer["attachments"] = {"x.svg": {"image/svg+xml": "<svg onload=alert(3)>"}}
    code = sub.cells[0]
    code.outputs = [nbformat.v4.new_output("display_data", data={"text/html": "<script>alert(4)</script>"})]
    code.metadata["evil"] = {"x": 1}
    sub.metadata["title"] = "<script>alert(5)</script>"
    inert = make_inert(sub, src)
    text = cell_of(inert, "explain").source
    assert "<script" not in text and "<img" not in text and "&lt;script>" in text
    assert "$a < b$" in text and "1<2" in text                      # not a tag: left as written
    assert "attachments" not in cell_of(inert, "explain")
    assert inert.cells[0].outputs == [] and "evil" not in inert.cells[0].metadata
    assert "title" not in inert.metadata and inert.metadata == src.metadata
