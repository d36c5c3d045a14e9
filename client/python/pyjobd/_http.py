"""A small thread-safe HTTP/1.1 client with keep-alive connections (stdlib only).

Written on sockets rather than http.client: a request is one ``sendall`` of its head
and body, and an answer is parsed from one buffer (http.client parses headers with the
email package), which makes a round trip on a loopback connection about 70 µs
cheaper. A large body is sent in pieces while the socket is watched for an early
answer, so that a server refusing it (413, then closing the connection) is heard
instead of a broken pipe."""

import collections
import json
import re
import select
import socket
import ssl
import threading
import urllib.parse

from .errors import PayloadTooLargeError, ServerConnectionError, ServerError

USER_AGENT = "pyjobd-python-client/0.1"

# What may not appear in a request's path (controls, space) or in a header value (CR,
# LF, NUL): either would let a value given to the client (a token, an idempotency key,
# a job id in an answer) write other headers or another request.
_BAD_PATH = re.compile(r"[\x00-\x20\x7f]")
_BAD_VALUE = re.compile(r"[\r\n\x00]")

# Largest head (status line and headers) of an answer.
MAX_HEAD_BYTES = 1 << 20
# Bodies longer than this are sent in pieces of this size, watching for an early answer.
SEND_PIECE = 1 << 20


class RemoteDisconnected(ConnectionError):
    """The server closed the connection before it answered."""


class Headers(dict):
    """An answer's headers: names lowercased; ``get``/``[]`` take any case."""

    def get(self, name, default=None):
        return dict.get(self, name.lower(), default)

    def __getitem__(self, name):
        return dict.__getitem__(self, name.lower())

    def __contains__(self, name):
        return dict.__contains__(self, name.lower())


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


class _EarlyAnswer(Exception):
    """The server answered before the whole body was sent."""


