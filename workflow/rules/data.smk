# Raw images -> the paper's subsampling rules -> uint8 tensors, decoded once.
def raw_inputs(dataset):
    """A folder dataset's labels.csv: editing it re-prepares the dataset."""
    ds = CFG["datasets"][dataset]
    return [os.path.join(ds["path"], "labels.csv")] if ds["source"] == "folder" else []


rule prepare:
    input:
        raw=lambda w: raw_inputs(w.dataset),
        code=code("data/prepare.py", "data/subsample.py", "data/synthetic.py", "data/folder.py",
                  "data/raw.py", "data/catalog.py", "data/download.py", "data/archive.py", "data/isic2018.py",
                  "data/rsna.py", "data/medmnist_source.py"),
    output:
        train=prepared("{dataset}", "train"),
        test=prepared("{dataset}", "test"),
        summary="data/prepared/{dataset}/summary.json",
    log:
        "logs/prepare/{dataset}.log",
    params:
        args=lambda w: cli_args(PLAN.dataset_spec(w.dataset)),
    threads: job_threads("prepare")
    resources: **job_resources("prepare")
    shell:
        "{PYTHON} -m pipeline_src prepare {params.args} --out_dir data/prepared/{wildcards.dataset} 2> {log}"
