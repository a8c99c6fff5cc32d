"""Old code (a git ref, default main) against this tree: the work of the default run's jobs, side by side.

    python bench/compute.py                      # about 10-15 minutes on an idle 2-core machine
    python bench/compute.py --rounds 5 --old-ref main --out BENCHMARKS.md

Every measurement runs in a fresh Python process whose PYTHONPATH points at one of the two trees (the old
one is ``git archive REF`` unpacked into a temporary folder), so each side pays its own imports. The two
sides alternate within every round (old first in odd rounds, new first in even ones), and each figure is
the median of the per-round ratios old / new (above 1: the new code is faster) with their range; absolute
times are the best round's and only indicative on a shared machine. Each task also compares what both
sides wrote (sha256 of the model, adversarial set or JSON record): ``identical`` says whether the new code
computes the same bytes.

Tasks (the default params.yaml, 32 px skin4 data prepared as the workflow prepares it, ``threads: 1``):
  import <job>        ``import torch`` then the job's library module (train, adversarial, evaluate,
                      whitebox, denoisers), in a fresh process; also ``python -c pass``
  train <arch>        ``train.train_model``, 1 epoch of the defended (1, 10) model: build, epoch, test
                      accuracy, save
  cw                  ``adversarial.craft`` with the default C&W settings but fewer steps, on the whole
                      skin4 test set (the default surrogate batch) and a 1-epoch surrogate
  whitebox            ``whitebox.whitebox_model``: the default white-box attacks on one model
  hgd                 ``denoisers.train_denoiser``: one HGD epoch guided by a 1-epoch ResNet18
  evaluate            ``evaluate.evaluate_model``: a model on the clean set and the C&W set

The result is written between the markers below into ``--out`` (BENCHMARKS.md); the rest of the file is
kept. ``bench/run.py`` rewrites the whole file: run this one after it.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- bench/compute.py: begin -->", "<!-- bench/compute.py: end -->"
JOB_MODULES = {"train": "pipeline_src.train", "attack": "pipeline_src.adversarial",
               "evaluate": "pipeline_src.evaluate", "whitebox": "pipeline_src.whitebox",
               "train_denoiser": "pipeline_src.denoisers"}


@dataclasses.dataclass(frozen=True)
class Settings:
    rounds: int = 3
    epochs: int = 1                 # per training call
    cw_binary_search_steps: int = 2  # default: 5 x 100 (abort early); the per-step work is what is compared
    cw_steps: int = 20
    whitebox_max_images: int | None = None  # None: params.yaml's (32)
    whitebox_attacks: tuple[str, ...] | None = None  # None: all of params.yaml's
    hgd_epochs: int = 1
    tiny: bool = False               # smaller synthetic counts (tests: the numbers mean nothing)


FULL = Settings()
TINY = Settings(rounds=1, cw_binary_search_steps=1, cw_steps=2, whitebox_max_images=4,
                whitebox_attacks=("fgsm_eps4",), tiny=True)

# --------------------------------------------------------------------------- the driver (run in each tree)

DRIVER = r'''
import hashlib, json, sys, time
t_start = time.perf_counter()
task, a = sys.argv[1], json.loads(sys.argv[2])

def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()

def params():
    from pipeline_src.config import load_params, validate_params
    return validate_params(load_params(a["params"]))

out = {}
if task == "channels_last":  # this tree only: what channels_last (NHWC) would buy, and whether it changes numbers
    import dataclasses, statistics
    import torch
    import torch.nn.functional as F
    from pipeline_src.config import TrainConfig
    from pipeline_src.data.prepare import load_split
    from pipeline_src.models import build_model
    from pipeline_src.train import model_spec, train_step
    torch.set_num_threads(1)
    cfg = params()
    train, test = load_split(a["train"]), load_split(a["test"])
    tc = TrainConfig.from_params(cfg, a["arch"], 1.0, 10.0, 0)
    x, y = train.float_images(slice(0, tc.batch_size)), train.labels[:tc.batch_size]

    def model(cl):
        torch.manual_seed(0)
        m = build_model(model_spec(tc, train))
        return m.to(memory_format=torch.channels_last) if cl else m

    def fmt(t, cl):
        return t.contiguous(memory_format=torch.channels_last) if cl else t

    def train_time(cl, k=a["steps"]):
        m, g = model(cl).train(), torch.Generator().manual_seed(0)
        opt = torch.optim.SGD(m.parameters(), lr=tc.lr, momentum=tc.momentum, weight_decay=tc.weight_decay)
        def step():
            loss = train_step(m, fmt(x, cl), y, tc, g)["loss"]; opt.zero_grad(); loss.backward(); opt.step()
            return loss.detach()
        first = step(); t = time.perf_counter()
        for _ in range(k): step()
        return (time.perf_counter() - t) / k, first

    def grad_time(cl, k=a["steps"]):  # the attacks' step: input gradient of an eval-mode model
        m = model(cl).eval().requires_grad_(False)
        xt = fmt(test.float_images(), cl)
        def step():
            d = xt.clone().requires_grad_(True)
            return torch.autograd.grad(F.cross_entropy(m(d), test.labels, reduction="sum"), d)[0]
        first = step(); t = time.perf_counter()
        for _ in range(k): step()
        return (time.perf_counter() - t) / k, first

    res = {}
    for name, fn in (("train step", train_time), ("input gradient", grad_time)):
        ratios, same = [], True
        for r in range(a["rounds"]):
            (tb, vb), (tc_, vc) = (fn(False), fn(True)) if r % 2 == 0 else tuple(reversed((fn(True), fn(False))))
            ratios.append(tb / tc_)
            same = same and torch.equal(vb, vc.contiguous())
        res[name] = {"ratio": statistics.median(ratios), "range": [min(ratios), max(ratios)], "identical": same}
    out = {"work_s": 0.0, "digest": "", "options": res}
elif task == "import":
    t0 = time.perf_counter(); import torch; t1 = time.perf_counter()
    __import__(a["module"]); t2 = time.perf_counter()
    out = {"torch_s": t1 - t0, "work_s": t2 - t1, "digest": ""}
else:
    import dataclasses
    import torch
    from pipeline_src.data.prepare import load_split
    # the task's own modules first: their import cost is the import rows', not the work's
    if task == "train":
        from pipeline_src.config import TrainConfig
        from pipeline_src.train import train_model
    elif task == "cw":
        from pipeline_src.adversarial import craft
        from pipeline_src.config import AttackConfig
    elif task == "whitebox":
        from pipeline_src.config import WhiteboxConfig
        from pipeline_src.whitebox import whitebox_model
    elif task == "hgd":
        from pipeline_src.combined import DenoiserConfig
        from pipeline_src.denoisers import train_denoiser
    elif task == "evaluate":
        from pipeline_src.evaluate import evaluate_model
    else:
        raise SystemExit(f"unknown task {task}")
    if task in ("train", "hgd"):  # torch.optim imports it at its first optimizer (~1 s): an import, not work
        import torch._dynamo
    cfg = params()
    t0 = time.perf_counter()
    if task == "train":
        tc = dataclasses.replace(TrainConfig.from_params(cfg, a["arch"], a["lambda_n"], a["lambda_a"], a["seed"]),
                                 epochs=a["epochs"])
        train_model(tc, load_split(a["train"]), load_split(a["test"]), a["out"])
        digest = sha(a["out"])
    elif task == "cw":
        ac = dataclasses.replace(AttackConfig.from_params(cfg, "cw"), binary_search_steps=a["bss"], steps=a["steps"])
        metrics = craft(ac, a["model"], a["test"], a["out"])
        digest = sha(a["out"]) + hashlib.sha256(json.dumps(metrics, sort_keys=True).encode()).hexdigest()
    elif task == "whitebox":
        wc = WhiteboxConfig.from_params(cfg, tuple(a["attacks"] or cfg["whitebox"]["attacks"]))
        if a["max_images"] is not None:
            wc = dataclasses.replace(wc, max_images=a["max_images"])
        digest = hashlib.sha256(json.dumps(whitebox_model(wc, a["model"], a["test"]), sort_keys=True).encode()).hexdigest()
    elif task == "hgd":
        dc = dataclasses.replace(DenoiserConfig.from_params(cfg, "hgd", cfg["seed"]), epochs=a["epochs"])
        train_denoiser(dc, load_split(a["train"]), load_split(a["test"]), a["out"], classifier_path=a["model"])
        digest = sha(a["out"])
    else:
        rec = evaluate_model(a["model"], a["test"], {"cw": a["adv"]}, cfg["evaluation"]["batch_size"])
        digest = hashlib.sha256(json.dumps(rec, sort_keys=True).encode()).hexdigest()
    out = {"work_s": time.perf_counter() - t0, "digest": digest}
out["process_s"] = time.perf_counter() - t_start
print("RESULT " + json.dumps(out))
'''

# --------------------------------------------------------------------------- running


def loadavg() -> str:
    try:
        return "/".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:  # pragma: no cover - not on Linux
        return "n/a"


def old_tree(ref: str, dest: Path) -> Path:
    """``git archive REF`` unpacked into ``dest``: the old code, importable as pipeline_src from there."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest.parent / f"{dest.name}.tar"
    subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", "-o", str(archive), ref], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    archive.unlink()
    return dest


