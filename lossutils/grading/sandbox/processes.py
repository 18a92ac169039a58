"""The processes of a sandbox: finding them by user id, and killing them.

Every sandboxed process tree runs as a user id of its own (when the grader is root), so
``/proc`` tells which processes belong to it; these functions read it and kill by that id.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

__all__ = [
    "exit_signal",
    "kill_strays",
    "kill_tree",
    "kill_user",
    "processes_of",
    "runs_as",
    "user_processes",
]


def processes_of(uid: int) -> dict[int, tuple[int, bytes]]:
    """``{pid: (parent pid, state letter)}`` of every process owned by ``uid``, from /proc."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:  # the process ended while we looked
            continue
        # The command name (field 2) may hold spaces and parentheses: parse after the last ')'.
        state, parent = stat[stat.rindex(b")") + 2:].split()[:2]
        found[int(entry.name)] = (int(parent), state)
    return found


def user_processes(uid: int) -> list[int]:
    """Pids of the live (not zombie) processes owned by ``uid``."""
    return [pid for pid, (_, state) in processes_of(uid).items() if state not in (b"Z", b"X")]



def runs_as(pid: int, uid: int) -> bool:
    """Whether ``pid`` is alive and still of ``uid``: a zygote's child, once reaped, leaves its
    pid free for reuse."""
    try:
        if os.stat(f"/proc/{pid}").st_uid != uid:
            return False
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2:][:1] not in (b"Z", b"X")




def exit_signal(returncode: int) -> int | None:
    """The signal that ended a sandboxed process, or None if it exited.

    bwrap reports a child killed by signal N as exit status 128 + N.

    Examples
    --------
    >>> exit_signal(128 + 9), exit_signal(-24), exit_signal(1)
    (9, 24, None)
    """
    if returncode < 0:
        return -returncode
    if 128 < returncode < 128 + 65:
        return returncode - 128
    return None


def kill_strays(uid: int) -> int:
    """SIGKILL the processes a sandboxed kernel forked, sparing the kernel; return how many.

    Every process of the sandbox runs as its own fresh ``uid``; the kernel is the one whose
    parent (bwrap) is not. Its descendants (a fork bomb, a runaway ``!command``) die when a
    cell is interrupted instead of spinning on until the notebook ends.
    """
    if uid < 0:
        return 0
    owned = {pid: parent for pid, (parent, _) in processes_of(uid).items()}
    killed = 0
    for pid, parent in owned.items():
        if parent in owned:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
    return killed


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the process group of ``proc`` (started with ``start_new_session=True``)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:  # already gone
        pass
    except PermissionError:  # not our group after all: kill the one process we own
        proc.kill()



def kill_user(uid: int, patience: float = 5.0) -> bool:
    """SIGKILL every process of ``uid`` until none is left; False if some survived ``patience``.

    A process forking while it is killed can leave a child behind for one round; the loop goes
    on until a scan finds nothing (``RLIMIT_NPROC`` bounds how many there can be).
    """
    if uid <= 0:
        raise ValueError(f"refusing to kill every process of uid {uid}")
    deadline = time.monotonic() + patience
    while True:
        pids = user_processes(uid)
        if not pids:
            return True
        if time.monotonic() > deadline:
            return False
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.005)


