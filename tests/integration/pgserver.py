"""A throw-away PostgreSQL server for the integration tests (issue 10).

    pg = PgServer().start()              # initdb in a temp dir, postgres on a free loopback port
    uri = pg.create_database("t_one")    # 'postgresql://postgres@127.0.0.1:PORT/t_one'
    pg.sql("t_one", "SELECT 1")          # [('1',)]  (rows of strings, None for NULL)
    pg.query("t_one", "SELECT 1 AS n")   # [{'n': 1}]  (typed, through json)
    pg.restart()                         # fast shutdown, start again: same port, same data
    pg.close()                           # stop (by PID) and delete the directory

Debian's server binaries are used (/usr/lib/postgresql/*/bin, the newest version, or
PYJOBD_PG_BINDIR). When they are missing the tests fail saying to run `make deps`,
or are skipped when PYJOBD_PG_OPTIONAL=1.

PostgreSQL refuses to run as root, so under root initdb and postgres run as the
`postgres` user (created by Debian's package) and the temp dir is chowned to it. The
server is started directly (not through pg_ctl, systemd or pg_ctlcluster), so the
process we hold is the postmaster itself and is stopped by its PID: SIGINT (fast
shutdown), SIGKILL after a timeout. The Debian cluster (port 5432) is never touched.
Durability is off (fsync, synchronous_commit, full_page_writes): the tests restart
the server, they never crash the machine.

Clients connect over TCP on 127.0.0.1 with trust authentication as `postgres`; psql
(from the same bindir) runs the helper queries, so no Python driver is needed.

Run `python3 tests/integration/pgserver.py` for a smoke test with timings.
"""

import glob
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

START_TIMEOUT = 30.0  # seconds for the server to accept connections
STOP_TIMEOUT = 15.0  # seconds between SIGINT (fast shutdown) and SIGKILL
PSQL_TIMEOUT = 60.0  # seconds for one helper query

SUPERUSER = "postgres"
DBNAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

_FS = "\x1f"  # psql field separator (unit separator)
_RS = "\x1e"  # psql record separator (record separator)
_NULL = "\x02NULL\x03"  # psql null display: cannot be a real text value in practice

# Settings for a fast, disposable server. unix_socket_directories and the port are
# added per instance.
SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "64MB",
    "max_wal_size": "1GB",
    "log_min_messages": "warning",
    "log_line_prefix": "%m [%p] %q%u@%d ",
    "logging_collector": "off",
    "timezone": "UTC",
}


class PgError(AssertionError):
    """A helper query or a server start/stop went wrong (an AssertionError, so a
    test using the harness fails with the message rather than erroring)."""


# --------------------------------------------------------------------------- binaries


def _version_key(path):
    # /usr/lib/postgresql/15/bin -> (15,), /usr/lib/postgresql/9.6/bin -> (9, 6)
    v = os.path.basename(os.path.dirname(path))
    try:
        return tuple(int(x) for x in v.split("."))
    except ValueError:
        return (-1,)


def find_bindir():
    """The directory holding initdb, postgres, pg_ctl, psql and pg_isready, or None."""
    need = ("initdb", "postgres", "pg_ctl", "psql", "pg_isready")
    env = os.environ.get("PYJOBD_PG_BINDIR")
    candidates = [env] if env else sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    for d in candidates:
        if all(os.access(os.path.join(d, n), os.X_OK) for n in need):
            return d
    return None


