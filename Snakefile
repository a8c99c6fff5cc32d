# Rebuilds the paper's tables from raw data: `snakemake --cores all` (see README).
#
#   data/prepared/<dataset>/{train,test}.pt      uint8 images + labels after the paper's subsampling rules
#   models/<dataset>_<arch>_ln<..>_la<..>_s<seed>.pt    one classifier per table row
#   models/<dataset>_surrogate_resnet18_s<seed>.pt       the attacker's undefended model
#   data/adversarial/<dataset>/<attack>.pt        adversarial test sets crafted on the surrogate (uint8)
#   results/metrics/{train,attacks,eval}/...      per-job JSON records
#   results/tables/<table>.csv, <table>_vs_paper.csv     the paper's tables, ours and side by side
#   models/denoisers/<name>.pt, results/metrics/eval_denoised/<denoiser>/<model>.json   Table 4's denoisers
#   results/tables/<table>_stats.csv, results/figures/*.png  95% CIs and McNemar tests; figures
#   results/report.html                           `snakemake --report results/report.html` (not a job)
#   results/tables/whitebox_<table>.csv            beyond the paper: attacks crafted on each model itself
import os

configfile: os.path.join(workflow.basedir, "params.yaml")
report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/tracking.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/attack.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/denoisers.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/whitebox.smk"


# Every table and its comparison with the paper.
rule all:
    default_target: True
    input:
        get_final_output(),
        report_outputs(),
        whitebox_tables(),


# After every rule exists: each entry of params' `resources:` must name one (catches a misspelt rule).
check_resource_kinds()
