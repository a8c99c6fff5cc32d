# Raw images -> the paper's subsampling rules -> uint8 tensors, decoded once.
rule prepare:
    input:
        code=code("data/prepare.py", "data/subsample.py", "data/synthetic.py"),
    output:
        train=prepared("{dataset}", "train"),
        test=prepared("{dataset}", "test"),
        summary="data/prepared/{dataset}/summary.json",
    log:
        "logs/prepare/{dataset}.log",
    params:
        args=lambda w: cli_args(PLAN.dataset_spec(w.dataset)),
    shell:
        "{PYTHON} -m pipeline_src prepare {params.args} --out_dir data/prepared/{wildcards.dataset} 2> {log}"
