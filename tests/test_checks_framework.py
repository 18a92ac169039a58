"""The machinery of :mod:`lossutils.checks`: type checks, isolation, seeds, plain-data judging."""

import json
import os
import pickle
import subprocess
import sys
import warnings
from typing import ClassVar

import numpy as np
import pytest

from lossutils.checks import (
    CheckFailed,
    Outcome,
    check,
    exercises,
    from_plain,
    get_exercise,
    run_check,
    to_plain,
)
from lossutils.checks._core import SEED_ENV


def softmax(logits):
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def naive_softmax(logits):
    return np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)


def log_likelihood(probs):
    return np.sum(np.log(probs))


def adam_step(w, grad, state, lr=0.001, mu=0.9, rho=0.999, eps=1e-8):
    t = state["t"] + 1
    m = mu * state["m"] + (1 - mu) * grad
    r = rho * state["r"] + (1 - rho) * grad**2
    step = lr * (m / (1 - mu**t)) / (np.sqrt(r / (1 - rho**t)) + eps)
    return w - step, {"t": t, "m": m, "r": r}


def failure(name, fn, **kw) -> CheckFailed:
    with pytest.raises(CheckFailed) as info:
        check(name, fn, **kw)
    return info.value


# --------------------------------------------------------------------------- verdicts


def test_passing_check_prints_one_line_and_returns_none(capsys):
    assert check("softmax", softmax) is None
    n = len(get_exercise("softmax").cases())
    assert capsys.readouterr().out == f"softmax: {n}/{n} cases passed\n"


def test_check_failed_is_an_assertion_error_with_attributes():
    err = failure("softmax", naive_softmax)
    assert isinstance(err, AssertionError)
    assert err.exercise == "softmax"
    assert err.diagnosis == "overflow"
    assert "shift each row by its maximum" in err.message
    assert "expected:" in err.message
    assert "got:" in err.message


def test_the_grader_tag_is_in_the_exception_text_but_not_in_what_a_student_sees():
    err = failure("softmax", naive_softmax)
    # str() is what the kernel reports as the error's value, which the grader parses.
    assert str(err) == f"{err.message}\n[check: softmax; diagnosis: overflow]"
    assert "[check:" not in err.message
    assert "[check:" not in run_check("softmax", naive_softmax).message
    shown = err._render_traceback_()
    assert "CheckFailed" in shown[0]
    assert "\n".join(shown).endswith(err.message.splitlines()[-1])
    assert not any("[check:" in line for line in shown)
    copy = pickle.loads(pickle.dumps(err))
    assert (str(copy), copy.exercise, copy.diagnosis) == (str(err), "softmax", "overflow")


def test_ipython_shows_the_message_without_the_tag_or_the_checker_frames():
    # In a fresh process: an IPython shell replaces __main__ and the warning filters.
    cell = "from lossutils.checks import check\ncheck('softmax', lambda x: x * 0.5)"
    code = ("from IPython.core.interactiveshell import InteractiveShell\n"
            f"InteractiveShell.instance().run_cell({cell!r})")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout
    assert "CheckFailed" in shown
    assert "softmax: 0/13 cases passed" in shown
    assert "[check:" not in shown
    assert "_core.py" not in shown


def test_undiagnosed_failure_says_none():
    err = failure("softmax", lambda x: softmax(x) * 0.9)
    assert err.diagnosis is None
    assert str(err).endswith("\n[check: softmax; diagnosis: none]")
    assert "returned wrong values" in str(err)


def test_unknown_exercise_lists_known_ones():
    with pytest.raises(ValueError, match=r"unknown exercise 'sofmax'\. Did you mean 'softmax'\?"
                       r" Known exercises: log_likelihood, .*, train\.") as info:
        check("sofmax", softmax)
    assert all(name in str(info.value) for name in exercises())


def test_not_callable():
    err = failure("softmax", softmax(np.zeros((1, 2))))
    assert err.diagnosis == "not_callable"
    assert "expected your function, got an array of dtype float64 and shape (1, 2)" in str(err)


# --------------------------------------------------------------------------- return types


