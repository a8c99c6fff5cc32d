"""One command that measures the pipeline's performance figures and writes BENCHMARKS.md (issue 6, item 2).

    python bench/run.py                          # figures 1-3 (about 3 minutes on 2 cores); figure 4 skipped
    python bench/run.py --workflow-dir DIR       # + figure 4 from an existing completed run in DIR
    python bench/run.py --run-workflow           # + figure 4 from a fresh `snakemake --cores all` (~9 min)

Figures, each next to its goal with a verdict:

1. C&W-L2 throughput (images x iterations / s), ``pipeline_src.attacks.cw_l2`` vs foolbox 3.3.4's
   ``L2CarliniWagnerAttack``, same model, batch and settings, abort_early off so both run every step;
   success rates side by side (goal: >= 1.5x, same success rate).
2. One defended training step (``train_step`` with lambda_n = 1, lambda_a = 10: clean + noisy in one
   forward, decoder, three losses, backward, SGD step) vs a plain torchvision ResNet18 step (cross-entropy
   on the clean images only) at the same batch (goal: <= 2.3x).
3. Share of the epoch spent loading data in ``train_model`` (uint8 indexing + float conversion per batch)
   (goal: < 5%).
4. Wall time of the default ``snakemake --cores all`` and its job-seconds per rule, read from the run's
   ``benchmarks/**/*.tsv`` (Snakemake's ``benchmark:`` files, with each job's peak memory: ``bench/jobs.py``),
   or from ``DIR/.snakemake/metadata`` for a run without them (no goal in the issue: reported).

Every comparison is measured side by side and interleaved (A, B, A, B, ...); ratios are paired per round
and the median is reported, since the machine is shared and absolute times drift with the load.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import glob
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python bench/run.py` from a checkout without an installed package
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

# --------------------------------------------------------------------------- settings


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes of every measurement. ``full`` is what BENCHMARKS.md reports; ``tiny`` is for the tests."""
    data: str = "skin4"            # prepared like the workflow does (params.yaml), or "random" (tiny)
    cw_batch: int = 64
    cw_binary_search_steps: int = 3
    cw_steps: int = 20
    cw_rounds: int = 5             # interleaved (ours, foolbox) pairs
    step_batch: int = 64
    step_rounds: int = 7           # interleaved rounds of (defended, plain, plain at 2x batch)
    steps_per_round: int = 4
    epoch_epochs: int = 2          # epochs per train_model call in figure 3
    epoch_rounds: int = 2          # interleaved (NA, defended) train_model calls


FULL = Settings()
TINY = Settings(data="random", cw_batch=4, cw_binary_search_steps=1, cw_steps=2, cw_rounds=1, step_batch=4,
                step_rounds=1, steps_per_round=1, epoch_epochs=1, epoch_rounds=1)

GOAL_CW = 1.5          # ours / foolbox throughput, at least
GOAL_CW_SUCCESS = 0.02  # |success rate difference| at most (issue 6: "within 2 points")
GOAL_STEP = 2.3        # defended / plain step time, at most
GOAL_LOAD = 0.05       # data-loading share of the epoch, below


def loadavg() -> str:
    try:
        return "/".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:  # pragma: no cover - not on Linux
        return "n/a"


def median(values: list[float]) -> float:
    return statistics.median(values)


def fmt_range(values: list[float], digits: int = 2) -> str:
    return f"{min(values):.{digits}f}-{max(values):.{digits}f}"


# --------------------------------------------------------------------------- data and config


def load_params() -> dict:
    from pipeline_src.config import load_params as _load, validate_params

    return validate_params(_load(REPO / "params.yaml"))


def make_data(settings: Settings, params: dict, workdir: Path):
    """(train, test) Splits: the default skin4 data prepared as the workflow prepares it, or random (tiny)."""
    from pipeline_src.data.prepare import Split, load_split, prepare

    if settings.data == "random":
        g = torch.Generator().manual_seed(0)
        mk = lambda n: Split(images=torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8),  # noqa: E731
                             labels=torch.arange(n) % 4, classes=["a", "b", "c", "d"])
        return mk(16), mk(8)
    from pipeline_src.config import DatasetSpec

    spec = DatasetSpec.from_params(params["datasets"][settings.data], params["seed"])
    prepare(spec, workdir / settings.data)
    return load_split(workdir / settings.data / "train.pt"), load_split(workdir / settings.data / "test.pt")


def train_config(params: dict, lambda_n: float, lambda_a: float, threads: int, **overrides):
    """Built like tests/test_train.py: TrainConfig.from_params on params.yaml, then the benchmark's overrides."""
    from pipeline_src.config import TrainConfig

    cfg = TrainConfig.from_params(params, "resnet18", lambda_n, lambda_a, params["seed"])
    return dataclasses.replace(cfg, threads=threads, **overrides)


