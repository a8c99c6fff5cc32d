# What people look at: statistics next to the tables, figures, and the Snakemake HTML report
# (`snakemake --report results/report.html`; captions in workflow/report/).
REPORT = REPO / "workflow" / "report"
CAPTIONS = {"vs_paper": "vs_paper_figure"}  # vs_paper.rst captions the table of the same name


def figure_path(table, kind):
    return f"results/figures/{table}_{kind}.png"


def table_models(table, reconstructing=False):
    """The table's models; reconstructing: one per row with lambda_a > 0 (the first seed), for the
    auto-encoder figure."""
    jobs = PLAN.tables[table]
    if reconstructing:
        first = {}
        for job in jobs:
            if job.lambda_a > 0:
                first.setdefault((job.lambda_n, job.lambda_a), job)
        jobs = list(first.values())
    return jobs


rule stats:
    input:
        evals=lambda w: [eval_path(m.name) for m in PLAN.tables[w.table]],
        code=code("stats.py"),
    output:
        report("results/tables/{table}_stats.csv", caption=str(REPORT / "stats.rst"), category="Tables",
               subcategory="{table}", labels={"table": "{table}", "content": "95% CIs, McNemar vs NA"}),
    log:
        "logs/stats/{table}.log",
    params:
        columns=shlex.join(["clean", *PLAN.attacks]),
    threads: job_threads("stats")
    resources: **job_resources("stats")
    shell:
        "{PYTHON} -m pipeline_src stats --evals {input.evals} --columns {params.columns} --out {output}"
        " 2> {log}"


rule figures:
    input:
        stats="results/tables/{table}_stats.csv",
        vs_paper="results/tables/{table}_vs_paper.csv",
        train=lambda w: [f"results/metrics/train/{m.name}.json" for m in table_models(w.table)],
        attacks=lambda w: [f"results/metrics/attacks/{CFG['tables'][w.table]['dataset']}/{a}.json" for a in PLAN.attacks],
        models=lambda w: [model_path(m.name) for m in table_models(w.table, reconstructing=True)],
        test=lambda w: prepared(CFG["tables"][w.table]["dataset"], "test"),
        code=code("figures.py", "checkpoints.py", "models/denoising.py", "data/prepare.py"),
        tracking=tracking_ready(),
    output:
        **{kind: report(figure_path("{table}", kind), caption=str(REPORT / f"{CAPTIONS.get(kind, kind)}.rst"), category="Figures",
                        subcategory="{table}", labels={"table": "{table}", "figure": kind.replace("_", " ")})
           for kind in ("accuracy_vs_eps", "ablation", "training", "vs_paper", "reconstructions")},
    log:
        "logs/figures/{table}.log",
    params:
        dataset=lambda w: CFG["tables"][w.table]["dataset"],
    threads: job_threads("figures")
    resources: **job_resources("figures")
    shell:
        "{PYTHON} -m pipeline_src figures --table {wildcards.table} --dataset {params.dataset}"
        " --stats {input.stats} --vs_paper {input.vs_paper} --train_metrics {input.train}"
        " --attack_metrics {input.attacks} --models {input.models} --test {input.test}"
        " --prefix results/figures/{wildcards.table} {TRACKING_ARG} 2> {log}"


rule attack_figure:
    input:
        test=prepared("{dataset}", "test"),
        adversarial=lambda w: [adversarial_path(w.dataset, a) for a in PLAN.attacks],
        code=code("figures.py", "data/prepare.py"),
        tracking=tracking_ready(),
    output:
        report("results/figures/{dataset}_attacks.png", caption=str(REPORT / "attacks.rst"), category="Figures",
               subcategory="attacks", labels={"dataset": "{dataset}", "figure": "attacks"}),
    log:
        "logs/figures/{dataset}_attacks.log",
    params:
        adversarial=lambda w, input: shlex.join(f"{a}={p}" for a, p in zip(PLAN.attacks, input.adversarial)),
    threads: job_threads("attack_figure")
    resources: **job_resources("attack_figure")
    shell:
        "{PYTHON} -m pipeline_src attack-figure --dataset {wildcards.dataset} --test {input.test}"
        " --adversarial {params.adversarial} --out {output} {TRACKING_ARG} 2> {log}"


def report_outputs():
    return ([f"results/tables/{t}_stats.csv" for t in PLAN.tables]
            + [figure_path(t, k) for t in PLAN.tables
               for k in ("accuracy_vs_eps", "ablation", "training", "vs_paper", "reconstructions")]
            + [f"results/figures/{ds}_attacks.png" for ds in PLAN.datasets])