class AlwaysEqual:
    """Pretends to equal everything; records any attempt to use it as a number."""

    touched: ClassVar[list] = []

    def __eq__(self, other):
        self.touched.append("__eq__")
        return True

    __hash__ = object.__hash__

    def __array__(self, *args, **kwargs):
        self.touched.append("__array__")
        raise AssertionError("the checker must not convert a student's object")

    def __float__(self):
        self.touched.append("__float__")
        return 0.0

    def __repr__(self):
        self.touched.append("__repr__")
        return "AlwaysEqual()"


@pytest.mark.parametrize("name", ["softmax", "log_likelihood", "cross_entropy", "adam_step"])
def test_always_equal_object_is_rejected_untouched(name):
    AlwaysEqual.touched.clear()
    err = failure(name, lambda *args, **kwargs: AlwaysEqual())
    assert err.diagnosis == "wrong_type"
    assert "an object of type" in str(err)
    assert "AlwaysEqual" in str(err)
    assert AlwaysEqual.touched == []


def test_list_is_rejected():
    err = failure("softmax", lambda x: softmax(x).tolist())
    assert err.diagnosis == "wrong_type"
    assert "returned a list; expected a numpy array (np.ndarray) of shape" in str(err)


def test_python_float_where_array_due_is_rejected():
    err = failure("softmax", lambda x: 0.25)
    assert err.diagnosis == "wrong_type"
    assert "returned a Python float (0.25); expected a numpy array" in str(err)


def test_python_float_where_scalar_due_is_accepted(capsys):
    check("l1_loss", lambda p, t: float(np.sum(np.abs(p - t))))
    assert "cases passed" in capsys.readouterr().out


def test_integer_where_float_due_is_rejected():
    err = failure("bernoulli_mle", lambda o: int(np.sum(o)))
    assert err.diagnosis == "wrong_type"
    assert "an integer: check for integer division" in str(err)


def test_ndarray_subclass_is_rejected():
    err = failure("softmax", lambda x: np.ma.masked_array(softmax(x)))
    assert err.diagnosis == "wrong_type"
    assert "(a subclass of np.ndarray)" in str(err)


def test_numpy_scalar_impostor_is_rejected():
    class Impostor(np.float64):
        __module__ = "numpy"

        def item(self):
            raise AssertionError("the checker must not call the student's methods")

    err = failure("log_likelihood", lambda p: Impostor(np.sum(np.log(p))))
    assert err.diagnosis == "wrong_type"
    assert "an object of type numpy." in str(err)


def test_huge_integer_is_described_briefly():
    err = failure("bernoulli_mle", lambda o: 10**5000)
    assert "returned a Python int (an integer of more than 40 digits)" in str(err)


def test_wrong_shape_is_rejected():
    err = failure("softmax", lambda x: softmax(x)[..., :-1])
    assert err.diagnosis == "wrong_shape"
    assert "returned an array of shape (1, 3); expected shape (1, 4)." in str(err)


def test_float64_for_float32_input_is_rejected():
    err = failure("softmax", lambda x: softmax(x.astype(np.float64)))
    assert err.diagnosis == "wrong_dtype"
    assert "returned dtype float64 for float32 input" in str(err)


def test_integer_array_is_rejected():
    err = failure("l2_loss_grad", lambda p, t: np.round(p - t).astype(int))
    assert err.diagnosis == "wrong_dtype"
    assert "returned an array of dtype int64 for float64 input; expected floats (float64)." \
        in err.message
    assert "Hint: return floats, not integers" in err.message


def test_integer_input_is_named_as_such_and_gets_no_float32_hint():
    err = failure("bernoulli_mle", lambda o: np.float32(np.mean(o)))
    assert err.diagnosis == "wrong_dtype"
    assert "returned a float32 scalar for integer input; expected a float64 scalar." \
        in err.message
    assert "float64 input" not in err.message
    assert "float32 in, float32 out" not in err.message
    assert "Hint: do not lower the precision" in err.message


def test_integer_one_hot_is_told_to_return_floats():
    def one_hot_ints(labels, num_classes):
        if np.any((labels < 0) | (labels >= num_classes)):
            raise ValueError("label out of range")
        return np.eye(num_classes, dtype=int)[labels]

    err = failure("one_hot", one_hot_ints)
    assert "returned an array of dtype int64 for integer input; expected a float array." \
        in err.message
    assert "float32" not in err.message
    assert "Hint: return floats, not integers" in err.message


