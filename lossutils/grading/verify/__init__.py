"""Verified scores: re-check every autograded exercise outside the student's kernel.

nbgrader runs the test cells in the student's own kernel, so code that ran before them
(``np.allclose = lambda *a, **k: True``, an IPython input transformer, a patched checker)
decides the grade. :func:`verify_submission` grades each exercise again where none of that
can reach:

1. The trusted grader reads, with :mod:`ast`, which ``check("<exercise>", <function>)`` calls
   each test cell of the MASTER makes (never the student's copy of the test cell).
2. A fresh sandboxed plain-Python process (:mod:`lossutils.grading.verify._runner`, no IPython,
   no ``lossutils``; forked from a verification zygote when the grader runs as root) runs the
   master's import lines and the student's own code cells, magics removed.
3. The trusted grader builds the cases (hidden ones with the run's seed) and drives the
   exercise's ``call`` itself, with a stand-in function that ships each call's arguments to the
   sandbox as JSON and replays what came back (return value, exception, warnings, printed
   text, modified arguments) as plain data, size-checked before it is rebuilt.
4. The exercise's own ``judge`` compares with the reference in the trusted process.

The grade of an exercise is the verified one: if verification cannot run to the end (the
process dies, times out, exceeds a limit, answers nonsense), the exercise scores zero with the
reason in :attr:`VerifiedScore.error`, so crashing the verifier never keeps a kernel score.

The package's rooms:

- :mod:`.scan`: the static scan of solution cells (findings for a human, never points);
- :mod:`.cells`: what to verify, read from the master and the submission with :mod:`ast`;
- :mod:`.channel`: the sandboxed verification process and its JSON-lines channel;
- :mod:`._runner`: the program that runs in that process (standard library and numpy only:
  it is loaded by source where ``lossutils`` is absent), with the SymPy codec;
- :mod:`.remote`: the stand-in for the student's function in the trusted process;
- :mod:`.session`: one submission's verification (:func:`verify_submission`);
- :mod:`.reconcile`: the verified scores folded into the worker's result.
"""

from .cells import CheckCall, check_calls, code_to_verify, strip_magics
from .reconcile import apply_verification, reconcile
from .session import DEFAULT_LIMITS, VerifiedScore, verify_submission

__all__ = [
    "DEFAULT_LIMITS",
    "CheckCall",
    "VerifiedScore",
    "apply_verification",
    "check_calls",
    "code_to_verify",
    "reconcile",
    "strip_magics",
    "verify_submission",
]
