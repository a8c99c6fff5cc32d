# Rebuilds the paper's tables from raw data: `snakemake --cores all` (see README).
#
# The job graph is written once, here and in workflow/rules/*.smk; dvc.yaml is rendered from it
# (`python -m pipeline_src dvc-yaml`, only when tables, rows, datasets or attacks change, never for a value).
# Every job is `python -m pipeline_src.stages.<stage> --<name> NAME <paths>`: it reads its own keys of the
# run's params.yaml by name; the rules give Snakemake those keys' values (params trigger) and the modules the
# stage imports (code inputs, pipeline_src/codedeps.py).
#
#   data/prepared/<dataset>/{train,test}.pt      uint8 images + labels after the paper's subsampling rules
#   models/<dataset>_<arch>_ln<..>_la<..>_s<seed>.pt    one classifier per table row
#   models/<dataset>_surrogate_resnet18_s<seed>.pt       the attacker's undefended model
#   data/adversarial/<dataset>/<attack>.pt        adversarial test sets crafted on the surrogate (uint8)
#   results/metrics/{train,attacks,eval}/...      per-job JSON records
#   results/tables/<table>.csv, <table>_vs_paper.csv     the paper's tables, ours and side by side
#   results/metrics/tables/<table>.json, results/plots/   what `dvc metrics show` / `dvc plots show` read
#   models/denoisers/<name>.pt, results/metrics/eval_denoised/<denoiser>/<model>.json   Table 4's denoisers
#   results/tables/<table>_stats.csv, results/figures/*.png  95% CIs and McNemar tests; figures
#   results/tables/whitebox_<table>.csv            beyond the paper: attacks crafted on each model itself
#   results/report.html                           `snakemake --report results/report.html` (not a job)
# Runs: params.yaml's run writes here; an overlay (configs/*.yaml) names its own run and writes to
# runs/<run>/ (or to --directory), with the parameters its jobs read in runs/<run>/params.yaml.
import os

from snakemake.utils import min_version

min_version("9.0")

configfile: os.path.join(workflow.basedir, "params.yaml")
report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


# `--software-deployment-method apptainer`: every job in the image the Containerfile builds from
# requirements.lock (docs/cluster.md: build, push, set container_image); without it the directive is ignored.
container: CFG["container_image"]


include: "workflow/rules/paths.smk"
include: "workflow/rules/constraints.smk"
include: "workflow/rules/tracking.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/attack.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/denoisers.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/whitebox.smk"
include: "workflow/rules/audit.smk"


# Every table, its comparison with the paper, statistics, figures and white-box tables.
rule all:
    default_target: True
    input:
        get_final_output(),
        report_outputs(),
        whitebox_tables(),


# After every rule exists: each entry of params' `resources:` must name one (catches a misspelt rule).
check_resource_kinds()
