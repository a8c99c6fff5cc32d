# What people look at: statistics next to the tables, figures, and the Snakemake HTML report
# (`snakemake --report results/report.html`; captions in workflow/report/).
rule stats:
    input:
        evals=lambda w: [eval_path(m.name) for m in PLAN.tables[w.table]],
        code=code("stats"),
    output:
        report("results/tables/{table}_stats.csv", caption=str(REPORT / "stats.rst"), category="Tables",
               subcategory="{table}", labels={"table": "{table}", "content": "95% CIs, McNemar vs NA"}),
    log:
        "logs/stats/{table}.log",
    benchmark:
        "benchmarks/stats/{table}.tsv",
    params:
        reads=lambda w: reads("stats", w.table),
    threads: job_threads("stats")
    resources: **job_resources("stats")
    shell:
        stage_cmd("stats") + " --table {wildcards.table:q} --evals {input.evals:q} --out {output:q} --log {log:q}"


rule figures:
    input:
        stats="results/tables/{table}_stats.csv",
        vs_paper="results/tables/{table}_vs_paper.csv",
        train=lambda w: [f"results/metrics/train/{m.name}.json" for m in PLAN.tables[w.table]],
        attacks=lambda w: [f"results/metrics/attacks/{CFG['tables'][w.table]['dataset']}/{a}.json" for a in PLAN.attacks],
        models=lambda w: [model_path(m.name) for m in reconstructing_models(w.table)],
        test=lambda w: prepared(CFG["tables"][w.table]["dataset"], "test"),
        code=code("figures"),
    output:
        **{kind: report(figure_path("{table}", kind), caption=str(REPORT / f"{CAPTIONS.get(kind, kind)}.rst"),
                        category="Figures", subcategory="{table}",
                        labels={"table": "{table}", "figure": kind.replace("_", " ")})
           for kind in FIGURE_KINDS},
    log:
        "logs/figures/{table}.log",
    benchmark:
        "benchmarks/figures/{table}.tsv",
    params:
        reads=lambda w: reads("figures", w.table),
        out=lambda w, output: pairs(FIGURE_KINDS, [output[k] for k in FIGURE_KINDS]),
    threads: job_threads("figures")
    resources: **job_resources("figures")
    shell:
        stage_cmd("figures") + " --table {wildcards.table:q} --stats {input.stats:q} --vs_paper {input.vs_paper:q}"
        " --train_metrics {input.train:q} --attack_metrics {input.attacks:q} --models {input.models:q}"
        " --test {input.test:q} --out {params.out:q} --log {log:q}"


rule attack_figure:
    input:
        test=prepared("{dataset}", "test"),
        adversarial=lambda w: [adversarial_path(w.dataset, a) for a in PLAN.attacks],
        code=code("attack_figure"),
    output:
        report("results/figures/{dataset}_attacks.png", caption=str(REPORT / "attacks.rst"), category="Figures",
               subcategory="attacks", labels={"dataset": "{dataset}", "figure": "attacks"}),
    log:
        "logs/figures/{dataset}_attacks.log",
    benchmark:
        "benchmarks/figures/{dataset}_attacks.tsv",
    params:
        reads=lambda w: reads("attack_figure", w.dataset),
        adversarial=lambda w, input: pairs(PLAN.attacks, input.adversarial),
    threads: job_threads("attack_figure")
    resources: **job_resources("attack_figure")
    shell:
        stage_cmd("attack_figure") + " --dataset {wildcards.dataset:q} --test {input.test:q}"
        " --adversarial {params.adversarial:q} --out {output:q} --log {log:q}"
