"""What the workflow must build, derived from the table definitions in params.yaml.

Model names carry everything that identifies a model (dataset, arch, lambdas, seed), so changing
one lambda in a table row adds exactly one new model and leaves the others' files valid.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from pipeline_src.config import ParamsError, fmt_number


@dataclass(frozen=True)
class ModelJob:
    name: str
    dataset: str
    arch: str
    lambda_n: float
    lambda_a: float
    seed: int
    surrogate: bool = False
    evaluated: bool = True  # False: only a denoiser combination of Table 4 uses it (combined.py)

    @property
    def label(self) -> str:
        """Row label as in the paper's tables: 'NA' for the undefended classifier."""
        return "NA" if (self.lambda_n == 0 and self.lambda_a == 0) else f"ln={fmt_number(self.lambda_n)},la={fmt_number(self.lambda_a)}"


def model_name(dataset: str, arch: str, lambda_n: float, lambda_a: float, seed: int) -> str:
    return f"{dataset}_{arch}_ln{fmt_number(lambda_n)}_la{fmt_number(lambda_a)}_s{seed}"


def surrogate_name(dataset: str, arch: str, seed: int) -> str:
    return f"{dataset}_surrogate_{arch}_s{seed}"


@dataclass(frozen=True)
class Plan:
    """Every model, attack and table of one parameter set."""
    cfg: dict
    models: dict[str, ModelJob]
    tables: dict[str, list[ModelJob]]  # every model of a table: rows in order, each row's seeds in order
    datasets: tuple[str, ...]
    attacks: tuple[str, ...]
    denoisers: dict = field(default_factory=dict)  # name -> combined.DenoiserJob (Table 4)
    combined: dict = field(default_factory=dict)  # combined table -> [combined.CombinedRow]
    whitebox: tuple[str, ...] = ()  # white-box attack columns; empty when whitebox.enabled is false
    whitebox_tables: tuple[str, ...] = ()  # tables with a white-box twin (whitebox.tables, default all)
    audit_tables: tuple[str, ...] = ()  # tables whose models the audit attacks (audit.tables, default all)
    audit_transfer: tuple[str, ...] = ()  # the audit's transfer sets, crafted once per dataset
    members: dict = field(default_factory=dict)  # dataset -> the ensemble surrogate's model names, in arch order

    def model(self, name: str) -> ModelJob:
        """The model called ``name``; one message naming the choices when the parameters have none."""
        return _named(self.models, name, "model", "the tables' rows (or the surrogate)")

    def dataset(self, name: str) -> str:
        return _named({d: d for d in self.datasets}, name, "dataset", "'datasets' used by a table")

    def table(self, name: str) -> list[ModelJob]:
        return _named(self.tables, name, "table", "'tables'")

    def attack(self, name: str) -> str:
        return _named({a: a for a in self.attacks}, name, "attack", "'attacks'")

    def surrogate(self, dataset: str) -> ModelJob:
        """The model the dataset's attacks are crafted on (``surrogate.source``)."""
        return self.models[attacker_name(self.cfg, dataset)]

    def evaluated_models(self, dataset: str | None = None) -> list[ModelJob]:
        return [m for m in self.models.values()
                if not m.surrogate and m.evaluated and (dataset is None or m.dataset == dataset)]

    def run_models(self) -> list[ModelJob]:
        """The models `make run` trains (Snakemake's `all`): every model but the audit ensemble's extra members,
        which only `make audit` trains."""
        attackers = {attacker_name(self.cfg, ds) for ds in self.datasets}
        extra = {n for names in self.members.values() for n in names} - attackers
        return [m for m in self.models.values() if m.name not in extra]

    def audit_models(self) -> list[ModelJob]:
        """The models of the audited tables, each once, in table order."""
        return list({m.name: m for t in self.audit_tables for m in self.tables[t]}.values())

    def audit_datasets(self) -> list[str]:
        return list(dict.fromkeys(self.models[m.name].dataset for m in self.audit_models()))

    def whitebox_models(self) -> list[ModelJob]:
        """The models of the white-box tables, each once, in table order."""
        return list({m.name: m for t in self.whitebox_tables for m in self.tables[t]}.values())


def _named(items: dict, name: str, what: str, where: str):
    if name not in items:
        known = ", ".join(list(items)[:12]) + (" ..." if len(items) > 12 else "")
        raise ParamsError(f"no {what} {name!r} in the parameters ({where}); known: {known or 'none'}")
    return items[name]


