"""The exercises of the linear-classifier unit against correct and buggy student solutions.

Notebook 06's Nesterov, AdaGrad and RMSProp steps and notebook 07's losses with weight
gradients, numerical gradient and training loop. As in ``test_checks_exercises.py``, the
solutions are written the way a student would write them, independently of ``lossutils`` and of
the checker's own models: one correct function per exercise, written differently from the
master notebooks, and one buggy function per catalogued mistake, which must fail with that
mistake's diagnosis.
"""

import json
import re
from pathlib import Path

import numpy as np
import pytest

import lossutils
from lossutils.checks import (
    CheckFailed,
    GivenFunction,
    Outcome,
    StudentFunction,
    Uses,
    check,
    from_plain,
    get_exercise,
    run_check,
    to_plain,
)
from lossutils.checks._classifiers import ACCURACY_THRESHOLD, TRAINING, digits

NEW = ("nesterov_step", "adagrad_step", "rmsprop_step", "softmax_loss_naive",
       "softmax_loss_vectorized", "svm_loss_naive", "svm_loss_vectorized",
       "numerical_gradient", "train")


# --------------------------------------------------------------------------- correct solutions


def nesterov_step(w, grad_fn, v, lr, mu):
    ahead = w + mu * v
    new_v = mu * v - lr * grad_fn(ahead)
    return w + new_v, new_v


def adagrad_step(w, grad, state, lr, eps=1e-8):
    r = state["r"] + np.square(grad)
    return w - lr / (np.sqrt(r) + eps) * grad, dict(t=state["t"] + 1, r=r)


def rmsprop_step(w, grad, state, lr, rho=0.9, eps=1e-8):
    r = state["r"] * rho + np.square(grad) * (1 - rho)
    return w - lr / (np.sqrt(r) + eps) * grad, dict(t=state["t"] + 1, r=r)


def _student_softmax(W, X, y, reg, bug=None):
    """Softmax loss as a student writes it with loops, one bug switched on."""
    n, c = X.shape[0], W.shape[1]
    loss, dW = 0.0, np.zeros_like(W)
    scale = 1 if bug in ("sum_instead_of_mean", "loss_not_averaged") else n
    for i in range(n):
        scores = X[i] @ W
        if bug != "not_stabilised":
            scores = scores - scores.max()
        exp = np.exp(scores)
        probs = exp / exp.sum()
        if bug in ("not_stabilised", "log_of_underflowed_p"):
            loss += -np.log(probs[y[i]])
        else:
            loss += np.log(exp.sum()) - scores[y[i]]
        for j in range(c):
            coefficient = probs[j] - (j == y[i] and bug != "one_hot_not_subtracted")
            dW[:, j] += (-1 if bug == "grad_sign" else 1) * coefficient * X[i]
    loss /= scale
    dW /= 1 if bug in ("sum_instead_of_mean", "grad_not_averaged") else n
    loss_reg = {"reg_loss_missing": 0, "reg_counted_twice": 2, "reg_loss_halved": 0.5}.get(bug, 1)
    grad_reg = {"reg_grad_missing": 0, "reg_grad_not_doubled": 1, "reg_counted_twice": 4}
    P = W[:-1] if bug == "reg_skips_a_row" else W  # (the bias row left out)
    dW[:len(P)] += grad_reg.get(bug, 2) * reg * P
    return loss + loss_reg * reg * np.sum(P**2), dW


def _student_softmax_wrong_axis(W, X, y, reg):
    scores = X @ W
    e = np.exp(scores - scores.max(axis=0))
    p = e / e.sum(axis=0)
    n = len(y)
    loss = -np.mean(np.log(p[np.arange(n), y])) + reg * np.sum(W**2)
    p[np.arange(n), y] -= 1
    return loss, X.T @ p / n + 2 * reg * W


def softmax_loss_naive(W, X, y, reg):
    return _student_softmax(W, X, y, reg)


def softmax_loss_vectorized(W, X, y, reg):
    n = X.shape[0]
    z = X @ W
    z = z - np.max(z, axis=1)[:, None]
    log_norm = np.log(np.sum(np.exp(z), axis=1))
    loss = np.sum(log_norm - z[np.arange(n), y]) / n + reg * np.sum(W**2)
    one_hot = np.zeros_like(z)
    one_hot[np.arange(n), y] = 1
    dscores = np.exp(z - log_norm[:, None]) - one_hot
    return loss, X.T.dot(dscores) / n + 2 * reg * W


