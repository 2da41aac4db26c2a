"""Lab 1's self-checks: the reference twins pass on any seed, an unfinished exercise is named as such.
(The mistakes and the mutants are in test_mutants.py.)"""
import numpy as np
import pytest

from labsupport import attention as ref
from labsupport.checks import lab01 as L
from labsupport.checks.core import CheckFailed

TWINS = {"softmax": ref.softmax_np, "attention_scores": ref.attention_scores_np, "apply_mask": ref.apply_mask_np,
         "scaled_dot_product_attention": ref.scaled_dot_product_attention_np, "causal_mask": ref.causal_mask_np,
         "padding_mask": ref.padding_mask_np, "masked_attention": ref.scaled_dot_product_attention_np}


@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_the_references_pass_every_check(seed, capsys):
    for name, check in L.CHECKS.items():
        check(TWINS[name], seed=seed)
    assert capsys.readouterr().out.count("✓") == len(L.CHECKS)


@pytest.mark.parametrize("name", list(L.CHECKS))
def test_not_implemented_is_explained(name):
    def stub(*args, **kwargs):
        raise NotImplementedError()

    with pytest.raises(CheckFailed, match="is not implemented yet") as info:
        L.CHECKS[name](stub)
    assert "Traceback" not in info.value.message


def test_every_documented_mistake_has_a_check():
    assert set(L.MISTAKES) == set(L.CHECKS)
    assert all(m.message and callable(m.fn) for ms in L.MISTAKES.values() for m in ms)
    with np.errstate(all="ignore"):
        assert sum(len(ms) for ms in L.MISTAKES.values()) >= 25
