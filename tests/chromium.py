"""Headless Chromium driven over the DevTools protocol on a pipe, for the browser tests.

Why no driver library: Chromium speaks the DevTools protocol itself (``--remote-debugging-pipe``:
JSON messages separated by NUL bytes on file descriptors 3 and 4), and the tests need four
things of it: open a page, record every request it makes (and refuse those that would leave the
machine), collect console errors and uncaught exceptions, and evaluate JavaScript. That is a
hundred lines over the protocol's stable domains, where Playwright would add a Node.js runtime
and a protocol client pinned to its own Chromium build, and Selenium a chromedriver whose version
must match the browser's.

Used by tests/test_browser.py and tests/test_site.py; ``python tests/chromium.py screenshot URL
OUT.png`` takes the screenshots in docs/.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import pathlib
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

__all__ = ["Browser", "PageLoad", "chromium_path", "is_local"]

# The flags of a browser that talks to nobody: no sync, no component or safe-browsing updates,
# no QUIC probes. Without them Chromium tries to reach Google's services on start-up, and on a
# machine without a network those attempts surface as refused connections.
_FLAGS = (
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
)

# Page.loadEventFired and the math typesetting wait at most this long: a guard against a hung
# browser, far above what a page needs, so that no result depends on the machine's speed.
_WAIT = 120.0


# Text of the page outside code, outputs and typeset math: where TeX delimiters would be raw.
_INSPECT = r"""(() => {
  const skip = "code, pre, script, style, mjx-container, .jp-InputArea, .input_area, "
             + ".jp-OutputArea, .output_area, .output_wrapper";
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const prose = [];
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (!node.parentElement.closest(skip)) prose.push(node.textContent);
  }
  const text = prose.join(" ");
  return {
    math: document.querySelectorAll("mjx-container").length,
    raw_math: (text.match(/\$\$|\\\(|\\\[|\$[^$\s][^$\n]{0,200}?\$/g) || []).slice(0, 5),
    images: document.images.length,
    broken_images: [...document.images].filter(i => !i.complete || i.naturalWidth === 0)
                                       .map(i => (i.getAttribute("src") || "").slice(0, 80)),
    links: [...document.querySelectorAll("a[href]")].map(a => a.getAttribute("href")),
    scripts: [...document.scripts].map(s => s.src || "inline"),
    text: document.body.innerText,
  };
})()"""


def chromium_path() -> str | None:
    """The Chromium to run: ``$CHROMIUM``, else ``chromium`` or ``chromium-browser`` on PATH."""
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def is_local(url: str) -> bool:
    """True for a URL that stays on this machine (a file, inline data, or the loopback).

    >>> is_local("file:///tmp/a.html"), is_local("data:image/png;base64,AA==")
    (True, True)
    >>> is_local("http://127.0.0.1:8000/x"), is_local("https://cdnjs.cloudflare.com/x.js")
    (True, False)
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme in ("file", "data", "blob", "about"):
        return True
    return parts.scheme in ("http", "https", "ws") and parts.hostname in (
        "localhost", "127.0.0.1", "::1")


class PageLoad:
    """What happened while one page loaded: requests, refused requests, errors."""

    def __init__(self, url: str):
        self.url = url
        self.requests: list[str] = []
        self.blocked: list[str] = []
        self.errors: list[str] = []
        self.failed: list[str] = []  # requests that did not complete (missing files included)

    def __repr__(self):
        return (f"PageLoad({self.url!r}, errors={self.errors}, blocked={self.blocked}, "
                f"failed={self.failed})")


class Browser:
    """One headless Chromium with one tab; close it (or use ``with``) when done."""

    def __init__(self, executable: str | None = None, *, width: int = 1200, height: int = 900):
        executable = executable or chromium_path()
        if executable is None:
            raise FileNotFoundError("Chromium is not installed (apt-get install chromium)")
        self._profile = tempfile.mkdtemp(prefix="lossutils-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def fds_3_and_4():  # where --remote-debugging-pipe looks for its pipe
            # moved above 4 first, so that neither end overwrites the other
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser_r, from_browser_w)]
            for target, fd in zip((3, 4), high, strict=True):
                os.dup2(fd, target)  # inheritable, unlike the pipe's own descriptors

        flags = list(_FLAGS)
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            flags.append("--no-sandbox")  # Chromium refuses to start as root with its sandbox
        self._proc = subprocess.Popen(
            [executable, *flags, f"--user-data-dir={self._profile}",
             f"--window-size={width},{height}", "about:blank"],
            preexec_fn=fds_3_and_4, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, close_fds=False,  # closing would close 3 and 4 too
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._lock = threading.Lock()
        self._next_id = 0
        self._replies: dict[int, queue.Queue] = {}
        self._events: queue.Queue = queue.Queue()
        self._load: PageLoad | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self._session = self.send("Target.attachToTarget",
                                  {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session=True)
        self.send("Fetch.enable", {"patterns": [{"urlPattern": "*"}]}, session=True)
        self.send("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session=True)

    # -- the protocol ------------------------------------------------------------------------

    def _write(self, message: dict) -> None:
        data = json.dumps(message).encode() + b"\0"
        with self._lock:
            os.write(self._to_browser, data)

    def send(self, method: str, params: dict | None = None, *, session: bool = False) -> dict:
        """Send one command and wait for its reply; raise on a protocol error."""
        with self._lock:
            self._next_id += 1
            ident = self._next_id
            self._replies[ident] = queue.Queue(maxsize=1)
        message = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self._session
        self._write(message)
        try:
            reply = self._replies[ident].get(timeout=_WAIT)
        except queue.Empty:
            raise TimeoutError(f"Chromium did not answer {method} in {_WAIT:g} s") from None
        finally:
            self._replies.pop(ident, None)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error'].get('message')}")
        return reply.get("result", {})

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._from_browser, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                self._events.put({"method": "closed"})
                for waiting in list(self._replies.values()):
                    waiting.put({"error": {"message": "Chromium exited"}})
                return
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for raw in messages:
                message = json.loads(raw)
                if "id" in message:
                    waiting = self._replies.get(message["id"])
                    if waiting is not None:
                        waiting.put(message)
                else:
                    self._on_event(message)

    def _on_event(self, event: dict) -> None:
        method, params = event["method"], event.get("params", {})
        load = self._load
        if method == "Fetch.requestPaused":
            # answered here, on the reader thread: the page waits for the answer
            url = params["request"]["url"]
            if load is not None:
                load.requests.append(url)
            if is_local(url):
                self._write({"id": 0, "method": "Fetch.continueRequest", "sessionId":
                             event["sessionId"], "params": {"requestId": params["requestId"]}})
            else:
                if load is not None and url not in load.blocked:
                    load.blocked.append(url)
                self._write({"id": 0, "method": "Fetch.failRequest", "sessionId":
                             event["sessionId"], "params": {"requestId": params["requestId"],
                                                            "errorReason": "BlockedByClient"}})
            return
        if load is not None:
            if method == "Network.requestWillBeSent":
                url = params["request"]["url"]
                if url not in load.requests:
                    load.requests.append(url)
                if not is_local(url) and url not in load.blocked:
                    load.blocked.append(url)
            elif method == "Network.loadingFailed" and not params.get("canceled"):
                load.failed.append(f"{params.get('type')}: {params.get('errorText')}")
            elif method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                text = details.get("exception", {}).get("description") or details.get("text")
                load.errors.append(f"uncaught: {text}")
            elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                args = " ".join(str(a.get("value", a.get("description", "")))
                                for a in params.get("args", []))
                load.errors.append(f"console.{params['type']}: {args}")
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                entry = params["entry"]
                load.errors.append(f"{entry['source']}: {entry['text'][:300]} "
                                   f"{entry.get('url', '')[:200]}")
        self._events.put(event)

    # -- pages --------------------------------------------------------------------------------

    def load(self, url: str) -> PageLoad:
        """Open ``url`` in the tab and wait for its load event (and its math, if any)."""
        self._load = PageLoad(url)
        while not self._events.empty():
            self._events.get_nowait()
        reply = self.send("Page.navigate", {"url": url}, session=True)
        if reply.get("errorText"):
            self._load.errors.append(f"navigation: {reply['errorText']}")
            return self._load
        deadline = time.monotonic() + _WAIT
        while True:
            try:
                event = self._events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"{url} did not finish loading in {_WAIT:g} s") from None
            if event["method"] == "closed":
                raise RuntimeError("Chromium exited while loading " + url)
            if event["method"] == "Page.loadEventFired":
                break
        # MathJax typesets after the load event; its start-up promise settles when it is done
        self.evaluate("window.MathJax && MathJax.startup && MathJax.startup.promise ? "
                      "MathJax.startup.promise.then(() => true) : true")
        return self._load

    def inspect(self) -> dict:
        """What the page shows: typeset formulas, TeX left raw in its text, images that did
        not load, its links and scripts."""
        return self.evaluate(_INSPECT)

    def evaluate(self, expression: str):
        """The JSON value of ``expression`` in the page (promises are awaited)."""
        reply = self.send("Runtime.evaluate", {
            "expression": expression, "returnByValue": True, "awaitPromise": True,
            "timeout": _WAIT * 1000}, session=True)
        if "exceptionDetails" in reply:
            error = reply["exceptionDetails"].get("exception", {}).get("description")
            raise RuntimeError(f"{expression!r} raised {error}")
        return reply["result"].get("value")

    def screenshot(self, path: str, *, full_page: bool = False) -> None:
        """Save the tab as PNG (the viewport, or the whole page)."""
        params = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
            size = self.send("Page.getLayoutMetrics", session=True)["cssContentSize"]
            params["clip"] = {"x": 0, "y": 0, "width": size["width"], "height": size["height"],
                              "scale": 1}
        data = self.send("Page.captureScreenshot", params, session=True)["data"]
        with open(path, "wb") as fh:
            fh.write(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def main(argv: list[str]) -> int:
    """``screenshot PAGE OUT.png [WIDTH HEIGHT]``: what the screenshots in docs/ are taken with
    (PAGE is a file, or a URL; a ``#fragment`` scrolls to it)."""
    if len(argv) not in (3, 5) or argv[0] != "screenshot":
        sys.stderr.write("usage: python tests/chromium.py screenshot PAGE OUT.png [WIDTH HEIGHT]\n")
        return 2
    width, height = (int(argv[3]), int(argv[4])) if len(argv) == 5 else (1000, 700)
    url = argv[1]
    if not urllib.parse.urlsplit(url).scheme:
        path, _, fragment = url.partition("#")
        url = pathlib.Path(path).resolve().as_uri() + (f"#{fragment}" if fragment else "")
    with Browser(width=width, height=height) as browser:
        load = browser.load(url)
        browser.screenshot(argv[2])
    print(load)
    return 0 if not (load.errors or load.blocked) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