def _student_svm(W, X, y, reg, bug=None):
    """Multiclass SVM loss with loops, one bug switched on."""
    n, c = X.shape[0], W.shape[1]
    loss, dW = 0.0, np.zeros_like(W)
    for i in range(n):
        scores = X[i].dot(W)
        active = 0
        for j in range(c):
            if j == y[i] and bug == "true_class_counts_itself":
                dW[:, y[i]] -= X[i]  # its own margin, 1, taken as violated
            if j == y[i] and bug != "counts_true_class":
                continue
            if bug == "margin_sign":
                margin = scores[y[i]] - scores[j] + 1
            else:
                margin = scores[j] - scores[y[i]] + (0 if bug == "margin_missing" else 1)
            if margin > 0:
                loss += margin
                if j == y[i]:
                    continue
                sign = -1 if bug in ("margin_sign", "grad_sign") else 1
                dW[:, j] += sign * X[i]
                active += 1
                if bug == "true_class_gradient_sign":
                    dW[:, y[i]] += X[i]
                elif bug not in ("true_class_gradient_missing", "true_class_once_per_sample"):
                    dW[:, y[i]] -= sign * X[i]
        if bug == "true_class_once_per_sample" and active:
            dW[:, y[i]] -= X[i]
    loss /= {"sum_instead_of_mean": 1, "loss_not_averaged": 1,
             "averaged_over_classes": n * (c - 1)}.get(bug, n)
    dW /= {"sum_instead_of_mean": 1, "grad_not_averaged": 1,
           "averaged_over_classes": n * (c - 1)}.get(bug, n)
    loss_reg = {"reg_loss_missing": 0, "reg_counted_twice": 2, "reg_loss_halved": 0.5}.get(bug, 1)
    grad_reg = {"reg_grad_missing": 0, "reg_grad_not_doubled": 1, "reg_counted_twice": 4}
    P = W[:-1] if bug == "reg_skips_a_row" else W  # (the bias row left out)
    dW[:len(P)] += grad_reg.get(bug, 2) * reg * P
    return loss + loss_reg * reg * np.sum(P * P), dW


def svm_loss_naive(W, X, y, reg):
    return _student_svm(W, X, y, reg)


def svm_loss_vectorized(W, X, y, reg, at_kink=0.0):
    """``at_kink``: the subgradient chosen where a margin is exactly 0 (any of [0, 1])."""
    n = X.shape[0]
    scores = X @ W
    correct = np.take_along_axis(scores, y[:, None], axis=1)
    margins = scores - correct + 1
    margins[np.arange(n), y] = 0
    loss = np.maximum(margins, 0).sum() / n + reg * (W * W).sum()
    weights = np.where(margins > 0, 1.0, np.where(margins == 0, at_kink, 0.0))
    weights[np.arange(n), y] = 0
    weights[np.arange(n), y] = -weights.sum(axis=1)
    return loss, (X.T @ weights / n).astype(W.dtype) + 2 * reg * W


def numerical_gradient(f, x, h=1e-5):
    grad = np.empty(x.shape, dtype=x.dtype)
    flat = grad.reshape(-1)
    for i in range(x.size):
        step = np.zeros(x.size, dtype=x.dtype)
        step[i] = h
        step = step.reshape(x.shape)
        flat[i] = (f(x + step) - f(x - step)) / (2 * h)
    return grad


def _student_train(loss_fn, W0, X, y, step_fn, state, lr, reg, epochs, batch_size, seed=0,
                   bug=None):
    """The mini-batch loop, one bug switched on."""
    rng = np.random.default_rng({"not_reproducible": None, "seed_ignored": 42}.get(bug, seed))
    n = X.shape[0]
    W, first_state, losses = W0, state, []
    order = rng.permutation(n)
    for _ in range(1 if bug == "epochs_missing" else epochs):
        if bug == "same_order_every_epoch":
            order = np.random.default_rng(seed).permutation(n)
        elif bug == "no_shuffle":
            order = np.arange(n)
        elif bug == "with_replacement":
            order = rng.integers(0, n, size=n)
        else:
            order = rng.permutation(n)
        stop = n - n % batch_size if bug == "samples_skipped" else n
        size = n if bug == "full_batch" else batch_size
        epoch_losses = []
        for start in range(0, stop, size):
            batch = order[start:start + size]
            labels = y[start:start + size] if bug == "labels_misaligned" else y[batch]
            loss, dW = loss_fn(W, X[batch], labels, reg)
            if bug == "weights_not_updated":
                step_fn(W, dW, state, lr)
            elif bug == "state_not_carried":
                W, _ = step_fn(W, dW, first_state, lr)
            elif bug == "lr_not_passed":
                W, state = step_fn(W, dW, state, 1.0)
            else:
                W, state = step_fn(W, dW, state, lr)
            if bug == "history_after_step":  # a second evaluation, at the new weights
                loss, _ = loss_fn(W, X[batch], labels, reg)
            epoch_losses.append(float(loss) + (1.0 if bug == "history_values" else 0.0))
        if bug == "history_per_epoch":
            losses.append(np.mean(epoch_losses))
        else:
            losses.extend(epoch_losses)
    return W, np.asarray(losses)