# --------------------------------------------------------------------------- figure 3: data-loading share


@contextmanager
def patched(module, name: str, wrapper):
    original = getattr(module, name)
    setattr(module, name, wrapper(original))
    try:
        yield
    finally:
        setattr(module, name, original)


def timed(acc: dict, key: str):
    def wrap(fn):
        def inner(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                acc[key] += time.perf_counter() - t0
        return inner
    return wrap


def bench_epoch(settings: Settings, params: dict, train, test, threads: int, workdir: Path) -> dict:
    """``train_model`` itself, with the per-batch loading (``Split.float_images``), the per-epoch test
    evaluation and the checkpoint writes timed from outside. Returns the shares and the last NA model."""
    import pipeline_src.train as train_mod
    from pipeline_src.data.prepare import Split

    acc: dict = defaultdict(float)

    class TimedSplit(Split):  # the training split only: test accuracy goes through `accuracy`, timed apart
        def float_images(self, idx=slice(None)):
            t0 = time.perf_counter()
            try:
                return super().float_images(idx)
            finally:
                acc["load"] += time.perf_counter() - t0

    timed_train = TimedSplit(images=train.images, labels=train.labels, classes=train.classes)
    configs = {"NA (plain CE)": train_config(params, 0.0, 0.0, threads, epochs=settings.epoch_epochs),
               "defended (1, 10)": train_config(params, 1.0, 10.0, threads, epochs=settings.epoch_epochs)}
    rows: dict[str, list[dict]] = {name: [] for name in configs}
    na_model_path = workdir / "na_model.pt"
    for _ in range(settings.epoch_rounds):
        for name, cfg in configs.items():
            acc.clear()
            out = workdir / ("na_model.pt" if cfg.lambda_n == cfg.lambda_a == 0 else "defended_model.pt")
            with patched(train_mod, "accuracy", timed(acc, "eval")), patched(train_mod, "save_torch", timed(acc, "save")):
                t0 = time.perf_counter()
                train_mod.train_model(cfg, timed_train, test, out)
                total = time.perf_counter() - t0
            rows[name].append({"total": total, **acc})
    bs, n_train = configs["NA (plain CE)"].batch_size, len(train.labels)
    n_batches = len([i for i in range(0, n_train, bs) if min(bs, n_train - i) > 1])  # as train_model batches
    result = {"configs": {}, "n_train": n_train, "batch_size": bs, "batches": n_batches, "epochs": settings.epoch_epochs,
              "rounds": settings.epoch_rounds,
              "model_path": na_model_path}
    for name, runs in rows.items():
        shares = [r["load"] / r["total"] for r in runs]
        shares_loop = [r["load"] / (r["total"] - r["eval"] - r["save"]) for r in runs]
        best = min(range(len(runs)), key=lambda i: runs[i]["total"])
        result["configs"][name] = {"share": median(shares), "share_range": (min(shares), max(shares)),
                                   "share_loop": median(shares_loop),
                                   "epoch_s": runs[best]["total"] / settings.epoch_epochs,
                                   "load_ms_per_batch": 1e3 * runs[best]["load"] / (n_batches * settings.epoch_epochs),
                                   "eval_s": runs[best]["eval"] / settings.epoch_epochs,
                                   "save_s": runs[best]["save"] / settings.epoch_epochs}
    worst = max(c["share"] for c in result["configs"].values())
    result["worst"] = worst
    result["met"] = worst < GOAL_LOAD
    return result


# --------------------------------------------------------------------------- figure 1: C&W throughput


def bench_cw(settings: Settings, model, x: torch.Tensor, y: torch.Tensor) -> dict:
    import foolbox as fb

    from pipeline_src.attacks import cw_l2

    model.eval()
    kw = dict(binary_search_steps=settings.cw_binary_search_steps, steps=settings.cw_steps, stepsize=0.01,
              confidence=0.0, initial_const=1e-3, abort_early=False)
    fmodel = fb.PyTorchModel(model, bounds=(0, 1), device="cpu")
    fb_attack = fb.attacks.L2CarliniWagnerAttack(**kw)

    def ours():
        res = cw_l2(model, x, y, **kw)
        return res.success, res.l2

    def theirs():
        raw, _, success = fb_attack(fmodel, x, y, epsilons=None)
        for p in model.parameters():  # foolbox's backward fills parameter grads
            p.grad = None
        found = success & (raw.flatten(1).abs().sum(dim=1) > 0)  # all-zeros = foolbox's "not found"
        return found, (raw - x).flatten(1).norm(dim=1)

    # warm-up (allocator, first-call overheads) at a tenth of the work
    warm = dict(kw, binary_search_steps=1, steps=2)
    cw_l2(model, x, y, **warm)
    fb.attacks.L2CarliniWagnerAttack(**warm)(fmodel, x, y, epsilons=None)

    work = x.shape[0] * settings.cw_binary_search_steps * settings.cw_steps  # images x iterations
    t_ours, t_fb, ratios = [], [], []
    out_ours = out_fb = None
    for _ in range(settings.cw_rounds):
        t0 = time.perf_counter()
        out_ours = ours()
        t1 = time.perf_counter()
        out_fb = theirs()
        t2 = time.perf_counter()
        t_ours.append(t1 - t0)
        t_fb.append(t2 - t1)
        ratios.append((t2 - t1) / (t1 - t0))
    s_ours, l2_ours = out_ours
    s_fb, l2_fb = out_fb
    both = s_ours & s_fb
    rate_ours, rate_fb = s_ours.float().mean().item(), s_fb.float().mean().item()
    speedup = median(ratios)
    same = abs(rate_ours - rate_fb) <= GOAL_CW_SUCCESS
    return {"settings": kw, "batch": x.shape[0], "work": work,
            "tput_ours": work / min(t_ours), "tput_fb": work / min(t_fb),
            "t_ours": t_ours, "t_fb": t_fb, "ratios": ratios, "speedup": speedup,
            "rate_ours": rate_ours, "rate_fb": rate_fb,
            "l2_ours": l2_ours[s_ours].mean().item() if s_ours.any() else float("nan"),
            "l2_fb": l2_fb[s_fb].mean().item() if s_fb.any() else float("nan"),
            "agree": (s_ours == s_fb).float().mean().item(), "both": int(both.sum()),
            "met": speedup >= GOAL_CW and same, "same": same}


# --------------------------------------------------------------------------- figure 2: training step


def bench_step(settings: Settings, params: dict, train, threads: int) -> dict:
    import torchvision

    from pipeline_src.models import build_model
    from pipeline_src.train import model_spec, train_step

    cfg = train_config(params, 1.0, 10.0, threads)
    n = settings.step_batch
    x = train.float_images(slice(0, n))
    y = train.labels[:n]
    x2, y2 = torch.cat([x, x]), torch.cat([y, y])
    generator = torch.Generator().manual_seed(0)

    torch.manual_seed(0)
    ours = build_model(model_spec(cfg, train)).train()
    opt_ours = torch.optim.SGD(ours.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    plain = torchvision.models.resnet18(num_classes=len(train.classes)).train()
    opt_plain = torch.optim.SGD(plain.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    plain2 = torchvision.models.resnet18(num_classes=len(train.classes)).train()
    opt_plain2 = torch.optim.SGD(plain2.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)

    def defended_step():
        losses = train_step(ours, x, y, cfg, generator)
        opt_ours.zero_grad(set_to_none=True)
        losses["loss"].backward()
        opt_ours.step()

    def plain_step(model, opt, xb, yb):
        def step():
            loss = torch.nn.functional.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return step

    steps = {"defended": defended_step, "plain": plain_step(plain, opt_plain, x, y),
             "plain_2x": plain_step(plain2, opt_plain2, x2, y2)}
    for fn in steps.values():  # warm-up
        fn()
        fn()
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(settings.step_rounds):
        for name, fn in steps.items():
            t0 = time.perf_counter()
            for _ in range(settings.steps_per_round):
                fn()
            times[name].append((time.perf_counter() - t0) / settings.steps_per_round)
    ratios = [d / p for d, p in zip(times["defended"], times["plain"])]
    ratios_2x = [d / p for d, p in zip(times["defended"], times["plain_2x"])]
    floor = [p2 / p for p2, p in zip(times["plain_2x"], times["plain"])]
    ratio = median(ratios)
    return {"batch": n, "times": times, "ratios": ratios, "ratio": ratio, "ratio_2x": median(ratios_2x),
            "ratios_2x": ratios_2x, "floor": median(floor), "met": ratio <= GOAL_STEP}


# --------------------------------------------------------------------------- figure 4: workflow


_DETAIL = {
    "attack": lambda cmd: (m.group(1) if (m := re.search(r"--method (\S+)", cmd)) else None),
}


def _train_detail(cmd: str) -> str | None:
    arch = re.search(r"--arch (\S+)", cmd)
    ln, la = re.search(r"--lambda_n (\S+)", cmd), re.search(r"--lambda_a (\S+)", cmd)
    if not (arch and ln and la):
        return None
    if "surrogate" in cmd:
        return f"{arch.group(1)} surrogate"
    na = float(ln.group(1)) == 0 and float(la.group(1)) == 0
    return f"{arch.group(1)} {'NA' if na else 'defended'}"


_DETAIL["train"] = _train_detail


def _latest_log(workflow_dir: Path) -> tuple[float | None, dict]:
    """Start time (from the file name) and facts of the newest .snakemake/log/*.snakemake.log."""
    logs = sorted((workflow_dir / ".snakemake" / "log").glob("*.snakemake.log"))
    if not logs:
        return None, {}
    path = logs[-1]
    try:
        start = dt.datetime.strptime(path.name.split(".snakemake.log")[0], "%Y-%m-%dT%H%M%S.%f").timestamp()
    except ValueError:
        start = None
    text = path.read_text(errors="replace")
    facts: dict = {"log": str(path)}
    if m := re.search(r"Elapsed time: (\d+):(\d+):(\d+(?:\.\d+)?)", text):
        facts["elapsed_s"] = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    if m := re.search(r"Provided cores: (\d+)", text):
        facts["cores"] = int(m.group(1))
    if done := re.findall(r"(\d+) of (\d+) steps \(\d+%\) done", text):
        facts["steps"] = f"{done[-1][0]} of {done[-1][1]}"
    return start, facts


def summarize_workflow(workflow_dir: str | Path) -> dict:
    """Jobs, job-seconds per rule and wall span from ``DIR/.snakemake/metadata/*``.

    Snakemake writes one record per output file: the outputs of one job share ``job_hash`` and ``endtime``
    (their ``starttime`` differ by microseconds), so a job is (rule, job_hash), or (rule, endtime) without a
    hash; it runs from its earliest start to its end. Records older than the newest run's log (outputs that
    run did not rebuild) are left out and counted apart.
    """
    workflow_dir = Path(workflow_dir)
    files = glob.glob(str(workflow_dir / ".snakemake" / "metadata" / "*"))
    if not files:
        raise FileNotFoundError(f"no Snakemake metadata under {workflow_dir / '.snakemake' / 'metadata'}")
    records = []
    for f in files:
        with open(f) as fh:
            rec = json.load(fh)
        if rec.get("incomplete") or rec.get("starttime") is None or rec.get("endtime") is None:
            continue
        records.append(rec)
    log_start, facts = _latest_log(workflow_dir)
    current = [r for r in records if log_start is None or r["starttime"] >= log_start - 1.0]
    if not current:  # the newest log ran nothing (e.g. a dry run): fall back to every record
        current = records

    def group(recs: list[dict]) -> list[dict]:
        jobs: dict[tuple, dict] = {}
        for rec in recs:
            key = (rec["rule"], rec.get("job_hash") if rec.get("job_hash") is not None else rec["endtime"])
            job = jobs.setdefault(key, {"rule": rec["rule"], "start": rec["starttime"], "end": rec["endtime"],
                                        "cmd": rec.get("shellcmd") or ""})
            job["start"] = min(job["start"], rec["starttime"])
            job["end"] = max(job["end"], rec["endtime"])
        return list(jobs.values())

    current_jobs = group(current)
    stale = len(group(records)) - len(current_jobs) if current is not records else 0
    current = current_jobs
    per_rule: dict[str, dict] = {}
    detail: dict[str, dict[str, dict]] = defaultdict(dict)
    for j in current:
        dur = j["end"] - j["start"]
        r = per_rule.setdefault(j["rule"], {"jobs": 0, "seconds": 0.0, "max": 0.0})
        r["jobs"] += 1
        r["seconds"] += dur
        r["max"] = max(r["max"], dur)
        if j["rule"] in _DETAIL and (d := _DETAIL[j["rule"]](j["cmd"])):
            dd = detail[j["rule"]].setdefault(d, {"jobs": 0, "seconds": 0.0})
            dd["jobs"] += 1
            dd["seconds"] += dur
    start = min(j["start"] for j in current)
    end = max(j["end"] for j in current)
    total = sum(r["seconds"] for r in per_rule.values())
    return {"dir": str(workflow_dir), "jobs": len(current), "stale": stale, "records": len(records),
            "span_s": end - start, "job_seconds": total, "per_rule": per_rule, "detail": dict(detail),
            "first_start": start, "last_end": end, **facts}


def _load_jobs_module():
    """bench/jobs.py (bench/ is no package; this file also runs as a script and is loaded by path in tests)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_jobs", Path(__file__).with_name("jobs.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_jobs", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def summarize_run(workflow_dir: str | Path) -> dict:
    """Figure 4's per-rule figures: from the run's benchmark files when it has them (one file per job, with
    memory), else from ``.snakemake/metadata``; the wall time and cores from its newest log either way."""
    workflow_dir = Path(workflow_dir)
    if any((workflow_dir / "benchmarks").rglob("*.tsv")):
        summary = _load_jobs_module().summarize_benchmarks(workflow_dir)
        summary.update(_latest_log(workflow_dir)[1])
        return summary
    return summarize_workflow(workflow_dir)


def run_workflow(log: list[str], configfile: Path | None = None) -> tuple[Path, float]:
    """`snakemake -s REPO/Snakefile -d TMP --cores all` in a fresh directory; returns it and the wall time."""
    workdir = Path(tempfile.mkdtemp(prefix="bench_workflow_"))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--cores", "all"]
    if configfile:
        cmd[-2:-2] = ["--configfile", str(Path(configfile).resolve())]
    log.append(" ".join(cmd))
    print(f"[bench] running the default workflow in {workdir} (the default takes about 9 minutes) ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    with open(workdir / "bench_snakemake.log", "w") as fh:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}  # tracking stays in workdir
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=workdir, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"snakemake failed (exit {proc.returncode}); see {workdir / 'bench_snakemake.log'}")
    return workdir, wall


# --------------------------------------------------------------------------- report


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for mod in ("torchvision", "foolbox", "snakemake"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            versions[mod] = "not installed"
    lock = REPO / "requirements.lock"
    lock_sha = hashlib.sha256(lock.read_bytes()).hexdigest() if lock.is_file() else "no requirements.lock"
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "torch": torch.__version__,
            **versions, "lock_sha256": lock_sha}


def verdict(met: bool, ratios: list[float] | None = None, ok=None) -> str:
    """**met** / **not met** on the median; says so when single rounds fall on the other side of the goal."""
    text = "**met**" if met else "**not met**"
    if ratios and ok is not None:
        other = sum(1 for r in ratios if ok(r) != met)
        if other:
            text += f" (borderline: {other} of {len(ratios)} rounds {'miss' if met else 'meet'} the goal)"
    return text


def fmt_s(seconds: float) -> str:
    m, s = divmod(seconds, 60)
    return f"{int(m)} min {s:.0f} s" if m else f"{s:.1f} s"


def render(command: str, mach: dict, threads: int, started: str, wall: float, loads: dict, settings: Settings,
           cw: dict | None, step: dict | None, epoch: dict | None, wf: dict | None, wf_note: str) -> str:
    L: list[str] = []
    add = L.append
    add("# Benchmarks")
    add("")
    add("Written by one command, from the repository root:")
    add("")
    add("```bash")
    add(command)
    add("```")
    add("")
    add("(`python bench/run.py` alone measures figures 1-3 in about 3 minutes; `--workflow-dir DIR` adds figure 4 "
        "from a completed run's `.snakemake/metadata`; `--run-workflow` runs the default `snakemake --cores all` "
        "in a fresh temporary directory first, about 9 more minutes.)")
    add("")
    add("| machine | |")
    add("|---|---|")
    add(f"| date (UTC) | {started} |")
    add(f"| CPU | {mach['cpu']}, `nproc` = {mach['nproc']} |")
    add(f"| software | Python {mach['python']}, torch {mach['torch']}, torchvision {mach['torchvision']}, "
        f"foolbox {mach['foolbox']}, snakemake {mach['snakemake']} |")
    add(f"| environment | `requirements.lock` sha256 `{mach.get('lock_sha256', 'not recorded')}` (`make install` "
        "installs exactly this lock) |")
    add(f"| torch threads | {threads} (`torch.set_num_threads({threads})`, as the workflow's jobs run: "
        "`training.threads: 1`, jobs side by side) |")
    add("| load average (1/5/15 min) | " + "; ".join(f"{k}: {v}" for k, v in loads.items()) + " |")
    add(f"| benchmark wall time | {fmt_s(wall)} |")
    add("")
    add("The machine is shared, so every comparison is measured side by side in the same process and "
        "interleaved (A, B, A, B, ...): each figure is the **median of the per-round ratios**, with their "
        "range; absolute times are the best round and only indicative.")
    one_min = [float(v.split("/")[0]) for v in loads.values() if v != "n/a"]
    if one_min and max(one_min) > (mach["nproc"] or 1) - 0.5:
        add("")
        add(f"**Caveat:** the 1-minute load average reached {max(one_min):.2f} on {mach['nproc']} cores during this "
            "run (this benchmark's one thread accounts for about 1 of it): other processes shared the cores, so "
            "single rounds vary more (see each figure's range).")
    add("")
    add("## Summary")
    add("")
    add("| # | figure | goal | measured | verdict |")
    add("|---|---|---|---|---|")
    if cw:
        add(f"| 1 | C&W-L2 throughput, ours / foolbox 3.3.4 | >= {GOAL_CW}x, same success rate | "
            f"{cw['speedup']:.2f}x (rounds {fmt_range(cw['ratios'])}); success {100 * cw['rate_ours']:.1f}% vs "
            f"{100 * cw['rate_fb']:.1f}% | {verdict(cw['met'], cw['ratios'], lambda r: r >= GOAL_CW)} |")
    if step:
        add(f"| 2 | defended training step / plain ResNet18 step, batch {step['batch']} | <= {GOAL_STEP}x | "
            f"{step['ratio']:.2f}x (rounds {fmt_range(step['ratios'])}) | "
            f"{verdict(step['met'], step['ratios'], lambda r: r <= GOAL_STEP)} |")
    if epoch:
        cfgs = epoch["configs"]
        add(f"| 3 | data loading share of the training epoch | < {100 * GOAL_LOAD:.0f}% | "
            + "; ".join(f"{k}: {100 * v['share']:.2f}%" for k, v in cfgs.items())
            + f" | {verdict(epoch['met'])} |")
    if wf:
        add(f"| 4 | default `snakemake --cores all`, wall | none set (reported) | {fmt_s(wf['wall_s'])} wall, "
            f"{wf['jobs']} jobs, {wf['job_seconds']:.0f} job-seconds | reported |")
    else:
        add(f"| 4 | default `snakemake --cores all`, wall | none set (reported) | not measured in this run "
            f"({wf_note}) | - |")
    add("")

    if cw:
        s = cw["settings"]
        add("## 1. C&W-L2 throughput: ours vs foolbox 3.3.4")
        add("")
        add(f"Goal: >= {GOAL_CW}x foolbox's images x iterations per second at the same batch and settings, with the "
            f"same success rate (within {100 * GOAL_CW_SUCCESS:.0f} points, issue 6's agreement tolerance).")
        add("")
        add("Model: `build_model(ModelSpec(\"resnet18\", 4, 3, 32, \"layer1\"))` in eval mode, "
            + ("trained by figure 3's NA run on the default skin4 data" if settings.data != "random"
               else "random weights (tiny setting)")
            + f"; inputs: the first {cw['batch']} test images with their labels. Settings (both): "
            f"{s['binary_search_steps']} binary-search steps x {s['steps']} iterations, stepsize {s['stepsize']}, "
            f"confidence {s['confidence']}, initial_const {s['initial_const']}, abort_early {s['abort_early']} "
            f"(so both run every step: {cw['work']} image-iterations per call). `pipeline_src.attacks.cw_l2` vs "
            "`foolbox.attacks.L2CarliniWagnerAttack` on `fb.PyTorchModel(model, bounds=(0, 1))`; foolbox's "
            "success counts only non-placeholder (not all-zeros) images.")
        add("")
        add("| | ours | foolbox | ratio |")
        add("|---|---|---|---|")
        add(f"| throughput, best round (image-iterations/s) | {cw['tput_ours']:.0f} | {cw['tput_fb']:.0f} | "
            f"{cw['tput_ours'] / cw['tput_fb']:.2f}x |")
        add(f"| time per call, each round (s) | {', '.join(f'{t:.2f}' for t in cw['t_ours'])} | "
            f"{', '.join(f'{t:.2f}' for t in cw['t_fb'])} | {', '.join(f'{r:.2f}' for r in cw['ratios'])} |")
        add(f"| success rate | {100 * cw['rate_ours']:.1f}% | {100 * cw['rate_fb']:.1f}% | "
            f"same verdict on {100 * cw['agree']:.1f}% of images |")
        add(f"| mean L2 of successes | {cw['l2_ours']:.4f} | {cw['l2_fb']:.4f} | |")
        add("")
        why = []
        if cw["speedup"] < GOAL_CW:
            why.append(f"the speed-up {cw['speedup']:.2f}x is below {GOAL_CW}x")
        if not cw["same"]:
            why.append("the success rates differ by more than the tolerance")
        add(f"Verdict: {verdict(cw['met'], cw['ratios'], lambda r: r >= GOAL_CW)}: median paired speed-up {cw['speedup']:.2f}x "
            f"(rounds {fmt_range(cw['ratios'])})" + (f"; {'; '.join(why)}" if why else "")
            + ". Both run the same algorithm (ours mirrors foolbox step by step); ours differentiates w.r.t. the "
            "input only and reuses each step's logits for the success test, foolbox also fills the parameter "
            "gradients and runs eagerpy wrappers around every tensor operation.")
        add("")
    if step:
        t = step["times"]
        add("## 2. Defended training step vs a plain ResNet18 step")
        add("")
        add(f"Goal: <= {GOAL_STEP}x the plain step at the same batch (the defended step reads two images per "
            "sample, so 2x is the floor).")
        add("")
        add(f"Batch {step['batch']} at 32 px from the default skin4 training data. Defended: "
            "`pipeline_src.train.train_step` with a `TrainConfig` from params.yaml (lambda_n = 1, lambda_a = 10: "
            "clean + noisy in one forward, decoder, three losses) + backward + SGD step (lr, momentum, weight decay "
            "from params.yaml). Plain: `torchvision.models.resnet18(num_classes=4)`, cross-entropy on the clean "
            "images only, backward + the same SGD step. Reference row: the plain step on 2x the batch (the "
            f"two-images floor). {len(step['ratios'])} interleaved rounds of {settings.steps_per_round} "
            "steps each, after 2 warm-up steps.")
        add("")
        add("| step | best round (ms/step) | median ratio defended / this | rounds |")
        add("|---|---|---|---|")
        add(f"| defended, batch {step['batch']} (x2 images) | {1e3 * min(t['defended']):.0f} | 1.00 | |")
        add(f"| plain ResNet18, batch {step['batch']} | {1e3 * min(t['plain']):.0f} | **{step['ratio']:.2f}** | "
            f"{fmt_range(step['ratios'])} |")
        add(f"| plain ResNet18, batch {2 * step['batch']} (the floor) | {1e3 * min(t['plain_2x']):.0f} | "
            f"{step['ratio_2x']:.2f} | {fmt_range(step['ratios_2x'])} |")
        add("")
        add(f"Verdict: {verdict(step['met'], step['ratios'], lambda r: r <= GOAL_STEP)}: {step['ratio']:.2f}x the plain step "
            f"(goal <= {GOAL_STEP}x). On this CPU the plain step on 2x the batch costs {step['floor']:.2f}x the "
            f"plain step, and the defended step is {step['ratio_2x']:.2f}x that floor: the decoder, the noise and "
            "the two extra losses.")
        add("")
    if epoch:
        add("## 3. Share of the training epoch spent loading data")
        add("")
        add(f"Goal: < {100 * GOAL_LOAD:.0f}% of the epoch.")
        add("")
        add(f"`pipeline_src.train.train_model` itself on the default skin4 training split ({epoch['n_train']} images, "
            f"batch {epoch['batch_size']}, {epoch['batches']} batches per epoch), {epoch['epochs']} epoch(s) per call, "
            f"each configuration run {epoch['rounds']} time(s), interleaved (median share reported). Loading = every `Split.float_images(idx)` call of the loop (uint8 indexing + "
            "float conversion of the batch), timed by a subclass of `Split`; the epoch = the whole `train_model` "
            "call per epoch (steps, per-epoch test accuracy, checkpoint; model construction included).")
        add("")
        add("| configuration | epoch (s) | loading (ms/batch) | test eval (s/epoch) | checkpoint (s/epoch) | "
            "loading share of the epoch | of the batch loop only |")
        add("|---|---|---|---|---|---|---|")
        for name, c in epoch["configs"].items():
            add(f"| {name} | {c['epoch_s']:.2f} | {c['load_ms_per_batch']:.2f} | {c['eval_s']:.2f} | "
                f"{c['save_s']:.3f} | **{100 * c['share']:.2f}%** | {100 * c['share_loop']:.2f}% |")
        add("")
        add(f"Verdict: {verdict(epoch['met'])}: at most {100 * epoch['worst']:.2f}% (the cheaper NA step makes the "
            "larger share). The data are uint8 tensors in memory: no decoding, no DataLoader workers.")
        add("")
    add("## 4. Default workflow: wall time and where it goes")
    add("")
    if not wf:
        add(f"Not measured in this run ({wf_note}). Pass `--workflow-dir DIR` (a completed run) or `--run-workflow`.")
        add("")
    else:
        add("No numeric goal in the issue: reported. " + wf["how"])
        add("")
        cores = wf.get("cores")
        add(f"- wall: **{fmt_s(wf['wall_s'])}** ({wf['wall_what']}); first job start to last job end: "
            f"{fmt_s(wf['span_s'])}")
        add(f"- jobs with outputs: {wf['jobs']} (`rule all` has none"
            + (f"; Snakemake's log: {wf['steps']} steps done" if wf.get("steps") else "")
            + f"), {wf['job_seconds']:.0f} job-seconds"
            + (f" on {cores} cores: the jobs kept {100 * wf['job_seconds'] / (wf['span_s'] * cores):.0f}% of "
               f"core-time busy over the span" if cores else ""))
        if wf["stale"]:
            add(f"- {wf['stale']} job(s) in the metadata predate the newest run's log and are left out")
        bound = wf.get("peak_pss_bound_mib", float("nan"))
        if bound == bound:  # not NaN: the benchmark files had memory samples
            add(f"- peak summed PSS at most {bound / 1024:.2f} GiB (the jobs that overlapped, each at its own "
                "peak; figure 5 samples the true peak)")
        add("")
        for line in _load_jobs_module().render_rule_table(wf):
            add(line)
        add("")
        top = max(wf["per_rule"].items(), key=lambda kv: kv[1]["seconds"])
        add(f"Verdict: reported (no goal). {top[0]} takes {100 * top[1]['seconds'] / wf['job_seconds']:.0f}% of "
            "the job-seconds.")
        add("")
    return "\n".join(L)


def kept_sections(path: Path) -> str:
    """Sections other scripts write into the file between their own markers (``<!-- bench/X.py: begin -->``
    ... ``end -->``, e.g. bench/compute.py): kept, in order, below this script's figures."""
    text = Path(path).read_text() if Path(path).exists() else ""
    found = re.findall(r"(<!-- (bench/[\w.]+): begin -->.*?<!-- \2: end -->)", text, flags=re.S)
    return "".join(f"\n{block}\n" for block, _ in found)


def write_atomic(path: Path, text: str) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md", help="where to write (default: BENCHMARKS.md)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as the workflow's jobs)")
    ap.add_argument("--workflow-dir", type=Path, help="summarise the completed Snakemake run in DIR (figure 4)")
    ap.add_argument("--run-workflow", action="store_true",
                    help="run the default `snakemake --cores all` in a fresh temporary directory, then summarise it")
    ap.add_argument("--configfile", type=Path,
                    help="with --run-workflow: an overlay passed to snakemake (e.g. configs/smoke.yaml; not the default)")
    ap.add_argument("--keep-workflow", action="store_true", help="with --run-workflow: keep the directory")
    ap.add_argument("--tiny", action="store_true", help="tiny sizes (for the tests; the numbers mean nothing)")
    ap.add_argument("--skip", default="", help="comma-separated figures to skip, e.g. 1,2 (for debugging)")
    args = ap.parse_args(argv)
    if args.workflow_dir and args.run_workflow:
        ap.error("--workflow-dir and --run-workflow exclude each other")
    if args.configfile and not args.run_workflow:
        ap.error("--configfile only applies with --run-workflow")
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    settings = TINY if args.tiny else FULL
    command = "python bench/run.py" + ("" if argv is None and len(sys.argv) <= 1 else " " + " ".join(
        sys.argv[1:] if argv is None else argv))

    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _run(args, skip, settings, command)
    finally:
        torch.set_num_threads(threads_before)  # when called in-process (the tests)


def _run(args, skip: set[str], settings: Settings, command: str) -> int:
    started = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    loads = {"start": loadavg()}
    t_start = time.perf_counter()
    params = load_params()
    cw = step = epoch = wf = None
    with tempfile.TemporaryDirectory(prefix="bench_") as tmp:
        tmp = Path(tmp)
        train, test = make_data(settings, params, tmp)

        if "3" not in skip or "1" not in skip:
            print("[bench] 3: data-loading share (train_model, NA and defended) ...", file=sys.stderr, flush=True)
            epoch = bench_epoch(settings, params, train, test, args.threads, tmp)
            loads["after 3"] = loadavg()
            if "3" in skip:
                epoch = None

        if "1" not in skip:
            print("[bench] 1: C&W-L2 ours vs foolbox ...", file=sys.stderr, flush=True)
            from pipeline_src.checkpoints import load_checkpoint

            model = load_checkpoint(tmp / "na_model.pt").model.eval()
            n = min(settings.cw_batch, len(test.labels))
            cw = bench_cw(settings, model, test.float_images(slice(0, n)), test.labels[:n])
            loads["after 1"] = loadavg()

        if "2" not in skip:
            print("[bench] 2: training step, defended vs plain ...", file=sys.stderr, flush=True)
            step = bench_step(settings, params, train, args.threads)
            loads["after 2"] = loadavg()

    wf_note = "no --workflow-dir or --run-workflow given"
    if "4" not in skip and (args.workflow_dir or args.run_workflow):
        if args.run_workflow:
            cmds: list[str] = []
            wdir, wall = run_workflow(cmds, args.configfile)
            wf = summarize_run(wdir)
            wf["wall_s"], wf["wall_what"] = wall, "measured around the snakemake call by this benchmark"
            wf["how"] = (f"Measured now: `{cmds[0]}` in a fresh temporary directory, then its "
                         + ("benchmark files (`benchmarks/**/*.tsv`)" if wf.get("source") == "benchmarks"
                            else "`.snakemake/metadata`") + " summarised.")
            if not args.keep_workflow:
                shutil.rmtree(wdir, ignore_errors=True)
            loads["after 4"] = loadavg()
        else:
            wf = summarize_run(args.workflow_dir)
            if "elapsed_s" in wf:
                wf["wall_s"], wf["wall_what"] = wf["elapsed_s"], "Snakemake's own `Elapsed time` in its log"
            else:
                wf["wall_s"], wf["wall_what"] = wf["span_s"], "first job start to last job end"
            source = ("its Snakemake benchmark files, `benchmarks/**/*.tsv`, one per job with its time and peak "
                      "memory" if wf.get("source") == "benchmarks" else "its `.snakemake/metadata`, one JSON "
                      "record per output file, grouped into jobs by rule and job hash")
            wf["how"] = (f"Read from an earlier completed run in `{args.workflow_dir}` ({source}, and its newest "
                         "`.snakemake/log`); not re-run by this command.")
    loads["end"] = loadavg()
    wall = time.perf_counter() - t_start
    text = render(command, machine(), args.threads, started, wall, loads, settings, cw, step, epoch, wf, wf_note)
    write_atomic(args.out, text + "\n" + kept_sections(args.out))
    print(f"[bench] wrote {args.out} in {fmt_s(wall)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
