"""``make bench`` (``python -m instructor.bench``): run every lab as a student would, and measure speed ratios.

* :mod:`instructor.bench.labs`     each notebook top to bottom in a fresh kernel: wall time, peak memory, and the
  lab's ``QUALITY`` dict checked against this bench's table of bars (:data:`~instructor.bench.labs.BARS`)
* :mod:`instructor.bench.micro`    time ratios measured in one run, interleaved: labsupport against PyTorch's own
  modules and against a nanoGPT-style GPT, each next to its target
* :mod:`instructor.bench.nanogpt`  that nanoGPT-style model, written for the bench
* :mod:`instructor.bench.__main__` the command line and the report

Instructor tooling: it is not part of the ``labsupport`` package students install (it needs ``psutil``, the
``instructor`` extra of pyproject.toml).
"""