def train(loss_fn, W0, X, y, step_fn, state, lr, reg, epochs, batch_size, seed=0):
    return _student_train(loss_fn, W0, X, y, step_fn, state, lr, reg, epochs, batch_size, seed)


CORRECT = {name: globals()[name] for name in NEW}
USES = {"train": {"loss_fn": softmax_loss_vectorized, "step_fn": rmsprop_step}}


# --------------------------------------------------------------------------- buggy solutions


def _nesterov(look, *, sign=1.0, lr_on=True, framework=False, old=False):
    def step(w, grad_fn, v, lr, mu):
        g = grad_fn(look(w, v, mu))
        new_v = mu * v - (lr if lr_on else 1.0) * g
        if framework:
            return w + mu * new_v - lr * g, new_v
        return (w + v if old else w + new_v), new_v

    return step


def _nesterov_flipped(w, grad_fn, v, lr, mu):
    v = mu * v + lr * grad_fn(w - mu * v)
    return w - v, v


def _adagrad_bug(bug):
    def step(w, grad, state, lr, eps=1e-8):
        r_old = state["r"]
        if bug == "decayed_like_rmsprop":
            r = 0.9 * r_old + 0.1 * grad**2
        elif bug == "abs_not_square":
            r = r_old + np.abs(grad)
        else:
            r = r_old + grad**2
        used = r_old if bug == "r_updated_after_step" else r
        if bug == "eps_inside_sqrt":
            denominator = np.sqrt(used + eps)
        elif bug == "missing_sqrt":
            denominator = used + eps
        else:
            denominator = np.sqrt(used) + eps
        return w - lr * grad / denominator, {"t": state["t"] + 1, "r": r}

    return step


def _rmsprop_bug(bug):
    def step(w, grad, state, lr, rho=0.9, eps=1e-8):
        r_old, t = state["r"], state["t"] + 1
        if bug == "no_decay":
            r = r_old + grad**2
        elif bug == "rho_swapped":
            r = (1 - rho) * r_old + rho * grad**2
        else:
            r = rho * r_old + (1 - rho) * grad**2
        used = r_old if bug == "r_updated_after_step" else r
        if bug == "bias_corrected":
            used = used / (1 - rho**t)
        if bug == "eps_inside_sqrt":
            denominator = np.sqrt(used + eps)
        elif bug == "missing_sqrt":
            denominator = used + eps
        else:
            denominator = np.sqrt(used) + eps
        return w - lr * grad / denominator, {"t": t, "r": r}

    return step


def _bug(fn, bug):
    def buggy(*args):
        return fn(*args, bug=bug)

    return buggy


def _one_sided(f, x, h=1e-5):
    grad = np.zeros_like(x)
    base = f(x)
    for i in np.ndindex(x.shape):
        shifted = x.copy()
        shifted[i] += h
        grad[i] = (f(shifted) - base) / h
    return grad


def _central(f, x, h, *, divide=2.0, sign=1.0):
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[i] += h
        minus[i] -= h
        grad[i] = sign * (f(plus) - f(minus)) / (divide * h)
    return grad


def _not_restored(f, x, h=1e-5):
    x = x.copy()  # the caller's x stays intact: only the later differences are wrong
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        x[i] += h
        plus = f(x)
        x[i] -= 2 * h
        grad[i] = (plus - f(x)) / (2 * h)
    return grad


def _rows(f, x, h=1e-5):
    grad = np.zeros_like(x)
    for i in range(len(x)):
        plus, minus = x.copy(), x.copy()
        plus[i] += h
        minus[i] -= h
        grad[i] = (f(plus) - f(minus)) / (2 * h)
    return grad


