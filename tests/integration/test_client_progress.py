"""pyjobd.progress and pyjobd.progress.Bar (client/python/pyjobd/progress.py).

A pseudo-terminal (os.openpty) stands for a user's terminal: the bar is redrawn in
place with \\r, at most ~10 times a second, and ends with its final counts. A pipe
stands for a log or CI: no redraws, at most a line every LINE_SECONDS and a final
line. Both the tqdm path (Debian python3-tqdm) and the built-in bar are run, with
futures of the real server and with futures completed from many threads at once."""

import asyncio
import concurrent.futures as cf
import fcntl
import importlib
import os
import re
import struct
import sys
import termios
import threading
import time

import pytest

from conftest import REPO_ROOT

CLIENT_DIR = os.path.join(REPO_ROOT, "client", "python")
if CLIENT_DIR not in sys.path:
    sys.path.insert(0, CLIENT_DIR)

import pyjobd  # noqa: E402

# pyjobd.progress is the function; its module is pyjobd.progress in sys.modules
progress_module = importlib.import_module("pyjobd.progress")
Bar = progress_module.Bar
assert pyjobd.progress.Bar is Bar is pyjobd.ProgressBar


class Capture:
    """A file for the bar (the slave side of a pty, or a pipe's write end) and what
    was written to it, read by a thread so the writer never blocks."""

    def __init__(self, tty, columns=100):
        if tty:
            master, slave = os.openpty()
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
            attrs = termios.tcgetattr(slave)
            attrs[1] &= ~termios.OPOST  # no \n -> \r\n translation: see the bytes as written
            termios.tcsetattr(slave, termios.TCSANOW, attrs)
            self.read_fd, write_fd = master, slave
        else:
            self.read_fd, write_fd = os.pipe()
        self.file = os.fdopen(write_fd, "w", encoding="utf-8")
        self.data = b""
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        while True:
            try:
                chunk = os.read(self.read_fd, 65536)
            except OSError:  # EIO: the pty's slave side is closed
                break
            if not chunk:
                break
            self.data += chunk
        self._done.set()

    def text(self):
        """Closes the writing side and returns all that was written."""
        self.file.close()
        assert self._done.wait(5), "the reader did not see the end"
        os.close(self.read_fd)
        return self.data.decode("utf-8")


@pytest.fixture
def ex(server):
    executor = pyjobd.Executor(server.base_url)
    yield executor
    executor.shutdown(wait=True, cancel_futures=True)


def _make_work():
    # made in a function so that cloudpickle ships it by value (the workers cannot
    # import this test module)
    def work(i):
        import time
        time.sleep(0.04)
        if i % 7 == 3:
            raise ValueError(i)
        return i
    return work


work = _make_work()


def redraws(text):
    return [part for part in text.split("\r") if part.strip()]


def test_builtin_bar_on_a_terminal_redraws_in_place(ex):
    cap = Capture(tty=True)
    t0 = time.monotonic()
    with Bar(desc="squares", file=cap.file, backend="builtin") as bar:
        futures = [bar.track(ex.submit(work, i)) for i in range(30)]
        cf.wait(futures)
    elapsed = time.monotonic() - t0
    text = cap.text()
    assert bar.done == 26 and bar.failed == 4 and bar.total == 30 and bar.finished == 30
    draws = redraws(text)
    assert len(draws) >= 3, text  # it moved while the jobs ran
    assert len(draws) <= elapsed * 10 + 4, (len(draws), elapsed)  # at most ~10 a second
    assert "\n" not in text[:-1] and text.endswith("\n"), repr(text[-200:])
    final = draws[-1]
    assert final.startswith("squares: 100%|") and "30/30 (4 failed)" in final, final
    assert re.search(r"\d+\.\d/s in \d+:\d\d", final), final
    assert any("ETA" in d for d in draws[:-1]), draws  # rate and ETA while it runs
    assert max(len(d.rstrip("\n")) for d in draws) <= 99  # fits the terminal's 100 columns


def test_tqdm_bar_on_a_terminal(ex):
    pytest.importorskip("tqdm")
    cap = Capture(tty=True)
    with Bar(desc="tq", file=cap.file) as bar:  # auto: tqdm on a terminal
        assert bar.backend == "tqdm"
        futures = [bar.track(ex.submit(work, i)) for i in range(30)]
        cf.wait(futures)
    text = cap.text()
    assert bar.done == 26 and bar.failed == 4
    draws = redraws(text)
    assert len(draws) >= 2 and text.endswith("\n"), repr(text)
    assert "30/30" in draws[-1] and "4 failed" in draws[-1] and "job" in draws[-1], draws[-1]
    assert len(draws) <= 60, len(draws)  # not one redraw per job update


def test_environment_forces_the_builtin_bar(ex, monkeypatch):
    pytest.importorskip("tqdm")
    monkeypatch.setenv("PYJOBD_PROGRESS", "builtin")
    cap = Capture(tty=True)
    with Bar(file=cap.file) as bar:
        assert bar.backend == "builtin"
        cf.wait([bar.track(ex.submit(abs, -i)) for i in range(5)])
    assert "5/5" in redraws(cap.text())[-1]
    monkeypatch.setenv("PYJOBD_PROGRESS", "off")
    cap = Capture(tty=True)
    with Bar(file=cap.file) as bar:
        cf.wait([bar.track(ex.submit(abs, -i)) for i in range(5)])
    assert bar.done == 5 and cap.text() == ""
    monkeypatch.setenv("PYJOBD_PROGRESS", "fancy")
    with pytest.raises(ValueError):
        Bar()