def test_the_first_failing_case_is_reported_with_the_diagnosis_of_a_later_one():
    # Wrong by 10% on the first case (no known mistake), the naive softmax elsewhere.
    def softmax_two_bugs(logits):
        if logits.shape == (1, 4):
            return softmax(logits) * 0.9
        return naive_softmax(logits)

    err = failure("softmax", softmax_two_bugs)
    assert "case 1 (FAU exercise: a row of four equally spaced logits) failed." in err.message
    assert err.diagnosis == "overflow"
    assert "Diagnosis (from case 2, FAU exercise: all logits 10000): exp overflowed" \
        in err.message


def test_a_warning_fails_only_where_the_contract_forbids_it(capsys):
    err = failure("log_likelihood", lambda p: np.sum(np.log(p)))
    assert err.diagnosis == "warns"
    assert "case 3 (a sample of probability exactly 0) failed." in err.message
    assert "RuntimeWarning: divide by zero encountered in log" in err.message

    def softmax_that_warns(logits):
        warnings.warn("just saying", UserWarning, stacklevel=1)
        return softmax(logits)

    check("softmax", softmax_that_warns)  # 03 states no rule about warnings
    assert "cases passed" in capsys.readouterr().out


def test_an_invalid_input_must_raise_the_named_exception():
    err = failure("one_hot", lambda y, c: np.eye(c)[y])
    assert err.diagnosis == "missing_error"
    assert "case 5 (a label of -1) failed." in err.message
    assert "your function returned an array of dtype float64 and shape (3, 3) on this input; " \
        "expected a ValueError: a label of -1 is outside [0, 3)" in err.message


def test_none_is_reported_as_missing_return():
    err = failure("softmax", lambda x: None)
    assert "returned None (did you forget `return`?)" in str(err)


# --------------------------------------------------------------------------- isolation


def noisy_softmax(logits):
    print("debugging to stdout")
    print("debugging to stderr", file=sys.stderr)
    os.write(2, b"written straight to file descriptor 2\n")
    warnings.warn("a student warning", UserWarning, stacklevel=1)
    np.exp(np.array([1000.0]))  # an overflow RuntimeWarning
    return softmax(logits)


def test_nothing_reaches_stderr_from_a_noisy_passing_function(capfd):
    check("softmax", noisy_softmax)
    out, err = capfd.readouterr()
    assert err == ""
    n = len(get_exercise("softmax").cases())
    assert out == f"softmax: {n}/{n} cases passed\n"


def test_nothing_reaches_stderr_from_a_noisy_failing_function(capfd):
    def noisy_naive(logits):
        noisy_softmax(logits)
        return naive_softmax(logits)

    err = failure("softmax", noisy_naive)
    assert capfd.readouterr() == ("", "")
    assert err.diagnosis == "overflow"
    assert "your function printed:\n    debugging to stdout\n    debugging to stderr\n" \
        "    written straight to file descriptor 2" in str(err)
    assert "RuntimeWarning: overflow encountered in exp" in str(err)


def test_checker_emits_no_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        failure("softmax", naive_softmax)
        failure("log_likelihood", lambda p: np.log(np.prod(p)))
    assert caught == []


def test_in_place_modification_is_caught():
    def softmax_in_place(logits):
        logits -= logits.max(axis=-1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=-1, keepdims=True)

    err = failure("softmax", softmax_in_place)
    assert err.diagnosis == "modifies_input"
    assert "your function modified its input logits in place." in str(err)


def test_student_exception_is_reported_without_traceback():
    def broken(probs):
        return 1 / 0

    err = failure("log_likelihood", broken)
    assert err.diagnosis == "raised"
    assert "your function raised ZeroDivisionError('division by zero') on this input." in str(err)
    assert "input:\n    probs = [0.7]" in str(err)
    assert "Traceback" not in str(err)
    assert err.__cause__ is None
    assert err.__suppress_context__


def test_blank_exercise_says_not_implemented():
    def softmax(logits):
        # YOUR CODE HERE
        raise NotImplementedError()

    err = failure("softmax", softmax)
    assert err.diagnosis == "not_implemented"
    assert "your function raised NotImplementedError('') on this input." in str(err)
    assert "Hint: replace `raise NotImplementedError()` with your implementation." in str(err)


