# Beyond the paper: FGSM, I-FGSM and PGD crafted on each evaluated model itself (white-box), one table
# per paper table (results/tables/whitebox_<table>.csv; params' whitebox.tables selects them, default all).
def whitebox_path(name):
    return f"results/metrics/whitebox/{name}.json"


def whitebox_tables():
    return [f"results/tables/whitebox_{t}.csv" for t in PLAN.whitebox_tables]


rule whitebox:
    input:
        model=model_path("{model}"),
        test=lambda w: prepared(PLAN.models[w.model].dataset, "test"),
        code=code("whitebox.py", "attacks.py", "evaluate.py", "checkpoints.py", "models/denoising.py"),
        tracking=tracking_ready(),
    output:
        whitebox_path("{model}"),
    log:
        "logs/whitebox/{model}.log",
    params:
        args=lambda w: cli_args(PLAN.whitebox_config()),
        dataset=lambda w: PLAN.models[w.model].dataset,
    threads: job_threads("whitebox")
    resources: **job_resources("whitebox")
    shell:
        "{PYTHON} -m pipeline_src whitebox {params.args} --model {input.model} --test {input.test}"
        " --dataset {params.dataset} --out {output} {TRACKING_ARG} 2> {log}"


rule whitebox_table:
    input:
        evals=lambda w: [whitebox_path(m.name) for m in PLAN.tables[w.table]],
        code=code("tables.py"),
        tracking=tracking_ready(),
    output:
        "results/tables/whitebox_{table}.csv",
    log:
        "logs/tables/whitebox_{table}.log",
    params:
        columns=shlex.join(["clean", *PLAN.whitebox]),
    threads: job_threads("whitebox_table")
    resources: **job_resources("whitebox_table")
    shell:
        "{PYTHON} -m pipeline_src tables --whitebox --evals {input.evals} --columns {params.columns}"
        " --out {output} {TRACKING_ARG} 2> {log}"
