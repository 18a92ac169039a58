"""The line that ends a run on a machine without bubblewrap: what was not run, and why.

A nested pytest run sees a PATH with every program of ours but ``bwrap``: the sandbox's own
probe finds it missing, as on a machine where it is not installed.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

SANDBOX_TEST = "tests/test_sandbox.py::test_output_is_capped_by_the_reader"  # needs_bwrap
GRADING_TEST = "tests/test_cli.py::test_grade_reports_a_missing_folder"  # takes `sandboxed`


def _path_without_bwrap(folder: Path) -> str:
    folder.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            if entry.name != "bwrap" and not (folder / entry.name).exists():
                (folder / entry.name).symlink_to(entry.path)
    return str(folder)


def _pytest(*args: str, path: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          cwd=ROOT, env={**os.environ, "PATH": path}, capture_output=True,
                          text=True, check=False)


# `make test` runs the tests in worker processes (pytest-xdist): the line gathers what they
# report, there and in a plain run alike.
@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one-process", "xdist"])
def test_a_machine_without_bubblewrap_gets_one_line_naming_what_did_not_run(tmp_path, workers):
    done = _pytest(*workers, SANDBOX_TEST, GRADING_TEST,
                   path=_path_without_bwrap(tmp_path / "bin"))
    assert done.returncode == 0, done.stdout
    *_, line, totals = done.stdout.splitlines()
    assert line == ("not run: 1 sandbox test (bubblewrap missing: apt-get install bubblewrap, "
                    "or run make test as root); 1 grading test ran unsandboxed instead")
    assert "1 passed, 1 skipped" in totals
    # pytest's own list of skips folds them into one line with the same reason
    assert done.stdout.count("bubblewrap missing") == 2