def _in_place_restored_by_arithmetic(f, x, h=1e-5):
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        x[i] += h
        plus = f(x)
        x[i] -= 2 * h
        grad[i] = (plus - f(x)) / (2 * h)
        x[i] += h  # rounding: x[i] + h - 2h + h is not always x[i]
    return grad


SOFTMAX_BUGS = ("not_stabilised", "log_of_underflowed_p", "one_hot_not_subtracted",
                "reg_grad_missing", "reg_grad_not_doubled", "reg_loss_missing",
                "reg_counted_twice", "reg_loss_halved", "sum_instead_of_mean",
                "grad_not_averaged", "loss_not_averaged", "grad_sign", "reg_skips_a_row")
SVM_BUGS = ("counts_true_class", "margin_sign", "margin_missing", "true_class_gradient_missing",
            "true_class_counts_itself", "true_class_gradient_sign", "true_class_once_per_sample",
            "averaged_over_classes", "reg_skips_a_row",
            "reg_grad_missing", "reg_grad_not_doubled", "reg_loss_missing",
            "reg_counted_twice", "reg_loss_halved", "sum_instead_of_mean", "grad_not_averaged",
            "loss_not_averaged", "grad_sign")


def _svm_margins_not_masked(W, X, y, reg):
    """Vectorised, with the true class's own margin of 1 left in the loss and the counts."""
    n = X.shape[0]
    scores = X @ W
    margins = np.maximum(0, scores - scores[np.arange(n), y][:, None] + 1)
    counts = (margins > 0).astype(W.dtype)
    counts[np.arange(n), y] = -counts.sum(axis=1)
    return margins.sum() / n + reg * np.sum(W * W), X.T @ counts / n + 2 * reg * W


def _svm_counts_itself(W, X, y, reg):
    """Vectorised, the loss right (minus the true class's 1) but its column counting itself."""
    n = X.shape[0]
    scores = X @ W
    margins = np.maximum(0, scores - scores[np.arange(n), y][:, None] + 1)
    counts = (margins > 0).astype(W.dtype)
    counts[np.arange(n), y] = -counts.sum(axis=1)
    loss = margins.sum() / n - 1 + reg * np.sum(W * W)
    return loss, X.T @ counts / n + 2 * reg * W

BUGGY = [
    ("nesterov_step", "gradient_at_w", _nesterov(lambda w, v, mu: w)),
    ("nesterov_step", "lookahead_without_mu", _nesterov(lambda w, v, mu: w + v)),
    ("nesterov_step", "framework_form", _nesterov(lambda w, v, mu: w, framework=True)),
    ("nesterov_step", "velocity_sign", _nesterov_flipped),
    ("nesterov_step", "old_velocity", _nesterov(lambda w, v, mu: w + mu * v, old=True)),
    ("nesterov_step", "lr_ignored", _nesterov(lambda w, v, mu: w + mu * v, lr_on=False)),
    *[("adagrad_step", bug, _adagrad_bug(bug)) for bug in (
        "decayed_like_rmsprop", "eps_inside_sqrt", "missing_sqrt", "r_updated_after_step",
        "abs_not_square")],
    *[("rmsprop_step", bug, _rmsprop_bug(bug)) for bug in (
        "no_decay", "rho_swapped", "bias_corrected", "eps_inside_sqrt", "missing_sqrt",
        "r_updated_after_step")],
    *[(name, bug, _bug(_student_softmax, bug)) for bug in SOFTMAX_BUGS
      for name in ("softmax_loss_naive", "softmax_loss_vectorized")],
    ("softmax_loss_vectorized", "wrong_axis", _student_softmax_wrong_axis),
    ("softmax_loss_naive", "wrong_axis", _student_softmax_wrong_axis),
    *[(name, bug, _bug(_student_svm, bug)) for bug in SVM_BUGS
      for name in ("svm_loss_naive", "svm_loss_vectorized")],
    ("svm_loss_vectorized", "counts_true_class", _svm_margins_not_masked),
    ("svm_loss_vectorized", "true_class_counts_itself", _svm_counts_itself),
    ("numerical_gradient", "one_sided", _one_sided),
    ("numerical_gradient", "not_halved", lambda f, x, h=1e-5: _central(f, x, h, divide=1.0)),
    ("numerical_gradient", "sign_flipped", lambda f, x, h=1e-5: _central(f, x, h, sign=-1.0)),
    ("numerical_gradient", "not_restored", _not_restored),
    ("numerical_gradient", "rows_not_elements", _rows),
    ("numerical_gradient", "ignores_h", lambda f, x, h=1e-5: _central(f, x, 1e-3)),
    ("numerical_gradient", "ignores_h", lambda f, x, h=1e-5: _central(f, x, 1.0)),
    ("numerical_gradient", "modifies_input", _in_place_restored_by_arithmetic),
]

