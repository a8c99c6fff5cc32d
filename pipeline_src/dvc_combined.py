"""dvc.yaml stages of Table 4 (the twins of workflow/rules/denoisers.smk), added by ``dvc_yaml.build_stages``."""
from __future__ import annotations

from pathlib import Path

from pipeline_src.combined import denoised_eval_path, denoiser_path, evaluation_jobs
from pipeline_src.config import to_cli_args
from pipeline_src.plan import Plan


def combined_stages(plan: Plan, raw: dict, root: Path, tracked: list[str], track: list[str]) -> dict[str, dict]:
    from pipeline_src.dvc_yaml import _cmd, _present, _stage, code, paper_deps, stage_name

    cfg, stages = plan.cfg, {}
    for name, job in plan.denoisers.items():
        ds, out = f"data/prepared/{job.dataset}", denoiser_path(name)
        metrics = f"results/metrics/train_denoisers/{name}.json"
        classifier = [f"models/{job.protects}.pt"] if job.protects else []
        stages[stage_name("train_denoiser", name)] = _stage(
            _cmd("train-denoiser", *to_cli_args(plan.denoiser_config(name)), "--train", f"{ds}/train.pt",
                 "--test", f"{ds}/test.pt", *(["--classifier", *classifier] if classifier else []),
                 "--out", out, "--metrics", metrics, *track),
            [*tracked, f"{ds}/train.pt", f"{ds}/test.pt", *classifier,
             *code("denoisers.py", "denoisers_cli.py", "combined.py", "models/input_denoisers.py",
                   "models/denoising.py", "checkpoints.py", "evaluate.py", "losses.py", "data/prepare.py")],
            [out], params=_present(raw, ["seed", f"denoisers.{job.kind}", "training.threads"]), metrics=[metrics])

    for table, pairs in evaluation_jobs(plan.combined).items():  # as denoisers.smk: one job per table
        ds = plan.models[pairs[0][1]].dataset
        test = f"data/prepared/{ds}/test.pt"
        adversarial = [f"data/adversarial/{ds}/{a}.pt" for a in plan.attacks]
        denoisers, models = [denoiser_path(d) for d, _ in pairs], [f"models/{m}.pt" for _, m in pairs]
        outs = [denoised_eval_path(d, m) for d, m in pairs]
        stages[stage_name("evaluate_denoised", table)] = _stage(
            _cmd("evaluate-denoised", "--denoisers", *denoisers, "--models", *models, "--outs", *outs,
                 "--test", test, "--dataset", ds, "--adversarial", *(f"{a}={p}" for a, p in zip(plan.attacks, adversarial)),
                 "--batch_size", str(cfg["evaluation"]["batch_size"]), *track),
            list(dict.fromkeys([*tracked, *denoisers, *models, test, *adversarial,  # each file once (DVC)
                                *code("denoisers.py", "denoisers_cli.py", "combined.py", "models/input_denoisers.py",
                                      "evaluate.py", "checkpoints.py", "models/denoising.py")])),
            [], params=_present(raw, ["evaluation.batch_size"]), metrics=outs)

    for table, rows in plan.combined.items():
        # the bare classifier's row reads its plain evaluation (dvc_yaml's evaluate stage)
        evals = [denoised_eval_path(r.denoiser, r.model) if r.denoiser else f"results/metrics/eval/{r.model}.json"
                 for r in rows]
        paper = paper_deps(cfg, root, "combined_tables", table)
        out, vs_paper = f"results/tables/{table}.csv", f"results/tables/{table}_vs_paper.csv"
        stages[stage_name("table", table)] = _stage(
            _cmd("combined-table", "--evals", *evals, "--labels", *(r.label for r in rows), "--columns", "clean",
                 *plan.attacks, *(["--paper", *paper] if paper else []), "--out", out, "--vs_paper", vs_paper, *track),
            [*tracked, *evals, *paper, *code("combined.py", "denoisers_cli.py", "tables.py")],
            [], params=_present(raw, [f"combined_tables.{table}"]), uncached=[out, vs_paper])
    return stages
