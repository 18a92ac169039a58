"""Batch autograding around nbgrader: parallel, resumable, with reasons and reports.

The pipeline has one pure function at its heart, :func:`lossutils.grading.worker.grade_submission`,
which grades one notebook from a :class:`~lossutils.grading.task.Task` and returns a
:class:`~lossutils.grading.task.Result`; the coordinator (:mod:`lossutils.grading.run`)
discovers submissions, hands tasks to an executor, and alone writes the gradebook,
``grades.csv``, ``results.json``, the feedback and the report. See ``docs/grading.md`` for the
instructor's guide, ``SECURITY.md`` for the threat model.

Where things are:

- the coordinator: :mod:`.run` (:func:`grade` and its phases), :mod:`.discover` (the
  submissions on disk), :mod:`.masters` (the masters, through nbgrader), :mod:`.persist`
  (result files, batched gradebook and ledger commits), :mod:`.gradebook`, :mod:`.state` (the
  ledger), :mod:`.report` (CSV, JSON, HTML), :mod:`.progress`;
- what travels: :mod:`.task` (tasks and results), :mod:`.problems` (the problem codes);
- where tasks run: :mod:`.executors` (a local process pool, or Dask);
- one submission: :mod:`.worker` (read, sanitise, execute, score, feedback), :mod:`.verify`
  (scores verified outside the kernel, and the static scan), :mod:`.sandbox` (bubblewrap, the
  kernel zygote, the kernel manager);
- the commands around it: :mod:`.demo`, :mod:`.samples`, :mod:`.selfcheck`;
- every change to a dependency's internals: :mod:`._patches`.

Nothing here is imported by ``import lossutils``; nbgrader and friends load on first use.
"""

from ._patches import block_rfc3987_syntax

__all__ = ["grade"]

block_rfc3987_syntax()


def __getattr__(name: str):
    # `lossutils.grading.grade` without importing the coordinator with the package
    if name == "grade":
        from .run import grade

        return grade
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
