"""Every setting of the grading pipeline, in one place, each with the reason for its value.

The command line (``python -m instructor.grading grade -h``) overrides the per-run ones; nbgrader's own settings
(``nbgrader_config.py``) are derived from these.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: nbgrader's course directory, rebuilt from the labs whenever needed (git-ignored).
WORKSPACE = "_grading"
#: the instructor versions of the labs (solutions, self-check calls, nbgrader metadata).
SOURCE = "notebooks"
#: the hidden tests, one module per lab (``lab01_attention_numpy`` -> ``lab01.py``), never shown to students.
HIDDEN = ROOT / "instructor" / "grading" / "hidden"
#: where ``make release`` writes the student versions and their zips.
RELEASE = "release"
#: where ``make grade`` writes grades.csv, grading.log and feedback/.
OUT = "grades"
#: the course id stored in the gradebook (and used by the JupyterHub exchange).
COURSE_ID = "transformer-networks"
LAB_PATTERN = "lab*.ipynb"

#: What replaces a solution region in the student version.
CODE_STUB = "# YOUR CODE HERE\nraise NotImplementedError()"
TEXT_STUB = "YOUR ANSWER HERE"

#: Training loops in the labs stop after this many steps while grading (labsupport reads LABSUPPORT_MAX_STEPS):
#: the graded exercises never depend on a trained model, and the labs' own quality checks are not graded.
MAX_STEPS = 3

#: Environment variable whose value salts the hidden tests' random inputs (set it on the grading machine to
#: make them unpredictable; the same salt always gives the same inputs, so a re-grade is byte-identical).
SALT_ENV = "GRADER_SALT"


@dataclasses.dataclass
class Limits:
    """What one submission may use. Every limit is enforced outside the student's code (see sandbox.py)."""

    cell_timeout: int = 300        #: seconds per notebook cell (the labs' training cells on a slow CPU)
    test_timeout: int = 120        #: seconds per hidden test (all the calls of one exercise's tests)
    submission_timeout: int = 1800  #: wall seconds for one submission, all sandbox runs together
    memory_mb: int = 4096          #: memory of the whole sandbox (cgroup), and address space per process
    processes: int = 256           #: processes and threads of the sandbox's own user
    file_mb: int = 512             #: largest file the student's code may write
    tmp_mb: int = 1024             #: size of the sandbox's private /tmp (and 256 MiB for its home)
    output_kb: int = 64            #: printed output kept per cell, and of the whole run (x 16)
    restarts: int = 3              #: fresh sandboxes after a hang or a crash, per submission
    threads: int = 0               #: OMP/torch threads in the sandbox; 0: cores / jobs


#: Default limits (the command line changes them per run).
LIMITS = Limits()