TRAIN_BUGS = ("weights_not_updated", "state_not_carried", "labels_misaligned", "no_shuffle",
              "same_order_every_epoch", "samples_skipped", "with_replacement", "full_batch",
              "lr_not_passed", "history_per_epoch", "history_values", "not_reproducible",
              "seed_ignored", "history_after_step", "epochs_missing")


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("hidden", [False, True], ids=["visible", "hidden"])
@pytest.mark.parametrize("name", NEW)
def test_correct_solution_passes(name, hidden, capsys):
    check(name, CORRECT[name], hidden=hidden, **USES.get(name, {}))
    out = capsys.readouterr()
    n = len(get_exercise(name).cases(hidden=hidden))
    assert out.out == f"{name}: {n}/{n} cases passed\n"
    assert out.err == ""


@pytest.mark.parametrize("seed", ["1", "987654321"])
@pytest.mark.parametrize("name", NEW)
def test_correct_solution_passes_for_any_grading_seed(name, seed, monkeypatch, capsys):
    monkeypatch.setenv("LOSSUTILS_GRADING_SEED", seed)
    check(name, CORRECT[name], hidden=True, **USES.get(name, {}))
    assert capsys.readouterr().out.endswith("cases passed\n")


def _diagnosed(name, diagnosis, fn, hidden=False, **uses):
    with pytest.raises(CheckFailed) as info:
        check(name, fn, hidden=hidden, **uses)
    assert info.value.diagnosis == diagnosis, str(info.value)
    message = str(info.value)
    assert message.endswith(f"[check: {name}; diagnosis: {diagnosis}]")
    mistakes = {m.id: m.message for m in get_exercise(name).mistakes}
    if diagnosis in mistakes:
        assert f"Diagnosis: {mistakes[diagnosis]}" in message
    return message


@pytest.mark.parametrize(
    ("name", "diagnosis", "fn"),
    [pytest.param(*row, id=f"{row[0]}-{row[1]}") for row in BUGGY],
)
def test_buggy_solution_is_diagnosed(name, diagnosis, fn):
    _diagnosed(name, diagnosis, fn)


@pytest.mark.parametrize(
    ("name", "diagnosis", "fn"),
    [pytest.param(*row, id=f"{row[0]}-{row[1]}") for row in BUGGY[::5]],
)
def test_buggy_solution_is_diagnosed_on_hidden_cases(name, diagnosis, fn):
    _diagnosed(name, diagnosis, fn, hidden=True)


@pytest.mark.parametrize("bug", TRAIN_BUGS)
def test_buggy_training_loop_is_diagnosed(bug):
    def buggy(*args, **kwargs):
        return _student_train(*args, **kwargs, bug=bug)

    _diagnosed("train", bug, buggy, **USES["train"])


def test_training_with_a_wrong_loss_gradient_is_low_accuracy():
    def ascent(W, X, y, reg):
        loss, dW = softmax_loss_vectorized(W, X, y, reg)
        return loss, -dW

    message = _diagnosed("train", "low_accuracy", train, loss_fn=ascent,
                         step_fn=rmsprop_step)
    assert "held-out digits" in message


@pytest.mark.parametrize("name", NEW)
def test_every_catalogued_mistake_has_a_buggy_solution(name):
    covered = {d for n, d, _ in BUGGY if n == name}
    if name == "train":
        covered = {*TRAIN_BUGS, "low_accuracy"}
    assert {m.id for m in get_exercise(name).mistakes} <= covered
    assert len(get_exercise(name).mistakes) >= 5


def test_train_diagnoses_name_the_mistake_without_dictating_the_loop():
    for mistake in get_exercise("train").mistakes:
        for line_of_code in ("= step_fn(", "perm[", "range(0, N"):
            assert line_of_code not in mistake.message, mistake.id


