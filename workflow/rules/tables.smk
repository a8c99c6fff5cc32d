# The paper's tables: one row per model, accuracy in percent, and a side-by-side with the paper.
rule table:
    input:
        evals=lambda w: [eval_path(m.name) for m in PLAN.tables[w.table]],
        paper=lambda w: [str(REPO / "paper" / CFG["tables"][w.table]["paper"])] if "paper" in CFG["tables"][w.table] else [],
        code=code("tables.py"),
        tracking=tracking_ready(),
    output:
        table=report("results/tables/{table}.csv", caption=str(REPO / "workflow/report/table.rst"), category="Tables",
                     subcategory="{table}", labels={"table": "{table}", "content": "as in the paper"}),
        vs_paper=report("results/tables/{table}_vs_paper.csv", caption=str(REPO / "workflow/report/vs_paper.rst"), category="Tables",
                        subcategory="{table}", labels={"table": "{table}", "content": "ours vs the paper"}),
    log:
        "logs/tables/{table}.log",
    params:
        columns=shlex.join(["clean", *PLAN.attacks]),
        paper=lambda w, input: f"--paper {input.paper[0]}" if input.paper else "",
    threads: job_threads("table")
    resources: **job_resources("table")
    shell:
        "{PYTHON} -m pipeline_src tables --evals {input.evals} --columns {params.columns} {params.paper}"
        " --out {output.table} --vs_paper {output.vs_paper} {TRACKING_ARG} 2> {log}"