class Connection:
    """One keep-alive connection. ``sock`` is None until the first request is sent."""

    def __init__(self, host, port, timeout, ssl_context=None):
        self.host = host
        self.port = port
        self.timeout = timeout
        self._ssl = ssl_context
        self.sock = None
        self._buf = bytearray()
        self.received = 0  # bytes of the current answer read so far
        self.will_close = False

    def connect(self):
        sock = socket.create_connection((self.host, self.port), self.timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl is not None:
                sock = self._ssl.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        self.sock = sock

    def close(self):
        sock, self.sock = self.sock, None
        self._buf.clear()
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    # ---------------------------------------------------------------- sending

    def send(self, head, body):
        """Sends a request. Raises _EarlyAnswer when the server answered (and so
        stopped reading) before all of a large body was sent."""
        if self.sock is None:
            self.connect()
        self.received = 0
        sock = self.sock
        if body is None or len(body) <= SEND_PIECE:
            sock.sendall(head + body if body else head)
            return
        sock.sendall(head)
        view = memoryview(body)
        sent = 0
        while sent < len(view):
            r, w, _ = select.select([sock], [sock], [], self.timeout)
            if r:
                raise _EarlyAnswer()
            if not w:
                raise TimeoutError(f"could not send the request body within {self.timeout:g} s")
            try:
                sent += sock.send(view[sent:sent + SEND_PIECE])
            except (BrokenPipeError, ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
                # The server may have answered (413) and closed: its answer can still
                # be in our receive buffer.
                raise _EarlyAnswer() from None

    # ---------------------------------------------------------------- receiving

    def _fill(self):
        data = self.sock.recv(262144)
        if not data:
            raise RemoteDisconnected("the server closed the connection before answering"
                                     if not self.received else
                                     "the server closed the connection in the middle of its answer")
        self.received += len(data)
        self._buf += data

    def _read_head(self):
        buf = self._buf
        start = 0
        while True:
            end = buf.find(b"\r\n\r\n", start)
            if end >= 0:
                head = bytes(buf[:end])
                del buf[:end + 4]
                return head
            if len(buf) > MAX_HEAD_BYTES:
                raise OSError("the server's answer has a head longer than 1 MiB")
            start = max(0, len(buf) - 3)
            self._fill()

    def _read_exact(self, n):
        buf = self._buf
        if len(buf) >= n:
            data = bytes(buf[:n])
            del buf[:n]
            return data
        out = bytearray(n)
        view = memoryview(out)
        have = len(buf)
        view[:have] = buf
        buf.clear()
        while have < n:
            got = self.sock.recv_into(view[have:], min(n - have, 1 << 22))
            if not got:
                raise RemoteDisconnected("the server closed the connection in the middle of its answer")
            self.received += got
            have += got
        return bytes(out)

    def _read_line(self):
        while True:
            i = self._buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self._buf[:i])
                del self._buf[:i + 2]
                return line
            if len(self._buf) > 65536:
                raise OSError("a chunk-size line of the server's answer is too long")
            self._fill()

    def _read_chunked(self):
        parts = []
        while True:
            size = int(self._read_line().split(b";", 1)[0].strip(), 16)
            if size == 0:
                while self._read_line():  # trailers, up to the blank line
                    pass
                return b"".join(parts)
            parts.append(self._read_exact(size))
            if self._read_line():
                raise OSError("malformed chunked body in the server's answer")

    def _read_to_close(self):
        parts = [bytes(self._buf)]
        self._buf.clear()
        while True:
            data = self.sock.recv(262144)
            if not data:
                return b"".join(parts)
            parts.append(data)

    def read_response(self, method):
        """Reads one answer: (status, Headers, body). Sets ``will_close``."""
        while True:
            lines = self._read_head().decode("latin-1").split("\r\n")
            parts = lines[0].split(None, 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/"):
                raise OSError(f"not an HTTP answer: {lines[0][:100]!r}")
            status = int(parts[1])
            if 100 <= status < 200 and status != 101:
                continue  # 100 Continue and the like: the real answer follows
            break
        headers = Headers()
        get = dict.get
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                key = name.strip().lower()
                value = value.strip()
                old = get(headers, key)
                dict.__setitem__(headers, key, value if old is None else f"{old}, {value}")
        conn_hdr = get(headers, "connection", "").lower()
        self.will_close = "close" in conn_hdr or (parts[0] == "HTTP/1.0" and "keep-alive" not in conn_hdr)
        length = get(headers, "content-length")
        if method == "HEAD" or status in (204, 304):
            body = b""
        elif "chunked" in get(headers, "transfer-encoding", "").lower():
            body = self._read_chunked()
        elif length is not None:
            body = self._read_exact(int(length))
        else:
            body = self._read_to_close()
            self.will_close = True
        return status, headers, body


ServerURL = collections.namedtuple("ServerURL", "url scheme host port prefix host_header")


def parse_url(url):
    """A server's URL ("host:port" means http) as a ServerURL: the base URL without a
    trailing slash, its scheme, host, port, path prefix and Host header. ValueError
    names what is wrong."""
    parsed = urllib.parse.urlsplit(url if "//" in url else "http://" + url)
    if parsed.scheme not in ("http", "https"):
        raise ValueError(f"pyjobd URL must be http:// or https://, got {url!r}")
    if not parsed.hostname:
        raise ValueError(f"pyjobd URL has no host: {url!r}")
    base = urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, parsed.path.rstrip("/"), "", ""))
    default = 443 if parsed.scheme == "https" else 80
    port = parsed.port or default
    host = f"[{parsed.hostname}]" if ":" in parsed.hostname else parsed.hostname
    return ServerURL(base, parsed.scheme, parsed.hostname, port, parsed.path.rstrip("/"),
                     host if port == default else f"{host}:{port}")


