"""The hidden tests: one module per lab, run by the trusted harness, never inside the student's process.

A lab's module (``lab01.py`` for ``lab01_attention_numpy``) defines one function per test cell of the lab,
registered with :func:`hidden_test` under the cell's nbgrader grade id. Each receives ``student`` (a
:class:`labsupport.checks.subject.Namespace`: ``student.softmax`` is a handle on the student's ``softmax``) and
``seed`` (its random inputs; derived from the lab, the grade id and the grading salt). It passes by returning and
fails by raising :class:`labsupport.checks.core.CheckFailed` with a message for the student.

The rule that keeps "all checks passed" honest: a hidden test runs the lab's own self-check on other inputs,
then adds cases of its own that the self-check also covers in kind (edge cases, other shapes). So a student who
sees the pass line gets the points, and one who hard-codes the self-check's inputs does not.

``twins`` names the labsupport references the exercise asks the student to write again (``softmax_np`` for
``softmax``): a submission whose result depends on them is flagged for review.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path

from instructor.grading import settings


@dataclasses.dataclass
class HiddenTest:
    grade_id: str
    fn: Callable
    twins: tuple[str, ...] = ()


def hidden_test(grade_id: str, twins: tuple[str, ...] | list[str] = ()):
    """Register the decorated ``fn(student, seed)`` as the hidden test of the test cell ``grade_id``."""
    def register(fn):
        fn.hidden_test = HiddenTest(grade_id, fn, tuple(twins))
        return fn
    return register


def module_name(lab: str) -> str:
    """``lab01_attention_numpy`` -> ``lab01``."""
    return lab.split("_", 1)[0]


def load(lab: str, folder: str | Path = settings.HIDDEN) -> dict[str, HiddenTest]:
    """The hidden tests of ``lab`` from ``folder/labNN.py``: ``{grade_id: HiddenTest}``."""
    path = Path(folder) / f"{module_name(lab)}.py"
    if not path.exists():
        raise SystemExit(f"{lab} has no hidden tests: {path} does not exist. Every test cell of a lab needs a "
                         "hidden test there (see instructor/grading/hidden/__init__.py).")
    name = f"_hidden_{module_name(lab)}_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    tests = {}
    for value in vars(module).values():
        t = getattr(value, "hidden_test", None)
        if isinstance(t, HiddenTest):
            tests[t.grade_id] = t
    return tests


def seed_for(lab: str, grade_id: str, salt: str | None = None) -> int:
    """The seed of a hidden test's random inputs: fixed for a lab, a test and a salt (``GRADER_SALT``)."""
    salt = os.environ.get(settings.SALT_ENV, "") if salt is None else salt
    digest = hashlib.sha256(f"{salt}\0{lab}\0{grade_id}".encode()).digest()
    return 1000 + int.from_bytes(digest[:4], "big") % 1_000_000
