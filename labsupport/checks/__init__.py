"""Self-checks for the labs: run a student's code, compare it with the reference, explain what is wrong.

* :mod:`labsupport.checks.core`     the pieces every check is written with (``call``, ``compare``, ``Mistake``,
  ``build``, ``probe``, ``CheckFailed``)
* :mod:`labsupport.checks.subject`  handles on the checked code (in this process or another)
* :mod:`labsupport.checks.wire`     the plain data that crosses between the two
* ``labsupport.checks.labNN``       each lab's checks, with the table of its typical mistakes (``MISTAKES``)

The core's names are importable from here too (``from labsupport.checks import call, compare, passed``), as
notebooks released before the core moved still do.
"""
from labsupport.checks.core import (  # noqa: F401
    CheckFailed,
    Mistake,
    build,
    call,
    call_with,
    candidates,
    compare,
    describe_value,
    error_hints,
    expect,
    expect_number,
    method,
    passed,
    probe,
    to_numpy,
)
from labsupport.device import torch_threads as _torch_threads

#: the thread limiter under the name older labs' checks used (``labsupport.device.torch_threads(1)``)
one_thread = _torch_threads(1)

__all__ = ["CheckFailed", "Mistake", "build", "call", "call_with", "candidates", "compare", "describe_value",
           "error_hints", "expect", "expect_number", "method", "passed", "probe", "to_numpy", "one_thread"]
