"""Running the workflow from tests: repository clones, a hermetic environment, Snakemake calls, and readers
of what a run planned, executed and tracked (used by conftest and the workflow tests)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
SMOKE = REPO / "configs" / "smoke.yaml"
SMOKE_CORES = "4"  # more jobs than the CI's 2 cores: the run doubles as the parallel-safety test
PROJECT = "xue2019-denoising-cnn"


def hermetic_env(**extra: str) -> dict[str, str]:
    """The test's environment without a user's MLflow store or DVC/pipeline variables."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_", "DVC_", "PIPELINE_"))}
    env.update(extra)
    return env


def merged_params(*overlays: Path | dict, run: str | None = "default") -> dict:
    """params.yaml with overlays (files or dicts) merged over it, as Snakemake merges --configfile."""
    from pipeline_src.config import deep_merge, load_params

    params = load_params(REPO / "params.yaml")
    for overlay in overlays:
        params = deep_merge(params, overlay if isinstance(overlay, dict) else load_params(overlay))
    if run is not None:
        params["run"] = run
    return params


def tracked_files() -> list[str]:
    """The repository's files as a fresh clone has them (tracked, plus new files git does not ignore)."""
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout.split("\n")
    return [f for f in out if f and (REPO / f).is_file()]


def make_clone(dest: Path, *overlays: Path | dict, git: bool = False) -> Path:
    """A copy of the repository whose params.yaml is params.yaml + ``overlays`` (its default run)."""
    dest.mkdir(parents=True, exist_ok=True)
    for rel in tracked_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, target)
    (dest / "params.yaml").write_text(yaml.safe_dump(merged_params(*overlays), sort_keys=False))
    if git:
        subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
        subprocess.run(["git", "add", "-A"], cwd=dest, check=True)
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "clone"], cwd=dest,
                       check=True)
    return dest


def snakemake_in(root: Path, *args: str, overlays: tuple[Path, ...] = (), cores: str = "2",
                 env: dict[str, str] | None = None, timeout: int = 1800) -> subprocess.CompletedProcess:
    """Snakemake started in ``root`` (a clone) on its own Snakefile, as a user runs it."""
    # --configfile takes every word up to the next option: "--cores" ends it, so a target in args stays a target
    cmd = [sys.executable, "-m", "snakemake", *(["--configfile", *map(str, overlays)] if overlays else []),
           "--cores", cores, *args]
    return subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=timeout, env=env or hermetic_env())


def run_snakemake(workdir: Path, *args: str, overlays: tuple[Path, ...] = (), cores: str = "2",
                  env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The repository's Snakefile on the smoke config (+ overlays) in ``workdir`` (Snakemake's --directory)."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
           "--configfile", str(SMOKE), *map(str, overlays), "--cores", cores, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env or hermetic_env())


def planned_jobs(result: subprocess.CompletedProcess) -> set[tuple[str, str]]:
    """(rule, wildcards) of every job a dry run plans (``all`` included)."""
    jobs, rule = set(), None
    for line in result.stdout.splitlines():
        if m := re.match(r"^(?:local)?rule (\w+):", line):
            rule = m.group(1)
            jobs.add((rule, ""))
        elif rule and (m := re.match(r"^\s+wildcards: (.*)$", line)):
            jobs.discard((rule, ""))
            jobs.add((rule, m.group(1)))
    return jobs


def planned_total(result: subprocess.CompletedProcess) -> int:
    """The 'total' of a dry run's job table (0 when nothing is to be done)."""
    m = re.search(r"^total\s+(\d+)\s*$", result.stdout + result.stderr, re.M)
    return int(m.group(1)) if m else 0


def executed_total(result: subprocess.CompletedProcess) -> int:
    """How many jobs a real run executed ('N of N steps (100%) done')."""
    done = re.findall(r"(\d+) of (\d+) steps \(100%\) done", result.stdout + result.stderr)
    return int(done[-1][1]) if done else 0


def tracked_runs(root: Path, run: str = "default") -> dict[str, list]:
    """{stage: [mlflow Run]} of the experiment <project>/<run> in ``root``'s store (parent runs under 'parent')."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name(f"{PROJECT}/{run}")
    assert exp is not None, f"no experiment {PROJECT}/{run}: {[e.name for e in client.search_experiments()]}"
    found: dict[str, list] = {}
    for r in client.search_runs([exp.experiment_id], max_results=10000):
        found.setdefault(r.data.tags.get("stage", "parent"), []).append(r)
    return found


def expected_tracked_jobs(plan) -> int:
    """One MLflow run per training, attack, evaluation, table and figure job of `make run` (Snakemake's `all`),
    Table 4's included (a denoiser training per denoiser, an evaluation per denoised row, a run per combined table)."""
    jobs = len(plan.run_models()) + len(plan.datasets) * len(plan.attacks) + len(plan.evaluated_models()) + len(plan.tables)
    jobs += len(plan.tables) + len(plan.datasets)  # report.smk: figures per table, attack figure per dataset
    jobs += len(plan.whitebox_models()) + len(plan.whitebox_tables)  # beyond the paper
    return jobs + len(plan.denoisers) + sum(r.denoiser is not None for rows in plan.combined.values() for r in rows) \
        + len(plan.combined)


def database_errors(root: Path, stderr: str) -> list[str]:
    """Snakemake's stderr and every log that mentions an SQLite/MLflow database error."""
    texts = {"snakemake stderr": stderr, **{str(p): p.read_text() for p in sorted((root / "logs").rglob("*.log"))}}
    return [name for name, text in texts.items()
            if "database is locked" in text.lower() or "operationalerror" in text.lower()]


def file_hashes(root: Path, folders: tuple[str, ...] = ("results", "models", "data")) -> dict[str, str]:
    import hashlib

    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for folder in folders for p in sorted((root / folder).rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- a live MLflow server on localhost

def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, server: subprocess.Popen, timeout: float = 120.0) -> None:
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"mlflow server exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"mlflow server did not answer at {url} within {timeout:.0f} s")


def start_mlflow_server(store: str, cwd: Path) -> tuple[subprocess.Popen, str]:
    """`mlflow server` on 127.0.0.1 over ``store``: one worker, no job runner, in its own process group
    (end it with stop_mlflow_server: the server forks workers). Returns (process, http://127.0.0.1:PORT)."""
    port = free_port()
    mlflow = Path(sys.executable).parent / "mlflow"
    cmd = [str(mlflow) if mlflow.exists() else "mlflow", "server", "--backend-store-uri", store,
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    env = hermetic_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    server = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, server)
    except AssertionError:
        stop_mlflow_server(server)
        raise
    return server, url


def stop_mlflow_server(server: subprocess.Popen) -> None:
    import signal

    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(server.pid, signal.SIGKILL)


def load_bench_script(name: str):
    """bench/<name>.py imported as module ``bench_<name>`` (bench/ is scripts, not a package)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[f"bench_{name}"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
