"""Sample submissions generated from the masters, with the outcome each one must get.

The demo and the tests grade these; they are generated on every run (never committed), so they
cannot go stale when a master changes. For every assignment the generator writes, in nbgrader's
submitted layout ``<out>/<student>/<assignment>/<notebook>.ipynb``:

``correct``          the release with the master's solutions typed in, a written answer filled in
``untouched``        the release exactly as handed out
``mistake-1/2``      correct except one function, replaced by a realistic mistake from the
                     checkers' catalogue (naive softmax, missing 1/2 in L2, KL arguments swapped...)
``corrupt-json``     the release truncated halfway, as an interrupted upload leaves it
``infinite-loop``    correct, but the first exercise starts with ``while True: pass``
``kernel-dies``      correct, but the first exercise starts with ``os._exit(1)``

and, with ``extras=True``: ``deleted-test-cell``, ``edited-test-cell``, ``invalid-utf8`` and
``missing-notebook``. :func:`expected_outcome` derives each sample's score from the master's
points (which exercises a broken function costs, through the names the cells use), never from a
grading run.

Run ``python -m lossutils.grading.samples OUT [ASSIGNMENT ...]`` to write them without grading.
"""

from __future__ import annotations

import ast
import copy
import os
import re
import sys

__all__ = ["MISTAKES", "expected_outcome", "generate_samples", "master_exercises"]

#: Realistic mistakes, by exercise id (docs/exercises.md): (mistake id, solution cell source).
#: Each one is wrong on ordinary inputs, so it must fail its check whatever else the check tests.
MISTAKES = {
    "negative_log_likelihood": (
        "mean-instead-of-sum",
        (
            "def negative_log_likelihood(probs):\n"
            "    # mistake: the lecture's NLL is a sum over samples, not a mean\n"
            "    return -np.mean(np.log(probs))\n"
        ),
    ),
    "bernoulli_mle": (
        "probability-of-tails",
        (
            "def bernoulli_mle(outcomes):\n"
            "    # mistake: estimates p(tails) instead of p(heads)\n"
            "    return 1.0 - np.mean(outcomes)\n"
        ),
    ),
    "l2_loss": (
        "missing-half",
        (
            "def l2_loss(pred, target):\n"
            "    # mistake: the Gaussian derivation gives 1/2 of the sum of squares\n"
            "    return np.sum((pred - target) ** 2)\n"
        ),
    ),
    "gaussian_nll": (
        "dropped-constants",
        (
            "def gaussian_nll(pred, target, beta):\n"
            "    # mistake: drops the M/2 log 2pi and -M/2 log beta terms\n"
            "    return beta / 2 * np.sum((pred - target) ** 2)\n"
        ),
    ),
    "softmax": (
        "no-max-shift",
        (
            "def softmax(logits):\n"
            "    # mistake: exp overflows for large logits without subtracting the row maximum\n"
            "    e = np.exp(logits)\n"
            "    return e / e.sum(axis=-1, keepdims=True)\n"
        ),
    ),
    "cross_entropy": (
        "sum-instead-of-mean",
        (
            "def cross_entropy(logits, labels):\n"
            "    # mistake: sums over the batch instead of averaging\n"
            "    shifted = logits - logits.max(axis=-1, keepdims=True)\n"
            "    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))\n"
            "    return -np.sum(log_probs[np.arange(len(labels)), labels])\n"
        ),
    ),
    "kl_divergence": (
        "arguments-swapped",
        (
            "def kl_divergence(p, q):\n"
            "    # mistake: computes KL(q || p); the expectation must be under p\n"
            "    with np.errstate(divide='ignore', invalid='ignore'):\n"
            "        terms = np.where(q > 0, q * np.log(q / p), 0.0)\n"
            "    return terms.sum(axis=-1)\n"
        ),
    ),
    "entropy": (
        "bits-instead-of-nats",
        (
            "def entropy(p):\n"
            "    # mistake: log base 2 gives bits; the course measures entropy in nats\n"
            "    with np.errstate(divide='ignore', invalid='ignore'):\n"
            "        terms = np.where(p > 0, p * np.log2(p), 0.0)\n"
            "    return -terms.sum(axis=-1)\n"
        ),
    ),
    "multiclass_hinge_loss": (
        "counts-true-class",
        (
            "def multiclass_hinge_loss(scores, labels):\n"
            "    # mistake: the sum must skip j = y (it adds the margin for the true class)\n"
            "    true = scores[np.arange(len(labels)), labels][:, None]\n"
            "    return np.mean(np.sum(np.maximum(0.0, scores - true + 1.0), axis=1))\n"
        ),
    ),
    "hinge_loss": (
        "sum-instead-of-mean",
        (
            "def hinge_loss(scores, target):\n"
            "    # mistake: sums over the batch instead of averaging\n"
            "    return np.sum(np.maximum(0.0, 1.0 - target * scores))\n"
        ),
    ),
    "sgd_step": (
        "gradient-ascent",
        (
            "def sgd_step(w, grad, lr):\n"
            "    # mistake: steps along the gradient, uphill\n"
            "    return w + lr * grad\n"
        ),
    ),
    "momentum_step": (
        "missing-learning-rate",
        (
            "def momentum_step(w, grad, v, lr, mu):\n"
            "    # mistake: the velocity update forgets the learning rate\n"
            "    v = mu * v - grad\n"
            "    return w + v, v\n"
        ),
    ),
    "softmax_loss_naive": (
        "reg-gradient-not-doubled",
        (
            "def softmax_loss_naive(W, X, y, reg):\n"
            "    # mistake: the gradient of reg * sum(W**2) is 2 reg W, not reg W\n"
            "    loss, dW = 0.0, np.zeros_like(W)\n"
            "    for i in range(X.shape[0]):\n"
            "        scores = X[i] @ W\n"
            "        scores = scores - scores.max()\n"
            "        log_norm = np.log(np.sum(np.exp(scores)))\n"
            "        loss += log_norm - scores[y[i]]\n"
            "        for j in range(W.shape[1]):\n"
            "            dW[:, j] += (np.exp(scores[j] - log_norm) - (j == y[i])) * X[i]\n"
            "    n = X.shape[0]\n"
            "    return loss / n + reg * np.sum(W * W), dW / n + reg * W\n"
        ),
    ),
    "numerical_gradient": (
        "one-sided-difference",
        (
            "def numerical_gradient(f, x, h=1e-5):\n"
            "    # mistake: a forward difference, accurate only to O(h)\n"
            "    grad = np.zeros_like(x)\n"
            "    base = f(x)\n"
            "    for k in np.ndindex(x.shape):\n"
            "        shifted = x.copy()\n"
            "        shifted[k] += h\n"
            "        grad[k] = (f(shifted) - base) / h\n"
            "    return grad\n"
        ),
    ),
}

