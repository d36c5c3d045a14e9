"""A small thread-safe HTTP/1.1 client with keep-alive connections (stdlib only)."""

import http.client
import json
import threading
import urllib.parse

from .errors import ServerConnectionError, ServerError

USER_AGENT = "pyjobd-python-client/0.1"

# Errors that mean "the kept-alive connection was closed by the server before it
# answered": the request was not processed, so it is safe to resend it once.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
          ConnectionAbortedError)


class Response:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body) if self.body else None


def problem_text(resp):
    """The human-readable part of an error answer (problem+json detail, else the body)."""
    try:
        p = json.loads(resp.body)
    except (ValueError, TypeError):
        p = None
    if isinstance(p, dict):
        title = p.get("title") or ""
        detail = p.get("detail") or ""
        text = f"{title}: {detail}" if title and detail else (detail or title)
        return text or resp.body[:500].decode("utf-8", "replace"), p
    return resp.body[:500].decode("utf-8", "replace").strip(), None


class HTTPClient:
    def __init__(self, url, token=None, timeout=60.0):
        parsed = urllib.parse.urlsplit(url if "//" in url else "http://" + url)
        if parsed.scheme not in ("http", "https"):
            raise ValueError(f"pyjobd URL must be http:// or https://, got {url!r}")
        if not parsed.hostname:
            raise ValueError(f"pyjobd URL has no host: {url!r}")
        self.url = urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, parsed.path.rstrip("/"), "", ""))
        self._scheme = parsed.scheme
        self._host = parsed.hostname
        self._port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self._prefix = parsed.path.rstrip("/")
        self._timeout = timeout
        self._headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._idle = []
        self._lock = threading.Lock()
        self._closed = False

    # ---------------------------------------------------------------- connections

    def new_connection(self, timeout=None):
        cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
        return cls(self._host, self._port, timeout=timeout or self._timeout)

    def _acquire(self):
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        return self.new_connection(), False

    def _release(self, conn):
        with self._lock:
            if not self._closed and len(self._idle) < 16:
                self._idle.append(conn)
                return
        conn.close()

    def close(self):
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for c in idle:
            c.close()

    # ---------------------------------------------------------------- requests

    def _encode(self, body, extra=None):
        headers = dict(self._headers)
        headers.update(extra or {})
        if body is not None:
            if not isinstance(body, (bytes, bytearray)):
                body = json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        return body, headers

    def connection_error(self, exc):
        return ServerConnectionError(
            f"cannot reach the pyjobd server at {self.url}: {exc.__class__.__name__}: {exc}"
            + (" (is the server running? start it with `make run` or `pyjobd --port N`)"
               if isinstance(exc, ConnectionRefusedError) else ""),
            url=self.url)

    def send(self, conn, method, path, body=None):
        """Sends one request on conn (no response read). Used for abortable long-polls."""
        body, headers = self._encode(body)
        try:
            conn.request(method, self._prefix + path, body=body, headers=headers)
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise self.connection_error(e) from e

    def receive(self, conn):
        try:
            r = conn.getresponse()
            data = r.read()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise self.connection_error(e) from e
        if r.will_close:
            conn.close()
        return Response(r.status, r.headers, data)

    def request(self, method, path, body=None, headers=None):
        """One request on a pooled keep-alive connection; returns a Response whatever
        its status. Raises ServerConnectionError when the server cannot be reached.
        headers: extra request headers (an Idempotency-Key goes with every resend)."""
        body, headers = self._encode(body, headers)
        for attempt in range(3):
            conn, reused = self._acquire()
            try:
                conn.request(method, self._prefix + path, body=body, headers=headers)
                r = conn.getresponse()
                data = r.read()
            except _STALE as e:
                conn.close()
                if reused:
                    continue  # the server closed an idle keep-alive connection: resend
                raise self.connection_error(e) from e
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                raise self.connection_error(e) from e
            if r.will_close:
                conn.close()
            else:
                self._release(conn)
            return Response(r.status, r.headers, data)
        raise self.connection_error(ConnectionError("connection closed repeatedly"))

    def call(self, method, path, body=None, ok=(200, 201)):
        """request() that returns the decoded JSON of a successful answer and raises
        ServerError (with the problem+json detail) otherwise."""
        resp = self.request(method, path, body)
        if resp.status not in ok:
            raise self.error(method, path, resp)
        try:
            return resp.json()
        except ValueError as e:
            raise ServerError(f"{method} {self.url}{path}: answer is not JSON: {e}",
                              status=resp.status, url=self.url) from None

    def error(self, method, path, resp):
        text, problem = problem_text(resp)
        return ServerError(f"{method} {self.url}{path} failed with HTTP {resp.status}: {text}",
                           status=resp.status, problem=problem, url=self.url)

