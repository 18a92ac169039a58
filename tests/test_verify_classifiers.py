"""Verification of notebook 07 outside the kernel: functions passed as arguments.

``numerical_gradient`` receives a function made by the checker and ``train`` the student's own
loss and optimizer step, named in the master's test cell
(``check("train", train, loss_fn=softmax_loss_vectorized, step_fn=rmsprop_step)``). In the
sandbox the first is rebuilt from plain data and the others are looked up by name among the
student's definitions; the verdicts must be the ones the checker gives in the kernel.
"""

import copy
import json

import pytest

from lossutils.checks import StudentFunction, to_plain
from lossutils.grading.sandbox import Limits
from lossutils.grading.verify import CheckCall, check_calls, verify_submission
from lossutils.grading.verify.remote import validate_plain
from lossutils.grading.verify.scan import scan_source
from tests.conftest import ROOT, load_attacks

AID = "07-linear-classifiers"
MASTER = ROOT / "solutions" / AID / f"{AID}.ipynb"
RELEASE = ROOT / "course" / AID / f"{AID}.ipynb"
KEEP = {"setup", "softmax_loss_vectorized", "test_softmax_loss_vectorized", "numerical_gradient",
        "test_numerical_gradient", "rmsprop_step", "test_rmsprop_step", "train", "test_train"}

attacks = load_attacks()


NO_SHUFFLE = '''
def train(loss_fn, W0, X, y, step_fn, state, lr, reg, epochs, batch_size, seed=0):
    W, history = W0, []
    for _ in range(epochs):
        for start in range(0, len(y), batch_size):
            loss, dW = loss_fn(W, X[start:start + batch_size], y[start:start + batch_size], reg)
            W, state = step_fn(W, dW, state, lr)
            history.append(loss)
    return W, np.array(history)
'''

UPHILL = '''
def softmax_loss_vectorized(W, X, y, reg):
    n = len(y)
    s = X @ W
    s = s - s.max(axis=1, keepdims=True)
    p = np.exp(s) / np.exp(s).sum(axis=1, keepdims=True)
    loss = -np.log(p[np.arange(n), y]).mean() + reg * np.sum(W * W)
    p[np.arange(n), y] -= 1
    return loss, -(X.T @ p) / n + 2 * reg * W
'''


@pytest.fixture(scope="module")
def books():
    full = attacks.load(MASTER)
    master = copy.deepcopy(full)
    master["cells"] = [c for c in full["cells"]
                       if c["metadata"].get("nbgrader", {}).get("grade_id") in KEEP]
    return full, master, attacks.load(RELEASE)


def _verify(nb, master):
    limits = Limits(memory_bytes=2**30, cpu_seconds=60, wall_seconds=120, max_processes=16,
                    max_output_bytes=4_000_000)
    return verify_submission(nb, master, seed=31337, call_timeout=20, limits=limits)


def test_the_train_check_call_names_the_students_functions(books):
    full, _, _ = books
    calls = check_calls(full)["test_train"]
    uses = (("loss_fn", "softmax_loss_vectorized"), ("step_fn", "rmsprop_step"))
    assert calls == [CheckCall("train", "train", False, uses),
                     CheckCall("train", "train", True, uses)]


def test_functions_as_arguments_pass_the_plain_data_validation():
    from lossutils.checks import get_exercise

    for name in ("numerical_gradient", "train", "nesterov_step"):
        for case in get_exercise(name).cases():
            validate_plain(json.loads(json.dumps(to_plain(list(case.args)))))
            validate_plain(json.loads(json.dumps(to_plain(case.kwargs))))
    validate_plain(to_plain(StudentFunction("train")))
    with pytest.raises(ValueError, match="malformed function name"):
        validate_plain({"kind": "student_function", "name": 3})


