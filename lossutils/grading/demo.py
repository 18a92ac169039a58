"""``lossutils demo``: generate the sample submissions, grade them, print what each one got.

Every sample has an expected outcome derived from the master's points (see
:mod:`lossutils.grading.samples`); the table shows expected and actual side by side and the
command fails if any differs, so the demo doubles as an end-to-end check of the grader.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

from .discover import UsageError
from .masters import list_masters

__all__ = ["compare", "run_demo"]


def compare(manifest: list[dict], results: list[dict]) -> list[dict]:
    """Pair every sample with its result; ``ok`` is True when score and status match.

    Examples
    --------
    >>> m = [{"student": "s", "assignment": "a", "notebook": "a", "score": 2.0, "status": "ok"}]
    >>> r = [{"student": "s", "assignment": "a", "notebook": "a", "score": 2.0, "status": "ok"}]
    >>> compare(m, r)[0]["ok"]
    True
    """
    by_key = {(r["student"], r["assignment"], r["notebook"]): r for r in results}
    rows = []
    for sample in manifest:
        got = by_key.get((sample["student"], sample["assignment"], sample["notebook"]))
        row = dict(sample, got_score=None, got_status="not graded", ok=False)
        if got is not None:
            row.update(got_score=got["score"], got_status=got["status"])
            row["ok"] = (
                abs(got["score"] - sample["score"]) < 1e-9 and got["status"] == sample["status"]
            )
        rows.append(row)
    return rows


def run_demo(
    out: str = "demo-output",
    *,
    source: str = "solutions",
    assignments=None,
    timeout: int = 10,
    workers: int | None = None,
    stream=None,
    progress=True,
) -> int:
    """Generate the samples into ``<out>/submitted``, grade them into ``out``, print a table.

    Parameters
    ----------
    out : str
        The demo's folder; an earlier demo there is replaced.
    source : str
        The masters.
    assignments : list of str, optional
        Assignment ids; default every master.
    timeout : int
        Per-cell limit; the ``infinite-loop`` samples cost this much each.
    workers : int, optional
        Worker processes; default one per core.
    stream : file, optional
        Where the table goes (default ``sys.stdout``).
    progress : bool or file
        Where the progress bar goes, as for :func:`lossutils.grading.run.grade`.

    Returns
    -------
    int
        0 when every sample got its expected score and status, 1 otherwise.
    """
    from .run import grade
    from .samples import generate_samples
    from .sandbox import sandbox_available

    stream = stream or sys.stdout
    if not list_masters(source):
        raise UsageError(f"no masters in {source}/: run the demo from the repository root")
    if os.path.isdir(out) and os.listdir(out):
        if not os.path.exists(os.path.join(out, "demo-manifest.json")):
            raise UsageError(f"{out} exists and is not a demo folder; pass another --out")
        shutil.rmtree(out)
    submitted = os.path.join(out, "submitted")
    manifest = generate_samples(source, submitted, assignments)
    with open(os.path.join(out, "demo-manifest.json"), "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=1)
    sandbox = sandbox_available()
    if not sandbox:
        # The samples are generated here from the masters, not written by students: grading
        # them unsandboxed is safe, but say so, since real submissions would be refused.
        sys.stderr.write(
            "note: bubblewrap is not available, so the demo grades its own samples without the "
            "sandbox; `lossutils grade` refuses real submissions here unless --unsandboxed.\n"
        )
    summary = grade(
        submitted,
        out,
        source=source,
        workers=workers,
        timeout=timeout,
        seed=20240101,
        sandbox=sandbox,
        progress=progress,
    )
    rows = compare(manifest, summary["results"])
    width = max(len(r["student"]) for r in rows)
    aw = max([len("assignment"), *(len(r["assignment"]) for r in rows)])
    stream.write(
        f"\n{'student':<{width}}  {'assignment':<{aw}} {'score':>11}  {'expected':>8}  "
        f"{'status':<19} {'expected':<19}\n"
    )
    for r in rows:
        got = "-" if r["got_score"] is None else f"{r['got_score']:g}/{r['max_score']:g}"
        mark = "" if r["ok"] else "  <-- differs"
        stream.write(
            f"{r['student']:<{width}}  {r['assignment']:<{aw}} {got:>11}  "
            f"{r['score']:>8g}  {r['got_status']:<19} {r['status']:<19}{mark}\n"
        )
    bad = [r for r in rows if not r["ok"]]
    stream.write(
        f"\n{len(rows) - len(bad)}/{len(rows)} samples graded as expected. "
        f"Outputs in {out}/: grades.csv, report.html, results.json, feedback/, "
        "gradebook.db\n"
    )
    return 1 if bad else 0
