# Beyond the paper: FGSM, I-FGSM and PGD crafted on each evaluated model itself (white-box), one table
# per paper table (results/tables/whitebox_<table>.csv; params' whitebox.tables selects them, default all).
rule whitebox:
    input:
        weights=model_path("{model}"),
        test=lambda w: prepared(PLAN.models[w.model].dataset, "test"),
        code=code("whitebox"),
    output:
        whitebox_path("{model}"),
    log:
        "logs/whitebox/{model}.log",
    benchmark:
        "benchmarks/whitebox/{model}.tsv",
    params:
        reads=lambda w: reads("whitebox", w.model),
    threads: job_threads("whitebox")
    resources: **job_resources("whitebox")
    shell:
        stage_cmd("whitebox") + " --model {wildcards.model:q} --weights {input.weights:q} --test {input.test:q}"
        " --out {output:q} --log {log:q}"


rule whitebox_table:
    input:
        evals=lambda w: [whitebox_path(m.name) for m in PLAN.tables[w.table]],
        code=code("whitebox_table"),
    output:
        report("results/tables/whitebox_{table}.csv", caption=str(REPORT / "whitebox.rst"), category="Tables",
               subcategory="{table}", labels={"table": "{table}", "content": "white-box (beyond the paper)"}),
    log:
        "logs/tables/whitebox_{table}.log",
    benchmark:
        "benchmarks/tables/whitebox_{table}.tsv",
    params:
        reads=lambda w: reads("whitebox_table", w.table),
    threads: job_threads("whitebox_table")
    resources: **job_resources("whitebox_table")
    shell:
        stage_cmd("whitebox_table") + " --table {wildcards.table:q} --evals {input.evals:q} --out {output:q}"
        " --log {log:q}"