def structure_hash(plan: Plan) -> str:
    """What decides the job graph's shape (names of datasets, models, attacks, tables, denoisers and their
    rows), not its values: dvc.yaml records it, and a DVC stage refuses to run when params.yaml changed it."""
    shape = {"datasets": list(plan.datasets), "models": sorted(plan.models), "attacks": list(plan.attacks),
             "tables": {t: [m.name for m in rows] for t, rows in plan.tables.items()},
             "denoisers": sorted(plan.denoisers),
             "combined": {t: [[r.label, r.model, r.denoiser] for r in rows] for t, rows in plan.combined.items()},
             "whitebox": [list(plan.whitebox), list(plan.whitebox_tables)],
             "audit": [list(plan.audit_tables), list(plan.audit_transfer), plan.members]}
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]


def build_plan(cfg: dict) -> Plan:
    """``cfg`` must already be validated (``config.validate_params``)."""
    seed = cfg["seed"]
    # training seeds: a table row is trained once per seed (default [seed]: names and files as with one seed)
    seeds = training_seeds(cfg)
    models: dict[str, ModelJob] = {}
    tables: dict[str, list[ModelJob]] = {}
    datasets: list[str] = []
    for table_name, table in cfg["tables"].items():
        rows = []
        for row in table["rows"]:
            ln, la = float(row["lambda_n"]), float(row["lambda_a"])
            for s in seeds:
                job = ModelJob(model_name(table["dataset"], table["arch"], ln, la, s), table["dataset"],
                               table["arch"], ln, la, s)
                models[job.name] = job
                rows.append(job)
        tables[table_name] = rows
        if table["dataset"] not in datasets:
            datasets.append(table["dataset"])
    from pipeline_src.combined_plan import build_combined

    denoisers, combined = build_combined(cfg, models, datasets, ModelJob, model_name)
    for ds in datasets:
        name = attacker_name(cfg, ds)
        if name not in models:  # an independent surrogate, or an NA ResNet18 no table lists: trained for the attacks
            job = (ModelJob(name, ds, cfg["surrogate"]["arch"], 0.0, 0.0, seed + cfg["surrogate"]["seed_offset"],
                            surrogate=True) if cfg["surrogate"].get("source", "independent") == "independent"
                   else ModelJob(name, ds, "resnet18", 0.0, 0.0, seed, surrogate=True))
            models[job.name] = job
    wb, au = cfg.get("whitebox", {}), cfg.get("audit", {})
    audit_tables = tuple(au.get("tables") or tables) if au.get("enabled") else ()
    members: dict[str, list[str]] = {}
    for ds in dict.fromkeys(tables[t][0].dataset for t in audit_tables if tables[t]):
        # the ensemble surrogate: the attacker itself for its arch, the others trained like an independent surrogate
        s_seed = seed + cfg["surrogate"]["seed_offset"]
        names = []
        for arch in au["ensemble"]["archs"]:
            attacker = models[attacker_name(cfg, ds)]
            if arch == attacker.arch:
                names.append(attacker.name)
                continue
            job = ModelJob(surrogate_name(ds, arch, s_seed), ds, arch, 0.0, 0.0, s_seed, surrogate=True)
            models.setdefault(job.name, job)
            names.append(job.name)
        members[ds] = names
    return Plan(cfg=cfg, models=models, tables=tables, datasets=tuple(datasets), attacks=attack_columns(cfg["attacks"]),
                denoisers=denoisers, combined=combined,
                whitebox=attack_columns(wb["attacks"]) if wb.get("enabled") else (),
                whitebox_tables=tuple(wb.get("tables") or tables) if wb.get("enabled") else (),
                audit_tables=audit_tables, audit_transfer=tuple(au.get("transfer", {})) if audit_tables else (),
                members=members)


def attacker_name(cfg: dict, dataset: str) -> str:
    """independent: the dataset's own surrogate; na_model: its undefended ResNet18 (the seed of ``seed``), the
    model the paper's Table 1/2 NA row is."""
    s = cfg["surrogate"]
    if s.get("source", "independent") == "na_model":
        return model_name(dataset, "resnet18", 0.0, 0.0, cfg["seed"])
    return surrogate_name(dataset, s["arch"], cfg["seed"] + s["seed_offset"])


def training_seeds(cfg: dict) -> list[int]:
    """``seeds`` if given, else the one ``seed``. Data, splits, surrogate and attacks always use ``seed``."""
    return list(cfg.get("seeds") or [cfg["seed"]])


def attack_columns(attacks: dict) -> tuple[str, ...]:
    """Table column order as in the paper: FGSM, I-FGSM, C&W, each by increasing eps.

    Derived from the settings rather than dict order, which config merging does not preserve.
    """
    rank = {"fgsm": 0, "ifgsm": 1, "pgd": 2, "cw": 3}
    return tuple(sorted(attacks, key=lambda a: (rank[attacks[a]["method"]], attacks[a].get("eps", 0), a)))