def test_student_exit_is_caught():
    err = failure("log_likelihood", lambda p: sys.exit(3))
    assert "your function raised SystemExit('3')" in str(err)


def test_exception_in_a_later_step_names_the_step():
    def adam_fails_late(w, grad, state, **kw):
        if state["t"] == 1:
            raise KeyError("r_max")
        return adam_step(w, grad, state, **kw)

    err = failure("adam_step", adam_fails_late)
    assert "your function raised KeyError(\"'r_max'\") at step 2 on this input." in str(err)


def test_unusable_state_stops_the_sequence():
    def adam_with_a_list(w, grad, state, **kw):
        new_w, new_state = adam_step(w, grad, state, **kw)
        return new_w, {**new_state, "history": [new_w]}

    err = failure("adam_step", adam_with_a_list)
    assert err.diagnosis == "wrong_type"
    assert "step 2 of 2: what step 1 returned could not be passed to the next call" in str(err)


def test_symbols_without_assumptions_are_accepted(capsys):
    sp = pytest.importorskip("sympy")
    y, y_hat, beta = sp.symbols("y y_hat beta")  # as a student might define them globally

    def gaussian_nll_symbolic(*_):
        return sp.log(2 * sp.pi) / 2 - sp.log(beta) / 2 + beta * (y - y_hat) ** 2 / 2

    check("gaussian_nll_symbolic", gaussian_nll_symbolic)
    assert capsys.readouterr().out == "gaussian_nll_symbolic: 1/1 cases passed\n"


# --------------------------------------------------------------------------- seeds


def labels_of(cases):
    return [c.label for c in cases]


def arrays_of(cases):
    return [to_plain(list(c.args)) for c in cases]


def test_hidden_cases_follow_the_grading_seed(monkeypatch):
    ex = get_exercise("cross_entropy")
    monkeypatch.delenv(SEED_ENV, raising=False)
    default = arrays_of(ex.cases(hidden=True))
    visible = arrays_of(ex.cases(hidden=False))
    monkeypatch.setenv(SEED_ENV, "1")
    one = arrays_of(ex.cases(hidden=True))
    assert one == arrays_of(ex.cases(hidden=True))
    assert arrays_of(ex.cases(hidden=False)) == visible
    monkeypatch.setenv(SEED_ENV, "2")
    two = arrays_of(ex.cases(hidden=True))
    assert len({json.dumps(x) for x in (default, visible, one, two)}) == 4


def test_hidden_battery_is_larger_than_the_visible_one():
    for name in exercises():
        ex = get_exercise(name)
        if name != "gaussian_nll_symbolic":
            assert len(ex.cases(hidden=True)) > len(ex.cases(hidden=False)), name


@pytest.mark.parametrize("raw", ["abc", "1.5", "-3", "0x10"])
def test_malformed_grading_seed_is_a_clear_error(monkeypatch, raw):
    monkeypatch.setenv(SEED_ENV, raw)
    with pytest.raises(ValueError, match=f"the environment variable {SEED_ENV} must be a "
                       f"non-negative integer, got '{raw}'"):
        check("softmax", softmax, hidden=True)


def test_explicit_seed_overrides_everything(monkeypatch):
    monkeypatch.setenv(SEED_ENV, "5")
    ex = get_exercise("softmax")
    assert arrays_of(ex.cases(hidden=True, seed=9)) == arrays_of(ex.cases(hidden=True, seed=9))
    assert arrays_of(ex.cases(hidden=True, seed=9)) != arrays_of(ex.cases(hidden=True))


# --------------------------------------------------------------------------- plain data

PLAIN_CASES = [
    ("softmax", softmax),
    ("softmax", naive_softmax),
    ("softmax", lambda x: softmax(x).tolist()),
    ("softmax", lambda x: AlwaysEqual()),
    ("softmax", lambda x: softmax(x).astype(np.float64)),
    ("softmax", lambda x: np.ma.masked_array(softmax(x))),
    ("log_likelihood", log_likelihood),
    ("log_likelihood", lambda p: np.log(np.prod(p))),
    ("log_likelihood", lambda p: float(np.sum(np.log(p)))),
    ("bernoulli_mle", lambda o: int(np.sum(o))),
    ("kl_divergence", lambda p, q: np.sum(q * np.log(q / p), axis=-1)),
    ("momentum_step", lambda w, g, v, lr, mu: (w - lr * (mu * v + g), mu * v + g)),
    ("adam_step", adam_step),
    ("adam_step", lambda w, g, s, **kw: (adam_step(w, g, s, **kw)[0], [1, 2])),
]