def test_without_tqdm_the_builtin_bar_draws(ex, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm now fails
    cap = Capture(tty=True)
    with Bar(file=cap.file) as bar:
        assert bar.backend == "builtin"
        cf.wait([bar.track(ex.submit(abs, -i)) for i in range(5)])
    assert "5/5" in redraws(cap.text())[-1]
    with pytest.raises(ImportError, match="python3-tqdm"):
        Bar(backend="tqdm")


def test_a_pipe_gets_no_redraws(ex):
    cap = Capture(tty=False)
    with Bar(desc="quiet", file=cap.file) as bar:  # auto: not a terminal, built in
        assert bar.backend == "builtin"
        cf.wait([bar.track(ex.submit(work, i)) for i in range(40)])
    text = cap.text()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert len(lines) == 1, text  # within LINE_SECONDS: the final line only
    assert lines[0].startswith("quiet: 40/40 done (6 failed), ") and " in 0:0" in lines[0], lines[0]


def test_a_pipe_gets_a_line_every_interval(ex, monkeypatch):
    monkeypatch.setattr(progress_module, "LINE_SECONDS", 0.3)
    cap = Capture(tty=False)
    t0 = time.monotonic()
    with Bar(file=cap.file) as bar:
        cf.wait([bar.track(ex.submit(work, i)) for i in range(40)])
    elapsed = time.monotonic() - t0
    lines = cap.text().splitlines()
    assert "\r" not in "".join(lines)
    assert 2 <= len(lines) <= elapsed / 0.3 + 2, (len(lines), elapsed, lines)
    assert all("done" in line for line in lines) and lines[-1].startswith("40/40 done")
    assert "ETA" in lines[0]


def test_progress_of_futures_returns_them(ex):
    cap = Capture(tty=False)
    futures = [ex.submit(work, i) for i in range(14)]
    got = pyjobd.progress(futures, desc="all", file=cap.file)
    assert got == futures and all(f.done() for f in got)
    assert [f.result() for f in got if not f.exception()] == [i for i in range(14) if i % 7 != 3]
    line = cap.text().strip()
    assert line.startswith("all: 14/14 done (2 failed)"), line
    assert pyjobd.progress([], file=Capture(tty=False).file) == []


def test_callbacks_from_many_threads(monkeypatch):
    """Futures completed by 8 threads at once: exact counts, redraws still bounded."""
    cap = Capture(tty=True)
    futures = [cf.Future() for _ in range(4000)]
    t0 = time.monotonic()
    with Bar(desc="threads", file=cap.file, backend="builtin") as bar:
        for f in futures:
            bar.track(f)

        def finish(part):
            for i, f in enumerate(part):
                if i % 4 == 0:
                    f.set_exception(KeyError(i))
                else:
                    f.set_result(i)
                if i % 50 == 0:
                    time.sleep(0.001)

        threads = [threading.Thread(target=finish, args=(futures[k::8],)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    elapsed = time.monotonic() - t0
    assert bar.done == 3000 and bar.failed == 1000 and bar.total == 4000
    draws = redraws(cap.text())
    assert "4000/4000 (1000 failed)" in draws[-1], draws[-1]
    assert len(draws) <= elapsed * 10 + 4, (len(draws), elapsed)


def test_tqdm_bar_from_many_threads():
    pytest.importorskip("tqdm")
    cap = Capture(tty=True)
    futures = [cf.Future() for _ in range(2000)]
    with Bar(file=cap.file, backend="tqdm") as bar:
        for f in futures:
            bar.track(f)
        threads = [threading.Thread(target=lambda p: [f.set_result(1) for f in p],
                                    args=(futures[k::8],)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert bar.done == 2000
    assert "2000/2000" in redraws(cap.text())[-1]


def test_asyncio_futures(server):
    async def main():
        cap = Capture(tty=False)
        async with pyjobd.AsyncExecutor(server.base_url) as aex:
            futures = [aex.submit(work, i) for i in range(14)]
            got = await pyjobd.progress(futures, desc="async", file=cap.file)
            assert got == futures and all(f.done() for f in got)
            assert [f.result() for f in got if not f.exception()] == \
                [i for i in range(14) if i % 7 != 3]
            with Bar(file=Capture(tty=False).file) as bar:
                fs = [bar.track(aex.submit(abs, -i)) for i in range(10)]
                await asyncio.gather(*fs)
                await asyncio.sleep(0)  # the bar's callbacks run after gather's
                assert bar.done == 10
        assert cap.text().strip().startswith("async: 14/14 done (2 failed)")
    asyncio.run(asyncio.wait_for(main(), 25))


def test_a_given_total_is_not_counted_twice():
    bar = Bar(total=10, backend="off")
    for _ in range(4):
        bar.track(cf.Future())
    assert bar.total == 10
    for _ in range(8):
        bar.track(cf.Future())
    assert bar.total == 12  # never below what is tracked
    bar.update(3)
    bar.update(failed=True)
    assert (bar.done, bar.failed, bar.finished) == (3, 1, 4)
    bar.close()
    bar.close()  # idempotent
