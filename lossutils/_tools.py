"""Small helpers for the course machinery (never imported by the reference library)."""

from __future__ import annotations

import os
import sys


def ensure_scripts_on_path() -> None:
    """Put this interpreter's script folder first on PATH.

    nbgrader runs ``alembic`` (and Jupyter runs its kernels) as executables found on PATH; when
    lossutils is used as ``.venv/bin/python -m ...`` without activating the venv, they would
    otherwise not be found or be taken from another installation.
    """
    scripts = os.path.dirname(sys.executable)
    parts = os.environ.get("PATH", "").split(os.pathsep)
    if not parts or parts[0] != scripts:
        os.environ["PATH"] = os.pathsep.join([scripts, *[p for p in parts if p != scripts]])
