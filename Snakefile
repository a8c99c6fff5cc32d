# Rebuilds the paper's tables from raw data: `snakemake --cores all` (see README).
#
#   data/prepared/<dataset>/{train,test}.pt      uint8 images + labels after the paper's subsampling rules
#   models/<dataset>_<arch>_ln<..>_la<..>_s<seed>.pt    one classifier per table row
#   models/<dataset>_surrogate_resnet18_s<seed>.pt       the attacker's undefended model
#   data/adversarial/<dataset>/<attack>.pt        adversarial test sets crafted on the surrogate (uint8)
#   results/metrics/{train,attacks,eval}/...      per-job JSON records
#   results/tables/<table>.csv, <table>_vs_paper.csv     the paper's tables, ours and side by side
#   results/tables/whitebox_<table>.csv            beyond the paper: attacks crafted on each model itself
import os

configfile: os.path.join(workflow.basedir, "params.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/tracking.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/attack.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/whitebox.smk"


# Every table and its comparison with the paper.
rule all:
    default_target: True
    input:
        get_final_output(),
        whitebox_tables(),
