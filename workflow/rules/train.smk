# One classifier per table row (and one surrogate per dataset), checkpointed every epoch.
rule train:
    input:
        train=lambda w: prepared(PLAN.models[w.model].dataset, "train"),
        test=lambda w: prepared(PLAN.models[w.model].dataset, "test"),
        code=code("train.py", "losses.py", "models/denoising.py", "evaluate.py", "checkpoints.py",
                  "data/prepare.py"),
        tracking=tracking_ready(),
    output:
        model=model_path("{model}"),
        metrics="results/metrics/train/{model}.json",
    log:
        "logs/train/{model}.log",
    params:
        args=lambda w: cli_args(PLAN.train_config(w.model)),
    threads: job_threads("train")
    resources: **job_resources("train")
    shell:
        "{PYTHON} -m pipeline_src train {params.args} --train {input.train} --test {input.test}"
        " --out {output.model} --metrics {output.metrics} {TRACKING_ARG} 2> {log}"
