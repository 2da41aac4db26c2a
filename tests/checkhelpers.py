"""Helpers shared by the self-check tests (tests/test_checks_labNN.py)."""
import pytest

from labsupport.checks import CheckFailed


def fails_with(check, fn, *fragments):
    """Run ``check(fn)``; it must raise CheckFailed whose message contains every fragment. Returns the message."""
    with pytest.raises(CheckFailed) as info:
        check(fn)
    for fragment in fragments:
        assert fragment in str(info.value), f"expected {fragment!r} in:\n{info.value}"
    return str(info.value)


def not_implemented(*args, **kwargs):
    """What a student's untouched exercise does."""
    raise NotImplementedError()
