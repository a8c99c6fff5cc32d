"""A job's fixed cost: the evaluate stage on a one-image test set, as a job of the workflow runs it (start Python,
parse, read and validate params.yaml, plan, load the model, score, write the record, its MLflow record, exit),
through the workflow's fork server (pipeline_src/forkserver.py) and in a process of its own, side by side with a
bare `python -c pass`, and with the same job of an earlier commit (``--before REV``: its CLI, its MLflow logging
to a SQLite store), interleaved round by round.

    python bench/jobcost.py [--rounds 7] [--before 9517c06] [--markdown OUT]

Also the time the job spends on tracking (writing its record: no job talks to the MLflow store any more).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_run import checkout, scratch_dir, user_env  # noqa: E402  (no shell between a typed revision and git)

REPO = Path(__file__).resolve().parent.parent
MODEL = "skin4_resnet18_ln0_la0_s0"
ATTACKS = ("fgsm_eps4", "fgsm_eps8", "ifgsm10_eps4", "ifgsm10_eps8", "cw")


def make_inputs(folder: Path) -> None:
    """params.yaml (the repository's), a one-image test set, five one-image adversarial sets and a model file."""
    sys.path.insert(0, str(REPO))
    import torch

    from pipeline_src.config import TrainConfig, load_params, validate_params
    from pipeline_src.io import save_torch
    from pipeline_src.models import ModelSpec, build_model

    shutil.copy(REPO / "params.yaml", folder / "params.yaml")
    cfg = validate_params(load_params(folder / "params.yaml"))
    train = TrainConfig.from_params(cfg, "resnet18", 0.0, 0.0, 0)
    classes = cfg["datasets"]["skin4"]["classes"]
    torch.manual_seed(0)
    spec = ModelSpec(arch="resnet18", num_classes=len(classes), in_channels=3, image_size=32, decoder_stage="layer1")
    model = build_model(spec)
    save_torch({"model": model.state_dict(), "spec": spec.to_dict(), "config": dataclasses.asdict(train),
                "classes": classes, "history": []}, folder / f"{MODEL}.pt")
    images = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)
    labels = torch.zeros(1, dtype=torch.long)
    save_torch({"images": images, "labels": labels, "classes": classes}, folder / "test.pt")
    for attack in ATTACKS:
        save_torch({"images": images, "labels": labels, "classes": classes}, folder / f"{attack}.pt")


def now_cmd(folder: Path) -> list[str]:
    return [sys.executable, "-m", "pipeline_src.stages.evaluate", "--model", MODEL, "--weights", f"{MODEL}.pt",
            "--test", "test.pt", "--adversarial", *(f"{a}={a}.pt" for a in ATTACKS), "--out", "now.json"]


def before_cmd(folder: Path) -> list[str]:
    return [sys.executable, "-m", "pipeline_src", "evaluate", "--model", f"{MODEL}.pt", "--test", "test.pt",
            "--dataset", "skin4", "--adversarial", *(f"{a}={a}.pt" for a in ATTACKS), "--batch_size", "256",
            "--out", "before.json", "--tracking"]


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def tracking_cost(folder: Path, rounds: int) -> float:
    """Seconds a job spends on its MLflow record (hash inputs and outputs, write the record), median."""
    sys.path.insert(0, str(REPO))
    from pipeline_src import tracking

    os.environ[tracking.DEFERRED_ENV] = "1"
    cwd = Path.cwd()
    os.chdir(folder)
    try:
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            with tracking.job_run(True, "evaluate", MODEL, "bench/run", {"dataset": "skin4"}, {"batch_size": 256}) as rec:
                rec.link("train_run_id", f"{MODEL}.pt")
                for attack in ATTACKS:
                    rec.link(f"attack_run_id.{attack}", f"{attack}.pt")
                rec.log_metrics({f"accuracy_{a}": 0.5 for a in ("clean", *ATTACKS)})
                rec.output("evaluation", "now.json" if Path("now.json").exists() else f"{MODEL}.pt")
            times.append(time.perf_counter() - t0)
        shutil.rmtree(folder / ".tracking", ignore_errors=True)
        return statistics.median(times)
    finally:
        os.chdir(cwd)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--before", default=None, help="a git revision whose evaluate job to time alongside")
    ap.add_argument("--markdown", default=None, help="write the section for BENCHMARKS.md here")
    args = ap.parse_args()
    folder = scratch_dir("jobcost-")
    make_inputs(folder)
    env = user_env()
    now_env = {**env, "PYTHONPATH": str(REPO), "PIPELINE_TRACKING_DEFERRED": "1"}  # as under Snakemake
    sock = scratch_dir("jobcost-fork-") / "jobs.sock"
    server = subprocess.Popen([sys.executable, "-m", "pipeline_src.forkserver", "--socket", str(sock)],
                              env={**env, "PYTHONPATH": str(REPO)})
    while not sock.exists():
        time.sleep(0.1)
    runs: dict[str, tuple[list[str], Path, dict]] = {
        "python -c pass": ([sys.executable, "-c", "pass"], folder, env),
        "evaluate job, now, through the workflow's fork server": (now_cmd(folder), folder,
                                                                   {**now_env, "PIPELINE_FORKSERVER": str(sock)}),
        "evaluate job, now, its own process (DVC, by hand)": (now_cmd(folder), folder, now_env)}
    if args.before:
        old = checkout(args.before, scratch_dir("jobcost-before-") / "tree")
        before_dir = folder / "before"
        before_dir.mkdir()
        for f in folder.glob("*.pt"):
            os.link(f, before_dir / f.name)
        runs[f"evaluate job, {args.before}"] = (before_cmd(before_dir), before_dir,
                                                {**env, "PYTHONPATH": str(old),
                                                 "MLFLOW_TRACKING_URI": f"sqlite:///{before_dir / 'mlflow.db'}"})
    for cmd, cwd, e in runs.values():  # warm-up: page cache, the MLflow database's creation
        timed(cmd, cwd, e)
    samples: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.rounds):
        for name, (cmd, cwd, e) in runs.items():
            samples[name].append(timed(cmd, cwd, e))
    base = samples["python -c pass"]
    lines = ["| command | median (s) | best (s) | median ratio to `python -c pass` |", "|---|---|---|---|"]
    for name, times in samples.items():
        ratio = statistics.median(t / b for t, b in zip(times, base))
        lines.append(f"| {name} | {statistics.median(times):.2f} | {min(times):.2f} | {ratio:.0f}x |")
    record = tracking_cost(folder, args.rounds)
    lines.append("")
    lines.append(f"Tracking inside the job (hash its 7 files, write its record; no store is opened): "
                 f"{record * 1000:.0f} ms median.")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)
    server.terminate()
    server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