_STUB = "# YOUR CODE HERE\nraise NotImplementedError()"


def _meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def master_exercises(master_nb) -> list[dict]:
    """The autograded exercises of a master notebook, in order.

    Each exercise is the solution code cell (its grade id is the exercise id, its ``def`` names
    the function) with the test cells that call that function.

    Parameters
    ----------
    master_nb : nbformat.NotebookNode
        An nbgrader source notebook.

    Returns
    -------
    list of dict
        ``id``, ``function``, ``solution_index``, ``tests`` (list of ``(grade id, points)``).
    """
    exercises = []
    for index, cell in enumerate(master_nb.cells):
        meta = _meta(cell)
        if cell.cell_type == "code" and meta.get("solution") and not meta.get("grade"):
            found = re.search(r"^def (\w+)\(", cell.source, re.MULTILINE)
            if found:
                exercises.append(
                    {
                        "id": meta["grade_id"],
                        "function": found.group(1),
                        "solution_index": index,
                        "tests": [],
                    }
                )
    for cell in master_nb.cells:
        meta = _meta(cell)
        if cell.cell_type == "code" and meta.get("grade") and not meta.get("solution"):
            used = _names_used(cell.source)
            for exercise in exercises:
                if exercise["function"] in used:
                    exercise["tests"].append((meta["grade_id"], float(meta["points"])))
    return exercises


