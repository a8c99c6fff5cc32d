"""A job's start-up without its imports: a fork server that has torch loaded forks each job.

`import torch` alone takes about 1.7 s on the reference CPU, most of a short job's time. Under Snakemake the
Snakefile's ``onstart`` starts one server per workflow run (``python -m pipeline_src.forkserver``), which
imports the heavy third-party modules once and listens on a Unix socket. A job is still the same command
(``python -m pipeline_src.stages.<stage> ...``, identical in dvc.yaml): its entry point finds the socket in
``PIPELINE_FORKSERVER`` and hands its argv, working directory, environment and standard streams (file
descriptors, over the socket) to the server, which forks a child that runs the stage exactly as the command
would, in the job's directory and environment; the job's process waits for the child and exits with its code.
Signals to the job (Snakemake stopping it) are forwarded to the child; a child whose job process is gone
stops itself. Nothing of pipeline_src is imported by the server: each child imports the project's modules
from disk, as a fresh process would.

A job that starts while the server is still loading (the workflow's first jobs) waits for its socket, as long
as the server process lives and at most ``START_WAIT`` seconds: its own imports would cost as much as the
wait, and on a full machine they slow the server down too. Anything that cannot use the server (a server
that died or never came up, another machine of a cluster, a DVC stage, a job run by hand) runs the job in its
own process as before: the server only ever saves time.
"""
from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import struct
import sys
import threading
import time
from pathlib import Path

# How jobs start never changes what they write: editing this module re-runs no job (pipeline_src/codedeps.py).
AFFECTS_OUTPUTS = False

SOCKET_ENV = "PIPELINE_FORKSERVER"
PID_ENV = "PIPELINE_FORKSERVER_PID"  # the server's process: a job waits for a socket only while it lives
CHILD_ENV = "PIPELINE_FORKSERVER_CHILD"
START_WAIT = 30.0  # seconds; loading takes 3-8 s on 2 busy cores
# Third-party modules only (each child imports the project's own code from disk): what the jobs import that
# costs a second or more (torch; torch._dynamo, which torch.optim imports on the first optimizer's construction,
# 1.8 s in every training and denoiser job; pandas; matplotlib; statsmodels)
PRELOAD = ("torch", "torch.nn.functional", "torch.optim", "torch._dynamo", "numpy", "pandas", "matplotlib.pyplot",
           "yaml", "jsonschema", "tqdm", "statsmodels.stats.proportion", "statsmodels.stats.contingency_tables")
_HEADER = struct.Struct("!I")


# --------------------------------------------------------------------------- the job's side

