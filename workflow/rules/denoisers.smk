# Table 4: input denoisers (Reformer per dataset, HGD* per protected classifier) in front of Table 1's
# classifiers, evaluated on the same transferred attacks (pipeline_src/combined.py, denoisers.py).
from pipeline_src.combined import denoised_eval_path, denoiser_path, evaluation_jobs

wildcard_constraints:
    denoiser=_alternatives(PLAN.denoisers) or "(?!)",
    ctable=_alternatives(PLAN.combined) or "(?!)",

for _name, _table in CFG["combined_tables"].items():
    if "paper" in _table and not (REPO / "paper" / _table["paper"]).is_file():
        raise WorkflowError(f"invalid parameters: 'combined_tables.{_name}.paper' = {_table['paper']!r} is not a "
                            f"file in {REPO / 'paper'}; available: {', '.join(sorted(p.name for p in (REPO / 'paper').glob('*.csv')))}")


def protected_classifier(denoiser):
    """HGD: the classifier whose features guide the denoiser; the Reformer needs none."""
    job = PLAN.denoisers[denoiser]
    return [model_path(job.protects)] if job.protects else []


rule train_denoiser:
    input:
        train=lambda w: prepared(PLAN.denoisers[w.denoiser].dataset, "train"),
        test=lambda w: prepared(PLAN.denoisers[w.denoiser].dataset, "test"),
        classifier=lambda w: protected_classifier(w.denoiser),
        code=code("denoisers.py", "denoisers_cli.py", "combined.py", "models/input_denoisers.py",
                  "models/denoising.py", "checkpoints.py", "evaluate.py", "losses.py", "data/prepare.py"),
        tracking=tracking_ready(),
    output:
        model=denoiser_path("{denoiser}"),
        metrics="results/metrics/train_denoisers/{denoiser}.json",
    log:
        "logs/train_denoiser/{denoiser}.log",
    params:
        args=lambda w: cli_args(PLAN.denoiser_config(w.denoiser)),
        classifier=lambda w, input: f"--classifier {input.classifier[0]}" if input.classifier else "",
    threads: job_threads("train_denoiser")
    resources: **job_resources("train_denoiser")
    shell:
        "{PYTHON} -m pipeline_src train-denoiser {params.args} --train {input.train} --test {input.test}"
        " {params.classifier} --out {output.model} --metrics {output.metrics} {TRACKING_ARG} 2> {log}"


# One job per combined table evaluates all its (denoiser, classifier) pairs: one JSON each, in
# evaluate.py's format. A loop, not a wildcard: a table's outputs are a list no pattern can express.
for _table, _pairs in evaluation_jobs(PLAN.combined).items():
    _dataset = PLAN.models[_pairs[0][1]].dataset

    rule:
        name: f"evaluate_denoised_{_table}"
        input:
            denoisers=[denoiser_path(d) for d, _ in _pairs],
            models=[model_path(m) for _, m in _pairs],
            test=prepared(_dataset, "test"),
            adversarial=[adversarial_path(_dataset, a) for a in PLAN.attacks],
            code=code("denoisers.py", "denoisers_cli.py", "combined.py", "models/input_denoisers.py", "evaluate.py",
                      "checkpoints.py", "models/denoising.py"),
            tracking=tracking_ready(),
        output:
            [denoised_eval_path(d, m) for d, m in _pairs],
        log:
            f"logs/evaluate_denoised/{_table}.log",
        params:
            adversarial=shlex.join(f"{a}={adversarial_path(_dataset, a)}" for a in PLAN.attacks),
            dataset=_dataset,
            batch_size=CFG["evaluation"]["batch_size"],
        threads: job_threads("evaluate_denoised")
        resources: **job_resources("evaluate_denoised")
        shell:
            "{PYTHON} -m pipeline_src evaluate-denoised --denoisers {input.denoisers} --models {input.models}"
            " --outs {output} --test {input.test} --dataset {params.dataset} --adversarial {params.adversarial}"
            " --batch_size {params.batch_size} {TRACKING_ARG} 2> {log}"


def combined_evals(table):
    return [denoised_eval_path(r.denoiser, r.model) if r.denoiser else eval_path(r.model) for r in PLAN.combined[table]]


rule combined_table:
    input:
        evals=lambda w: combined_evals(w.ctable),
        paper=lambda w: [str(REPO / "paper" / CFG["combined_tables"][w.ctable]["paper"])]
                        if "paper" in CFG["combined_tables"][w.ctable] else [],
        code=code("combined.py", "denoisers_cli.py", "tables.py"),
        tracking=tracking_ready(),
    output:
        table="results/tables/{ctable}.csv",
        vs_paper="results/tables/{ctable}_vs_paper.csv",
    log:
        "logs/tables/{ctable}.log",
    params:
        labels=lambda w: shlex.join(r.label for r in PLAN.combined[w.ctable]),
        columns=shlex.join(["clean", *PLAN.attacks]),
        paper=lambda w, input: f"--paper {input.paper[0]}" if input.paper else "",
    threads: job_threads("combined_table")
    resources: **job_resources("combined_table")
    shell:
        "{PYTHON} -m pipeline_src combined-table --evals {input.evals} --labels {params.labels}"
        " --columns {params.columns} {params.paper} --out {output.table} --vs_paper {output.vs_paper}"
        " {TRACKING_ARG} 2> {log}"
