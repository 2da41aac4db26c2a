"""The nbgrader preprocessors of the course (configured in :mod:`instructor.grading.nbgrader_config`).

* :class:`ClearGradedOutput` (student versions): clear the outputs of graded cells only, and drop widget views
  (a progress bar's saved "0%" would show as text until the cell is run again);
* :class:`InjectResults` (grading): put the verdicts of the hidden tests, decided outside the student's
  process by :mod:`instructor.grading.harness`, into the test cells, so that nbgrader's own bookkeeping (the
  gradebook, points, late penalties, formgrader) works as usual. No student code runs here.
"""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
from nbgrader import utils as nbutils
from nbgrader.preprocessors import ClearOutput, NbGraderPreprocessor
from traitlets import Unicode

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


class ClearGradedOutput(ClearOutput):
    """Clear the outputs of graded cells (solutions, tests, free-response answers) only.

    nbgrader's ``ClearOutput`` clears every cell; the student version of a lab keeps the figures and printouts
    of its explanation cells, made by the instructor's run. Widget views (tqdm's progress bars) go: without the
    widget state they would show a stale text form.
    """

    def preprocess_cell(self, cell, resources, index):
        if nbutils.is_solution(cell) or nbutils.is_grade(cell):
            return super().preprocess_cell(cell, resources, index)
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if WIDGET_VIEW not in o.get("data", {})]
        return cell, resources


class InjectResults(NbGraderPreprocessor):
    """Give each test cell the outputs that say what the hidden tests decided.

    A passed test cell gets one line of text (nbgrader: full points); a failed one gets an error output with the
    message written for the student (nbgrader: zero). The code cells the sandbox ran get their printed text
    (already capped in bytes); nothing else of the student's outputs is kept.
    """

    results_dir = Unicode("", help="Folder of the harness's results, <student>/<lab>.json").tag(config=True)

    def preprocess(self, nb, resources):
        student = resources["nbgrader"]["student"]
        lab = resources["nbgrader"]["assignment"]
        path = Path(self.results_dir) / student / f"{lab}.json"
        self._results = json.loads(path.read_text()) if path.exists() else {"tests": {}, "cells": {}}
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, resources
        cell.outputs = []
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if nbutils.is_grade(cell) and not nbutils.is_solution(cell):
            verdict = self._results["tests"].get(gid)
            if verdict and verdict.get("passed"):
                cell.outputs.append(nbformat.v4.new_output("stream", name="stdout",
                                                           text=f"✓ {gid}: the hidden tests passed\n"))
            else:
                message = verdict["message"] if verdict else "not graded (the notebook could not be run)"
                cell.outputs.append(nbformat.v4.new_output("error", ename="HiddenTestFailed", evalue=message,
                                                           traceback=[message]))
        else:
            text = self._results["cells"].get(str(index), {}).get("stdout", "")
            if text:
                cell.outputs.append(nbformat.v4.new_output("stream", name="stdout", text=text))
        return cell, resources
