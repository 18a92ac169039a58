"""A grading worker that dies on one submission, for tests/test_hardening.py.

The local pool starts its workers with ``spawn``, so the function it runs must be importable
by name in a fresh process: this module is, once its folder is on ``sys.path``.
"""

from __future__ import annotations

import os
import signal

from lossutils.grading.worker import grade_submission

#: The student whose submission takes its worker down (as the kernel's OOM killer would).
KILLER = "killer"


def grade_or_die(task):
    """Grade ``task``, unless it is :data:`KILLER`'s: then end this worker process at once."""
    if task.student == KILLER:
        os.kill(os.getpid(), signal.SIGKILL)
    return grade_submission(task)
