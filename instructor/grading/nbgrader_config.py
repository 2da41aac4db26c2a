"""The course's nbgrader settings, in one place.

``python -m instructor.grading`` (``make release``, ``make grade``) writes ``_grading/nbgrader_config.py``, which
only calls :func:`configure`; so these settings apply to our commands and to any ``nbgrader`` command run inside
``_grading/`` (formgrader included). Change a setting here (or in :mod:`instructor.grading.settings`), not there.
"""
from __future__ import annotations

from instructor.grading import settings


def configure(c, results_dir: str = ""):
    """Fill the traitlets config ``c`` (``get_config()`` in a config file) with the course's settings."""
    from nbconvert.preprocessors import ClearMetadataPreprocessor
    from nbgrader.preprocessors import (
        AssignLatePenalties,
        CheckCellMetadata,
        ClearHiddenTests,
        ClearMarkScheme,
        ClearSolutions,
        ComputeChecksums,
        IncludeHeaderFooter,
        InstantiateTests,
        LockCells,
        SaveAutoGrades,
        SaveCells,
    )

    from instructor.grading.preprocessors import ClearGradedOutput, InjectResults

    c.CourseDirectory.course_id = settings.COURSE_ID

    # --- the student version (nbgrader generate_assignment) ---------------------------------------
    c.ClearSolutions.code_stub = {"python": settings.CODE_STUB}
    c.ClearSolutions.text_stub = settings.TEXT_STUB
    # nbgrader's default pipeline, except that only the outputs of graded cells (solutions, tests,
    # free-response answers) are cleared: figures and printouts of the explanation cells stay.
    c.GenerateAssignment.preprocessors = [
        IncludeHeaderFooter, InstantiateTests, LockCells, ClearSolutions, ClearGradedOutput,
        CheckCellMetadata, ComputeChecksums, SaveCells, ClearHiddenTests, ClearMarkScheme,
        ComputeChecksums, CheckCellMetadata,
    ]

    # --- autograding (nbgrader autograde) ------------------------------------------------------
    # nbgrader never runs student code here: the sandbox did (instructor.grading.harness), and
    # InjectResults writes its verdicts into the test cells; SaveAutoGrades then scores them as usual.
    c.InjectResults.results_dir = results_dir
    c.Autograde.autograde_preprocessors = [
        InjectResults, ClearMetadataPreprocessor, SaveAutoGrades, AssignLatePenalties, CheckCellMetadata,
    ]
    # A deleted test cell is put back from the gradebook (repair.py already does this before nbgrader
    # sees the notebook; this covers `nbgrader autograde` run by hand).
    c.OverwriteCells.add_missing_cells = True

    # --- JupyterHub (see the instructor guide): uncomment and adapt on the hub --------------------
    # c.Exchange.root = "/srv/nbgrader/exchange"
    # c.CourseDirectory.groupshared = True
    return c
