"""Mutation tests: every realistic wrong solution fails its self-check with a message that names the problem, and
fails its hidden test; the right solution passes both (see tests/checks/mutation.py)."""
from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
from mutation import LIBRARY_TRACE, lab_cells, namespace, run_hidden_test, run_self_check

CATALOGUES = sorted(p.stem for p in Path(__file__).parent.glob("mutants_lab*.py"))
MODULES = {name: importlib.import_module(name) for name in CATALOGUES}
MUTANTS = [(m.LAB, mutant) for m in MODULES.values() for mutant in m.MUTANTS]
TABLE = []
for module in MODULES.values():
    checks = importlib.import_module(f"labsupport.checks.{module.LAB}")
    for check, mistakes in checks.MISTAKES.items():
        for mistake in mistakes:
            TABLE.append((module.LAB, checks, check, mistake, module.TABLE[check]))


@pytest.fixture(autouse=True)
def quiet_numpy():
    with np.errstate(all="ignore"):
        yield


@pytest.mark.parametrize("lab", [m.LAB for m in MODULES.values()])
def test_the_solution_passes_every_self_check_and_hidden_test(lab):
    ns = namespace(lab)
    _, _, solutions, tests = lab_cells(lab)
    for exercise in tests:
        assert run_self_check(lab, exercise, ns) is None, f"{lab} {exercise}: the solution fails its self-check"
        assert run_hidden_test(lab, exercise, ns) is None, f"{lab} {exercise}: the solution fails its hidden test"


@pytest.mark.parametrize("lab, mutant", MUTANTS, ids=[f"{lab}-{m.id}" for lab, m in MUTANTS])
def test_every_mutant_fails_with_a_message_that_names_the_problem(lab, mutant):
    ns = namespace(lab, mutant)
    message = run_self_check(lab, mutant.test, ns)
    hidden = run_hidden_test(lab, mutant.test, ns)
    if mutant.equivalent:
        assert message is None and hidden is None, f"declared equivalent ({mutant.equivalent}) but: {message or hidden}"
        return
    assert message is not None, "the self-check says 'all checks passed' for this wrong solution"
    for fragment in mutant.expect:
        assert fragment in message, f"expected {fragment!r} in the self-check's message:\n{message}"
    assert not LIBRARY_TRACE.search(message), f"a raw traceback from inside a library:\n{message}"
    assert hidden is not None, "the hidden test gives points to this wrong solution"


@pytest.mark.parametrize("lab, checks, check, mistake, where", TABLE,
                         ids=[f"{lab}-{check}-{m.name}" for lab, _, check, m, _ in TABLE])
def test_every_documented_mistake_gets_its_own_message(lab, checks, check, mistake, where):
    name, exercise = where
    ns = namespace(lab)
    ns[name] = mistake.fn
    try:
        checks.CHECKS[check](mistake.fn)
    except checks.CheckFailed as err:
        assert mistake.message[:60] in err.message, f"expected the mistake's message, got:\n{err.message}"
    else:
        pytest.fail("the self-check passes this documented mistake")
    assert run_hidden_test(lab, exercise, ns) is not None, "the hidden test gives points to a documented mistake"


@pytest.mark.parametrize("module", MODULES.values(), ids=CATALOGUES)
def test_at_least_six_mutants_per_exercise(module):
    _, _, solutions, tests = lab_cells(module.LAB)
    count = {e: 0 for e in tests}
    for m in module.MUTANTS:
        if not m.equivalent:
            count[m.exercise] += 1
    for check, (_, exercise) in module.TABLE.items():
        count[exercise] += len(importlib.import_module(f"labsupport.checks.{module.LAB}").MISTAKES[check])
    assert all(n >= 6 for n in count.values()), count
