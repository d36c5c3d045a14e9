"""Checks real HTTP responses against openapi.yaml (the v1 contract).

    contract = Contract()                       # loads <repo>/openapi.yaml
    body = contract.check("GET", "/v1/jobs/abc?wait=1", status, headers, raw_body)

check() raises ContractError (an AssertionError) with a message naming the request,
the status and what is wrong when the response is not exactly what openapi.yaml
documents:

* the path is not documented: the answer must be the 404 problem;
* the method is not documented for the path: the answer must be the 405 problem
  with an Allow header listing exactly the documented methods;
* the status is not documented for the operation;
* the Content-Type is not one the response documents (compared in full, after
  normalizing case and spaces), or there is a body where none is documented;
* a header the response requires (Location, Retry-After, WWW-Authenticate) is
  missing or does not match its schema, or one of those semantic headers is sent
  where it is not documented;
* the body does not validate against the schema (JSON Schema draft 2020-12, with
  $ref resolved into the document's components). Objects the server emits have
  additionalProperties: false, so an undocumented field fails;
* a JSON body is not compact JSON ending with one "\\n", has duplicated keys or
  NaN/Infinity, or a problem's "status" differs from the HTTP status;
* a HEAD answer has a body.

Every checked response is recorded in Contract.seen as (method, path template,
status) so a test can assert that every documented response was exercised.

Only the standard library, python3-yaml and python3-jsonschema are used.
"""

import json
import os
import re

import jsonschema
import yaml

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_SPEC = os.path.join(REPO_ROOT, "openapi.yaml")

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

# Headers with a meaning for the contract: sending one undocumented is an error.
SEMANTIC_HEADERS = ("location", "retry-after", "www-authenticate", "allow")


# Answers given before a request is routed, so they apply to any method and path
# (info.description of openapi.yaml): 401 (tokens), 413 (body size), 503 (connections).
PRE_ROUTING = (401, 413, 503)


class ContractError(AssertionError):
    pass


def _norm_media(ct):
    """'Text/Plain; version=0.0.4;charset=utf-8' -> 'text/plain;version=0.0.4;charset=utf-8'."""
    if ct is None:
        return None
    parts = [p.strip() for p in ct.split(";") if p.strip()]
    out = [parts[0].lower()] if parts else [""]
    for p in parts[1:]:
        k, eq, v = p.partition("=")
        out.append(k.strip().lower() + eq + v.strip())
    return ";".join(out)


def _is_json_media(ct):
    base = (ct or "").split(";")[0].strip().lower()
    return base == "application/json" or base.endswith("+json")


def _strict_json(text):
    """json.loads that refuses duplicated keys and NaN/Infinity."""

    def pairs(items):
        obj = {}
        for k, v in items:
            if k in obj:
                raise ValueError(f"duplicated key {k!r}")
            obj[k] = v
        return obj

    def bad_constant(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, object_pairs_hook=pairs, parse_constant=bad_constant)


def _header(headers, name):
    """Header value from a dict, list of pairs, or http.client.HTTPMessage; None if absent."""
    if headers is None:
        return None
    if hasattr(headers, "get_all"):
        vals = headers.get_all(name)
        if vals and len(vals) > 1:
            raise ContractError(f"header {name} sent {len(vals)} times: {vals}")
        return vals[0] if vals else None
    items = headers.items() if hasattr(headers, "items") else headers
    found = [v for k, v in items if k.lower() == name.lower()]
    if len(found) > 1:
        raise ContractError(f"header {name} sent {len(found)} times: {found}")
    return found[0] if found else None


def _header_value(schema, raw):
    """The header's text converted for its schema (integers for integer schemas)."""
    if schema.get("type") == "integer":
        if not re.fullmatch(r"[0-9]+", raw.strip()):
            raise ValueError(f"{raw!r} is not an integer")
        return int(raw)
    return raw