def run_driver(tree: Path, task: str, args: dict, driver: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "TQDM_DISABLE": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(driver), task, json.dumps(args)], env=env, cwd=tree,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{task} in {tree} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return {**json.loads(lines[-1][len("RESULT "):]), "wall_s": wall}


def python_pass_s() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - t0


def data_paths(work: Path) -> dict:
    return {"train": str(work / "skin4/train.pt"), "test": str(work / "skin4/test.pt"),
            "surrogate": str(work / "surrogate.pt"), "model": str(work / "model.pt"), "adv": str(work / "adv_cw.pt")}


def setup(work: Path, settings: Settings) -> None:
    """Data and the models the tasks read, made once by this tree's code (so both sides read the same)."""
    code = f"""
import dataclasses, json, sys
from pipeline_src.config import DatasetSpec, TrainConfig, load_params, validate_params
from pipeline_src.data.prepare import load_split, prepare
cfg = validate_params(load_params({str(REPO / 'params.yaml')!r}))
ds = cfg["datasets"]["skin4"]
if {settings.tiny!r}:
    ds = {{**ds, "synthetic_counts": {{k: max(12, v // 10) for k, v in ds["synthetic_counts"].items()}}, "caps": {{}}}}
prepare(DatasetSpec.from_params(ds, cfg["seed"]), {str(work / 'skin4')!r})
from pipeline_src.train import train_model
from pipeline_src.adversarial import craft
from pipeline_src.config import AttackConfig
train, test = load_split({str(work / 'skin4/train.pt')!r}), load_split({str(work / 'skin4/test.pt')!r})
seed, off = cfg["seed"], cfg["surrogate"]["seed_offset"]
for name, ln, la, s in (("surrogate", 0.0, 0.0, seed + off), ("model", 1.0, 10.0, seed)):
    tc = dataclasses.replace(TrainConfig.from_params(cfg, "resnet18", ln, la, s), epochs={settings.epochs})
    train_model(tc, train, test, {str(work)!r} + f"/{{name}}.pt")
ac = dataclasses.replace(AttackConfig.from_params(cfg, "cw"), binary_search_steps=1, steps=5)
craft(ac, {str(work / 'surrogate.pt')!r}, {str(work / 'skin4/test.pt')!r}, {str(work / 'adv_cw.pt')!r})
"""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"set-up failed:\n{proc.stderr[-3000:]}")


