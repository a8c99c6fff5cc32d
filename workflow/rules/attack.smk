# Adversarial test sets, crafted on the dataset's undefended surrogate only (black-box transfer).
rule attack:
    input:
        surrogate=lambda w: model_path(PLAN.surrogate(w.dataset).name),
        test=prepared("{dataset}", "test"),
        code=code("attack"),
    output:
        adversarial=adversarial_path("{dataset}", "{attack}"),
        metrics="results/metrics/attacks/{dataset}/{attack}.json",
    log:
        "logs/attack/{dataset}/{attack}.log",
    benchmark:
        "benchmarks/attack/{dataset}/{attack}.tsv",
    params:
        reads=lambda w: reads("attack", w.attack),
    threads: job_threads("attack")
    resources: **job_resources("attack")
    shell:
        stage_cmd("attack") + " --dataset {wildcards.dataset:q} --attack {wildcards.attack:q}"
        " --surrogate {input.surrogate:q} --test {input.test:q} --out {output.adversarial:q}"
        " --metrics {output.metrics:q} --log {log:q}"