class Contract:
    def __init__(self, spec_path=DEFAULT_SPEC):
        with open(spec_path, encoding="utf-8") as f:
            self.doc = yaml.safe_load(f)
        if not str(self.doc.get("openapi", "")).startswith("3.1"):
            raise ContractError(f"{spec_path}: not an OpenAPI 3.1 document")
        self.components = self.doc.get("components", {})
        self._validators = {}
        self.seen = set()  # (method, template, status)
        self._paths = []  # (regex, template, path item)
        for template, item in self.doc["paths"].items():
            rx = "^" + re.sub(r"\\\{([^}]+)\\\}", r"(?P<\1>[^/]+)", re.escape(template)) + "$"
            self._paths.append((re.compile(rx), template, item))
        # Literal paths win over templated ones (/v1/jobs/wait vs /v1/jobs/{id}).
        self._paths.sort(key=lambda p: "{" in p[1])

    # ------------------------------------------------------------------ lookup

    def resolve(self, obj):
        """Follows a local $ref (#/components/...) until a non-$ref object."""
        seen = 0
        while isinstance(obj, dict) and "$ref" in obj:
            ref = obj["$ref"]
            if not ref.startswith("#/"):
                raise ContractError(f"only local $ref are supported, got {ref!r}")
            node = self.doc
            for part in ref[2:].split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
            obj = node
            seen += 1
            if seen > 50:
                raise ContractError(f"$ref loop at {ref}")
        return obj

    def match_path(self, path):
        """(template, path item, params) for a concrete path (query string ignored)."""
        path = path.split("?", 1)[0]
        for rx, template, item in self._paths:
            m = rx.match(path)
            if m:
                return template, item, m.groupdict()
        return None, None, None

    def operations(self):
        """Every (METHOD, template, status) the document lists."""
        out = set()
        for template, item in self.doc["paths"].items():
            for method in METHODS:
                op = item.get(method)
                if op:
                    for status in op.get("responses", {}):
                        out.add((method.upper(), template, str(status)))
        return out

    def allowed_methods(self, item):
        return {m.upper() for m in METHODS if m in item}

    # ------------------------------------------------------------------ schemas

    def validator(self, schema):
        key = json.dumps(schema, sort_keys=True)
        v = self._validators.get(key)
        if v is None:
            root = {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "components": self.components,
                "allOf": [schema],
            }
            jsonschema.Draft202012Validator.check_schema(root)
            v = jsonschema.Draft202012Validator(root)
            self._validators[key] = v
        return v

    def validate_value(self, schema, value, what):
        errors = sorted(self.validator(schema).iter_errors(value), key=lambda e: list(e.absolute_path))
        if errors:
            lines = []
            for e in errors[:8]:
                where = "/".join(str(p) for p in e.absolute_path) or "(root)"
                lines.append(f"  at {where}: {e.message[:300]}")
                # For oneOf/anyOf, the reasons of the branches are the useful part.
                for sub in (e.context or [])[:4]:
                    subwhere = "/".join(str(p) for p in sub.absolute_path) or "(root)"
                    lines.append(f"      branch {subwhere}: {sub.message[:200]}")
            more = f"\n  ... and {len(errors) - 8} more" if len(errors) > 8 else ""
            raise ContractError(f"{what} does not match openapi.yaml:\n" + "\n".join(lines) + more)

    def schema_named(self, name):
        return {"$ref": f"#/components/schemas/{name}"}

    # ------------------------------------------------------------------ the check

    def check(self, method, path, status, headers, body):
        """Validates one response. Returns the parsed JSON body (or the raw bytes / text,
        or None for an empty body). Raises ContractError."""
        method = method.upper()
        status = int(status)
        body = body if body is not None else b""
        if isinstance(body, str):
            body = body.encode()
        what = f"{method} {path} -> {status}"
        try:
            return self._check(method, path, status, headers, body, what)
        except ContractError as e:
            if str(e).startswith(what):
                raise
            raise ContractError(f"{what}: {e}\n  body: {body[:600]!r}") from None

    def _check(self, method, path, status, headers, body, what):
        template, item, params = self.match_path(path)
        ctype = _header(headers, "Content-Type")

        if template is None:
            # Not a documented path: the generic 404 problem (or one of the answers
            # given before routing: 401, 413, 503).
            self.seen.add((method, "(undocumented path)", str(status)))
            if status not in (404,) + PRE_ROUTING:
                raise ContractError(f"path is not in openapi.yaml, so the answer must be 404, got {status}")
            self._check_pre_routing_headers(status, headers)
            return self._check_problem_body(method, status, ctype, body, "Problem")

        op = item.get(method.lower())
        if op is None:
            self.seen.add((method, template, str(status)))
            if status in PRE_ROUTING:
                self._check_pre_routing_headers(status, headers)
                return self._check_problem_body(method, status, ctype, body, "Problem")
            if status != 405:
                raise ContractError(
                    f"{method} is not documented on {template}, so the answer must be 405, got {status}")
            allow = _header(headers, "Allow")
            if allow is None:
                raise ContractError("405 without an Allow header")
            got = {m.strip().upper() for m in allow.split(",") if m.strip()}
            want = self.allowed_methods(item)
            if got != want:
                raise ContractError(
                    f"Allow: {allow!r} lists {sorted(got)}, openapi.yaml documents {sorted(want)} for {template}")
            return self._check_problem_body(method, status, ctype, body, "Problem")

        self.seen.add((method, template, str(status)))
        responses = op.get("responses", {})
        resp = responses.get(str(status))
        if resp is None:
            raise ContractError(
                f"status {status} is not documented for {method} {template} "
                f"(documented: {', '.join(sorted(map(str, responses)))})")
        resp = self.resolve(resp)

        # Headers.
        documented = {k.lower(): self.resolve(v) for k, v in (resp.get("headers") or {}).items()}
        for name, h in documented.items():
            raw = _header(headers, name)
            if raw is None:
                if h.get("required"):
                    raise ContractError(f"required header {name} is missing")
                continue
            schema = self.resolve(h.get("schema", {}))
            try:
                value = _header_value(schema, raw)
            except ValueError as e:
                raise ContractError(f"header {name}: {e}")
            self.validate_value(h.get("schema", {}), value, f"header {name}: {raw!r}")
        for name in SEMANTIC_HEADERS:
            if name not in documented and _header(headers, name) is not None:
                raise ContractError(
                    f"header {name}: {_header(headers, name)!r} is not documented for this response")
        if "location" in documented and str(status) == "201":
            loc = _header(headers, "Location")
            if isinstance(body, bytes) and _is_json_media(ctype) and method != "HEAD":
                try:
                    job_id = _strict_json(body.decode()).get("id")
                except Exception:
                    job_id = None
                made = "/v1/schedules" if path.split("?")[0] == "/v1/schedules" else "/v1/jobs"
                if job_id and loc != f"{made}/{job_id}":
                    raise ContractError(f"Location {loc!r} does not name the created {made[4:-1]} "
                                        f"{job_id}")

        # Content.
        content = resp.get("content") or {}
        if not content:
            if body:
                raise ContractError(f"no body is documented, got {len(body)} bytes")
            if ctype is not None and status == 204:
                raise ContractError(f"204 with a Content-Type {ctype!r}")
            return None
        media = None
        want = _norm_media(ctype)
        for key in content:
            if _norm_media(key) == want:
                media = content[key]
                break
        if media is None:
            raise ContractError(
                f"Content-Type {ctype!r} is not documented (documented: {', '.join(content)})")
        if method == "HEAD":
            if body:
                raise ContractError(f"HEAD answered with a {len(body)}-byte body")
            return None
        schema = media.get("schema", {})
        if _is_json_media(ctype):
            value = self._parse_json_body(body)
            self.validate_value(schema, value, "body")
            if _norm_media(ctype).startswith("application/problem+json") and value.get("status") != status:
                raise ContractError(f"problem status {value.get('status')!r} differs from HTTP status {status}")
            return value
        if ctype and ctype.lower().startswith("text/"):
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ContractError(f"text body is not UTF-8: {e}")
            self.validate_value(schema, text, "body")
            return text
        return body  # binary: application/octet-stream

    def _check_pre_routing_headers(self, status, headers):
        if status == 401:
            auth = _header(headers, "WWW-Authenticate")
            if not auth or not auth.startswith("Bearer"):
                raise ContractError(f"401 without WWW-Authenticate: Bearer (got {auth!r})")

    def _parse_json_body(self, body):
        if not body.endswith(b"\n") or body.endswith(b"\n\n"):
            raise ContractError("JSON body does not end with exactly one '\\n'")
        try:
            return _strict_json(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise ContractError(f"body is not strict JSON: {e}")

    def _check_problem_body(self, method, status, ctype, body, schema_name):
        if _norm_media(ctype) != "application/problem+json":
            raise ContractError(f"expected application/problem+json, got Content-Type {ctype!r}")
        if method == "HEAD":
            if body:
                raise ContractError(f"HEAD answered with a {len(body)}-byte body")
            return None
        value = self._parse_json_body(body)
        self.validate_value(self.schema_named(schema_name), value, "problem body")
        if value.get("status") != status:
            raise ContractError(f"problem status {value.get('status')!r} differs from HTTP status {status}")
        return value


_DEFAULT = None


def default_contract():
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Contract()
    return _DEFAULT


def check_response(method, path, status, headers, body):
    """check() against the default contract (openapi.yaml at the repository root)."""
    return default_contract().check(method, path, status, headers, body)


def checked_call(contract, server, method, path, body=None, expect=None, timeout=30.0, who=""):
    """One JSON request to a test server, its answer checked against the contract;
    returns the response with .value (the parsed body). who prefixes failures."""
    hdrs = {}
    if body is not None:
        body = json.dumps(body)
        hdrs["Content-Type"] = "application/json"
    r = server.request(method, path, body=body, headers=hdrs, timeout=timeout)
    try:
        r.value = contract.check(method, path, r.status, r.headers, r.body)
    except ContractError as e:
        raise AssertionError(f"{who}CONTRACT MISMATCH: {e}") from None
    if expect is not None:
        assert r.status == expect, f"{who}{method} {path}: expected {expect}, got {r!r}"
    return r
