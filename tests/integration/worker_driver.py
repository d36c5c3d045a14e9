"""Drives one pyjobd-worker directly over its fd-3 socketpair, without the server.

    with WorkerDriver("build/pyjobd-worker") as w:
        print(w.hello)                     # {"python": "3.11.2", "cloudpickle": "2.2.0"}
        ftype, fields = w.run(pow, 2, 10)  # FRAME_RESULT, {TAG_RESULT: b"<pickle>"}
        w.call(pow, 2, 10)                 # 1024, or raises WorkerError

Frames follow include/pyjobd/frame.h: u32 payload_len | u32 type | payload, the
payload being fields u32 tag | u32 len | bytes, all little-endian. Needs the
system python3 (the one with cloudpickle), like the worker itself.
"""

import os
import socket
import struct
import subprocess
import time

import cloudpickle

FRAME_JOB, FRAME_HELLO, FRAME_RESULT, FRAME_ERROR = 1, 2, 3, 4
TAG_CALLABLE, TAG_ARGS, TAG_KWARGS = 1, 2, 3
TAG_PYTHON_VERSION, TAG_CLOUDPICKLE_VERSION = 10, 11
TAG_RESULT = 20
TAG_ERROR_TYPE, TAG_MESSAGE, TAG_EXC_TYPE, TAG_EXCEPTION, TAG_TRACEBACK = 30, 31, 32, 33, 34

WORKER_FD = 3


def encode_frame(ftype, fields):
    """fields: iterable of (tag, bytes)."""
    payload = b"".join(struct.pack("<II", tag, len(data)) + data for tag, data in fields)
    return struct.pack("<II", len(payload), ftype) + payload


def decode_fields(payload):
    fields, at = {}, 0
    while at < len(payload):
        tag, n = struct.unpack_from("<II", payload, at)
        at += 8
        if at + n > len(payload):
            raise ValueError("field runs past the end of the frame")
        fields.setdefault(tag, bytes(payload[at:at + n]))
        at += n
    return fields


class WorkerError(Exception):
    """A FRAME_ERROR reply; .fields holds its decoded fields."""

    def __init__(self, fields):
        self.fields = fields
        self.error_type = fields.get(TAG_ERROR_TYPE, b"").decode()
        self.message = fields.get(TAG_MESSAGE, b"").decode()
        self.exc_type = fields.get(TAG_EXC_TYPE, b"").decode() or None
        self.traceback = fields.get(TAG_TRACEBACK, b"").decode() or None
        super().__init__(f"{self.error_type}: {self.message}")

    def exception(self):
        """The pickled exception, unpickled; None when the worker could not pickle it."""
        data = self.fields.get(TAG_EXCEPTION)
        return cloudpickle.loads(data) if data is not None else None


class WorkerDriver:
    def __init__(self, path, env=None, cwd=None, stderr=None, read_hello=True, args=(),
                 new_session=False, pass_fds=()):
        """args: extra command-line arguments, e.g. ("--init", "mod:fn").

        new_session: start the worker in a session and process group of its own, as
        the supervisor does (POSIX_SPAWN_SETSID), so that os.killpg(w.proc.pid, sig)
        reaches it and every process it started. pass_fds: extra fds left open in
        the worker at the same numbers (e.g. to check that it closes them)."""
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock = parent
        self.started = time.monotonic()

        def put_on_fd3():
            os.dup2(child.fileno(), WORKER_FD)  # the copy on fd 3 is inheritable
            for fd in pass_fds:
                os.set_inheritable(fd, True)

        # close_fds=False: pass_fds would close fd 3 again after preexec_fn. Nothing
        # else leaks, since Python opens every fd non-inheritable.
        self.proc = subprocess.Popen(
            [os.path.abspath(path), *args], stdin=subprocess.DEVNULL, stderr=stderr,
            env=env, cwd=cwd, preexec_fn=put_on_fd3, close_fds=False,
            start_new_session=new_session)
        child.close()
        self.hello = None
        self.boot_seconds = None
        if read_hello:
            ftype, fields = self.read_frame()
            if ftype != FRAME_HELLO:
                raise RuntimeError(f"expected FRAME_HELLO, got type {ftype}")
            self.boot_seconds = time.monotonic() - self.started
            self.hello = {"python": fields[TAG_PYTHON_VERSION].decode(),
                          "cloudpickle": fields[TAG_CLOUDPICKLE_VERSION].decode()}

    def _recv_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError("worker closed its socket")
            buf += chunk
        return bytes(buf)

    def read_frame(self):
        """Returns (type, {tag: bytes}) of the next frame from the worker."""
        length, ftype = struct.unpack("<II", self._recv_exact(8))
        return ftype, decode_fields(self._recv_exact(length))

    def send_raw(self, data):
        self.sock.sendall(data)

    def send_job(self, callable_pickle, args_pickle=None, kwargs_pickle=None):
        fields = [(TAG_CALLABLE, callable_pickle)]
        if args_pickle is not None:
            fields.append((TAG_ARGS, args_pickle))
        if kwargs_pickle is not None:
            fields.append((TAG_KWARGS, kwargs_pickle))
        self.send_raw(encode_frame(FRAME_JOB, fields))

    def run(self, fn, *args, **kwargs):
        """Sends one job and returns the raw reply (type, fields)."""
        self.send_job(cloudpickle.dumps(fn), cloudpickle.dumps(args) if args else None,
                      cloudpickle.dumps(kwargs) if kwargs else None)
        return self.read_frame()

    def call(self, fn, *args, **kwargs):
        """Like fn(*args, **kwargs), run in the worker. Raises WorkerError on FRAME_ERROR."""
        ftype, fields = self.run(fn, *args, **kwargs)
        if ftype == FRAME_RESULT:
            return cloudpickle.loads(fields[TAG_RESULT])
        if ftype == FRAME_ERROR:
            raise WorkerError(fields)
        raise RuntimeError(f"unexpected frame type {ftype}")

    def close(self, timeout=10):
        """Closes the socket (EOF for the worker) and returns its exit status."""
        self.sock.close()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
