"""The progress bar of a grading run: an ETA on a terminal, a line per 10% elsewhere."""

from __future__ import annotations

import time

__all__ = ["Progress"]


class Progress:
    """A plain-text progress bar with an ETA, on a terminal, or one line per 10% elsewhere.

    Parameters
    ----------
    total : int
        Number of submissions to grade in this run.
    stream : file, optional
        Where to draw; ``None`` draws nothing.

    Examples
    --------
    >>> import io
    >>> buf = io.StringIO()
    >>> bar = Progress(4, buf)
    >>> bar.update(2, "ada 02-gaussian-l2")
    >>> "2/4" in buf.getvalue()
    True
    """

    def __init__(self, total: int, stream=None):
        self.total, self.stream, self.start = total, stream, time.monotonic()
        self._tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())
        self._last_decile = -1

    def update(self, done: int, label: str = "") -> None:
        """Redraw after ``done`` submissions; ``label`` names the last one."""
        if self.stream is None or self.total == 0:
            return
        elapsed = time.monotonic() - self.start
        eta = elapsed / done * (self.total - done) if done else float("nan")
        eta_text = "--:--" if eta != eta else f"{int(eta) // 60:02d}:{int(eta) % 60:02d}"
        width = 30
        filled = int(width * done / self.total)
        line = (
            f"[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} "
            f"{100 * done // self.total:3d}%  ETA {eta_text}  {label[:40]}"
        )
        if self._tty:
            self.stream.write("\r" + line.ljust(110))
            if done == self.total:
                self.stream.write("\n")
        else:
            decile = 10 * done // self.total
            if decile == self._last_decile:
                return
            self._last_decile = decile
            self.stream.write(line + "\n")
        self.stream.flush()
