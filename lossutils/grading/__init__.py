"""Batch autograding around nbgrader: parallel, resumable, with reasons and reports.

The pipeline has one pure function at its heart, :func:`lossutils.grading.worker.grade_submission`,
which grades one notebook from a plain-data task and returns a plain-data result; the
coordinator (:mod:`lossutils.grading.run`) discovers submissions, hands tasks to worker
processes, and alone writes the gradebook, ``grades.csv``, ``results.json``, the feedback and the
report. See ``docs/grading.md`` for the instructor's guide.

Nothing here is imported by ``import lossutils``; nbgrader and friends load on first use.
"""

import sys

# jsonschema (pulled in by nbformat) imports rfc3987_syntax when it is installed, which builds
# a parser at import time: seconds of CPU in every grading process, for a string format that no
# notebook schema uses. Blocking the import makes jsonschema skip that one format check.
if "rfc3987_syntax" not in sys.modules:
    sys.modules["rfc3987_syntax"] = None
