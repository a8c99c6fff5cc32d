# One classifier per table row (and one surrogate per dataset), checkpointed every epoch.
rule train:
    input:
        train=lambda w: prepared(PLAN.models[w.model].dataset, "train"),
        test=lambda w: prepared(PLAN.models[w.model].dataset, "test"),
        code=code("train"),
    output:
        model=model_path("{model}"),
        metrics="results/metrics/train/{model}.json",
        plot_curve="results/plots/train/{model}.csv",
    log:
        "logs/train/{model}.log",
    benchmark:
        "benchmarks/train/{model}.tsv",
    params:
        reads=lambda w: reads("train", w.model),
    threads: job_threads("train")
    resources: **job_resources("train")
    shell:
        stage_cmd("train") + " --model {wildcards.model:q} --train {input.train:q} --test {input.test:q}"
        " --out {output.model:q} --metrics {output.metrics:q} --curve {output.plot_curve:q} --log {log:q}"
