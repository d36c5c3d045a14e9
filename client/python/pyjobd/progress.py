"""Progress bars over futures: ``pyjobd.progress(futures)`` and ``pyjobd.progress.Bar``.

    import pyjobd
    with pyjobd.Executor(URL) as ex:
        futures = pyjobd.progress([ex.submit(work, i) for i in range(1000)], desc="work")

On a terminal the bar is one line redrawn in place (``\\r``) at most 10 times a
second: done, failed, total, rate and ETA. When the file is not a terminal (a pipe,
a log file, CI) nothing is redrawn: a plain line every ``LINE_SECONDS`` (10 s) while
something changed, and a final line at the end.

tqdm (Debian ``python3-tqdm``) draws the terminal bar when it is installed; the small
built-in bar otherwise, or when ``backend="builtin"`` or the environment has
``PYJOBD_PROGRESS=builtin`` (``tqdm`` forces tqdm, ``off`` draws nothing)."""

import asyncio
import concurrent.futures
import inspect
import os
import sys
import threading
import time

# Fastest redraw on a terminal, and the pace of plain lines elsewhere.
REDRAW_SECONDS = 0.1
LINE_SECONDS = 10.0

_BACKENDS = ("auto", "tqdm", "builtin", "off")


def _isatty(file):
    try:
        return file.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def _clock(seconds):
    seconds = int(seconds + 0.5)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Bar:
    """A progress bar over jobs (futures), safe to update from any thread.

    ``total``: how many jobs to expect (None: as many as are tracked; the total is
    never below the number tracked). ``desc``: a label. ``file``: where to draw
    (default ``sys.stderr``). ``backend``: ``"auto"`` (tqdm on a terminal when
    installed, else built in), ``"tqdm"``, ``"builtin"`` or ``"off"``; the
    environment's ``PYJOBD_PROGRESS`` decides when it is None.

    ``track(future)`` counts a future (``concurrent.futures`` or asyncio) and adds it
    to the done or failed count when it ends (failed: an exception or cancelled);
    ``update(n, failed=False)`` counts by hand; ``close()`` draws the final state.
    A context manager (closes on exit)."""

    def __init__(self, total=None, desc=None, file=None, *, backend=None):
        if backend is None:
            backend = os.environ.get("PYJOBD_PROGRESS", "").strip().lower() or "auto"
        if backend not in _BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(_BACKENDS)}, got {backend!r}")
        self.file = sys.stderr if file is None else file
        self.desc = desc
        self._given = total
        self._tracked = 0
        self.done = 0
        self.failed = 0
        self._lock = threading.RLock()
        self._start = time.monotonic()
        self._closed = False
        self._last_draw = None
        self._last_state = None
        self._timer = None
        self._width = 0
        self._tqdm = None
        tty = _isatty(self.file)
        if backend == "auto":
            backend = "tqdm" if tty and _have_tqdm() else "builtin"
        if backend == "tqdm" and not _have_tqdm():
            raise ImportError("backend='tqdm' but tqdm is not installed (Debian: python3-tqdm)")
        self.backend = backend
        self._terminal = tty
        if backend == "tqdm":
            import tqdm
            self._tqdm = tqdm.tqdm(total=self.total, desc=desc, file=self.file, unit="job",
                                   mininterval=REDRAW_SECONDS if tty else LINE_SECONDS,
                                   dynamic_ncols=True, leave=True)
        elif backend == "builtin" and tty:
            self._draw(force=True)

    # ------------------------------------------------------------------ counts

    @property
    def total(self):
        if self._given is None:
            return self._tracked
        return max(self._given, self._tracked)

    @property
    def finished(self):
        """done + failed."""
        return self.done + self.failed

    def track(self, future):
        """Counts ``future`` (one more in the total unless ``total`` already holds
        it) and its end; returns it."""
        with self._lock:
            self._tracked += 1
            if self._tqdm is not None and self._tqdm.total != self.total:
                self._tqdm.total = self.total
        future.add_done_callback(self._ended)
        return future

    def _ended(self, future):
        try:
            failed = future.cancelled() or future.exception() is not None
        except BaseException:  # a cancellation racing with the check
            failed = True
        self.update(1, failed=failed)

    def update(self, n=1, failed=False):
        """Counts ``n`` more jobs ended (as failed ones with ``failed=True``)."""
        with self._lock:
            if failed:
                self.failed += n
            else:
                self.done += n
            if self._closed:
                return
            if self._tqdm is not None:
                if self._tqdm.total != self.total:
                    self._tqdm.total = self.total
                if self.failed:
                    self._tqdm.set_postfix_str(f"{self.failed} failed", refresh=False)
                self._tqdm.update(n)
            elif self.backend == "builtin":
                self._draw()

    # ------------------------------------------------------------------ drawing

    def _line(self, final=False):
        total, finished = self.total, self.finished
        elapsed = max(time.monotonic() - self._start, 1e-9)
        rate = finished / elapsed
        failed = f" ({self.failed} failed)" if self.failed else ""
        if finished >= total and (final or total):
            when = f"in {_clock(elapsed)}"
        elif rate > 0 and total > finished:
            when = f"ETA {_clock((total - finished) / rate)}"
        else:
            when = "ETA ?"
        label = f"{self.desc}: " if self.desc else ""
        stats = f"{finished}/{total}{failed} {rate:.1f}/s {when}"
        if not self._terminal:
            return f"{label}{finished}/{total} done{failed}, {rate:.1f} jobs/s, {when}"
        try:
            width = os.get_terminal_size(self.file.fileno()).columns or 80  # 0: size unset
        except (AttributeError, ValueError, OSError):
            width = 80
        frac = finished / total if total else 0.0
        room = width - 1 - len(label) - len(stats) - 8
        utf8 = (getattr(self.file, "encoding", None) or "").lower().replace("-", "") == "utf8"
        if room >= 5:
            fill = int(frac * room)
            bar = ("\u2588" if utf8 else "#") * fill + (" " if utf8 else ".") * (room - fill)
            text = f"{label}{int(frac * 100):3d}%|{bar}| {stats}"
        else:
            text = f"{label}{int(frac * 100):3d}% {stats}"
        return text[:max(width - 1, 1)]

    def _draw(self, force=False, final=False):
        """Called with the lock held."""
        now = time.monotonic()
        if self._terminal:
            if not force and self._last_draw is not None and now - self._last_draw < REDRAW_SECONDS:
                if self._timer is None:  # draw the latest state when the interval ends
                    self._timer = threading.Timer(REDRAW_SECONDS - (now - self._last_draw),
                                                  self._flush)
                    self._timer.daemon = True
                    self._timer.start()
                return
            line = self._line(final)
            pad = max(0, self._width - len(line))
            self._write("\r" + line + " " * pad + ("\n" if final else ""))
            self._width = len(line)
        else:
            state = (self.done, self.failed, self.total)
            if not final:
                since = now - (self._start if self._last_draw is None else self._last_draw)
                if state == self._last_state or since < LINE_SECONDS:
                    return
            self._last_state = state
            self._write(self._line(final) + "\n")
        self._last_draw = now

    def _flush(self):
        with self._lock:
            self._timer = None
            if not self._closed:
                self._draw(force=True)

    def _write(self, text):
        try:
            self.file.write(text)
            self.file.flush()
        except (OSError, ValueError):  # a closed or broken file: the work goes on
            pass

    def close(self):
        """Draws the final state (a last line) and stops drawing; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._tqdm is not None:
                self._tqdm.total = self.total
                if self.failed:
                    self._tqdm.set_postfix_str(f"{self.failed} failed", refresh=False)
                self._tqdm.close()
            elif self.backend == "builtin":
                self._draw(force=True, final=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self):
        return (f"<pyjobd.progress.Bar {self.desc or ''} {self.finished}/{self.total} "
                f"failed={self.failed} backend={self.backend}>")


def _have_tqdm():
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


def progress(futures, desc=None, file=None, *, backend=None):
    """Draws a bar over ``futures`` until all are done and returns them (a list).

    ``concurrent.futures`` futures (``pyjobd.Executor``'s): blocks until they are
    done. asyncio futures or other awaitables (``pyjobd.AsyncExecutor``'s): returns a
    coroutine, ``futures = await pyjobd.progress(fs)``; coroutines become tasks. It
    only waits: a failed future's exception stays in it."""
    futures = list(futures)
    if futures and not all(isinstance(f, concurrent.futures.Future) for f in futures):
        if any(isinstance(f, concurrent.futures.Future) for f in futures):
            raise TypeError("progress() got both concurrent.futures futures and awaitables")
        for f in futures:
            if not (isinstance(f, asyncio.Future) or inspect.isawaitable(f)):
                raise TypeError(f"progress() needs futures or awaitables, got {type(f).__name__}")
        return _aprogress(futures, desc, file, backend)
    with Bar(total=len(futures), desc=desc, file=file, backend=backend) as bar:
        for f in futures:
            bar.track(f)
        concurrent.futures.wait(futures)
    return futures


async def _aprogress(futures, desc, file, backend):
    futures = [asyncio.ensure_future(f) for f in futures]
    with Bar(total=len(futures), desc=desc, file=file, backend=backend) as bar:
        for f in futures:
            bar.track(f)
        await asyncio.wait(futures)
        await asyncio.sleep(0)  # the done callbacks of the last ones run first
    return futures


progress.Bar = Bar  # pyjobd.progress.Bar, though pyjobd.progress is the function