def _names_used(source: str) -> set[str]:
    """Names a cell's code reads (comments, strings and docstrings do not count)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:  # IPython syntax (magics): fall back to every identifier
        return set(re.findall(r"\b\w+\b", source))
    return {
        node.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
    }


def _broken_by(master_nb, function: str) -> set[str]:
    """Test cells that lose their points when ``function`` is wrong or undefined.

    A test cell is lost when it calls the function, or calls another exercise's function whose
    master solution calls it (followed transitively).
    """
    exercises = master_exercises(master_nb)
    broken = {function}
    changed = True
    while changed:
        changed = False
        for exercise in exercises:
            used = _names_used(master_nb.cells[exercise["solution_index"]].source)
            if exercise["function"] not in broken and used & broken:
                broken.add(exercise["function"])
                changed = True
    lost = set()
    for exercise in exercises:
        if exercise["function"] in broken:
            lost.update(gid for gid, _ in exercise["tests"])
    return lost


def _autograded_points(master_nb) -> dict[str, float]:
    return {
        _meta(c)["grade_id"]: float(_meta(c)["points"])
        for c in master_nb.cells
        if c.cell_type == "code" and _meta(c).get("grade") and not _meta(c).get("solution")
    }


def expected_outcome(master_nb, kind: str, function: str | None = None) -> dict:
    """Autograded score and status a sample of ``kind`` must get, from the master's points.

    Parameters
    ----------
    master_nb : nbformat.NotebookNode
        The assignment's master notebook.
    kind : str
        The sample kind (see the module docstring); mistakes are ``"mistake"``.
    function : str, optional
        The function a ``"mistake"`` or ``"infinite-loop"`` breaks.

    Returns
    -------
    dict
        ``score`` (autograded points; written answers wait for a human and count 0),
        ``max_score`` (autograded points available) and ``status``.
    """
    points = _autograded_points(master_nb)
    total = sum(points.values())
    if kind in ("correct", "deleted-test-cell", "edited-test-cell"):
        score = total
    elif kind in ("mistake", "infinite-loop"):
        score = total - sum(points[g] for g in _broken_by(master_nb, function))
    else:
        score = 0.0
    status = {
        "correct": "ok",
        "untouched": "ok",
        "mistake": "ok",
        "corrupt-json": "unreadable",
        "invalid-utf8": "unreadable",
        "missing-notebook": "missing-notebook",
        "infinite-loop": "timeout",
        "kernel-dies": "kernel-died",
        "deleted-test-cell": "test-cell-restored",
        "edited-test-cell": "test-cell-restored",
    }[kind]
    return {"score": score, "max_score": total, "status": status}


def _release(master_nb):
    """The student version, made with nbgrader's own clearing preprocessors."""
    from nbgrader.preprocessors import ClearHiddenTests, ClearOutput, ClearSolutions
    from nbgrader.preprocessors.clearmarkingscheme import ClearMarkScheme

    nb = copy.deepcopy(master_nb)
    resources = {}
    for pp in (
        ClearSolutions(code_stub={"python": _STUB}),
        ClearHiddenTests(),
        ClearMarkScheme(),
        ClearOutput(),
    ):
        nb, resources = pp.preprocess(nb, resources)
    return nb


def _typed_solution(source: str) -> str:
    """The master's solution as a student would have typed it: the markers gone."""
    keep = [
        line
        for line in source.splitlines()
        if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION")
    ]
    return "\n".join(keep) + "\n"


def _correct(master_nb, release_nb):
    nb = copy.deepcopy(release_nb)
    for mcell, cell in zip(master_nb.cells, nb.cells, strict=True):
        meta = _meta(mcell)
        if not meta.get("solution"):
            continue
        if cell.cell_type == "code":
            cell.source = _typed_solution(mcell.source)
        else:
            cell.source = "My answer, in my own words (written by the sample generator)."
    return nb


def _with_solution(nb, index: int, source: str):
    nb = copy.deepcopy(nb)
    nb.cells[index].source = source
    return nb


def _first_test_index(nb) -> int:
    return next(
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and _meta(c).get("grade") and not _meta(c).get("solution")
    )