# The gradients of notebook 07 as its master writes them (LaTeX in the model answers, numpy in
# the solutions), in the normal form of _formula_text: the students derive these.
GRADIENT_FORMS = (
    "X^T(P-Y)",               # the softmax's dW over the batch
    "x_i^T(p_i-y_i)",         # ... and for one sample
    "p_{ij}-[j=y_i]",         # ... entry by entry
    "2regW",                  # the penalty's part, in LaTeX (2 lambda W) and in code
    "X^TG",                   # the SVM's dW over the batch
    "[m_{ij}>0]",             # the indicator that builds G
    "G_{iy_i}=-\\sum",        # the true class's entry of G
    "=-G.sum(axis=1)",        # ... in code
    "onceperviolatedmargin",  # ... in words
)
ROOT = Path(__file__).resolve().parents[1]


def _formula_text(text: str) -> str:
    """LaTeX, numpy and plain-text formulas in one form: no spaces, no typesetting, no
    multiplication signs, the transpose as ^T and lambda as reg."""
    for latex in ("\\mathbf", "\\bigl", "\\bigr", "\\Bigl", "\\Bigr", "\\left", "\\right",
                  "\\,", "\\;", "$"):
        text = text.replace(latex, "")
    text = text.replace("\\top", "T").replace("\\lambda", "reg").replace("*", "")
    return re.sub(r"\s+", "", text)


def _notebook_07(folder: str) -> str:
    """The text of notebook 07 in ``folder`` (solutions or course): every cell and its id."""
    path = ROOT / folder / "07-linear-classifiers" / "07-linear-classifiers.ipynb"
    cells = json.loads(path.read_text("utf-8"))["cells"]
    return "\n".join(c.get("id", "") + "\n" + "".join(c["source"]) for c in cells)


