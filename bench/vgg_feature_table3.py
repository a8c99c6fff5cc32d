"""Table 3 (VGG16) of the default run with f(x) read at the last conv layer (the paper) or after the last pool.

    python bench/vgg_feature_table3.py [--work DIR] [--out results/sweep/vgg_feature_table3.csv]

The default profile's skin4 data, surrogate and transfer attacks (params.yaml), its four Table 3 rows trained
once per ``model.vgg_feature``; the NA row does not use f(x), so it is trained once. Pipeline code throughout.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from pipeline_src.adversarial import craft  # noqa: E402
from pipeline_src.config import AttackConfig, DatasetSpec, TrainConfig, load_params, validate_params  # noqa: E402
from pipeline_src.data.prepare import load_split, prepare  # noqa: E402
from pipeline_src.evaluate import evaluate_model  # noqa: E402
from pipeline_src.io import write_text  # noqa: E402
from pipeline_src.train import train_model  # noqa: E402

log = logging.getLogger("vgg_feature_table3")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--work", default=str(ROOT / "results" / "sweep" / "work" / "vgg_feature"))
    p.add_argument("--out", default=str(ROOT / "results" / "sweep" / "vgg_feature_table3.csv"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    work = Path(args.work)
    cfg = validate_params(load_params(ROOT / "params.yaml"))
    table = cfg["tables"]["table3_skin4_vgg16"]
    name, seed = table["dataset"], cfg["seed"]
    data = work / "data" / name
    if not (data / "test.pt").exists():
        prepare(DatasetSpec.from_params(cfg["datasets"][name], seed), data)
    train, test = load_split(data / "train.pt"), load_split(data / "test.pt")

    def fit(tc: TrainConfig, stem: str) -> Path:
        path = work / "models" / f"{stem}.pt"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            train_model(tc, train, test, path)
        return path

    s = cfg["surrogate"]
    surrogate = fit(TrainConfig.from_params(cfg, s["arch"], 0, 0, seed + s["seed_offset"], dataset=name), "surrogate")
    sets = {}
    for attack in ("fgsm_eps4", "fgsm_eps8", "ifgsm10_eps4", "ifgsm10_eps8"):
        sets[attack] = work / "adversarial" / f"{attack}.pt"
        if not sets[attack].exists():
            craft(AttackConfig.from_params(cfg, attack), surrogate, data / "test.pt", sets[attack])
    lines = ["vgg_feature,lambda_n,lambda_a,clean," + ",".join(sets) + ",mean_adv"]
    for row in table["rows"]:
        base = TrainConfig.from_params(cfg, "vgg16", row["lambda_n"], row["lambda_a"], seed, dataset=name)
        kinds = ["last_conv", "last_pool"] if base.defended else ["last_conv"]
        for kind in kinds:
            tc = dataclasses.replace(base, vgg_feature=kind)
            stem = f"vgg16_n{row['lambda_n']}_a{row['lambda_a']}_{kind if base.defended else 'na'}"
            acc = evaluate_model(fit(tc, stem), data / "test.pt", sets)["accuracy"]
            mean = sum(acc[a] for a in sets) / len(sets)
            label = kind if base.defended else "any (NA)"
            lines.append(f"{label},{row['lambda_n']},{row['lambda_a']},{100 * acc['clean']:.2f},"
                         + ",".join(f"{100 * acc[a]:.2f}" for a in sets) + f",{100 * mean:.2f}")
    write_text(args.out, "\n".join(lines) + "\n")
    log.info("wrote %s\n%s", args.out, "\n".join(lines))


if __name__ == "__main__":
    main()
