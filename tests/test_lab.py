"""`make lab` starts JupyterLab, as a user and as root, and it serves the notebooks."""

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
START_SECONDS = 180  # JupyterLab starts in seconds; a loaded two-core machine needs more
STOP_SECONDS = 30


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _make_lab(venv: Path, *args: str) -> list[str]:
    """The `make lab` command line, with the environment's installation taken as done (the
    stamp file is not remade: the test must not reinstall anything)."""
    return ["make", "-s", "-o", str(venv / ".installed"), "lab", f"VENV={venv}", *args]


def test_make_lab_allows_root_only_for_root():
    venv = Path(sys.prefix)
    dry = subprocess.run([*_make_lab(venv), "-n"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert "jupyter lab" in dry and "--notebook-dir=notebooks" in dry
    assert ("--allow-root" in dry) == (os.geteuid() == 0)


def _get(url: str, token: str):
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def _stop(proc: subprocess.Popen) -> None:
    """Stop make and the JupyterLab it started (their own process group)."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOP_SECONDS)


def test_make_lab_starts_and_serves_the_notebooks(tmp_path):
    venv = Path(sys.prefix)
    port, token = _free_port(), secrets.token_hex(16)
    # loopback only, a token of our own, and no state written outside tmp_path
    lab_args = (f"--ip=127.0.0.1 --port={port} --ServerApp.port_retries=0 "
                f"--IdentityProvider.token={token}")
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces")}
    log = tmp_path / "lab.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(_make_lab(venv, f"LAB_ARGS={lab_args}"), cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline, listing = time.monotonic() + START_SECONDS, None
        while listing is None and time.monotonic() < deadline:
            assert proc.poll() is None, f"make lab stopped:\n{log.read_text()[-3000:]}"
            try:
                listing = _get(f"{base}/api/contents?content=1", token)
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(1)
        assert listing is not None, f"no answer in {START_SECONDS} s:\n{log.read_text()[-3000:]}"
        served = sorted(item["name"] for item in listing["content"]
                        if item["type"] == "notebook")
        assert served == NOTEBOOKS
        notebook = _get(f"{base}/api/contents/{NOTEBOOKS[0]}?content=1", token)
        assert notebook["type"] == "notebook" and notebook["content"]["cells"]
        status = _get(f"{base}/api/status", token)
        assert "started" in status
    finally:
        _stop(proc)
    assert proc.returncode is not None
    try:  # stopped: nothing answers on the port any more
        _get(f"{base}/api/status", token)
        raise AssertionError("JupyterLab still answers after it was stopped")
    except (urllib.error.URLError, ConnectionError):
        pass