def test_what_students_read_leaves_the_gradients_to_derive():
    master = _formula_text(_notebook_07("solutions"))
    assert [f for f in GRADIENT_FORMS if f not in master] == []  # the forms are the master's
    documents = [ROOT / "course" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    read = {"the release": _notebook_07("course"),
            **{p.relative_to(ROOT).as_posix(): p.read_text("utf-8") for p in documents}}
    for name in ("softmax_loss_naive", "softmax_loss_vectorized", "svm_loss_naive",
                 "svm_loss_vectorized", "numerical_gradient"):
        exercise = get_exercise(name)
        read[f"the diagnoses of {name}"] = "\n".join(
            [m.message for m in exercise.mistakes] + [exercise.modified_advice or ""])
    found = [(where, form) for where, text in read.items() for form in GRADIENT_FORMS
             if form in _formula_text(text)]
    assert found == []


def test_train_check_names_the_functions_it_needs():
    with pytest.raises(ValueError, match=r"check\('train', \.\.\.\) takes exactly "
                                         r"loss_fn=\.\.\., step_fn=\.\.\., got none"):
        check("train", train)
    with pytest.raises(ValueError, match="takes no other functions, got loss_fn"):
        check("softmax_loss_vectorized", softmax_loss_vectorized, loss_fn=train)


def test_train_may_pass_arguments_to_loss_fn_and_step_fn_by_name(capsys):
    def by_name(loss_fn, W0, X, y, step_fn, state, lr, reg, epochs, batch_size, seed=0):
        rng = np.random.default_rng(seed)
        W, losses = W0, []
        for _ in range(epochs):
            order = rng.permutation(len(y))
            for start in range(0, len(y), batch_size):
                idx = order[start:start + batch_size]
                loss, dW = loss_fn(W, X[idx], y[idx], reg=reg)
                W, state = step_fn(W, dW, state, lr=lr)
                losses.append(loss)
        return W, np.array(losses)

    check("train", by_name, **USES["train"])
    assert "cases passed" in capsys.readouterr().out


@pytest.mark.parametrize("style", ["index array shuffled in place", "np.random.seed"])
def test_other_seeded_shuffles_pass(style, capsys):
    def seeded(loss_fn, W0, X, y, step_fn, state, lr, reg, epochs, batch_size, seed=0):
        rng = np.random.default_rng(seed)
        if style == "np.random.seed":
            np.random.seed(seed)  # noqa: NPY002 - the legacy global generator, seeded, passes
        order, W, losses = np.arange(len(y)), W0, []
        for _ in range(epochs):
            if style == "np.random.seed":
                order = np.random.permutation(len(y))  # noqa: NPY002
            else:
                rng.shuffle(order)
            for start in range(0, len(y), batch_size):
                idx = order[start:start + batch_size]
                loss, dW = loss_fn(W, X[idx], y[idx], reg)
                W, state = step_fn(W, dW, state, lr)
                losses.append(loss)
        return W, np.array(losses)

    check("train", seeded, **USES["train"])
    assert "cases passed" in capsys.readouterr().out


def test_a_given_function_keeps_its_parameters_when_called_by_name():
    loss_fn = GivenFunction("probe_loss", labels=np.array([0, 1]))
    W, X, y = np.zeros((2, 3)), np.eye(2), np.array([0, 1])
    assert loss_fn(W, X, y, reg=0.5)[0] == loss_fn(W, X, y, 0.5)[0] == 3.5
    with pytest.raises(TypeError, match="multiple values for keyword argument 'labels'"):
        loss_fn(W, X, y, 0.5, labels=np.array([1, 0]))


def test_x_restored_by_arithmetic_is_told_to_restore_the_saved_value():
    message = _diagnosed("numerical_gradient", "modifies_input", _in_place_restored_by_arithmetic)
    assert "your function modified its input x in place." in message
    assert "Hint: x must be unchanged afterwards: restore x[k] from its saved value" in message


def test_a_float64_gradient_for_float32_input_is_told_where_float64_comes_from():
    def eye_one_hot(W, X, y, reg):
        n, c = X.shape[0], W.shape[1]
        z = X @ W
        z = z - z.max(axis=1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        Y = np.eye(c)[y]  # float64 whatever W is
        loss = -np.sum(Y * log_p) / n + reg * np.sum(W * W)
        return loss, X.T @ (np.exp(log_p) - Y) / n + 2 * reg * W

    result = run_check("softmax_loss_vectorized", eye_one_hot)
    assert result.diagnosis == "wrong_dtype"
    assert "dW returned dtype float64 for float32 input" in result.message
    assert "Hint: float32 in, float32 out: an array you create" in result.message


def test_a_pair_returned_as_a_list_is_told_to_return_a_tuple():
    result = run_check("svm_loss_naive", lambda W, X, y, r: list(svm_loss_naive(W, X, y, r)))
    assert "returned a list; expected a tuple (loss, dW)." in result.message
    assert "Hint: return both results as one tuple: return loss, dW." in result.message


def test_a_state_without_its_counter_is_told_to_keep_the_keys():
    def no_counter(w, grad, state, lr, rho=0.9, eps=1e-8):
        r = rho * state["r"] + (1 - rho) * grad**2
        return w - lr * grad / (np.sqrt(r) + eps), {"r": r}

    result = run_check("rmsprop_step", no_counter)
    assert "the returned state has no key 't'; keep the keys ['t', 'r']." in result.message
    assert "Hint: return the new state as a new dict holding every key" in result.message
    assert "numpy array" not in result.message


def test_a_frozen_counter_is_explained_without_a_bias_correction():
    def frozen(w, grad, state, lr, eps=1e-8):
        r = state["r"] + grad**2
        return w - lr * grad / (np.sqrt(r) + eps), {"t": state["t"], "r": r}

    result = run_check("adagrad_step", frozen)
    assert "state['t'] is 0 after 1 step(s); expected 1: t counts the calls" in result.message
    assert "bias" not in result.message  # AdaGrad has none


# --------------------------------------------------------------------------- references


def test_loss_references_match_lossutils_and_finite_differences():
    rng = np.random.default_rng(0)
    W, X = rng.normal(size=(4, 3)), rng.normal(size=(6, 4))
    y, reg = np.array([0, 2, 1, 1, 0, 2]), 0.3
    for name, data_loss in (("softmax_loss_vectorized", lossutils.cross_entropy),
                            ("svm_loss_vectorized", lossutils.multiclass_hinge_loss)):
        reference = get_exercise(name).reference
        loss, dW = reference(W, X, y, reg)
        assert loss == pytest.approx(data_loss(X @ W, y) + reg * np.sum(W**2), rel=1e-12)
        numeric = lossutils.numerical_gradient(lambda w, r=reference: r(w, X, y, reg)[0], W)
        np.testing.assert_allclose(dW, numeric, rtol=1e-6, atol=1e-8)


def test_nesterov_reference_is_lossutils_nesterov_in_the_lecture_coordinates():
    # lossutils.Nesterov iterates the look-ahead point w~ = w + mu v of the lecture's w.
    ex = get_exercise("nesterov_step")
    case = ex.cases()[1]
    w0, steps = case.args
    grad_fn, lr, mu = case.kwargs["grad_fn"], case.kwargs["lr"], case.kwargs["mu"]
    opt = lossutils.Nesterov(lr=lr, momentum=mu)
    ahead = w0.copy()
    for (w, state), _ in zip(ex.reference_steps(case), steps, strict=True):
        ahead = opt.step(ahead, grad_fn(ahead))
        np.testing.assert_allclose(ahead - mu * opt.state["v"], w, rtol=1e-12)
        np.testing.assert_allclose(opt.state["v"], state["v"], rtol=1e-12)


def test_numerical_gradient_reference_is_close_to_the_analytic_gradient():
    ex = get_exercise("numerical_gradient")
    f, x = ex.cases()[0].args  # sum(x^3) at [1, -2]
    np.testing.assert_allclose(ex.expected(ex.cases()[0]), 3 * x**2, rtol=1e-8)
    assert f(x) == pytest.approx(-7.0)


@pytest.mark.parametrize("at_kink", [0.0, 0.5, 1.0])
def test_any_subgradient_is_accepted_at_an_exact_kink(at_kink, capsys):
    def svm(W, X, y, reg):
        return svm_loss_vectorized(W, X, y, reg, at_kink=at_kink)

    check("svm_loss_vectorized", svm)
    assert "cases passed" in capsys.readouterr().out


def test_a_value_outside_the_subdifferential_is_refused():
    def svm(W, X, y, reg):
        return svm_loss_vectorized(W, X, y, reg, at_kink=2.0)

    result = run_check("svm_loss_vectorized", svm)
    assert not result.passed
    assert "exactly on the margin" in result.message


# --------------------------------------------------------------------------- plain data


def test_given_and_student_functions_travel_as_plain_data():
    f = GivenFunction("smooth_scalar", cubic=np.ones(2), freq=np.ones(2),
                      quad=np.eye(2), lin=np.zeros(2))
    rebuilt = from_plain(json.loads(json.dumps(to_plain((f, StudentFunction("loss"))))))
    assert rebuilt[0] == f
    assert rebuilt[0] is not f
    x = np.array([0.5, -1.0])
    assert rebuilt[0](x) == f(x)
    assert rebuilt[1] == StudentFunction("loss")
    data = json.loads(json.dumps(to_plain([StudentFunction("train")])))
    assert from_plain(data, resolve={"train": train}.get) == [train]


def test_unknown_formulas_are_refused():
    with pytest.raises(ValueError, match="unknown formula 'rm -rf'"):
        GivenFunction("rm -rf")
    data = to_plain(GivenFunction("probe_step"))
    data["formula"] = "__import__"
    assert type(from_plain(data)).__name__ == "Opaque"


@pytest.mark.parametrize("name", NEW)
def test_judging_plain_data_equals_judging_in_process(name):
    ex = get_exercise(name)
    fn = CORRECT[name]
    uses = USES.get(name)
    bug = [row[2] for row in BUGGY if row[0] == name][:1]
    for candidate in [fn, *bug]:
        in_process = run_check(name, candidate, uses=uses)
        shipped = [json.dumps(ex.call(candidate, case, uses).to_plain()) for case in ex.cases()]
        outcomes = [Outcome.from_plain(json.loads(text)) for text in shipped]
        assert run_check(name, outcomes=outcomes) == in_process


def test_the_accuracy_case_keeps_its_test_split_from_the_student():
    case = get_exercise("train").cases()[-1]
    X_train, y_train = case.args[2], case.args[3]
    X_test, y_test = case.test
    assert type(case.args[0]) is Uses
    assert type(case.args[4]) is Uses
    assert len(y_train) + len(y_test) == len(digits()[1])
    assert X_train.shape == (len(y_train), 65)
    assert X_test.shape == (len(y_test), 65)
    assert case.kwargs["lr"] == TRAINING["lr"]


def test_a_correct_loop_clears_the_accuracy_threshold_on_several_splits():
    ex = get_exercise("train")
    for seed in range(3):
        case = ex.cases(hidden=True, seed=seed)[-1]
        W, history = train(softmax_loss_vectorized, *case.args[1:4], rmsprop_step,
                           case.args[5], **case.kwargs)
        X_test, y_test = case.test
        accuracy = np.mean(np.argmax(X_test @ W, axis=1) == y_test)
        assert accuracy >= ACCURACY_THRESHOLD
        assert history[-10:].mean() < history[:10].mean()