class HTTPClient:
    def __init__(self, url, token=None, timeout=60.0):
        u = parse_url(url)
        self.url, self._scheme, self._host, self._port, self._prefix = u[:5]
        self.timeout = self._timeout = timeout
        self._ssl = ssl.create_default_context() if u.scheme == "https" else None
        self._headers = {"Host": u.host_header, "User-Agent": USER_AGENT,
                         "Accept": "application/json"}
        if token:
            if _BAD_VALUE.search(token):
                raise ValueError("the token contains a line break or NUL character")
            self._headers["Authorization"] = f"Bearer {token}"
        # Every request's fixed headers, encoded once.
        self._fixed = "".join(f"{k}: {v}\r\n" for k, v in self._headers.items()).encode("latin-1")
        self._idle = []
        self._lock = threading.Lock()
        self._closed = False

    # ---------------------------------------------------------------- connections

    def new_connection(self, timeout=None):
        return Connection(self._host, self._port, timeout or self._timeout, self._ssl)

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

    def _encode(self, method, path, body, extra=None):
        if body is not None and not isinstance(body, (bytes, bytearray, memoryview)):
            body = json.dumps(body, separators=(",", ":")).encode()
        if _BAD_PATH.search(path):
            raise ValueError(f"invalid character in the request path {path!r}")
        head = [f"{method} {self._prefix}{path} HTTP/1.1\r\n".encode("latin-1"), self._fixed]
        if extra:
            for k, v in extra.items():
                if _BAD_VALUE.search(f"{k}{v}") or ":" in k:
                    raise ValueError(f"invalid character in the {k!r} header")
            head.append("".join(f"{k}: {v}\r\n" for k, v in extra.items()).encode("latin-1"))
        if body is not None:
            head.append(b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body))
        elif method in ("POST", "PUT", "PATCH"):
            head.append(b"Content-Length: 0\r\n")
        head.append(b"\r\n")
        return b"".join(head), body

    def connection_error(self, exc):
        return ServerConnectionError(
            f"cannot reach the pyjobd server at {self.url}: {exc.__class__.__name__}: {exc}"
            + (" (is the server running? start it with `make run` or `pyjobd --port N`)"
               if isinstance(exc, ConnectionRefusedError) else ""),
            url=self.url)

    def send(self, conn, method, path, body=None):
        """Sends one request on conn (no response read). Used for abortable long-polls."""
        head, body = self._encode(method, path, body)
        try:
            conn.send(head, body)
        except _EarlyAnswer:
            pass  # receive() reads the server's early answer
        except (OSError, ValueError) as e:
            conn.close()
            raise self.connection_error(e) from e

    def receive(self, conn, method="POST"):
        try:
            status, headers, data = conn.read_response(method)
        except (OSError, ValueError) as e:
            conn.close()
            raise self.connection_error(e) from e
        if conn.will_close:
            conn.close()
        return Response(status, headers, data)

    def request(self, method, path, body=None, headers=None):
        """One request on a pooled keep-alive connection; returns a Response whatever
        its status. Raises ServerConnectionError when the server cannot be reached.
        headers: extra request headers (an Idempotency-Key goes with every resend)."""
        head, body = self._encode(method, path, body, headers)
        for attempt in range(3):
            conn, reused = self._acquire()
            early = False
            try:
                try:
                    conn.send(head, body)
                except _EarlyAnswer:
                    # The server answered before reading the whole body (413, then it
                    # closes): read that answer.
                    early = True
                    conn.sock.settimeout(min(conn.timeout, 5.0))
                status, hdrs, data = conn.read_response(method)
            except (RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                    ConnectionAbortedError) as e:
                stale = reused and conn.received == 0
                conn.close()
                if stale:
                    continue  # the server closed an idle keep-alive connection: resend
                if early:
                    e = OSError(f"the server stopped reading the {len(body):,}-byte body of "
                                f"{method} {path} and closed the connection without a readable "
                                f"answer ({e.__class__.__name__}: {e})")
                raise self.connection_error(e) from e
            except (OSError, ValueError) as e:
                conn.close()
                raise self.connection_error(e) from e
            except BaseException:
                conn.close()  # interrupted mid-exchange: the connection is unusable
                raise
            if early or conn.will_close:
                conn.close()
            else:
                self._release(conn)
            return Response(status, hdrs, data)
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
        cls = PayloadTooLargeError if resp.status == 413 else ServerError
        return cls(f"{method} {self.url}{path} failed with HTTP {resp.status}: {text}",
                   status=resp.status, problem=problem, url=self.url)