def delegate(module: str, argv: list[str]) -> int | None:
    """Run ``module`` with ``argv`` in a child of the fork server and return its exit code; None when no server
    can take it (the caller then runs the job itself)."""
    path = os.environ.get(SOCKET_ENV)
    if not path or os.environ.get(CHILD_ENV):
        return None
    wait_for_server(Path(path), os.environ.get(PID_ENV))
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(path)
    except OSError:
        return None
    with conn:
        request = json.dumps({"module": module, "argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}).encode()
        try:
            socket.send_fds(conn, [_HEADER.pack(len(request)) + request], [0, 1, 2])
        except OSError:
            return None
        reader = conn.makefile("r")
        first = reader.readline().split()
        if len(first) != 2 or first[0] != "pid":
            return None  # the server refused before forking: run it here
        child = int(first[1])
        previous = {}
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            previous[sig] = signal.signal(sig, lambda s, _f: _forward(child, s))
        try:
            last = reader.readline().split()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if len(last) == 2 and last[0] == "exit":
            return int(last[1])
        return 1  # the server went away mid-job: report a failure, the job may be re-run


def wait_for_server(path: Path, pid: str | None, limit: float = START_WAIT) -> bool:
    """Wait until the server at ``path`` accepts (its socket appears once it listens), while process ``pid``
    lives, at most ``limit`` seconds; whether it is there."""
    deadline = time.monotonic() + limit
    while not path.exists():
        if not pid or not pid.isdigit() or not server_alive(int(pid)) or time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def server_alive(pid: int) -> bool:
    """``pid`` runs (a zombie, which its parent Snakemake has not reaped yet, does not count)."""
    if not pid_alive(pid):
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (macOS): alive by kill(0), the deadline bounds the wait
    return state not in ("Z", "X")


def _forward(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


# --------------------------------------------------------------------------- the server

def _recv_request(conn: socket.socket) -> tuple[dict, list[int]]:
    data, fds, _flags, _addr = socket.recv_fds(conn, 1 << 16, 3)
    if len(data) < _HEADER.size:
        raise ConnectionError("short request")
    (size,) = _HEADER.unpack(data[:_HEADER.size])
    body = data[_HEADER.size:]
    while len(body) < size:
        chunk = conn.recv(size - len(body))
        if not chunk:
            raise ConnectionError("request cut short")
        body += chunk
    return json.loads(body), list(fds)


def _child(request: dict, fds: list[int], client_pid: int | None) -> None:
    """In the forked child: become the job's process, run its module as `python -m` would, never return."""
    code = 1
    try:
        for target, fd in zip((0, 1, 2), fds):
            os.dup2(fd, target)
        for fd in fds:
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ[CHILD_ENV] = "1"
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.argv = [request["module"], *request["argv"]]
        sys.path[0] = request["cwd"]  # as `python -m` puts the working directory first
        if client_pid:
            threading.Thread(target=_follow, args=(client_pid,), daemon=True).start()
        import runpy

        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, int) and exc.code is not None:
            print(exc.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - as the interpreter would: the traceback on stderr, status 1
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _follow(pid: int) -> None:
    """A child whose job process is gone (killed by SIGKILL: no signal to forward) stops itself."""
    while True:
        time.sleep(1.0)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            os.kill(os.getpid(), signal.SIGTERM)
            return


def serve(path: Path, parent_pid: int | None = None) -> None:
    """Preload, listen on ``path``, fork one child per request until ``parent_pid`` (the workflow) is gone or
    SIGTERM arrives. Single-threaded, so that every fork is safe."""
    os.environ.setdefault("MPLBACKEND", "Agg")  # what figures.py selects; no display here
    for name in PRELOAD:
        try:
            __import__(name)
        except ImportError:  # an optional extra not installed: the jobs that need it import it themselves
            pass
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    server.bind(str(tmp))
    server.listen(64)
    os.replace(tmp, path)  # jobs see the socket only once it accepts
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    sel = selectors.DefaultSelector()
    sel.register(server, selectors.EVENT_READ)
    waiting: dict[int, socket.socket] = {}  # child pid -> the job's connection
    try:
        while not stopping and (parent_pid is None or pid_alive(parent_pid)):
            for _key, _ in sel.select(timeout=0.2):
                conn, _ = server.accept()
                try:
                    request, fds = _recv_request(conn)
                    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
                    client_pid = struct.unpack("3i", creds)[0]
                except (OSError, ValueError, ConnectionError):
                    conn.close()
                    continue
                pid = os.fork()
                if pid == 0:
                    sel.close()
                    server.close()
                    for other in waiting.values():
                        other.close()
                    conn.close()
                    _child(request, fds, client_pid)
                for fd in fds:
                    os.close(fd)
                try:
                    conn.sendall(f"pid {pid}\n".encode())
                except OSError:
                    pass
                waiting[pid] = conn
            _reap(waiting)
    finally:
        path.unlink(missing_ok=True)
        for pid in list(waiting):  # jobs still running when the workflow ends: let them finish
            os.waitpid(pid, 0)
        _reap(waiting)


def _reap(waiting: dict[int, socket.socket]) -> None:
    while waiting:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = waiting.pop(pid, None)
        if conn is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        try:
            conn.sendall(f"exit {code if code >= 0 else 128 - code}\n".encode())
        except OSError:
            pass
        conn.close()


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m pipeline_src.forkserver", description=__doc__.split("\n\n")[0])
    ap.add_argument("--socket", required=True, help="the Unix socket to listen on")
    ap.add_argument("--parent-pid", type=int, default=None, help="stop when this process (the workflow) is gone")
    args = ap.parse_args(argv)
    serve(Path(args.socket), args.parent_pid)
    return 0


if __name__ == "__main__":
    sys.exit(main())
