"""Command line: ``python3 -m pyjobd payload EXPR`` and ``python3 -m pyjobd run URL module:function``.

    python3 -m pyjobd payload 'lambda x: x * 2'       # the base64 cloudpickle of the callable
    python3 -m pyjobd payload --request --json-args '[21]' 'lambda x: x * 2' | \\
        curl -s -H 'Content-Type: application/json' -d @- http://127.0.0.1:8080/v1/jobs
    python3 -m pyjobd run http://127.0.0.1:8080 operator:add --json-args '[1, 2]'   # prints 3
"""

import argparse
import importlib
import json
import os
import platform
import re
import sys

from . import pickling
from ._jobs import b64encode
from .errors import PyjobdError

_REF_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def _load_callable(spec, by_value):
    """'module:qualname' -> that object (its module pickled by value if by_value);
    anything else is evaluated as a Python expression (e.g. a lambda)."""
    if _REF_RE.match(spec):
        modname, _, qualname = spec.partition(":")
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.insert(0, os.getcwd())
        module = importlib.import_module(modname)
        obj = module
        for part in qualname.split("."):
            obj = getattr(obj, part)
        return obj, ([module] if by_value else [])
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    obj = eval(compile(spec, "<pyjobd payload>", "eval"), namespace)
    if not callable(obj):
        raise SystemExit(f"pyjobd: {spec!r} is not callable")
    return obj, []


def _json_arg(text, kind, name):
    try:
        value = json.loads(text)
    except ValueError as e:
        raise SystemExit(f"pyjobd: {name} is not valid JSON: {e}")
    if not isinstance(value, kind):
        raise SystemExit(f"pyjobd: {name} must be a JSON {'array' if kind is list else 'object'}")
    return value


def _cmd_payload(a):
    fn, modules = _load_callable(a.callable, a.by_value)
    with pickling.pickled_by_value(modules):
        data = b64encode(pickling.dumps(fn))
    if not a.request:
        print(data)
        return 0
    req = {"callable": data, "python": platform.python_version()}
    if a.json_args is not None:
        req["json_args"] = _json_arg(a.json_args, list, "--json-args")
    if a.json_kwargs is not None:
        req["json_kwargs"] = _json_arg(a.json_kwargs, dict, "--json-kwargs")
    if a.timeout is not None:
        req["timeout"] = a.timeout
    if a.json_args is not None or a.json_kwargs is not None:
        req["result_format"] = "json"
    print(json.dumps(req))
    return 0


def _cmd_run(a):
    from .executor import Executor

    fn, modules = _load_callable(a.callable, a.by_value)
    extra = {"result_format": "json"}
    extra["json_args"] = _json_arg(a.json_args, list, "--json-args") if a.json_args is not None else []
    if a.json_kwargs is not None:
        extra["json_kwargs"] = _json_arg(a.json_kwargs, dict, "--json-kwargs")
    ex = Executor(a.url, a.token, timeout=a.timeout, pickle_by_value=modules,
                  python_check=not a.no_python_check)
    try:
        req = ex._request(ex._dumps(fn), **extra)
        fut = ex._submit_request(req)
        if a.verbose:
            print(f"job {fut.job_id}", file=sys.stderr)
        result = fut.result(a.wait)
    finally:
        ex.shutdown(wait=False)
    print(json.dumps(result))
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m pyjobd", description="pyjobd client command line")
    sub = p.add_subparsers(dest="command", required=True)

    pp = sub.add_parser("payload", help="print the base64 cloudpickle of a callable")
    pp.add_argument("callable", help="a Python expression (e.g. 'lambda x: x * 2') or module:function")
    pp.add_argument("--by-value", action="store_true", help="pickle module:function's module by value")
    pp.add_argument("--request", action="store_true", help="print a whole POST /v1/jobs JSON body")
    pp.add_argument("--json-args", help="with --request: JSON array of arguments")
    pp.add_argument("--json-kwargs", help="with --request: JSON object of keyword arguments")
    pp.add_argument("--timeout", type=float, help="with --request: job timeout in seconds")
    pp.set_defaults(func=_cmd_payload)

    pr = sub.add_parser("run", help="run module:function (or an expression) on a server, print the JSON result")
    pr.add_argument("url", help="server URL, e.g. http://127.0.0.1:8080")
    pr.add_argument("callable", help="module:function, or a Python expression such as 'lambda x: x * 2'")
    pr.add_argument("--json-args", help="JSON array of positional arguments (default [])")
    pr.add_argument("--json-kwargs", help="JSON object of keyword arguments")
    pr.add_argument("--timeout", type=float, help="job timeout in seconds (the server kills it after)")
    pr.add_argument("--wait", type=float, help="give up waiting after this many seconds")
    pr.add_argument("--token", default=os.environ.get("PYJOBD_TOKEN"), help="bearer token (default $PYJOBD_TOKEN)")
    pr.add_argument("--by-value", action="store_true", help="pickle the function's module by value "
                    "(for modules the server cannot import)")
    pr.add_argument("--no-python-check", action="store_true", help="skip the Python version check")
    pr.add_argument("-v", "--verbose", action="store_true", help="print the job id on stderr")
    pr.set_defaults(func=_cmd_run)

    a = p.parse_args(argv)
    try:
        return a.func(a)
    except (PyjobdError, TimeoutError, OSError) as e:
        print(f"pyjobd: {e.__class__.__name__}: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # the remote exception, re-raised
        cause = e.__cause__
        if cause is not None and cause.__class__.__name__ == "RemoteTraceback":
            print(f"pyjobd: the job raised {e.__class__.__name__}: {e}{cause}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
