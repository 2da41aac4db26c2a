"""Instructor tooling of the course: what only instructors and CI run, kept out of the package students install.

* :mod:`instructor.grading`  release student versions, grade submissions in a sandbox, report (``make release``,
  ``make grade``)
* :mod:`instructor.bench`    ``make bench``: the labs' time, memory and quality, and speed ratios
"""