def tasks(settings: Settings, paths: dict, outdir: Path) -> list[tuple[str, str, dict]]:
    """(label, driver task, arguments); ``out`` gets the side's name appended."""
    base: dict = {}
    out: list[tuple[str, str, dict]] = [(f"import: {job} ({mod})", "import", {**base, "module": mod})
                                        for job, mod in JOB_MODULES.items()]
    for arch in ("resnet18", "vgg16"):
        out.append((f"train: {arch} (1, 10), {settings.epochs} epoch", "train",
                    {**base, "arch": arch, "lambda_n": 1.0, "lambda_a": 10.0, "seed": 0, "epochs": settings.epochs,
                     "train": paths["train"], "test": paths["test"], "out": str(outdir / f"train_{arch}.pt")}))
    out.append((f"attack: C&W {settings.cw_binary_search_steps} x {settings.cw_steps} steps, whole test set", "cw",
                {**base, "bss": settings.cw_binary_search_steps, "steps": settings.cw_steps, "model": paths["surrogate"],
                 "test": paths["test"], "out": str(outdir / "cw.pt")}))
    out.append(("whitebox: default attacks, one ResNet18", "whitebox",
                {**base, "model": paths["model"], "test": paths["test"], "max_images": settings.whitebox_max_images,
                 "attacks": list(settings.whitebox_attacks) if settings.whitebox_attacks else None}))
    out.append((f"train_denoiser: HGD, {settings.hgd_epochs} epoch", "hgd",
                {**base, "epochs": settings.hgd_epochs, "model": paths["model"], "train": paths["train"],
                 "test": paths["test"], "out": str(outdir / "hgd.pt")}))
    out.append(("evaluate: clean + C&W set, one ResNet18", "evaluate",
                {**base, "model": paths["model"], "test": paths["test"], "adv": paths["adv"]}))
    return out