def generate_samples(
    source: str, out: str, assignments=None, *, extras=True, timeout_sample=True
) -> list[dict]:
    """Write the sample submissions of the given assignments and return their manifest.

    Parameters
    ----------
    source : str
        nbgrader's source directory with the masters (``solutions``).
    out : str
        Folder to write the submitted layout into (created if needed).
    assignments : list of str, optional
        Assignment ids; default every master under ``source``.
    extras : bool, default True
        Also write the deleted/edited test cell, invalid UTF-8 and missing-notebook samples
        (for the first assignment only: they exercise the grader, not the notebook).
    timeout_sample : bool, default True
        Write the ``infinite-loop`` sample (each costs one full ``--timeout`` to grade).

    Returns
    -------
    list of dict
        One entry per sample: ``student``, ``assignment``, ``notebook``, ``kind``, ``mistake``
        and the :func:`expected_outcome` fields ``score``, ``max_score``, ``status``.
    """
    import nbformat

    from .masters import list_masters

    masters = list_masters(source)
    manifest = []
    chosen = list(assignments) if assignments else list(masters)
    for position, assignment in enumerate(chosen):
        for name in masters[assignment]:
            master_nb = nbformat.read(
                os.path.join(source, assignment, name + ".ipynb"), as_version=4
            )
            release_nb = _release(master_nb)
            correct = _correct(master_nb, release_nb)
            exercises = master_exercises(master_nb)
            samples = [("correct", correct, None, None), ("untouched", release_nb, None, None)]
            with_mistake = [e for e in exercises if e["id"] in MISTAKES]
            for number, exercise in enumerate(with_mistake[:2], start=1):
                mistake, code = MISTAKES[exercise["id"]]
                samples.append(
                    (
                        f"mistake-{number}",
                        _with_solution(correct, exercise["solution_index"], code),
                        exercise["function"],
                        mistake,
                    )
                )
            if exercises:
                first = exercises[0]
                body = correct.cells[first["solution_index"]].source
                if timeout_sample:
                    samples.append(
                        (
                            "infinite-loop",
                            _with_solution(
                                correct, first["solution_index"], "while True:\n    pass\n" + body
                            ),
                            first["function"],
                            None,
                        )
                    )
                samples.append(
                    (
                        "kernel-dies",
                        _with_solution(
                            correct, first["solution_index"], "import os\nos._exit(1)\n" + body
                        ),
                        None,
                        None,
                    )
                )
            samples.append(("corrupt-json", release_nb, None, None))
            if extras and position == 0:
                deleted = copy.deepcopy(correct)
                del deleted.cells[_first_test_index(deleted)]
                edited = copy.deepcopy(correct)
                edited.cells[_first_test_index(edited)].source = "# the check kept failing\npass\n"
                samples += [
                    ("deleted-test-cell", deleted, None, None),
                    ("edited-test-cell", edited, None, None),
                    ("invalid-utf8", release_nb, None, None),
                    ("missing-notebook", None, None, None),
                ]
            for student, nb, function, mistake in samples:
                kind = "mistake" if student.startswith("mistake") else student
                folder = os.path.join(out, student, assignment)
                os.makedirs(folder, exist_ok=True)
                path = os.path.join(folder, name + ".ipynb")
                if nb is not None:
                    text = nbformat.writes(nb)
                    data = text.encode("utf-8")
                    if kind == "corrupt-json":
                        data = data[: len(data) // 2]
                    elif kind == "invalid-utf8":
                        cut = len(data) // 2
                        data = data[:cut] + b"\xff\xfe" + data[cut:]
                    with open(path, "wb") as fh:
                        fh.write(data)
                entry = {
                    "student": student,
                    "assignment": assignment,
                    "notebook": name,
                    "kind": kind,
                    "mistake": mistake,
                }
                entry.update(expected_outcome(master_nb, kind, function))
                manifest.append(entry)
    return manifest


def main(argv=None) -> int:
    """``python -m lossutils.grading.samples OUT [ASSIGNMENT ...] [--source DIR]``."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m lossutils.grading.samples", description="Write the sample submissions."
    )
    parser.add_argument("out")
    parser.add_argument("assignments", nargs="*")
    parser.add_argument("--source", default="solutions")
    args = parser.parse_args(argv)
    manifest = generate_samples(args.source, args.out, args.assignments or None)
    print(f"wrote {len(manifest)} sample submissions to {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
