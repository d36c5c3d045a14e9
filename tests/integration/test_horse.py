"""--isolation job, the horse's cheap fork (pool/worker/fork_hooks.c, arenas.c).

A horse is forked without the at-fork hooks that only repair what other threads left
(threading's, logging's), and pymalloc's arenas sit on huge pages that the worker keeps
by writing no Python object while a horse lives. Each test checks what that must not
cost: the horse is a whole Python process (its threading state, logging from threads,
its own forks run every hook), hooks the server does not know still run, a worker with
a thread of its own forks the usual way, and the worker's huge pages survive its jobs.

Run from the repository root:

    PYJOBD_BIN=build/pyjobd /usr/bin/python3 -m pytest -q tests/integration/test_horse.py
"""

import os
import pathlib
import shutil
import sys
import tempfile
import textwrap

import cloudpickle
import pytest

from conftest import decode_result

cloudpickle.register_pickle_by_value(sys.modules[__name__])

ROOT_OK = ["--allow-root-workers"] if os.geteuid() == 0 else []


@pytest.fixture
def init_dir():
    """A directory for a --worker-init module, readable whatever user workers run as."""
    d = tempfile.mkdtemp(prefix="pyjobd-horse-")
    os.chmod(d, 0o755)
    yield pathlib.Path(d)
    shutil.rmtree(d, ignore_errors=True)


def whole_process():
    """What a job can see of its own process: threads, logging from a thread, a fork."""
    import logging
    import os
    import threading

    seen = {"pid": os.getpid(),
            "is_main": threading.current_thread() is threading.main_thread(),
            "threads": threading.active_count()}
    # logging's lock must be free in the horse: a thread that logs would hang on it.
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    t = threading.Thread(target=lambda: logging.getLogger("horse").info("from a thread"))
    t.start()
    t.join(10)
    seen["thread_logged"] = not t.is_alive()
    # A fork the job makes runs every at-fork hook: the lists are back after the horse's.
    r, w = os.pipe()
    os.register_at_fork(after_in_child=lambda: os.write(w, b"hook "))
    pid = os.fork()
    if pid == 0:
        t = threading.Thread(target=lambda: os.write(w, b"thread-ok"))
        t.start()
        t.join(10)
        os._exit(0)
    os.waitpid(pid, 0)
    os.close(w)
    seen["child"] = os.read(r, 100).decode()
    return seen


def test_a_horse_is_a_whole_python_process(make_server):
    s = make_server("--workers", "1", "--isolation", "job", *ROOT_OK)
    for _ in range(2):  # the second from a worker that already forked one horse
        seen = decode_result(s.run(whole_process, timeout=20))
        assert seen["is_main"] and seen["threads"] == 1, seen
        assert seen["thread_logged"], "a thread that logs hung on logging's lock"
        assert seen["child"] == "hook thread-ok", f"the job's own fork: {seen['child']!r}"


def test_hooks_the_server_does_not_know_run_in_every_horse(make_server, init_dir):
    """random, imported by --worker-init, reseeds in each horse (else every job would
    draw the same numbers), and a hook of the init module runs."""
    (init_dir / "pyjobd_horse_init.py").write_text(textwrap.dedent("""\
        import os
        import random
        FORKED_IN = None

        def _mark():
            global FORKED_IN
            FORKED_IN = os.getpid()

        def setup():
            os.register_at_fork(after_in_child=_mark)
        """))
    s = make_server("--workers", "1", "--isolation", "job", "--worker-cwd", str(init_dir),
                    "--worker-init", "pyjobd_horse_init:setup", *ROOT_OK)

    def draw():
        import os
        import random

        import pyjobd_horse_init as m
        return random.random(), m.FORKED_IN, os.getpid()
    a, b = (decode_result(s.run(draw)) for _ in range(2))
    assert a[0] != b[0], f"two horses drew the same random number: {a[0]}"
    for value, forked_in, pid in (a, b):
        assert forked_in == pid, f"the init module's at-fork hook did not run: {forked_in} != {pid}"


def test_a_worker_with_a_thread_forks_with_every_hook(make_server, init_dir):
    """A thread of the worker's own (--worker-init) is not in the horse: threading's
    hook must run there, and does (the horse sees one thread)."""
    (init_dir / "pyjobd_horse_thread.py").write_text(textwrap.dedent("""\
        import threading
        import time

        def setup():
            threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
        """))
    s = make_server("--workers", "1", "--isolation", "job", "--worker-cwd", str(init_dir),
                    "--worker-init", "pyjobd_horse_thread:setup", *ROOT_OK)

    def threads():
        import threading
        return threading.active_count(), threading.current_thread() is threading.main_thread()
    count, is_main = decode_result(s.run(threads))
    assert count == 1 and is_main, f"the horse has {count} threads (main: {is_main})"


def anon_huge_kb(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("AnonHugePages:"):
                return int(line.split()[1])
    return 0


def zygote_of(s, workers):
    """The server's zygote: its child started with --zygote that is not a worker (the
    workers it forks carry its command line and are the server's children too)."""
    kids = set()
    for task in os.listdir(f"/proc/{s.proc.pid}/task"):
        with open(f"/proc/{s.proc.pid}/task/{task}/children") as f:
            kids.update(int(p) for p in f.read().split())
    for pid in kids - set(workers):
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if b"--zygote" in f.read().split(b"\0"):
                return pid
    pytest.fail(f"no zygote among the server's children {sorted(kids)} (workers {workers})")


def test_an_isolated_worker_keeps_its_huge_pages(make_server):
    """The worker writes no Python object while a horse lives: its arenas stay huge
    pages (a write while the horse shares them splits one for good, and the next fork
    copies 512 entries instead of one). The zygote, which never writes after its boot,
    holds as many."""
    thp = pathlib.Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if not thp.exists() or "[never]" in thp.read_text():
        pytest.skip("transparent huge pages are off on this machine")
    s = make_server("--workers", "1", "--isolation", "job", *ROOT_OK)
    worker = s.run(abs, -1)["worker_pid"]  # the horse's parent, as the server knows it
    zygote = anon_huge_kb(zygote_of(s, [worker]))
    if zygote == 0:
        pytest.skip("the kernel gave the zygote no huge page (memory too fragmented?)")
    for i in range(30):
        assert decode_result(s.run(abs, -i)) == i
    assert anon_huge_kb(worker) >= zygote, \
        f"after 30 jobs the worker has {anon_huge_kb(worker)} kB of huge pages, its zygote {zygote} kB"