@pytest.mark.parametrize(("name", "fn"), PLAIN_CASES)
@pytest.mark.parametrize("hidden", [False, True], ids=["visible", "hidden"])
def test_judging_plain_data_equals_judging_in_process(name, fn, hidden):
    in_process = run_check(name, fn, hidden=hidden)
    ex = get_exercise(name)
    # What a sandboxed process would ship back: JSON text.
    shipped = [json.dumps(ex.call(fn, case).to_plain()) for case in ex.cases(hidden=hidden)]
    outcomes = [Outcome.from_plain(json.loads(text)) for text in shipped]
    assert run_check(name, hidden=hidden, outcomes=outcomes) == in_process


def test_judge_accepts_a_rebuilt_array():
    ex = get_exercise("softmax")
    case = ex.cases()[0]
    rebuilt = from_plain(json.loads(json.dumps(to_plain(softmax(case.args[0])))))
    assert type(rebuilt) is np.ndarray
    assert rebuilt.dtype == case.args[0].dtype
    assert ex.judge(case, rebuilt).ok


def test_to_plain_keeps_only_the_type_of_unknown_objects():
    data = to_plain(AlwaysEqual())
    assert data["kind"] == "other"
    assert data["type"].endswith("test_checks_framework.AlwaysEqual")
    assert from_plain(data).type_name == data["type"]


def test_symbolic_answers_are_not_plain_data():
    sp = pytest.importorskip("sympy")
    y, y_hat, beta = sp.symbols("y y_hat beta")
    data = json.loads(json.dumps(to_plain(beta * (y - y_hat) ** 2 / 2)))
    ex = get_exercise("gaussian_nll_symbolic")
    verdict = ex.judge(ex.cases()[0], from_plain(data))
    assert verdict.diagnosis == "wrong_type"


def test_outcomes_must_match_the_cases():
    with pytest.raises(ValueError, match="softmax: got 1 outcomes for"):
        run_check("softmax", outcomes=[Outcome(None)])


# --------------------------------------------------------------------------- hand-made cases


def expected_for(name, label_start):
    ex = get_exercise(name)
    case = next(c for c in ex.cases() if c.label.startswith(label_start))
    return ex.expected(case)


def test_hand_made_cases_carry_the_known_answers():
    np.testing.assert_allclose(
        expected_for("softmax", "FAU exercise: a row"),
        [[0.21732724, 0.23779387, 0.26018794, 0.28469095]], rtol=1e-6)
    np.testing.assert_allclose(expected_for("softmax", "FAU exercise: all"), np.full((2, 4), 0.25))
    assert expected_for("kl_divergence", "KL([.9, .1]") == pytest.approx(0.368, abs=5e-4)
    assert expected_for("kl_divergence", "KL([.5, .5]") == pytest.approx(0.511, abs=5e-4)
    assert expected_for("log_likelihood", "the coin") == pytest.approx(np.log(0.7))
    assert expected_for("bernoulli_mle", "7 heads") == pytest.approx(0.7)
    assert expected_for("l2_loss", "hand-made: L([3], [1])") == pytest.approx(2.0)


def test_hand_made_optimizer_cases_carry_the_fau_numbers():
    def trajectory(name):
        ex = get_exercise(name)
        return [float(w[0]) for w, _ in ex.reference_steps(ex.cases()[0])]

    assert trajectory("momentum_step") == pytest.approx([0.0, -1.9])
    assert trajectory("adam_step") == pytest.approx([0.0, -0.9814473195614205], abs=1e-7)


# --------------------------------------------------------------------------- packaging


def test_import_is_cheap():
    code = (
        "import sys, lossutils.checks\n"
        "heavy = ['sympy', 'scipy', 'matplotlib', 'nbgrader']\n"
        "print([m for m in heavy if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
    assert out.stderr == ""
