"""What the audit (issue 16) would add to the default run, in job-seconds, at the default ``audit.max_images``.

    python bench/audit_cost.py [--out bench/audit_cost.json] [--workdir DIR]

Prepares the default datasets, trains the models the estimate needs with the default settings (the skin4
surrogate, its two extra ensemble members, an NA and a defended ResNet18, an NA VGG16), then times every audit
job once: the extra ensemble trainings, each transfer set's crafting, and each part of ``audit_model``
(transfer evaluation, Square, AutoAttack, unbounded PGD) per model. It reports wall and CPU seconds of the work
itself (one torch thread, as the jobs run); a job's fixed cost (Python start, imports, MLflow; about 8 s before
issue 14, 1.5 s its goal) comes on top, once per job.

The estimate for Tables 1-3: per dataset (skin4, chest3) two member trainings and the transfer sets; per
classifier (12 ResNet18 + 4 VGG16) the audit parts, with the per-arch mean of the measured models (robust models
cost more: AutoAttack and Square spend their queries on the images that survive).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402

from pipeline_src.audit import audit_model, craft_transfer_set  # noqa: E402
from pipeline_src.config import (AuditConfig, DatasetSpec, TrainConfig, load_params,  # noqa: E402
                                 validate_params)
from pipeline_src.data.prepare import load_split, prepare  # noqa: E402
from pipeline_src.train import train_model  # noqa: E402

from make_run import scratch_dir  # noqa: E402

log = logging.getLogger("audit_cost")


def timed(label: str, fn, times: dict):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    times[label] = {"wall_s": round(time.perf_counter() - wall, 2), "cpu_s": round(time.process_time() - cpu, 2)}
    log.info("%-40s %s", label, times[label])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench/audit_cost.json")
    parser.add_argument("--workdir", default=None, help="keep prepared data and models here (default: a temp dir)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("pipeline_src", "auto-attack"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    torch.set_num_threads(1)
    cfg = validate_params(load_params(ROOT / "params.yaml"))
    audit = AuditConfig.from_params(cfg)
    work = Path(args.workdir) if args.workdir else scratch_dir("audit_cost_")
    times: dict[str, dict] = {}

    ds = "skin4"
    data_dir = work / "data" / ds
    if not (data_dir / "test.pt").exists():
        timed(f"prepare {ds}", lambda: prepare(DatasetSpec.from_params(cfg["datasets"][ds], cfg["seed"]), data_dir), times)
    train, test = load_split(data_dir / "train.pt"), load_split(data_dir / "test.pt")
    sur_seed = cfg["seed"] + cfg["surrogate"]["seed_offset"]
    models = {"surrogate_resnet18": ("resnet18", 0, 0, sur_seed), "surrogate_vgg16": ("vgg16", 0, 0, sur_seed),
              "surrogate_mobilenetv2": ("mobilenetv2", 0, 0, sur_seed), "na_resnet18": ("resnet18", 0, 0, cfg["seed"]),
              "ln1_la10_resnet18": ("resnet18", 1, 10, cfg["seed"]), "na_vgg16": ("vgg16", 0, 0, cfg["seed"])}
    paths = {}
    for name, (arch, ln, la, seed) in models.items():
        paths[name] = work / "models" / f"{name}.pt"
        if not paths[name].exists():
            tc = TrainConfig.from_params(cfg, arch, ln, la, seed)
            timed(f"train {name}", lambda: train_model(tc, train, test, paths[name]), times)

    sets = {}
    members = [paths[f"surrogate_{a}"] for a in audit.ensemble_archs]
    for attack in audit.transfer:
        sets[attack.name] = work / "adversarial" / f"{attack.name}.pt"
        sources = [paths["surrogate_resnet18"]] if attack.surrogate == "surrogate" else members
        timed(f"craft {attack.name}", lambda: craft_transfer_set(audit, attack.name, sources, data_dir / "test.pt",
                                                                 sets[attack.name]), times)
    records = {}
    for name in ("na_resnet18", "ln1_la10_resnet18", "na_vgg16"):
        for part in ("transfer", "square", "autoattack", "unbounded"):
            records[(name, part)] = timed(f"audit {name} {part}",
                                          lambda: audit_model(audit, paths[name], data_dir / "test.pt", sets, (part,)),
                                          times)
    accuracies = {f"{n} {p}": {k: round(v, 4) for k, v in r["accuracy"].items()} for (n, p), r in records.items()}

    estimate = {key: estimate_tables(times, cfg, audit, key) for key in ("cpu_s", "wall_s")}
    out = {"max_images": audit.max_images, "square_queries": audit.square_queries,
           "autoattack_eps": list(audit.autoattack_eps), "times": times, "accuracies": accuracies, "estimate": estimate,
           "note": "wall/cpu seconds of the work itself, one torch thread; job start-up comes on top"}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(estimate, indent=2))


def estimate_tables(times: dict, cfg: dict, audit: AuditConfig, key: str) -> dict:
    """Job-seconds of the work the audit adds for Tables 1-3 of ``cfg`` from the measured ``times[...][key]``:
    per dataset the extra ensemble trainings and the transfer sets, per classifier the audit parts (per-arch mean
    of the measured models). ``cpu_s`` is what a job takes on an idle core (one thread per job); ``wall_s`` was
    measured on the shared machine."""
    n_models = {"resnet18": 0, "vgg16": 0}
    for table in ("table1_skin4_resnet18", "table2_chest3_resnet18", "table3_skin4_vgg16"):
        n_models[cfg["tables"][table]["arch"]] += len(cfg["tables"][table]["rows"])
    per_arch = {"resnet18": ["na_resnet18", "ln1_la10_resnet18"], "vgg16": ["na_vgg16"]}
    parts = ("transfer", "square", "autoattack", "unbounded")
    out: dict = {"datasets": 2, "models": n_models, "per_part": {}}
    total = 0.0
    for part in parts:
        s = sum(n_models[a] * sum(times[f"audit {m} {part}"][key] for m in ms) / len(ms) for a, ms in per_arch.items())
        out["per_part"][part] = round(s, 1)
        total += s
    crafting = 2 * sum(v[key] for k, v in times.items() if k.startswith("craft "))
    members = 2 * sum(times.get(f"train surrogate_{a}", {key: math.nan})[key]  # nan: trained in an earlier run
                      for a in audit.ensemble_archs if a != cfg["surrogate"]["arch"])
    out |= {"crafting": round(crafting, 1), "ensemble_training": round(members, 1),
            "total_work": round(total + crafting + members, 1),
            "jobs": 2 * (len(audit.transfer) + len(audit.ensemble_archs) - 1) + sum(n_models.values()) * len(parts) + 3}
    return out


if __name__ == "__main__":
    main()
