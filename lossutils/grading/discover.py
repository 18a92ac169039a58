"""Find the submissions to grade, in nbgrader's submitted layout or as a flat LMS download.

Every name and file in the submissions folder is the student's choice. Submitted files are
opened only through :func:`open_submitted`: a regular file of its own, reached without a
symbolic link below the submissions folder; anything else (a link to the master, a FIFO that
would block the grader, a device with endless bytes, a hard link to a file elsewhere) is
refused with its reason, and costs that one submission.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import dataclass

__all__ = ["Refused", "Submission", "UsageError", "file_hash", "find_submissions",
           "open_submitted", "unsafe_name"]


class UsageError(ValueError):
    """The command line asks for something the folders cannot give; the message says why."""


@dataclass(frozen=True)
class Submission:
    """One submitted notebook found on disk (``path`` None when the student's folder lacks it;
    ``timestamp`` is nbgrader's ``timestamp.txt``)."""

    student: str
    assignment: str
    notebook: str
    path: str | None
    timestamp: str | None = None


class Refused(OSError):
    """A submitted path that is not a regular file of its own in the submissions folder.

    ``kind`` is one word (``symlink``, ``hardlink``, ``fifo``, ``device``, ``socket``,
    ``folder``, ``other``); the message says what was found and what to do.
    """

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


_KINDS = ((stat.S_ISLNK, "symlink", "a symbolic link"), (stat.S_ISFIFO, "fifo", "a FIFO"),
          (stat.S_ISCHR, "device", "a character device"),
          (stat.S_ISBLK, "device", "a block device"), (stat.S_ISSOCK, "socket", "a socket"),
          (stat.S_ISDIR, "folder", "a folder"))


def _refuse_mode(path: str, mode: int) -> None:
    for test, kind, what in _KINDS:
        if test(mode):
            target = ""
            if kind == "symlink":
                try:
                    target = f" (to {os.readlink(path)[:200]})"
                except OSError:  # gone meanwhile
                    pass
            raise Refused(kind, f"the submitted path is {what}{target}, not a notebook file: "
                                "submit the notebook file itself")
    if not stat.S_ISREG(mode):
        raise Refused("other", "the submitted path is not a regular file")


def open_submitted(path: str, root: str | None = None) -> int:
    """Open a submitted file for reading, refusing anything but a regular file of its own.

    Parameters
    ----------
    path : str
        The submitted file.
    root : str, optional
        The submissions folder: no folder between it and ``path`` may be a symbolic link
        (a student's folder linked to another student's).

    Returns
    -------
    int
        A file descriptor (the caller closes it), open on exactly the file that was checked.

    Raises
    ------
    FileNotFoundError
        Nothing is there.
    Refused
        A symbolic link (of the file or of a folder below ``root``), a FIFO, a device, a
        socket, a folder, or a file with more than one hard link: the same bytes are then also
        somewhere else, perhaps where the student may not write (a master, another student's
        notebook); an LMS download or ``nbgrader collect`` never makes one.
    """
    if root is not None:
        base = os.path.abspath(root)
        parts = os.path.relpath(os.path.abspath(os.path.dirname(path)), base).split(os.sep)
        for i in range(len(parts)):
            folder = os.path.join(base, *parts[: i + 1])
            if parts[0] not in (".", "..") and os.path.islink(folder):
                raise Refused("symlink", f"the folder {os.path.relpath(folder, base)!r} is a "
                                         "symbolic link (to another folder); submit a folder "
                                         "of your own")
    _refuse_mode(path, os.lstat(path).st_mode)
    # no following a link swapped in meanwhile, and no waiting on a FIFO
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        st = os.fstat(fd)
        _refuse_mode(path, st.st_mode)
        if st.st_nlink > 1:
            raise Refused("hardlink", f"the submitted file has {st.st_nlink} hard links: the "
                                      "same bytes are also elsewhere; submit a copy of the "
                                      "notebook instead")
    except BaseException:
        os.close(fd)
        raise
    return fd


def file_hash(path: str | None, root: str | None = None) -> str:
    """sha256 of a submitted file (the ledger's record of which bytes were graded), or
    ``"missing"``, or ``"refused:<kind>"`` for a path :func:`open_submitted` refuses."""
    if path is None:
        return "missing"
    try:
        fd = open_submitted(path, root)
    except FileNotFoundError:
        return "missing"
    except Refused as exc:
        return f"refused:{exc.kind}"
    except OSError:  # ELOOP from O_NOFOLLOW: a link swapped in after the check
        return "refused:symlink"
    digest = hashlib.sha256()
    with os.fdopen(fd, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# What a browser reads as markup in text or in an attribute, and control characters: nbgrader's
# formgrader shows a student's id unescaped, and terminals act on escape sequences.
_UNSAFE_NAME = re.compile("[<>&\"\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def unsafe_name(name: str) -> str | None:
    """Why a student's name cannot be graded under that name, or None when it can.

    Examples
    --------
    >>> unsafe_name("ada.lovelace") is None
    True
    >>> unsafe_name("<img src=x onerror=alert(1)>")[:40]
    'the name holds < which a browser reads a'
    """
    found = _UNSAFE_NAME.search(name)
    if found is None:
        return None
    char = found.group()
    shown = char if char in '<>&"' else f"the control character {ord(char):#04x}"
    return (f"the name holds {shown} which a browser reads as markup (nbgrader's formgrader "
            "shows names unescaped) or a terminal as a command; rename the student's file "
            "or folder")


def _visible(folder: str) -> list[str]:
    return sorted(n for n in os.listdir(folder) if not n.startswith("."))


def _read_timestamp(folder: str) -> str | None:
    """nbgrader's ``timestamp.txt``: read only from a small regular file of its own."""
    try:
        fd = open_submitted(os.path.join(folder, "timestamp.txt"), os.path.dirname(folder))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        return fh.read(200).decode("utf-8", errors="replace").strip() or None


def _guess_assignment(files: list[str], masters: dict[str, list[str]]):
    """Infer the assignment of a flat folder: the only master, or the one the names mention."""
    if len(masters) == 1:
        only = next(iter(masters))
        return only, f"the only master is {only}"
    mentioned = {a for a in masters for f in files if a in f}
    if len(mentioned) == 1:
        only = mentioned.pop()
        return only, f"the file names mention {only}"
    return None, None


def find_submissions(path: str, masters: dict[str, list[str]], assignment: str | None = None):
    """List the notebooks to grade under ``path``.

    Parameters
    ----------
    path : str
        Either nbgrader's submitted layout, ``<student>/<assignment>/<notebook>.ipynb``, or a
        flat folder of ``<student>.ipynb`` files for one assignment (as an LMS exports them).
    masters : dict
        Assignment id to its notebook names, from
        :func:`lossutils.grading.masters.list_masters`.
    assignment : str, optional
        Grade only this assignment; required for a flat folder unless it can be inferred.

    Returns
    -------
    entries : list of Submission
        One per notebook of each student's assignment, found or missing.
    notes : list of str
        What was assumed or skipped, for the user to read.

    Raises
    ------
    UsageError
        When ``path`` does not exist, holds nothing gradable, or the assignment of a flat folder
        is ambiguous or unknown.
    """
    if not os.path.isdir(path):
        raise UsageError(f"{path} is not a folder of submissions")
    # the links a student planted below it are refused when their files are read
    path = os.path.realpath(path)
    if assignment is not None and assignment not in masters:
        raise UsageError(
            f"no master for assignment {assignment!r}; known: {', '.join(masters) or 'none'}"
        )
    notes: list[str] = []
    names = _visible(path)
    # not only regular files: a link or a FIFO under a notebook's name is a submission that
    # is refused with its reason, not one silently left out
    flat = [n for n in names if n.endswith(".ipynb")
            and not stat.S_ISDIR(os.lstat(os.path.join(path, n)).st_mode)]
    entries = []
    if flat:
        if assignment is None:
            assignment, why = _guess_assignment(flat, masters)
            if assignment is None:
                raise UsageError(
                    f"{path} is a flat folder of notebooks but the assignment is ambiguous; "
                    f"pass --assignment (one of: {', '.join(masters)})"
                )
            notes.append(
                f"flat folder: assuming assignment {assignment} ({why}); each "
                "<name>.ipynb is the submission of student <name>"
            )
        notebook = masters[assignment][0]
        if len(masters[assignment]) > 1:
            notes.append(
                f"{assignment} has several notebooks; a flat folder can only hold "
                f"{notebook}, the others count as missing"
            )
        for name in flat:
            student = name[:-6]
            entries.append(Submission(student, assignment, notebook, os.path.join(path, name)))
            for other in masters[assignment][1:]:
                entries.append(Submission(student, assignment, other, None))
        return entries, notes
    unknown = set()
    for student in names:
        student_dir = os.path.join(path, student)
        if not os.path.isdir(student_dir):
            continue
        for asg in _visible(student_dir):
            folder = os.path.join(student_dir, asg)
            if not os.path.isdir(folder) or (assignment is not None and asg != assignment):
                continue
            if asg not in masters:
                unknown.add(asg)
                continue
            timestamp = _read_timestamp(folder)
            for notebook in masters[asg]:
                nb_path = os.path.join(folder, notebook + ".ipynb")
                found = nb_path if os.path.lexists(nb_path) else None
                entries.append(Submission(student, asg, notebook, found, timestamp))
    if unknown:
        notes.append(f"skipped folders with no master: {', '.join(sorted(unknown))}")
    if not entries:
        raise UsageError(
            f"no submissions found in {path}: expected <student>/<assignment>/<notebook>.ipynb "
            "(nbgrader's submitted layout) or a flat folder of <student>.ipynb files"
        )
    return entries, notes
