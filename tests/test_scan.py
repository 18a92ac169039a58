"""The static scan: each tampering pattern is found, honest answers raise nothing."""

import json

import pytest

from lossutils.grading.verify.scan import PATTERNS, Finding, scan_notebook, scan_source
from tests.conftest import ROOT


def _patterns(source):
    return {f.pattern for f in scan_source(source)}


@pytest.mark.parametrize(("source", "pattern"), [
    ("np.allclose = lambda *a, **k: True", "module-attribute-assignment"),
    ("import numpy\nnumpy.testing.assert_allclose = print", "module-attribute-assignment"),
    ("import numpy as n\nsetattr(n, 'isclose', None)", "module-attribute-assignment"),
    ("def f():\n    np.array_equal = max", "module-attribute-assignment"),
    ("import lossutils.checks as c\nc.check = print", "module-attribute-assignment"),
    ("del np.allclose", "module-attribute-assignment"),
    ("from lossutils import softmax", "reference-library"),
    ("import lossutils.classification", "reference-library"),
    ("m = __import__('loss' + 'utils')", "reference-library"),
    ("m = __import__(f'loss{\"\"}utils')", "import-machinery"),
    ("import importlib\nimportlib.import_module('lossutils')", "reference-library"),
    ("from importlib import import_module as im\nim('loss' 'utils')", "reference-library"),
    ("import sys\nsys.modules['numpy'].allclose = 1", "import-machinery"),
    ("import builtins\nbuiltins.abs = None", "import-machinery"),
    ("x = __builtins__", "import-machinery"),
    ("get_ipython().input_transformers_cleanup.append(f)", "ipython-internals"),
    ("ip = get_ipython()\nip.events.register('pre_run_cell', f)", "ipython-internals"),
    ("from IPython import get_ipython", "ipython-internals"),
    ("from scipy.special import softmax", "answer-library"),
    ("import scipy.special as ss", "answer-library"),
    ("import torch", "answer-library"),
    ("from sklearn.metrics import log_loss", "answer-library"),
    ("import jax.numpy as jnp", "answer-library"),
    ("open('/etc/passwd').read()", "file-access"),
    ("import pathlib", "file-access"),
    ("import shutil", "file-access"),
    ("import subprocess\nsubprocess.run(['ls'])", "process-access"),
    ("import ctypes", "process-access"),
    ("import os\nos.system('ls')", "process-access"),
    ("import socket", "network-access"),
    ("from urllib.request import urlopen", "network-access"),
    ("exec('x = 1')", "dynamic-code"),
    ("eval('1')", "dynamic-code"),
    ("code = compile('1', 's', 'eval')", "dynamic-code"),
    ("import sys\nsys.exit(0)", "exit"),
    ("import os\nos._exit(0)", "exit"),
    ("raise KeyboardInterrupt", "exit"),
    ("raise SystemExit(1)", "exit"),
    ("quit()", "exit"),
    ("import sys\nf = sys._getframe(1)", "introspection"),
    ("class E:\n    def __eq__(self, other):\n        return True", "introspection"),
    ("x = (1).__class__.__subclasses__()", "introspection"),
    ("!cat /etc/passwd", "magic"),
    ("%load_ext autoreload\nx = 1", "magic"),
    ("files = !ls", "magic"),
    ("def f(:\n", "syntax-error"),
    ("def svm_loss_naive(W, X, y, reg):\n    return svm_loss_vectorized(W, X, y, reg)",
     "naive-without-loop"),
])
def test_each_pattern_is_found(source, pattern):
    assert pattern in _patterns(source)


