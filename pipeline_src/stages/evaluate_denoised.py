"""`evaluate_denoised` job (Table 4): every (denoiser, classifier) pair a combined table adds, each on the
clean and adversarial test sets; one record per pair (one job per table: a job's start-up costs more than
evaluating a pair).

Example:
    python -m pipeline_src.stages.evaluate_denoised --table table4_skin4_combined \\
        --denoisers models/denoisers/skin4_reformer_s0.pt ... --models models/skin4_resnet18_ln0_la0_s0.pt ... \\
        --outs results/metrics/eval_denoised/skin4_reformer_s0/skin4_resnet18_ln0_la0_s0.json ... \\
        --test data/prepared/skin4/test.pt --adversarial fgsm_eps4=data/adversarial/skin4/fgsm_eps4.pt ...
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline_src.combined_plan import evaluation_jobs
from pipeline_src.plan import Plan
from pipeline_src.stages import _common as common


def pairs(plan: Plan, table: str) -> list[tuple[str, str]]:
    jobs = evaluation_jobs(plan.combined)
    if table not in jobs:
        raise common.ParamsError(f"no denoised evaluations for table {table!r}; tables with some: "
                                 f"{', '.join(jobs) or 'none'}")
    return jobs[table]


def keys(cfg: dict, plan: Plan, table: str) -> list[str]:
    pairs(plan, table)
    return ["evaluation.batch_size", "training.threads"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--table", required=True, help="combined table name (a key of 'combined_tables')")
    for name, what in (("denoisers", "denoiser files"), ("models", "classifier files, one per denoiser"),
                       ("outs", "evaluation records, one per pair")):
        p.add_argument(f"--{name}", nargs="+", required=True, help=what)
    p.add_argument("--test", required=True, help="prepared test split (.pt)")
    p.add_argument("--adversarial", nargs="*", default=[], metavar="ATTACK=PATH", help="adversarial test sets")


def run(job: common.Job) -> None:
    args, table = job.args, job.args.table
    view = job.view(keys(job.cfg, job.plan, table))
    planned = pairs(job.plan, table)
    given = list(zip((Path(p).stem for p in args.denoisers), (Path(p).stem for p in args.models)))
    common.expect(given, planned, f"denoised evaluations of {table}")
    if len(args.outs) != len(planned):
        raise ValueError(f"{len(args.outs)} --outs for {len(planned)} pairs: give one record per pair")
    adversarial = common.pairs(args.adversarial, "--adversarial")
    common.expect(adversarial, job.plan.attacks, f"denoised evaluations of {table}: attacks")
    from pipeline_src.denoisers import evaluate_denoised
    from pipeline_src.io import write_json

    batch = view["evaluation"]["batch_size"]
    dataset = job.plan.model(planned[0][1]).dataset
    for denoiser_path, model_path, out, (denoiser, model) in zip(args.denoisers, args.models, args.outs, planned):
        combination = f"{denoiser}/{model}"
        params = {"model": model, "denoiser": denoiser, "batch_size": batch, "attacks": ",".join(adversarial)}
        tags = {"model": model, "denoiser": denoiser, "combination": combination}
        with job.track("evaluate_denoised", combination, dataset, params, tags, run_name=f"eval/{combination}") as rec:
            rec.link("train_run_id", model_path)
            rec.link("denoiser_run_id", denoiser_path)
            for attack, path in adversarial.items():
                rec.link(f"attack_run_id.{attack}", path)
            result = evaluate_denoised(denoiser_path, model_path, args.test, adversarial, batch,
                                       threads=view["training"]["threads"])
            write_json(out, {"model": model, "denoiser": denoiser, "dataset": dataset, **result})
            rec.log_metrics({f"accuracy_{k}": v for k, v in result["accuracy"].items()})
            rec.output("evaluation", out)


def main(argv: list[str] | None = None) -> int:
    return common.main("pipeline_src.stages.evaluate_denoised", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
