"""The fork server: a job handed to it runs as its own command would (argv, working directory, environment,
standard streams, exit status), signals reach it, a job whose process is killed stops, and without a server
the job runs in its own process."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from workflow_helpers import REPO

PROBE = textwrap.dedent('''
    import os, sys, time
    from pathlib import Path
    print("argv", sys.argv[1:], "cwd", Path.cwd().name, "var", os.environ.get("PROBE_VAR"), "child",
          os.environ.get("PIPELINE_FORKSERVER_CHILD"), flush=True)
    print("to stderr", file=sys.stderr, flush=True)
    if sys.argv[1] == "sleep":
        Path("started").write_text(str(os.getpid()))
        time.sleep(60)
    sys.exit(int(sys.argv[1]) if sys.argv[1].isdigit() else 0)
''')
CLIENT = ("import sys; from pipeline_src import forkserver; code = forkserver.delegate('probe_job', sys.argv[1:]); "
          "sys.exit(97 if code is None else code)")  # 97: delegate() declined, the caller would run the job itself


def _start_server(sock: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline_src.forkserver", "--socket", str(sock)],
                            env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.fixture(scope="module")
def loaded(tmp_path_factory) -> dict:
    """One server for the module's tests (it loads torch: seconds), and a job started while it was loading."""
    root = tmp_path_factory.mktemp("server")
    sock = root / "s" / "jobs.sock"
    proc = _start_server(sock)
    early = {"socket_before": sock.exists()}
    job = _client(root, sock, "0", server_pid=proc.pid)
    early["out"], early["err"] = job.communicate(timeout=120)
    early["code"] = job.returncode
    deadline = time.monotonic() + 120
    while not sock.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the fork server did not come up"
        time.sleep(0.1)
    yield {"socket": sock, "early": early}
    proc.terminate()
    proc.wait(timeout=60)
    assert not sock.exists()  # it removes its socket


@pytest.fixture()
def server(loaded) -> Path:
    return loaded["socket"]


def _client(tmp_path: Path, sock: Path | None, *args: str, server_pid: int | None = None, **kw) -> subprocess.Popen:
    work = tmp_path / "job dir"
    work.mkdir(exist_ok=True)
    (work / "probe_job.py").write_text(PROBE)
    env = {**os.environ, "PYTHONPATH": str(REPO), "PROBE_VAR": "from the job"}
    env.pop("PIPELINE_FORKSERVER", None)
    env.pop("PIPELINE_FORKSERVER_PID", None)
    if sock:
        env["PIPELINE_FORKSERVER"] = str(sock)
    if server_pid is not None:
        env["PIPELINE_FORKSERVER_PID"] = str(server_pid)
    return subprocess.Popen([sys.executable, "-c", CLIENT, *args], cwd=work, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_a_forked_job_sees_its_argv_directory_environment_and_streams_and_returns_its_status(tmp_path, server):
    proc = _client(tmp_path, server, "3")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3
    assert "argv ['3'] cwd job dir var from the job child 1" in out  # ran in the server's child, as the job
    assert "to stderr" in err


def test_without_a_server_the_job_runs_in_its_own_process(tmp_path):
    proc = _client(tmp_path, tmp_path / "no-such.sock", "0")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 97 and "argv" not in out  # delegate() declined: the caller runs the job itself


def test_a_job_started_while_the_server_loads_waits_for_it(loaded):
    early = loaded["early"]
    assert not early["socket_before"]  # the server was still importing torch when the job started
    assert early["code"] == 0, early["err"]
    assert "child 1" in early["out"]  # it waited and ran in the server's child, not in its own process


def _state(pid: int) -> str | None:
    """The process's state letter from /proc (R, S, Z, ...); None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


@pytest.mark.parametrize("server_state", ["gone", "zombie"])
def test_a_job_does_not_wait_for_a_server_that_died(tmp_path, server_state):
    dead = subprocess.Popen([sys.executable, "-c", "raise SystemExit(1)"])
    deadline = time.monotonic() + 60
    while _state(dead.pid) != "Z":  # exited, not yet reaped: what a crashed server is to Snakemake
        assert time.monotonic() < deadline
        time.sleep(0.05)
    if server_state == "gone":
        dead.wait()
    started = time.monotonic()
    job = _client(tmp_path, tmp_path / "never.sock", "0", server_pid=dead.pid)
    out, _ = job.communicate(timeout=120)
    assert job.returncode == 97 and "argv" not in out  # declined: the job runs in its own process
    assert time.monotonic() - started < 10  # at once, not after forkserver.START_WAIT (30 s)
    dead.wait()


def test_signals_to_the_job_reach_the_child_and_a_killed_job_stops_its_child(tmp_path, server):
    for sig, expected in ((signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGKILL, None)):
        started = tmp_path / "job dir" / "started"
        started.unlink(missing_ok=True)
        proc = _client(tmp_path, server, "sleep")
        deadline = time.monotonic() + 120
        while not started.exists():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        child = int(started.read_text())
        proc.send_signal(sig)
        proc.wait(timeout=60)
        if expected is not None:
            assert proc.returncode == expected
        deadline = time.monotonic() + 30
        while _state(child) not in (None, "Z"):
            assert time.monotonic() < deadline, f"the child of a {sig.name}-ed job kept running"
            time.sleep(0.2)
