# Adversarial test sets, crafted on the dataset's undefended surrogate only (black-box transfer).
rule attack:
    input:
        surrogate=lambda w: model_path(PLAN.surrogate(w.dataset).name),
        test=prepared("{dataset}", "test"),
        code=code("attacks.py", "adversarial.py", "checkpoints.py", "models/denoising.py", "evaluate.py"),
        tracking=tracking_ready(),
    output:
        adversarial=adversarial_path("{dataset}", "{attack}"),
        metrics="results/metrics/attacks/{dataset}/{attack}.json",
    log:
        "logs/attack/{dataset}/{attack}.log",
    params:
        args=lambda w: cli_args(PLAN.attack_config(w.attack)),
    threads: job_threads("attack")
    resources: **job_resources("attack")
    shell:
        "{PYTHON} -m pipeline_src attack {params.args} --name {wildcards.attack} --surrogate {input.surrogate}"
        " --test {input.test} --out {output.adversarial} --metrics {output.metrics} {TRACKING_ARG} 2> {log}"
