"""The Python client installs without PyPI (issue 18 item 7).

`make client-wheel` builds dist/pyjobd-*.whl with Debian's python3-build and
python3-setuptools; the wheel goes into a fresh venv (--system-site-packages, so that
cloudpickle is Debian's python3-cloudpickle) with pip --no-index, and the installed
package runs jobs on the server from a directory outside the repository: the
Executor, the AsyncExecutor and the pyjobd-client script. The README's other way,
`pip install --no-build-isolation ./client/python`, is checked too, and so is why it
needs the flag (with build isolation and no index pip cannot get setuptools)."""

import os
import re
import shutil
import subprocess
import textwrap
import zipfile

from conftest import REPO_ROOT

PYTHON = "/usr/bin/python3"
CLIENT_DIR = os.path.join(REPO_ROOT, "client", "python")


def clean_env():
    """No PYTHONPATH (the repository's client must not leak in), no pip settings."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV") and not k.startswith("PIP_")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def sh(cmd, cwd=None, timeout=120, check=True):
    p = subprocess.run(cmd, cwd=cwd, env=clean_env(), capture_output=True, text=True,
                       timeout=timeout)
    if check:
        assert p.returncode == 0, f"{cmd} exited with {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    return p


def venv(path):
    """A fresh venv that sees Debian's packages (cloudpickle, pip) and nothing of ours."""
    sh([PYTHON, "-m", "venv", "--system-site-packages", "--without-pip", str(path)])
    return str(path / "bin" / "python")


USE_IT = textwrap.dedent("""
    import asyncio, os, sys
    import pyjobd
    url = sys.argv[1]
    assert os.path.realpath(pyjobd.__file__).startswith(os.path.realpath(sys.prefix)), pyjobd.__file__
    print("from", pyjobd.__file__)
    with pyjobd.Executor(url) as ex:
        print("sync", ex.submit(pow, 2, 10).result(), list(ex.map(abs, [-1, -2])))
    async def main():
        async with pyjobd.AsyncExecutor(url) as ex:
            return await ex.submit(lambda: "async ok")
    print("async", asyncio.run(main()))
    print("bar", pyjobd.progress([], file=open(os.devnull, "w")))
""")


def check_installed(py, url, cwd):
    out = sh([py, "-c", USE_IT, url], cwd=cwd).stdout
    assert "sync 1024 [1, 2]" in out and "async async ok" in out and "bar []" in out, out
    assert REPO_ROOT not in out.split("from", 1)[1].split("\n", 1)[0], out  # not the checkout's


def test_make_client_wheel_installs_in_a_fresh_venv(server, tmp_path):
    dist = tmp_path / "dist"
    sh(["make", "-s", "client-wheel", f"CLIENT_DIST={dist}", f"CLIENT_BUILD={tmp_path / 'src'}"],
       cwd=REPO_ROOT)
    wheels = sorted(dist.glob("pyjobd-*-py3-none-any.whl"))
    assert len(wheels) == 1, list(dist.iterdir())
    with zipfile.ZipFile(wheels[0]) as z:
        names = set(z.namelist())
        meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = z.read(meta).decode()
    for module in ("__init__", "executor", "aio", "progress", "_requests", "_jobs", "cli"):
        assert f"pyjobd/{module}.py" in names, sorted(names)
    assert not any("__pycache__" in n or n.startswith("tests/") for n in names), sorted(names)
    assert re.search(r"^Requires-Dist: cloudpickle ?\(?>=2\.0\)?$", metadata, re.M), metadata
    # nothing was written into the checkout
    assert not os.path.exists(os.path.join(CLIENT_DIR, "build"))
    assert not os.path.exists(os.path.join(CLIENT_DIR, "pyjobd.egg-info"))

    py = venv(tmp_path / "venv")
    sh([py, "-m", "pip", "install", "--no-index", str(wheels[0])])
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    check_installed(py, server.base_url, outside)
    script = str(tmp_path / "venv" / "bin" / "pyjobd-client")
    out = sh([script, "run", server.base_url, "operator:add", "--json-args", "[1, 2]"],
             cwd=outside).stdout
    assert out.strip() == "3", out


def test_pip_install_without_build_isolation(server, tmp_path):
    src = tmp_path / "client"  # a copy: setuptools writes build/ and *.egg-info into it
    shutil.copytree(CLIENT_DIR, src, ignore=shutil.ignore_patterns("__pycache__", "build",
                                                                    "*.egg-info", "dist"))
    py = venv(tmp_path / "venv")
    # with build isolation, pip must fetch setuptools: without an index it cannot
    p = sh([py, "-m", "pip", "install", "--no-index", str(src)], check=False)
    assert p.returncode != 0 and "setuptools" in (p.stdout + p.stderr), p.stdout + p.stderr
    # Debian's setuptools, no fetch: the README's line
    sh([py, "-m", "pip", "install", "--no-index", "--no-build-isolation", str(src)])
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    check_installed(py, server.base_url, outside)
