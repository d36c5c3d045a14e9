"""pytest fixtures for tests that need PostgreSQL (see pgserver.py).

Import them into a test module:

    from conftest_pg import pg_server, pg_db  # noqa: F401  (fixtures)

* pg_server (session): one PostgreSQL server for the whole run, started on first use,
  stopped by PID at the end of the session.
* pg_db (function): a fresh database per test, named after the test; an object with
  .name, .uri (postgresql://...), .uri_postgres (postgres://...), .sql(q), .query(q),
  .value(q), .server. Dropped (WITH FORCE) after the test. If the test left the
  server stopped, it is started again so the next tests have one.
"""

import itertools
import re

import pytest

from pgserver import PgServer

_counter = itertools.count(1)


class PgDatabase:
    def __init__(self, server, name):
        self.server = server
        self.name = name

    @property
    def uri(self):
        return self.server.uri(self.name)

    @property
    def uri_postgres(self):
        return self.server.uri(self.name, scheme="postgres")

    def sql(self, query, **kw):
        return self.server.sql(self.name, query, **kw)

    def query(self, select, **kw):
        return self.server.query(self.name, select, **kw)

    def value(self, select, **kw):
        return self.server.value(self.name, select, **kw)

    def __repr__(self):
        return f"<PgDatabase {self.uri}>"


@pytest.fixture(scope="session")
def pg_server():
    server = PgServer()  # fails (or skips with PYJOBD_PG_OPTIONAL=1) without the binaries
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def pg_db(pg_server, request):
    base = re.sub(r"[^a-z0-9_]+", "_", request.node.name.lower()).strip("_")
    name = f"t{next(_counter)}_{base}"[:63].rstrip("_")
    pg_server.create_database(name)
    db = PgDatabase(pg_server, name)
    yield db
    if not pg_server.running:  # a test stopped it and failed before starting it again
        pg_server.start()
    pg_server.drop_database(name)
