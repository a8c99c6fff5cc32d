# The paper's tables: one row per model, accuracy in percent, a side-by-side with the paper, the flat
# metrics `dvc metrics show` reads and the accuracy-vs-eps data `dvc plots show` draws.
rule table:
    input:
        evals=lambda w: [eval_path(m.name) for m in PLAN.tables[w.table]],
        paper=lambda w: paper_file("tables", w.table),
        code=code("table"),
    output:
        table=report("results/tables/{table}.csv", caption=str(REPO / "workflow/report/table.rst"), category="Tables",
                     subcategory="{table}", labels={"table": "{table}", "content": "as in the paper"}),
        vs_paper=report("results/tables/{table}_vs_paper.csv", caption=str(REPO / "workflow/report/vs_paper.rst"),
                        category="Tables", subcategory="{table}", labels={"table": "{table}", "content": "ours vs the paper"}),
        metrics_table="results/metrics/tables/{table}.json",
        plot_eps="results/plots/{table}_accuracy_vs_eps.csv",
    log:
        "logs/tables/{table}.log",
    benchmark:
        "benchmarks/tables/{table}.tsv",
    params:
        reads=lambda w: reads("table", w.table),
        paper=lambda w, input: paper_arg(input),
    threads: job_threads("table")
    resources: **job_resources("table")
    shell:
        stage_cmd("table") + " --table {wildcards.table:q} --evals {input.evals:q} {params.paper:q}"
        " --out {output.table:q} --vs_paper {output.vs_paper:q} --metrics {output.metrics_table:q}"
        " --plot {output.plot_eps:q} --log {log:q}"
