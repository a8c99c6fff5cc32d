# Where every output lives and what each job reads: the functions the rules call (rule files hold only rules).
from pipeline_src.combined_plan import evaluation_jobs


def raw_inputs(dataset):
    """A folder dataset's labels.csv: editing it re-prepares the dataset."""
    ds = CFG["datasets"][dataset]
    return [repo_file(os.path.join(ds["path"], "labels.csv"))] if ds["source"] == "folder" else []


def paper_file(section, table):
    entry = CFG[section][table]
    return [repo_file(Path("paper") / entry["paper"])] if "paper" in entry else []


def paper_arg(input):
    return ["--paper", input.paper[0]] if input.paper else []


REPORT = REPO / "workflow" / "report"


CAPTIONS = {"vs_paper": "vs_paper_figure"}  # vs_paper.rst captions the table of the same name


FIGURE_KINDS = ("accuracy_vs_eps", "ablation", "training", "vs_paper", "reconstructions")  # figures.TABLE_FIGURES


def figure_path(table, kind):
    return f"results/figures/{table}_{kind}.png"


def reconstructing_models(table):
    """One model per row with lambda_a > 0 (the first seed), for the auto-encoder figure."""
    first = {}
    for job in PLAN.tables[table]:
        if job.lambda_a > 0:
            first.setdefault((job.lambda_n, job.lambda_a), job)
    return list(first.values())


def report_outputs():
    return ([f"results/tables/{t}_stats.csv" for t in PLAN.tables]
            + [figure_path(t, k) for t in PLAN.tables for k in FIGURE_KINDS]
            + [f"results/figures/{ds}_attacks.png" for ds in PLAN.datasets])


def whitebox_path(name):
    return f"results/metrics/whitebox/{name}.json"


def whitebox_tables():
    return [f"results/tables/whitebox_{t}.csv" for t in PLAN.whitebox_tables]


def denoiser_path(name):
    return f"models/denoisers/{name}.pt"


def denoised_eval_path(denoiser, model):
    return f"results/metrics/eval_denoised/{denoiser}/{model}.json"


def protected_classifier(denoiser):
    """HGD: the classifier whose features guide the denoiser; the Reformer needs none."""
    job = PLAN.denoisers[denoiser]
    return [model_path(job.protects)] if job.protects else []


def combined_evals(table):
    return [denoised_eval_path(r.denoiser, r.model) if r.denoiser else eval_path(r.model) for r in PLAN.combined[table]]


AUDIT_PARTS = ("transfer", "square", "autoattack", "unbounded")


def audit_set_path(dataset, attack):
    return f"data/adversarial/{dataset}/audit_{attack}.pt"


def audit_record_path(model, part):
    return f"results/metrics/audit/{model}/{part}.json"


def audit_outputs():
    return [f"results/tables/audit_{t}{s}" for t in PLAN.audit_tables for s in (".csv", "_summary.csv")] + \
           [f"results/figures/audit_{t}.png" for t in PLAN.audit_tables]
