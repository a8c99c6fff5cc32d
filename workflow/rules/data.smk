# Raw images -> the paper's subsampling rules -> uint8 tensors, decoded once.
rule prepare:
    input:
        raw=lambda w: raw_inputs(w.dataset),
        code=code("prepare"),
    output:
        train=prepared("{dataset}", "train"),
        test=prepared("{dataset}", "test"),
        summary="data/prepared/{dataset}/summary.json",
    log:
        "logs/prepare/{dataset}.log",
    benchmark:
        "benchmarks/prepare/{dataset}.tsv",
    params:
        reads=lambda w: reads("prepare", w.dataset),
        out_dir=lambda w, output: os.path.dirname(output.train),
    threads: job_threads("prepare")
    resources: **job_resources("prepare")
    shell:
        stage_cmd("prepare") + " --dataset {wildcards.dataset:q} --out_dir {params.out_dir:q} --log {log:q}"
