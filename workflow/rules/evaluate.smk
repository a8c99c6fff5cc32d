# Every evaluated model on the clean test set and on every adversarial set of its dataset.
rule evaluate:
    input:
        weights=model_path("{model}"),
        test=lambda w: prepared(PLAN.models[w.model].dataset, "test"),
        adversarial=lambda w: [adversarial_path(PLAN.models[w.model].dataset, a) for a in PLAN.attacks],
        code=code("evaluate"),
    output:
        eval_path("{model}"),
    log:
        "logs/evaluate/{model}.log",
    benchmark:
        "benchmarks/evaluate/{model}.tsv",
    params:
        reads=lambda w: reads("evaluate", w.model),
        adversarial=lambda w, input: pairs(PLAN.attacks, input.adversarial),
    threads: job_threads("evaluate")
    resources: **job_resources("evaluate")
    shell:
        stage_cmd("evaluate") + " --model {wildcards.model:q} --weights {input.weights:q} --test {input.test:q}"
        " --adversarial {params.adversarial:q} --out {output:q} --log {log:q}"
