# Every evaluated model on the clean test set and on every adversarial set of its dataset.
rule evaluate:
    input:
        model=model_path("{model}"),
        test=lambda w: prepared(PLAN.models[w.model].dataset, "test"),
        adversarial=lambda w: [adversarial_path(PLAN.models[w.model].dataset, a) for a in PLAN.attacks],
        code=code("evaluate.py", "checkpoints.py", "models/denoising.py"),
        tracking=tracking_ready(),
    output:
        eval_path("{model}"),
    log:
        "logs/evaluate/{model}.log",
    params:
        adversarial=lambda w, input: shlex.join(f"{a}={p}" for a, p in zip(PLAN.attacks, input.adversarial)),
        dataset=lambda w: PLAN.models[w.model].dataset,
        batch_size=CFG["evaluation"]["batch_size"],
    threads: job_threads("evaluate")
    resources: **job_resources("evaluate")
    shell:
        "{PYTHON} -m pipeline_src evaluate --model {input.model} --test {input.test} --dataset {params.dataset}"
        " --adversarial {params.adversarial} --batch_size {params.batch_size} --out {output} {TRACKING_ARG} 2> {log}"
