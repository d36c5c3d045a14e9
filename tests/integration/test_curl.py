"""The README-style session, driven with curl and /usr/bin/python3 one-liners, as a
user at a shell would."""

import json
import subprocess

PY = "/usr/bin/python3"


def sh(cmd, cwd, timeout=30):
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{cmd} failed ({r.returncode}): {r.stderr}"
    return r.stdout


def test_readme_session_with_curl(server, tmp_path):
    # 1. build the payload with a python one-liner
    sh(
        [
            PY,
            "-c",
            "import base64, cloudpickle, json; "
            "b = lambda o: base64.b64encode(cloudpickle.dumps(o)).decode(); "
            "json.dump({'callable': b(lambda x, y=1: x ** y), 'args': b((2,)), "
            "'kwargs': b({'y': 10})}, open('payload.json', 'w'))",
        ],
        tmp_path,
    )
    url = f"{server.base_url}/v1/jobs"

    # 2. submit and wait, with curl; -D dumps the response headers
    out = sh(
        ["curl", "-s", "-D", "headers.txt", "-X", "POST", "-H", "Content-Type: application/json",
         "-d", "@payload.json", f"{url}?wait=5"],
        tmp_path,
    )
    job = json.loads(out)
    status_line = (tmp_path / "headers.txt").read_text().splitlines()[0]
    assert " 201" in status_line, status_line
    headers = (tmp_path / "headers.txt").read_text().lower()
    assert f"location: /v1/jobs/{job['id']}" in headers, headers
    assert job["status"] == "succeeded", job

    # 3. decode the result with another one-liner
    (tmp_path / "job.json").write_text(out)
    result = sh(
        [PY, "-c",
         "import base64, cloudpickle, json; "
         "print(cloudpickle.loads(base64.b64decode(json.load(open('job.json'))['result'])))"],
        tmp_path,
    )
    assert result.strip() == "1024"

    # 4. poll the job resource with curl
    out = sh(["curl", "-s", "-w", "\n%{http_code}", f"{url}/{job['id']}"], tmp_path)
    body, _, code = out.rpartition("\n")
    assert code == "200", out
    again = json.loads(body)
    assert again["id"] == job["id"] and again["status"] == "succeeded"
    assert again["result"] == job["result"]


def test_curl_without_content_type_header_is_415(server, tmp_path):
    # `curl -d` without -H sends application/x-www-form-urlencoded: the server says so.
    (tmp_path / "p.json").write_text('{"callable": "gASVAAAAAAAAAAA="}')
    out = sh(["curl", "-s", "-w", "\n%{http_code} %{content_type}", "-d", "@p.json",
              f"{server.base_url}/v1/jobs"], tmp_path)
    body, _, last = out.rpartition("\n")
    code, _, ctype = last.partition(" ")
    assert code == "415", out
    assert ctype.startswith("application/problem+json"), out
    assert json.loads(body)["detail"], body


def test_curl_healthz_and_info(server, tmp_path):
    out = sh(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"{server.base_url}/healthz"], tmp_path)
    assert out == "200"
    info = json.loads(sh(["curl", "-s", "-f", f"{server.base_url}/v1/info"], tmp_path))
    local = sh([PY, "-c", "import platform; print(platform.python_version())"], tmp_path).strip()
    assert info["python_version"] == local, info


README_SESSION = r"""
set -eu
BASE=http://127.0.0.1:$PORT
# cloudpickle a function and its arguments, base64 them into a JSON request
PAYLOAD=$(/usr/bin/python3 -c 'import base64, cloudpickle, json
b64 = lambda o: base64.b64encode(cloudpickle.dumps(o)).decode()
print(json.dumps({"callable": b64(lambda x, y: x * y), "args": b64((6, 7))}))')

# submit: 201 Created, Location: /v1/jobs/{id}, and the job as JSON
JOB=$(curl -s -f -X POST -H 'Content-Type: application/json' -d "$PAYLOAD" $BASE/v1/jobs)
ID=$(printf '%s' "$JOB" | /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')

# wait up to 5 s for it to finish, and decode the result
curl -s -f "$BASE/v1/jobs/$ID?wait=5" | /usr/bin/python3 -c \
  'import base64, cloudpickle, json, sys; print(cloudpickle.loads(base64.b64decode(json.load(sys.stdin)["result"])))'
"""


def test_readme_shell_session(server, tmp_path):
    # The README's "A session with curl", run by bash as written (port substituted).
    r = subprocess.run(["bash", "-c", README_SESSION], cwd=tmp_path, capture_output=True, text=True,
                       timeout=30, env={"PATH": "/usr/bin:/bin", "PORT": str(server.port)})
    assert r.returncode == 0, f"README session failed ({r.returncode}): {r.stderr}"
    assert r.stdout.strip() == "42", r.stdout
