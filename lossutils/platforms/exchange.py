"""The JupyterHub round trip: feedback from ``lossutils grade`` released with nbgrader's exchange.

``nbgrader release_feedback``, run in a course root, releases every
``feedback/<student>/<assignment>/<notebook>.html`` and reads two files beside each page:
``timestamp.txt`` and ``submission_secret.txt``, which ``nbgrader submit`` wrote into the
submission and ``nbgrader collect`` copied into ``submitted/``. The secret names the released
page in the exchange, so that ``nbgrader fetch_feedback`` finds it for the student who
submitted, and for nobody else. :func:`add_release_files` copies both files from the graded
submissions next to the feedback pages of a ``lossutils grade`` output folder (``lossutils
grade`` calls it), which makes that folder ready for ``nbgrader release_feedback``.
"""

from __future__ import annotations

import json
import os
import stat

__all__ = ["RELEASE_FILES", "add_release_files"]

RELEASE_FILES = ("timestamp.txt", "submission_secret.txt")
# nbgrader writes an ISO timestamp and 128 hex digits; anything larger is not theirs.
_MAX_BYTES = 4096


def _read_small_file(path: str) -> bytes | None:
    """The bytes of a regular file of at most ``_MAX_BYTES``, never through a symlink.

    The submission folder is the student's: a symlink there could point at the instructor's
    files, which must not end up in a page the student fetches.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_BYTES:
            return None
        return os.read(fd, _MAX_BYTES + 1)[:_MAX_BYTES]
    finally:
        os.close(fd)


def add_release_files(out: str) -> int:
    """Copy each submission's ``timestamp.txt`` and ``submission_secret.txt`` beside its
    feedback page in the ``lossutils grade`` output folder ``out``; return how many pages
    became releasable.

    Submissions from the exchange carry both files; a flat folder of notebooks (an LMS
    download) has neither, and its feedback is handed out some other way.

    Parameters
    ----------
    out : str
        The output folder (``results.json`` names the submissions folder and every page).
    """
    results_path = os.path.join(out, "results.json")
    if not os.path.isfile(results_path):
        return 0
    with open(results_path, encoding="utf-8") as fh:
        results = json.load(fh)
    submitted = results["run"]["submissions"]
    ready = 0
    for result in results["submissions"]:
        page = result.get("feedback")
        if not page:
            continue
        src = os.path.join(submitted, result["student"], result["assignment"])
        dest = os.path.dirname(os.path.join(out, page))
        found = {name: _read_small_file(os.path.join(src, name)) for name in RELEASE_FILES}
        if any(data is None for data in found.values()):
            continue
        for name, data in found.items():
            with open(os.path.join(dest, name), "wb") as fh:
                fh.write(data)
        ready += 1
    return ready
