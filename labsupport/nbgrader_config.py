"""The course's nbgrader settings, in one place.

``python -m labsupport.grading`` (``make release``, ``make grade``) writes ``_grading/nbgrader_config.py``,
which only calls :func:`configure`; so these settings apply both to our commands and to any ``nbgrader``
command you run yourself inside ``_grading/`` (formgrader included). Change a setting here, not there.

Each setting says why it is what it is. The names are nbgrader's own configuration traits
(``nbgrader --help-all`` lists them all).
"""
from __future__ import annotations

#: The course id stored in the gradebook (and used by the JupyterHub exchange).
COURSE_ID = "transformer-networks"

#: Seconds one cell may run during autograding before it is interrupted. Long enough for the labs'
#: training cells on a CPU; an infinite loop costs this much and no more.
CELL_TIMEOUT = 300

#: Seconds each cell may run once a cell of the same notebook has run out of time.
AFTER_TIMEOUT = 60

#: What replaces a solution region in the student version.
CODE_STUB = "# YOUR CODE HERE\nraise NotImplementedError()"
TEXT_STUB = "YOUR ANSWER HERE"


def configure(c, timeout: int | None = None):
    """Fill the traitlets config ``c`` (``get_config()`` in a config file) with the course's settings."""
    from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
    from nbgrader.preprocessors import (
        AssignLatePenalties, CheckCellMetadata, ClearHiddenTests, ClearMarkScheme, ClearSolutions,
        ComputeChecksums, GetGrades, IgnorePattern, IncludeHeaderFooter, InstantiateTests, LimitOutput,
        LockCells, SaveAutoGrades, SaveCells,
    )

    from labsupport.grading import ClearGradedOutput, GradingExecute, HideHiddenTests

    c.CourseDirectory.course_id = COURSE_ID

    # --- the student version (nbgrader generate_assignment) ---------------------------------------
    c.ClearSolutions.code_stub = {"python": CODE_STUB}
    c.ClearSolutions.text_stub = TEXT_STUB
    # nbgrader's default pipeline, except that only the outputs of graded cells (solutions, tests,
    # free-response answers) are cleared: figures and printouts of the explanation cells stay.
    c.GenerateAssignment.preprocessors = [
        IncludeHeaderFooter, InstantiateTests, LockCells, ClearSolutions, ClearGradedOutput,
        CheckCellMetadata, ComputeChecksums, SaveCells, ClearHiddenTests, ClearMarkScheme,
        ComputeChecksums, CheckCellMetadata,
    ]

    # --- autograding (nbgrader autograde) ------------------------------------------------------
    c.Execute.timeout = int(timeout or CELL_TIMEOUT)  # per cell
    c.Execute.interrupt_on_timeout = True             # interrupt the cell, then run the rest of the notebook
    c.Execute.raise_on_iopub_timeout = False
    # nbgrader's pipeline with one change: once a cell has timed out (an infinite loop in a student's
    # function), the cells after it get at most AFTER_TIMEOUT seconds each, so that every later call of
    # that function does not cost the full limit again.
    c.GradingExecute.after_timeout = AFTER_TIMEOUT
    c.Autograde.autograde_preprocessors = [
        GradingExecute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput, SaveAutoGrades,
        AssignLatePenalties, CheckCellMetadata,
    ]
    # A deleted test cell is put back from the gradebook (labsupport.grading already does this before
    # nbgrader sees the notebook; this covers `nbgrader autograde` run by hand).
    c.OverwriteCells.add_missing_cells = True
    c.LimitOutput.max_lines = 300                     # a print in a loop does not bloat the feedback
    c.LimitOutput.max_traceback = 60

    # --- feedback (nbgrader generate_feedback) ---------------------------------------------------
    # The hidden tests are replaced by a one-line note, so that a lab can be reused next term.
    c.GenerateFeedback.preprocessors = [GetGrades, HideHiddenTests, CSSHTMLHeaderPreprocessor]

    # --- JupyterHub (see the instructor guide): uncomment and adapt on the hub --------------------
    # c.Exchange.root = "/srv/nbgrader/exchange"
    # c.CourseDirectory.groupshared = True
    return c