def measure_channels_last(settings: Settings, work: Path) -> dict:
    """This tree's train step and attack step, NCHW against channels_last (rows: arch x step)."""
    out = {}
    for arch in ("resnet18", "vgg16"):
        args = {**data_paths(work), "params": str(REPO / "params.yaml"), "arch": arch,
                "rounds": settings.rounds, "steps": 1 if settings.tiny else 3}
        out[arch] = run_driver(REPO, "channels_last", args, work / "driver.py")["options"]
    return out


def measure(settings: Settings, old: Path, new: Path, work: Path, only: set[str] | None = None, log=print) -> dict:
    driver = work / "driver.py"
    driver.write_text(DRIVER)
    paths = data_paths(work)
    selected = [t for t in tasks(settings, paths, work) if not only or t[1] in only]
    if any(task != "import" for _, task, _ in selected) or not only or "channels_last" in only:
        setup(work, settings)
    results: dict[str, dict] = {}
    trees = {"old": old, "new": new}
    loads = [loadavg()]
    pass_s: list[float] = []
    for r in range(settings.rounds):
        order = ("old", "new") if r % 2 == 0 else ("new", "old")
        pass_s.append(python_pass_s())
        for label, task, args in selected:
            rec = results.setdefault(label, {"task": task, "old": [], "new": [], "digests": {"old": [], "new": []}})
            for side in order:
                a = {**args, "params": str(trees[side] / "params.yaml"),  # each side validates its own params
                     **({"out": f"{args['out']}.{side}"} if "out" in args else {})}
                res = run_driver(trees[side], task, a, driver)
                rec[side].append(res)
                rec["digests"][side].append(res["digest"])
            log(f"round {r + 1}: {label}: old {rec['old'][-1]['work_s']:.2f} s, new {rec['new'][-1]['work_s']:.2f} s")
        loads.append(loadavg())
    options = measure_channels_last(settings, work) if not only or "channels_last" in only else {}
    return {"results": results, "pass_s": pass_s, "loads": loads, "channels_last": options}


# --------------------------------------------------------------------------- report


def summarize(measured: dict) -> list[dict]:
    rows = []
    for label, rec in measured["results"].items():
        key = "work_s"
        ratios = [o[key] / n[key] for o, n in zip(rec["old"], rec["new"]) if n[key] > 0]
        proc = [o["wall_s"] / n["wall_s"] for o, n in zip(rec["old"], rec["new"])]
        same = rec["digests"]["old"] == rec["digests"]["new"] and len(set(rec["digests"]["new"])) == 1
        rows.append({"label": label, "task": rec["task"], "old_s": min(o[key] for o in rec["old"]),
                     "new_s": min(n[key] for n in rec["new"]), "ratio": statistics.median(ratios) if ratios else 0.0,
                     "range": (min(ratios), max(ratios)) if ratios else (0.0, 0.0),
                     "process_ratio": statistics.median(proc), "old_proc_s": min(o["wall_s"] for o in rec["old"]),
                     "new_proc_s": min(n["wall_s"] for n in rec["new"]),
                     "identical": "n/a" if rec["task"] == "import" else ("yes" if same else "**no**")})
    return rows