@pytest.mark.parametrize("source", [
    "def softmax(logits):\n    z = logits - logits.max(axis=-1, keepdims=True)\n"
    "    e = np.exp(z)\n    return e / e.sum(axis=-1, keepdims=True)",
    "def adam_step(w, grad, state, lr=0.001):\n    state = dict(state)\n"
    "    state['t'] = state['t'] + 1\n    return w - lr * grad, state",
    "import math\ndef f(x):\n    return math.log(x)",
    "def g(y, y_hat, beta):\n    return sp.log(2 * sp.pi) / 2 - sp.log(beta) / 2",
    "x = np.zeros(3)\nx[0] = 1.0\nx.shape = (3, 1)",
    "s = '%not a magic'\nt = '!nor this'",
])
def test_honest_code_raises_nothing(source):
    assert scan_source(source) == []


def test_finding_carries_cell_line_and_explanation():
    (finding,) = scan_source("x = 1\nimport torch", cell="softmax")
    assert finding == Finding("softmax", 2, "answer-library", "imports torch")
    assert finding.explanation == PATTERNS["answer-library"]
    assert json.loads(json.dumps(finding.to_plain()))["line"] == 2


def test_one_finding_per_line_and_pattern():
    findings = scan_source("import os\nos._exit(0)")
    assert [(f.line, f.pattern) for f in findings] == [(1, "file-access"), (2, "exit")]


def test_every_master_solution_is_clean():
    masters = sorted((ROOT / "solutions").glob("*/*.ipynb"))
    assert masters
    for path in masters:
        nb = json.loads(path.read_text(encoding="utf-8"))
        assert scan_notebook(nb) == [], path.name


def test_notebook_scan_follows_aliases_of_given_cells_and_skips_them():
    nb = {"cells": [
        {"cell_type": "code", "source": "import numpy as numb\nimport os",
         "metadata": {"nbgrader": {"grade_id": "setup", "solution": False}}},
        {"cell_type": "code", "source": ["numb.allclose", " = max"],
         "metadata": {"nbgrader": {"grade_id": "softmax", "solution": True}}},
        {"cell_type": "markdown", "source": "import torch", "metadata": {}},
        {"cell_type": "code", "source": "eval('2')", "metadata": {}},
        {"cell_type": "code", "source": 42, "metadata": None},
        "not a cell",
    ]}
    found = [(f.cell, f.line, f.pattern) for f in scan_notebook(nb)]
    assert found == [("softmax", 1, "module-attribute-assignment"),
                     ("cell 3", 1, "dynamic-code")]
    assert [f.cell for f in scan_notebook(nb, solution_ids=["setup"])] == ["setup", "cell 3"]
    assert [f.cell for f in scan_notebook(nb, solution_ids=[])] == ["cell 3"]


@pytest.mark.parametrize("nb", [None, [], {"cells": "x"}, {"cells": [None, 3]}])
def test_malformed_notebooks_scan_to_nothing(nb):
    assert scan_notebook(nb) == []


def test_the_reference_library_of_a_given_cell_is_flagged_where_a_solution_uses_it():
    # 06's setup cell imports lossutils; calling it on SymPy symbols would hand a derivation
    # step its answer, as calling it on arrays hands a function exercise its result.
    nb = {"cells": [
        {"cell_type": "code", "source": "import lossutils\nimport lossutils as lu\n"
                                        "from lossutils import kl_divergence\n"
                                        "from lossutils.checks import check",
         "metadata": {"nbgrader": {"grade_id": "setup", "solution": False}}},
        {"cell_type": "code",
         "source": "kl = kl_divergence([p, 1 - p], [q, 1 - q])\n"
                   "nll = lu.gaussian_nll_loss(y_hat, y, var=1 / beta)\n"
                   "m_k = lossutils.Adam(lr=eta).step(w, g)\ncheck('x', f)",
         "metadata": {"nbgrader": {"grade_id": "kl", "solution": True}}},
    ]}
    found = [(f.line, f.pattern, f.detail) for f in scan_notebook(nb)]
    assert found == [(1, "reference-library", "uses lossutils.kl_divergence"),
                     (2, "reference-library", "uses lossutils"),
                     (3, "reference-library", "uses lossutils")]
