"""A static look at the code a student wrote: what to flag for review, and when to run the tripwire pass.

Only the student's own code counts: code cells that are not in the released notebook (solutions, added cells,
edited cells). Two verdicts:

* ``suspicious``: the code reaches for the machinery around it (the caller's frames, IPython's hooks, other
  processes, the network, the environment, low-level memory). Such a submission is graded as usual and flagged
  for review; the sandbox has already made these attempts harmless.
* ``reaches``: the code could get at labsupport's reference of an exercise (it imports labsupport or another
  module, names a reference, or uses dynamic lookups such as ``getattr``, ``globals``, dunder attributes,
  IPython magics). The harness then grades the notebook a second time with those references replaced by
  tripwires, and flags every exercise whose result changes. Code that does none of this cannot call them, so
  honest submissions pay nothing for the second pass.
"""
from __future__ import annotations

import ast
import dataclasses
import re

import nbformat

#: modules a solution may import without triggering the tripwire pass
SAFE_IMPORTS = {"numpy", "torch", "math", "itertools", "functools", "collections", "typing", "dataclasses",
                "random", "string", "re", "operator", "statistics", "__future__"}
#: calls and names that look things up dynamically (a way to reach a reference without naming it)
DYNAMIC_NAMES = {"getattr", "setattr", "delattr", "vars", "globals", "locals", "eval", "exec", "compile",
                 "__import__", "open", "get_ipython", "breakpoint", "__builtins__", "__loader__", "__spec__"}
#: dunder attributes a class or module of a solution normally uses
SAFE_DUNDERS = {"__init__", "__call__", "__name__", "__doc__", "__len__", "__getitem__", "__repr__", "__str__"}
#: what counts as reaching for the machinery around the notebook, with the reason shown to the instructor
SUSPICIOUS = [
    (r"\b_getframe\b|\bf_back\b|\bf_globals\b|\bf_locals\b|\btb_frame\b|\bgi_frame\b|\bcurrentframe\b",
     "reads the caller's frames (sys._getframe / inspect)"),
    (r"set_custom_exc|input_transformers|ast_transformers|\bdisplayhook\b|\bexcepthook\b|events\.register",
     "hooks into IPython or the interpreter (exception handlers, input transformers, display hooks)"),
    (r"\bgc\.get_(objects|referrers|referents)\b|__globals__|__code__|__closure__|__builtins__|\bbuiltins\b",
     "reaches into other code's globals or code objects"),
    (r"\bsys\.modules\b|\bimportlib\b|\bpkgutil\b", "manipulates imported modules"),
    (r"\bctypes\b|\bcffi\b|\bmmap\b", "uses low-level memory access (ctypes, mmap)"),
    (r"\bsocket\b|\burllib\b|\bhttp\.client\b|\brequests\b", "opens network connections"),
    (r"\bsubprocess\b|\bos\.(system|popen|fork|exec\w*|spawn\w*|kill|killpg|setsid)\b|\bsignal\b|\bpty\b|"
     r"\bmultiprocessing\b", "starts or signals processes"),
    (r"/proc/|\bos\.environ\b|\bgetenv\b|\bexpanduser\b|\.ssh\b|gradebook", "reads the grading machine's files "
                                                                            "or environment"),
    (r"\bpickle\b|\bmarshal\b|\bdill\b|\bshelve\b", "loads serialized objects"),
]


@dataclasses.dataclass
class Verdict:
    suspicious: list[str]     #: reasons to flag the submission for review
    reaches: list[str]        #: reasons to run the tripwire pass


def student_code(nb: nbformat.NotebookNode, released: nbformat.NotebookNode) -> list[str]:
    """The sources of the code cells the student wrote or changed (not in the released notebook as is)."""
    shipped = {c.source.strip() for c in released.cells if c.cell_type == "code"}
    return [c.source for c in nb.cells if c.cell_type == "code" and c.source.strip() not in shipped]


def _python(source: str) -> str:
    """IPython syntax (magics, ``!cmd``) as Python, the way IPython would run it."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(source)
    except Exception:  # noqa: BLE001
        return source


def _defined_names(nb: nbformat.NotebookNode) -> set[str]:
    """Names the notebook itself defines (functions, classes, assignments): the student's own ``causal_mask`` is
    not labsupport's, even when the two share a name."""
    names = set()
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        try:
            tree = ast.parse(_python(c.source))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
    return names


def scan(nb: nbformat.NotebookNode, released: nbformat.NotebookNode, twins: list[str]) -> Verdict:
    """What the student's code in ``nb`` does that deserves review (``twins``: the lab's references,
    ``module:name``)."""
    suspicious, reaches = [], []
    twin_names = {t.rpartition(":")[2].rpartition(".")[2] for t in twins} - _defined_names(nb)
    for source in student_code(nb, released):
        text = _python(source)
        for pattern, reason in SUSPICIOUS:
            if re.search(pattern, text) and reason not in suspicious:
                suspicious.append(reason)
        if "get_ipython()" in text and source.lstrip().startswith(("%", "!")):
            reaches.append("uses IPython magics or shell commands")
        try:
            tree = ast.parse(text)
        except SyntaxError:
            reaches.append("has code that does not parse")
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                for name in names:
                    if name.split(".")[0] not in SAFE_IMPORTS:
                        reaches.append(f"imports {name}")
            elif isinstance(node, ast.Name) and (node.id in DYNAMIC_NAMES or node.id in twin_names):
                reaches.append(f"uses {node.id}")
            elif isinstance(node, ast.Attribute) and (
                    (node.attr.startswith("__") and node.attr not in SAFE_DUNDERS) or node.attr in twin_names
                    or node.attr in ("sys", "modules", "labsupport")):
                reaches.append(f"uses .{node.attr}")
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and (
                    "labsupport" in node.value or node.value in twin_names):
                reaches.append(f"names {node.value[:40]!r}")
    return Verdict(suspicious, sorted(set(reaches)))