def require_bindir():
    """find_bindir(), or fail the test (skip it when PYJOBD_PG_OPTIONAL=1)."""
    d = find_bindir()
    if d:
        return d
    where = os.environ.get("PYJOBD_PG_BINDIR") or "/usr/lib/postgresql/*/bin"
    msg = (f"PostgreSQL server binaries (initdb, postgres, pg_ctl, psql, pg_isready) not found in {where}: "
           "run `make deps` (apt-get install postgresql libpq-dev)")
    if os.environ.get("PYJOBD_PG_OPTIONAL") == "1":
        pytest.skip(msg + " [skipped because PYJOBD_PG_OPTIONAL=1]")
    pytest.fail(msg + " (or set PYJOBD_PG_OPTIONAL=1 to skip the PostgreSQL tests)", pytrace=False)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _clean_env(extra=None):
    """The caller's environment without PG* variables (they would redirect psql)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.setdefault("PATH", "/usr/bin:/bin")
    env["LC_ALL"] = "C"
    env.pop("LANG", None)
    env.update(extra or {})
    return env


# --------------------------------------------------------------------------- server


class PgServer:
    """One PostgreSQL server in its own temp directory, on 127.0.0.1:port."""

    def __init__(self, bindir=None, port=None, settings=None):
        self.bindir = bindir or require_bindir()
        self.port = port
        self.settings = dict(SERVER_SETTINGS)
        self.settings.update(settings or {})
        self.dir = None
        self.datadir = None
        self.log_path = None
        self.proc = None
        self.run_as = None  # (uid, gid) when we are root
        self.start_seconds = None  # the last start(), initdb excluded
        self.initdb_seconds = None

    # ---- paths and users

    def bin(self, name):
        return os.path.join(self.bindir, name)

    def _user_kwargs(self):
        if self.run_as is None:
            return {}
        uid, gid = self.run_as
        return {"user": uid, "group": gid, "extra_groups": []}

    def _setup_dir(self):
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam(SUPERUSER)
            except KeyError:
                raise PgError("running as root, PostgreSQL must run as the 'postgres' user, which does not "
                              "exist: run `make deps` (the postgresql package creates it)")
            self.run_as = (pw.pw_uid, pw.pw_gid)
        # Under root the server runs as postgres and must be able to reach its
        # directory: $TMPDIR may be a private 0700 dir, so use /tmp unless told.
        base = os.environ.get("PYJOBD_PG_TMPDIR") or ("/tmp" if self.run_as else None)
        self.dir = tempfile.mkdtemp(prefix="pyjobd-pg-", dir=base)
        os.chmod(self.dir, 0o700)
        if self.run_as:
            os.chown(self.dir, *self.run_as)
        self.datadir = os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.dir, "postgres.log")

    # ---- lifecycle

    def start(self):
        """initdb (first time only), then start postgres and wait until it accepts
        connections. Returns self."""
        if self.running:
            return self
        if self.dir is None:
            self._setup_dir()
            self._initdb()
        fixed_port = self.port is not None
        for attempt in range(5):
            if not fixed_port:
                self.port = free_port()
            try:
                self._start_once()
                return self
            except PgError as e:
                # Another process took the port between free_port() and bind(): pick again.
                if fixed_port or "could not bind" not in str(e) and "in use" not in str(e):
                    raise
        raise PgError(f"could not find a free port for PostgreSQL after 5 attempts\n{self.log_tail()}")

    def _initdb(self):
        t0 = time.monotonic()
        cmd = [self.bin("initdb"), "-D", self.datadir, "-U", SUPERUSER, "--auth=trust", "--no-sync",
               "--encoding=UTF8", "--locale=C", "--no-instructions"]
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           cwd=self.dir, env=_clean_env({"HOME": self.dir}), timeout=120,
                           **self._user_kwargs())
        if r.returncode != 0:
            raise PgError(f"{' '.join(cmd)} failed (exit {r.returncode}):\n{r.stdout.decode(errors='replace')}")
        self.initdb_seconds = time.monotonic() - t0

    def _start_once(self):
        t0 = time.monotonic()
        settings = dict(self.settings, unix_socket_directories=self.dir)
        cmd = [self.bin("postgres"), "-D", self.datadir, "-p", str(self.port)]
        for k, v in settings.items():
            cmd += ["-c", f"{k}={v}"]
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.dir,
                                         env=_clean_env({"HOME": self.dir}), start_new_session=True,
                                         **self._user_kwargs())
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            rc = self.proc.poll()
            if rc is not None:
                self.proc = None
                raise PgError(f"postgres exited with code {rc} while starting on port {self.port}:\n{self.log_tail()}")
            r = subprocess.run([self.bin("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port),
                                "-U", SUPERUSER, "-d", "postgres", "-t", "1"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=_clean_env())
            if r.returncode == 0:
                break
            if time.monotonic() > deadline:
                self._kill()
                raise PgError(f"postgres not accepting connections on 127.0.0.1:{self.port} after "
                              f"{START_TIMEOUT}s:\n{self.log_tail()}")
            time.sleep(0.02)
        self.start_seconds = time.monotonic() - t0

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def stop(self, mode="fast", timeout=STOP_TIMEOUT):
        """Stops the postmaster by PID. mode: 'fast' (SIGINT: disconnect clients, clean
        shutdown), 'immediate' (SIGQUIT: crash recovery at the next start) or 'kill'
        (SIGKILL). Escalates to SIGKILL after timeout seconds. Returns the exit code.

        With synchronous_commit=off (SERVER_SETTINGS), 'immediate' and 'kill' lose the
        transactions of the last few hundred milliseconds even though their clients saw
        COMMIT succeed: use 'fast' wherever a test asserts that nothing is lost."""
        if self.proc is None:
            return None
        sig = {"fast": signal.SIGINT, "immediate": signal.SIGQUIT, "kill": signal.SIGKILL}[mode]
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._kill()
        rc = self.proc.returncode
        self.proc = None
        if mode == "kill" or rc not in (0, None):
            self._wait_backends_gone()
        return rc

    def _kill(self):
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # postmaster and its backends
            except OSError:
                self.proc.kill()
            self.proc.wait()

    def _wait_backends_gone(self, timeout=5.0):
        """After a hard stop, backends exit on their own when they notice the
        postmaster died; a new postmaster refuses to start while they hold the shared
        memory. Kill whatever is left of our process group."""
        deadline = time.monotonic() + timeout
        pgid = None
        pidfile = os.path.join(self.datadir, "postmaster.pid")
        try:
            with open(pidfile) as f:
                pgid = int(f.readline())
        except (OSError, ValueError):
            return
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            except OSError:
                return
            time.sleep(0.05)
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass

    def restart(self, mode="fast", down_seconds=0.0):
        """Stops the server (see stop), stays down down_seconds, starts it again on
        the same port with the same data. Returns the seconds it was not accepting
        connections (approximately)."""
        t0 = time.monotonic()
        self.stop(mode)
        if down_seconds:
            time.sleep(down_seconds)
        self.start()
        return time.monotonic() - t0

    def close(self):
        """Stops the server and removes its directory (keeps it when
        PYJOBD_PG_KEEP=1, for post-mortems)."""
        try:
            self.stop()
        finally:
            if self.dir and os.environ.get("PYJOBD_PG_KEEP") != "1":
                shutil.rmtree(self.dir, ignore_errors=True)
                self.dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def log_tail(self, limit=6000):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - limit))
                return f.read().decode("utf-8", "replace")
        except (OSError, TypeError):
            return ""

    # ---- databases and queries

    def uri(self, dbname="postgres", scheme="postgresql", user=SUPERUSER, password=None, params=None):
        cred = user + (f":{password}" if password is not None else "")
        q = ("?" + "&".join(f"{k}={v}" for k, v in params.items())) if params else ""
        return f"{scheme}://{cred}@127.0.0.1:{self.port}/{dbname}{q}"

    def create_database(self, name):
        """CREATE DATABASE name; returns its libpq URI."""
        if not DBNAME_RE.match(name):
            raise ValueError(f"database name {name!r}: use [a-z_][a-z0-9_]*, at most 63 characters")
        self.sql("postgres", f'CREATE DATABASE "{name}"')
        return self.uri(name)

    def drop_database(self, name):
        """DROP DATABASE IF EXISTS name, disconnecting its clients."""
        if not DBNAME_RE.match(name):
            raise ValueError(f"database name {name!r}")
        self.sql("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def terminate_connections(self, dbname):
        """pg_terminate_backend() on every client of dbname; returns how many."""
        rows = self.sql("postgres", "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                    f"WHERE datname = '{_literal(dbname)}' AND pid <> pg_backend_pid()")
        return int(rows[0][0])

    def sql(self, dbname, query, timeout=PSQL_TIMEOUT):
        """Runs query (one statement, or several: the last one's rows are returned)
        with psql; returns a list of tuples of str (None for NULL). Raises PgError
        with psql's message when the statement fails."""
        if not self.running:
            raise PgError(f"PostgreSQL is not running (query {query!r})")
        cmd = [self.bin("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
               "-F", _FS, "-R", _RS, "-P", f"null={_NULL}", "-P", "footer=off",
               "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, "-d", dbname, "-c", query]
        try:
            r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout,
                               env=_clean_env({"PGCONNECT_TIMEOUT": "5"}))
        except subprocess.TimeoutExpired:
            raise PgError(f"psql -d {dbname}: {query!r} took more than {timeout}s")
        if r.returncode != 0:
            raise PgError(f"psql -d {dbname}: {query!r} failed (exit {r.returncode}): "
                          f"{r.stderr.decode(errors='replace').strip()}")
        out = r.stdout.decode("utf-8")
        if out.endswith("\n"):
            out = out[:-1]
        if not out:
            return []
        return [tuple(None if v == _NULL else v for v in rec.split(_FS)) for rec in out.split(_RS)]

    def query(self, dbname, select, timeout=PSQL_TIMEOUT):
        """Runs a SELECT (or anything usable as a subquery) and returns its rows as
        dicts with JSON-typed values (numbers, booleans, None, strings, nested)."""
        wrapped = f"SELECT coalesce(json_agg(_pyjobd_q), '[]'::json) FROM ({select}) AS _pyjobd_q"
        rows = self.sql(dbname, wrapped, timeout=timeout)
        return json.loads(rows[0][0])

    def value(self, dbname, select, timeout=PSQL_TIMEOUT):
        """The single value of a one-row, one-column SELECT (typed, through json)."""
        rows = self.query(dbname, select, timeout=timeout)
        if len(rows) != 1 or len(rows[0]) != 1:
            raise PgError(f"{select!r}: expected one row of one column, got {rows!r}")
        return next(iter(rows[0].values()))


def _literal(s):
    return str(s).replace("'", "''")


# --------------------------------------------------------------------------- smoke test

if __name__ == "__main__":
    t0 = time.monotonic()
    with PgServer() as pg:
        t1 = time.monotonic()
        print(f"bindir {pg.bindir}; initdb {pg.initdb_seconds:.2f}s, start {pg.start_seconds:.2f}s "
              f"(total {t1 - t0:.2f}s); port {pg.port}, pid {pg.pid}, dir {pg.dir}")
        print(pg.create_database("smoke_a"), pg.create_database("smoke_b"))
        print(pg.sql("smoke_a", "SELECT 1, NULL, 'x'"), pg.query("smoke_b", "SELECT 1 AS one, now() AS t"))
        down = pg.restart()
        print(f"restart {down:.2f}s; start {pg.start_seconds:.2f}s;", pg.value("smoke_a", "SELECT 2 AS two"))
    print(f"closed; total {time.monotonic() - t0:.2f}s")