@pytest.mark.grading
@pytest.mark.needs_bwrap
def test_honest_blank_and_wrong_submissions_of_07(books):
    full, master, release = books
    honest = _verify(attacks.submission(release, full), master)
    assert {k: (v.passed, v.error) for k, v in honest.items()} == {
        "test_softmax_loss_vectorized": (True, None), "test_numerical_gradient": (True, None),
        "test_rmsprop_step": (True, None), "test_train": (True, None)}
    blank = _verify(release, master)
    assert not any(v.passed for v in blank.values())
    unshuffled = _verify(attacks.submission(release, full, {"train": NO_SHUFFLE}), master)
    assert unshuffled["test_train"].diagnosis == "no_shuffle"
    assert unshuffled["test_softmax_loss_vectorized"].passed
    # train runs with the student's own loss: a gradient pointing uphill fails both.
    uphill = _verify(attacks.submission(release, full, {"softmax_loss_vectorized": UPHILL}),
                     master)
    assert uphill["test_softmax_loss_vectorized"].diagnosis == "grad_sign"
    assert uphill["test_train"].diagnosis == "low_accuracy"
    assert uphill["test_rmsprop_step"].passed


@pytest.mark.grading
@pytest.mark.needs_bwrap
def test_a_missing_helper_is_reported_by_name(books):
    full, master, release = books
    renamed = "def my_rmsprop(w, grad, state, lr, rho=0.9, eps=1e-8):\n    return w, state\n"
    done = _verify(attacks.submission(release, full, {"rmsprop_step": renamed}), master)
    assert not done["test_train"].passed
    assert done["test_train"].message.startswith("rmsprop_step is not defined")


@pytest.mark.parametrize(("source", "details"), [
    ("def f_naive(W):\n    return f_vectorized(W)", ["f_naive has no loop; f_naive calls "
                                                       "f_vectorized"]),
    ("def f_naive(W):\n    return W @ W", ["f_naive has no loop"]),
    ("def f_naive(W):\n    return sum(w for w in W)", []),
    ("def f_naive(W):\n    for w in W:\n        pass\n    return f_vectorized(W)",
     ["f_naive calls f_vectorized"]),
    ("def f_vectorized(W):\n    return f_naive(W)", ["f_vectorized calls f_naive"]),
    ("def f_vectorized(W):\n    return W @ W", []),
    ("def f_naive(W):\n    # YOUR CODE HERE\n    raise NotImplementedError()", []),
])
def test_the_scan_flags_naive_functions_without_loops(source, details):
    found = [f for f in scan_source(source, "cell") if f.pattern == "naive-without-loop"]
    assert [f.detail for f in found] == details


@pytest.mark.parametrize(("source", "details"), [
    ("def f_vectorized(W, X, y):\n    loss = 0.0\n    for i in range(len(y)):\n"
     "        loss += W[i]\n    return loss", ["f_vectorized loops (a for loop, line 3)"]),
    ("def f_vectorized(W):\n    return np.array([w * 2 for w in W])",
     ["f_vectorized loops (a list comprehension, line 2)"]),
    ("def f_vectorized(W):\n    i = 0\n    while i < 3:\n        i += 1\n    return W",
     ["f_vectorized loops (a while loop, line 3)"]),
    ("def f_vectorized(W):\n    return np.apply_along_axis(sum, 1, W)",
     ["f_vectorized loops (np.apply_along_axis, line 2)"]),
    ("def f_vectorized(W):\n    g = np.vectorize(lambda w: w)\n    return g(W)",
     ["f_vectorized loops (np.vectorize, line 2)"]),
    ("def f_vectorized(W, X):\n    S = X @ W\n    return S.max(axis=1)", []),
    ("def f_naive(W):\n    for w in W:\n        pass\n    return W", []),
    ("def f_vectorized(W):\n    # YOUR CODE HERE\n    raise NotImplementedError()", []),
])
def test_the_scan_flags_vectorized_functions_that_loop(source, details):
    found = [f for f in scan_source(source, "cell") if f.pattern == "vectorized-with-loop"]
    assert [f.detail for f in found] == details
