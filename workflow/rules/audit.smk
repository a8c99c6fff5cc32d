# Beyond the paper, "is the defence real?" (docs/audit.md): strong and ensemble transfer, Square Attack,
# AutoAttack and sanity checks on the models of audit.tables. Not part of `rule all` (about 5,300 job-seconds
# on the CPU default, against the default run's few hundred): `snakemake --cores all audit`, or `make audit`.
rule audit_craft:
    input:
        surrogates=lambda w: [model_path(m) for m in importlib.import_module("pipeline_src.stages.audit_craft")
                              .surrogates(PLAN, w.dataset, w.audit_attack)],
        test=prepared("{dataset}", "test"),
        code=code("audit_craft"),
    output:
        adversarial=audit_set_path("{dataset}", "{audit_attack}"),
        metrics="results/metrics/audit/attacks/{dataset}/{audit_attack}.json",
    log:
        "logs/audit/craft/{dataset}/{audit_attack}.log",
    benchmark:
        "benchmarks/audit/craft/{dataset}/{audit_attack}.tsv",
    params:
        reads=lambda w: reads("audit_craft", w.audit_attack),
    threads: job_threads("audit_craft")
    resources: **job_resources("audit_craft")
    shell:
        stage_cmd("audit_craft") + " --dataset {wildcards.dataset:q} --attack {wildcards.audit_attack:q}"
        " --surrogates {input.surrogates:q} --test {input.test:q} --out {output.adversarial:q}"
        " --metrics {output.metrics:q} --log {log:q}"


rule audit_model:
    input:
        weights=model_path("{model}"),
        test=lambda w: prepared(PLAN.models[w.model].dataset, "test"),
        transfer=lambda w: [audit_set_path(PLAN.models[w.model].dataset, a) for a in PLAN.audit_transfer]
                           if w.part == "transfer" else [],
        code=code("audit_model"),
    output:
        audit_record_path("{model}", "{part}"),
    log:
        "logs/audit/{model}/{part}.log",
    benchmark:
        "benchmarks/audit/{model}/{part}.tsv",
    params:
        reads=lambda w: reads("audit_model", f"{w.model}/{w.part}"),
        transfer=lambda w, input: ["--transfer", *pairs(PLAN.audit_transfer, input.transfer)] if input.transfer else [],
    threads: job_threads("audit_model")
    resources: **job_resources("audit_model")
    shell:
        stage_cmd("audit_model") + " --model {wildcards.model:q} --part {wildcards.part:q} --weights {input.weights:q}"
        " --test {input.test:q} {params.transfer:q} --out {output:q} --log {log:q}"


rule audit_table:
    input:
        audits=lambda w: [audit_record_path(m.name, p) for m in PLAN.tables[w.table] for p in AUDIT_PARTS],
        evals=lambda w: [eval_path(m.name) for m in PLAN.tables[w.table]],
        whitebox=lambda w: [whitebox_path(m.name) for m in PLAN.tables[w.table]] if w.table in PLAN.whitebox_tables else [],
        code=code("audit_table"),
    output:
        table=report("results/tables/audit_{table}.csv", caption=str(REPORT / "audit.rst"), category="Audit",
                     subcategory="{table}", labels={"table": "{table}", "content": "threat models and checks"}),
        summary=report("results/tables/audit_{table}_summary.csv", caption=str(REPORT / "audit_summary.rst"),
                       category="Audit", subcategory="{table}", labels={"table": "{table}", "content": "advantage over NA"}),
        figure=report("results/figures/audit_{table}.png", caption=str(REPORT / "audit_figure.rst"), category="Audit",
                      subcategory="{table}", labels={"table": "{table}", "content": "robust accuracy by threat model"}),
    log:
        "logs/tables/audit_{table}.log",
    benchmark:
        "benchmarks/tables/audit_{table}.tsv",
    params:
        reads=lambda w: reads("audit_table", w.table),
        whitebox=lambda w, input: ["--whitebox", *input.whitebox] if input.whitebox else [],
    threads: job_threads("audit_table")
    resources: **job_resources("audit_table")
    shell:
        stage_cmd("audit_table") + " --table {wildcards.table:q} --audits {input.audits:q} --evals {input.evals:q}"
        " {params.whitebox:q} --out {output.table:q} --summary {output.summary:q} --figure {output.figure:q}"
        " --log {log:q}"


# `snakemake --cores all audit` (make audit): every audit table of the run
rule audit:
    input:
        audit_outputs(),