def render(rows: list[dict], measured: dict, settings: Settings, command: str, started: str, wall: float,
           old_ref: str, old_commit: str, new_commit: str) -> str:
    import torch

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), "unknown") if Path("/proc/cpuinfo").exists() else "unknown"
    pass_s = min(measured["pass_s"])
    L = [BEGIN, "## Compute of the jobs' work: old code vs new, side by side (bench/compute.py)", "",
         f"Written by `{command}` (about {wall / 60:.0f} min). Old: `{old_ref}` ({old_commit}); new: this tree "
         f"({new_commit}). {settings.rounds} interleaved rounds, a fresh process per measurement; figure = median "
         "of the per-round ratios old / new (above 1: new is faster), with their range; times are the best round.",
         "",
         f"| machine | |", "|---|---|", f"| date (UTC) | {started} |", f"| CPU | {cpu}, `nproc` = {os.cpu_count()} |",
         f"| software | Python {platform.python_version()}, torch {torch.__version__}, 1 torch thread per job |",
         f"| load average (1/5/15 min), per round | {'; '.join(measured['loads'])} |",
         f"| `python -c pass` | {pass_s:.3f} s (best round) |", "",
         "| task | old (s) | new (s) | old / new | rounds | process old / new | same bytes |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        L.append(f"| {r['label']} | {r['old_s']:.2f} | {r['new_s']:.2f} | **{r['ratio']:.2f}x** | "
                 f"{r['range'][0]:.2f}-{r['range'][1]:.2f} | {r['process_ratio']:.2f}x "
                 f"({r['old_proc_s']:.1f} / {r['new_proc_s']:.1f} s) | {r['identical']} |")
    imports = [r for r in rows if r["task"] == "import"]
    if imports:
        L += ["", "Import rows: the time of `import <module>` after `import torch` (torch itself costs both sides "
              "the same); `process` is the whole interpreter's wall time against `python -c pass` "
              f"({pass_s:.2f} s). Jobs that train (train, train_denoiser) still import `torch._dynamo` (about half "
              "of torchvision's import time): `torch.optim` imports it when the first optimizer is built; the work "
              "rows import it before the clock starts, the process column includes it."]
    L += ["", "Work rows: the library call only (model build, work, files written), without the interpreter's start and "
          "imports; `process` adds them. `same bytes`: every output (model, adversarial set, JSON record) has the same "
          "sha256 on both sides in every round.", "",
          "Reading: the new code computes the same bytes with the same arithmetic, so its work rows sit near 1x by "
          "design; what moves is a model load (rebuilt without initialisation, VGG16 without its unused 4096-wide "
          "head), the last epoch's checkpoint (no longer written), one forward pass fewer per attack job, and above "
          "all the imports (torchvision, PIL, pandas, jsonschema no longer on a job's path): the process column."]
    if measured.get("channels_last"):
        L += ["", "### Not adopted: channels_last on the CPU", "",
              "This tree's code only, NCHW against channels_last (model and input) at the default sizes, interleaved "
              "in one process: a defended training step (batch of the default size) and the attacks' step (input "
              "gradient of the eval-mode model on the whole skin4 test set). Above 1: channels_last is faster.", "",
              "| arch | step | NCHW / channels_last | rounds | same numbers |", "|---|---|---|---|---|"]
        for arch, opts in measured["channels_last"].items():
            for step, o in opts.items():
                L.append(f"| {arch} | {step} | {o['ratio']:.2f}x | {o['range'][0]:.2f}-{o['range'][1]:.2f} | "
                         f"{'yes' if o['identical'] else 'no'} |")
        L += ["", "It changes the floating-point results (so every table of the default run) for a gain of this size: "
              "not done. The work rows above compute the same bytes as the old code by design."]
    L.append(END)
    return "\n".join(L) + "\n"


def write_section(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        text = head + section + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def git_commit(tree: Path, ref: str = "HEAD") -> str:
    try:
        return subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", ref], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old-ref", default="main", help="git ref of the old code (default: main)")
    ap.add_argument("--rounds", type=int, help="interleaved rounds (default 3)")
    ap.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md", help="file to write the section into")
    ap.add_argument("--only", default="",
                    help="comma-separated task kinds: import,train,cw,whitebox,hgd,evaluate,channels_last")
    ap.add_argument("--tiny", action="store_true", help="tiny sizes (for the tests; the numbers mean nothing)")
    args = ap.parse_args(argv)
    settings = TINY if args.tiny else FULL
    if args.rounds:
        settings = dataclasses.replace(settings, rounds=args.rounds)
    started = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    t0 = time.perf_counter()
    only = {s for s in args.only.split(",") if s}
    with tempfile.TemporaryDirectory(prefix="bench_compute_") as tmp:
        old = old_tree(args.old_ref, Path(tmp) / "old")
        for tree in (old, REPO):  # bytecode compiled beforehand on both sides: no first-import compile counted
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "pipeline_src")], check=True)
        work = Path(tmp) / "work"
        work.mkdir()
        measured = measure(settings, old, REPO, work, only, log=lambda m: print(m, file=sys.stderr, flush=True))
    rows = summarize(measured)
    command = "python bench/compute.py" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    section = render(rows, measured, settings, command.strip(), started, time.perf_counter() - t0, args.old_ref,
                     git_commit(REPO, args.old_ref), git_commit(REPO))
    write_section(args.out, section)
    print(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
