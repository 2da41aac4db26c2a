"""What every lab's self-checks must do, for Labs 1-9 alike: the references (each lab's ``TWINS`` in its
test_labNN.py) pass on any seed, an unfinished exercise is named as such, and every check has its table of
documented mistakes. (The lab's particular cases are in test_labNN.py; the mistakes and mutants run in
test_mutants.py.)"""
import importlib
from pathlib import Path

import numpy as np
import pytest

from labsupport.checks.core import CheckFailed

LABS = sorted(p.stem.removeprefix("test_") for p in Path(__file__).parent.glob("test_lab[0-9][0-9].py"))
LAB_TESTS = {lab: importlib.import_module(f"test_{lab}") for lab in LABS}   # tests/checks is on sys.path
CHECKS = {lab: importlib.import_module(f"labsupport.checks.{lab}") for lab in LABS}
PER_CHECK = [(lab, name) for lab in LABS for name in CHECKS[lab].CHECKS]


def _stub(*args, **kwargs):
    raise NotImplementedError()


@pytest.mark.parametrize("seed", [0, 1, 12345])
@pytest.mark.parametrize("lab", LABS)
def test_the_references_pass_every_check(lab, seed, capsys):
    twins = LAB_TESTS[lab].TWINS
    assert set(twins) == set(CHECKS[lab].CHECKS), "every check needs its reference in TWINS"
    for name, check in CHECKS[lab].CHECKS.items():
        check(twins[name], seed=seed)
    assert capsys.readouterr().out.count("✓") == len(twins)


@pytest.mark.parametrize("lab, name", PER_CHECK, ids=[f"{lab}-{name}" for lab, name in PER_CHECK])
def test_not_implemented_is_explained(lab, name):
    stub = getattr(LAB_TESTS[lab], "STUBS", {}).get(name, _stub)   # a class where the exercise is one
    with pytest.raises(CheckFailed, match="is not implemented yet") as info:
        CHECKS[lab].CHECKS[name](stub)
    assert "Traceback" not in info.value.message


@pytest.mark.parametrize("lab", LABS)
def test_every_check_has_its_documented_mistakes(lab):
    mistakes = CHECKS[lab].MISTAKES
    assert set(mistakes) == set(CHECKS[lab].CHECKS)
    with np.errstate(all="ignore"):
        assert all(m.message and callable(m.fn) for ms in mistakes.values() for m in ms)
    assert all(len(ms) >= 3 for ms in mistakes.values()) and sum(map(len, mistakes.values())) >= 25
