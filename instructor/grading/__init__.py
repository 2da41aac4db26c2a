"""Grading the labs: student versions, sandboxed autograding, grades and feedback (``make release``, ``make grade``).

Run from the repository root: ``python -m instructor.grading release | grade SUBMISSIONS | report`` (``-h`` for
the options). The instructor guide (``book/instructor_guide.md``) explains the workflow and the threat model.

One concern per module:

* :mod:`.settings`        every setting and limit, with its reason
* :mod:`.workspace`       nbgrader's course directory ``_grading/``
* :mod:`.nbgrader_config` nbgrader's configuration, :mod:`.preprocessors` its two custom steps
* :mod:`.release`         the student versions and their zips
* :mod:`.submissions`     finding submissions in nbgrader's and the LMSs' layouts, zips unpacked safely
* :mod:`.repair`          reading a submission, repairing a copy, making its markdown inert
* :mod:`.sandbox`         one bubblewrap sandbox per submission; :mod:`.worker` runs inside it
* :mod:`.remote`          the trusted end of the pipe to the worker
* :mod:`.hidden`          the hidden tests, one module per lab
* :mod:`.scan`            what the student's code reaches for (flags, tripwire pass)
* :mod:`.harness`         grading one submission: sandbox runs, hidden tests, verdicts
* :mod:`.grade`           grading a folder of submissions
* :mod:`.report`          grades.csv, feedback pages, grading.log
* :mod:`.cli`             the command line
"""
