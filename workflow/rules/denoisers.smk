# Table 4: input denoisers (Reformer per dataset, HGD* per protected classifier) in front of Table 1's
# classifiers, evaluated on the same transferred attacks (pipeline_src/combined*.py, denoisers.py).
rule train_denoiser:
    input:
        train=lambda w: prepared(PLAN.denoisers[w.denoiser].dataset, "train"),
        test=lambda w: prepared(PLAN.denoisers[w.denoiser].dataset, "test"),
        classifier=lambda w: protected_classifier(w.denoiser),
        code=code("train_denoiser"),
    output:
        model=denoiser_path("{denoiser}"),
        metrics="results/metrics/train_denoisers/{denoiser}.json",
    log:
        "logs/train_denoiser/{denoiser}.log",
    benchmark:
        "benchmarks/train_denoiser/{denoiser}.tsv",
    params:
        reads=lambda w: reads("train_denoiser", w.denoiser),
        classifier=lambda w, input: ["--classifier", input.classifier[0]] if input.classifier else [],
    threads: job_threads("train_denoiser")
    resources: **job_resources("train_denoiser")
    shell:
        stage_cmd("train_denoiser") + " --denoiser {wildcards.denoiser:q} --train {input.train:q}"
        " --test {input.test:q} {params.classifier:q} --out {output.model:q} --metrics {output.metrics:q}"
        " --log {log:q}"


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
            code=code("evaluate_denoised"),
        output:
            [denoised_eval_path(d, m) for d, m in _pairs],
        log:
            f"logs/evaluate_denoised/{_table}.log",
        benchmark:
            f"benchmarks/evaluate_denoised/{_table}.tsv",
        params:
            reads=reads("evaluate_denoised", _table),
            table=_table,
            adversarial=pairs(PLAN.attacks, [adversarial_path(_dataset, a) for a in PLAN.attacks]),
        threads: job_threads("evaluate_denoised")
        resources: **job_resources("evaluate_denoised")
        shell:
            stage_cmd("evaluate_denoised") + " --table {params.table:q} --denoisers {input.denoisers:q}"
            " --models {input.models:q} --outs {output:q} --test {input.test:q}"
            " --adversarial {params.adversarial:q} --log {log:q}"


rule combined_table:
    input:
        evals=lambda w: combined_evals(w.ctable),
        paper=lambda w: paper_file("combined_tables", w.ctable),
        code=code("combined_table"),
    output:
        table=report("results/tables/{ctable}.csv", caption=str(REPORT / "combined.rst"), category="Tables",
                     subcategory="{ctable}", labels={"table": "{ctable}", "content": "as in the paper"}),
        vs_paper=report("results/tables/{ctable}_vs_paper.csv", caption=str(REPORT / "combined_vs_paper.rst"),
                        category="Tables", subcategory="{ctable}", labels={"table": "{ctable}", "content": "ours vs the paper"}),
    log:
        "logs/tables/{ctable}.log",
    benchmark:
        "benchmarks/tables/{ctable}.tsv",
    params:
        reads=lambda w: reads("combined_table", w.ctable),
        paper=lambda w, input: paper_arg(input),
    threads: job_threads("combined_table")
    resources: **job_resources("combined_table")
    shell:
        stage_cmd("combined_table") + " --table {wildcards.ctable:q} --evals {input.evals:q} {params.paper:q}"
        " --out {output.table:q} --vs_paper {output.vs_paper:q} --log {log:q}"
