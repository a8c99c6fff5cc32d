"""Parameters: loading, validation with clear messages, and the typed configs each stage reads.

params.yaml is the single source of truth. Snakemake validates it before building the DAG; each job
reads its own keys of the run's params.yaml by name (pipeline_src/stages/) and builds its typed config
from them (the dataclasses below).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import jsonschema

from pipeline_src import strict_yaml

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "params.schema.yaml"
ARCHS = ("resnet18", "vgg16")
CW_DEFAULTS = {"binary_search_steps": 5, "steps": 1000, "stepsize": 0.01, "confidence": 0.0,
               "initial_const": 1e-3, "abort_early": True}
DOWNLOADING_SOURCES = ("isic2018", "rsna", "medmnist")  # fetched into raw_dir by the prepare job
ATTACK_KEYS = {"fgsm": {"eps"}, "ifgsm": {"eps", "steps"}, "cw": set(CW_DEFAULTS)}
WHITEBOX_KEYS = {"fgsm": {"eps"}, "ifgsm": {"eps", "steps", "stepsize"},
                 "pgd": {"eps", "steps", "stepsize", "random_start"}}


class ParamsError(ValueError):
    """A user error in the parameters: the message names the key and the fix."""


# --------------------------------------------------------------------------- loading

def deep_merge(base: dict, overlay: dict) -> dict:
    """Merge like Snakemake's --configfile: nested dicts merge, everything else is replaced."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_params(*paths: str | Path) -> dict:
    """Read and merge parameter files in order (later files override earlier ones)."""
    merged: dict = {}
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise ParamsError(f"parameter file '{path}' does not exist: check the path given to --configfile")
        try:
            data = strict_yaml.load(path) or {}  # a duplicated key is an error, not "the last one wins"
        except strict_yaml.YamlError as err:
            raise ParamsError(str(err)) from None
        if not isinstance(data, dict):
            raise ParamsError(f"parameter file '{path}' must hold a mapping of keys, not {type(data).__name__}")
        merged = deep_merge(merged, data)
    return merged


def load_schema() -> dict:
    return strict_yaml.load(SCHEMA_PATH)


# --------------------------------------------------------------------------- validation

def _path(parts: Any) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top level>"


def _describe(error: jsonschema.ValidationError, source: str) -> str:
    where = _path(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        keys = ", ".join(f"'{_path([*error.absolute_path, k])}'" for k in unknown)
        return f"{source}: unknown key {keys}; allowed keys here: {', '.join(allowed)}"
    if error.validator == "enum":
        return (f"{source}: '{where}' = {error.instance!r} is not allowed; "
                f"allowed values: {', '.join(map(str, error.validator_value))}")
    if error.validator == "required":
        return f"{source}: '{where}': {error.message}; add it (see workflow/schemas/params.schema.yaml)"
    if error.validator in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        sign = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}[error.validator]
        what = schema.get("description", "")
        return f"{source}: '{where}' = {error.instance!r} must be {sign} {error.validator_value}" + (
            f" ({what})" if what else "")
    if error.validator == "type":
        return f"{source}: '{where}' = {error.instance!r} must be of type {error.validator_value}"
    if error.validator == "oneOf" and where.endswith("split"):
        return f"{source}: '{where}' must give either test_fraction or both train and test counts, not {error.instance!r}"
    return f"{source}: '{where}': {error.message}"


def _fill_defaults(instance: Any, schema: dict) -> None:
    if not isinstance(instance, dict):
        return
    for key, sub in schema.get("properties", {}).items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if key in instance:
            _fill_defaults(instance[key], sub)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key, value in instance.items():
            if key not in schema.get("properties", {}):
                _fill_defaults(value, extra)


def validate_params(config: dict, source: str = "params.yaml") -> dict:
    """Check every key and value; return a copy with defaults filled in. Raises ParamsError."""
    import jsonschema

    schema = load_schema()
    check_values_and_names(config, schema, source)  # NaN/inf, 6.0 for an integer, unsafe names: before the schema
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(config),
                    key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        raise ParamsError(_describe(errors[0], source))
    cfg = copy.deepcopy(config)
    _fill_defaults(cfg, schema)
    _check_semantics(cfg, source)
    check_derived_names(cfg, source)
    return cfg


def _check_semantics(cfg: dict, source: str) -> None:
    from pipeline_src.data.classes import SYNTHETIC_CLASSES

    for name, ds in cfg["datasets"].items():
        where = f"datasets.{name}"
        if ds["source"] in SYNTHETIC_CLASSES:
            known = SYNTHETIC_CLASSES[ds["source"]]
            counts = ds.get("synthetic_counts")
            if not counts:
                raise ParamsError(f"{source}: '{where}.synthetic_counts' is required for source "
                                  f"{ds['source']}; give images per class for {', '.join(known)}")
            for cls in counts:
                if cls not in known:
                    raise ParamsError(f"{source}: '{where}.synthetic_counts' has unknown class {cls!r}; "
                                      f"classes of {ds['source']}: {', '.join(known)}")
            for key in ("path", "channels"):
                if key in ds:
                    raise ParamsError(f"{source}: '{where}.{key}' applies only to source folder, "
                                      f"not {ds['source']}; remove it")
            for cls in ds["classes"]:
                if cls not in counts:
                    raise ParamsError(f"{source}: '{where}.classes' keeps {cls!r}, which "
                                      f"'{where}.synthetic_counts' does not generate; allowed: {', '.join(counts)}")
        elif ds["source"] == "folder":
            for key, hint in (("path", "a directory holding labels.csv (columns image,label) and the images"),
                              ("channels", "1 for grayscale, 3 for RGB")):
                if key not in ds:
                    raise ParamsError(f"{source}: '{where}.{key}' is required for source folder: {hint}")
            if "synthetic_counts" in ds:
                raise ParamsError(f"{source}: '{where}.synthetic_counts' applies only to the synthetic sources; "
                                  "remove it (a folder's counts come from its labels.csv)")
        _check_downloading_source(ds, where, source)
        for cls in ds.get("caps", {}):
            if cls not in ds["classes"]:
                raise ParamsError(f"{source}: '{where}.caps' names {cls!r}, not a kept class; "
                                  f"kept classes: {', '.join(ds['classes'])}")
    for name, attack in cfg["attacks"].items():
        method = attack["method"]
        extra = set(attack) - {"method"} - ATTACK_KEYS[method]
        if extra:
            raise ParamsError(f"{source}: 'attacks.{name}.{sorted(extra)[0]}' does not apply to method {method}; "
                              f"allowed keys for {method}: {', '.join(sorted(ATTACK_KEYS[method]))}")
        if method in ("fgsm", "ifgsm") and "eps" not in attack:
            raise ParamsError(f"{source}: 'attacks.{name}.eps' is required for {method} (0-255 scale, e.g. 8)")
        if method == "ifgsm" and "steps" not in attack:
            raise ParamsError(f"{source}: 'attacks.{name}.steps' is required for ifgsm (the paper uses 10)")
        if method == "cw":
            for key, value in CW_DEFAULTS.items():
                attack.setdefault(key, value)
    for name, table in cfg["tables"].items():
        if table["dataset"] not in cfg["datasets"]:
            raise ParamsError(f"{source}: 'tables.{name}.dataset' = {table['dataset']!r} is not a defined dataset; "
                              f"defined datasets: {', '.join(cfg['datasets'])}")
        seen = set()
        for i, row in enumerate(table["rows"]):
            key = (float(row["lambda_n"]), float(row["lambda_a"]))
            if key in seen:
                raise ParamsError(f"{source}: 'tables.{name}.rows[{i}]' repeats lambda_n={row['lambda_n']}, "
                                  f"lambda_a={row['lambda_a']}; each row must be a different model")
            seen.add(key)
    if cfg["training"]["threads"] < 1:
        raise ParamsError(f"{source}: 'training.threads' must be >= 1")
    from pipeline_src.combined_plan import check_combined  # Table 4's rows (local: it imports config)

    check_combined(cfg, source)
    _check_whitebox(cfg, source)
    _check_audit(cfg, source)



def _check_downloading_source(ds: dict, where: str, source: str) -> None:
    """Keys that belong to one source only, and the classes a downloading source can deliver."""
    from pipeline_src.data.classes import MEDMNIST_SIZES, source_classes

    src = ds["source"]
    only = {"raw_dir": DOWNLOADING_SOURCES, "downloads": DOWNLOADING_SOURCES, "lesion_aware": ("isic2018",),
            "variant": ("medmnist",)}
    for key, sources in only.items():
        if key in ds and src not in sources:
            raise ParamsError(f"{source}: '{where}.{key}' applies only to source {' / '.join(sources)}, "
                              f"not {src}; remove it")
    if src not in DOWNLOADING_SOURCES:
        return
    for key in ("path", "channels", "synthetic_counts"):
        if key in ds:
            raise ParamsError(f"{source}: '{where}.{key}' does not apply to source {src}; remove it")
    if src == "medmnist":
        if "variant" not in ds:
            raise ParamsError(f"{source}: '{where}.variant' is required for source medmnist: "
                              "dermamnist or pneumoniamnist")
        if ds["image_size"] not in MEDMNIST_SIZES:
            raise ParamsError(f"{source}: '{where}.image_size' = {ds['image_size']} is not a MedMNIST size; "
                              f"allowed values: {', '.join(map(str, MEDMNIST_SIZES))}")
    known = source_classes(src, ds.get("variant"))
    for cls in ds["classes"]:
        if cls not in known:
            raise ParamsError(f"{source}: '{where}.classes' keeps {cls!r}, which source {src} does not have; "
                              f"allowed: {', '.join(known)}")
    if ds.get("lesion_aware") and "test_fraction" not in ds["split"]:
        raise ParamsError(f"{source}: '{where}.lesion_aware' needs 'split.test_fraction' (lesions are split "
                          "by fraction, not by fixed counts)")


def _check_whitebox(cfg: dict, source: str) -> None:
    wb = cfg.get("whitebox", {})
    for name in wb.get("tables", []):
        if name not in cfg["tables"]:
            raise ParamsError(f"{source}: 'whitebox.tables' names {name!r}, not a table under 'tables'; "
                              f"tables: {', '.join(cfg['tables'])}")
    if wb.get("enabled") and not wb.get("attacks"):
        raise ParamsError(f"{source}: 'whitebox.attacks' is empty but 'whitebox.enabled' is true; "
                          "add attacks (e.g. pgd20_eps8: {method: pgd, eps: 8, steps: 20}) or disable it")
    for name, attack in wb.get("attacks", {}).items():
        method = attack["method"]
        extra = set(attack) - {"method"} - WHITEBOX_KEYS[method]
        if extra:
            raise ParamsError(f"{source}: 'whitebox.attacks.{name}.{sorted(extra)[0]}' does not apply to method "
                              f"{method}; allowed keys for {method}: {', '.join(sorted(WHITEBOX_KEYS[method]))}")
        if method != "fgsm" and "steps" not in attack:
            raise ParamsError(f"{source}: 'whitebox.attacks.{name}.steps' is required for {method} "
                              "(I-FGSM: 10, PGD-20: 20)")


# --------------------------------------------------------------------------- values and names (issue 15)
# Checks that the JSON schema cannot make: jsonschema lets NaN pass every bound (every comparison with NaN is
# false), accepts 6.0 as an integer, and has no say about derived names. Called from ``validate_params``.

NAME_MAX_DERIVED = 200  # a file name is at most 255 bytes; suffixes such as '_hgd', '_vs_paper.csv' need room
NAME_RULE = "use letters, digits, '_', '-', '.' (starting with a letter or digit, no '..', at most {n} characters)"
# where names are keys (path of the mapping in params) and where they are values
NAME_KEY_SECTIONS = (("datasets",), ("tables",), ("attacks",), ("whitebox", "attacks"), ("combined_tables",))


def _resolve_ref(schema: dict, root: dict) -> dict:
    while isinstance(schema, dict) and "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/"):
            break
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema if isinstance(schema, dict) else {}


def _is_integer_only(schema: dict) -> bool:
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    return "integer" in kinds and "number" not in kinds


def _walk_values(value: Any, schema: dict, root: dict, parts: list, source: str) -> None:
    schema = _resolve_ref(schema, root)
    where = _path(parts)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ParamsError(f"{source}: '{where}' = {value} is not a finite number; NaN and infinities are "
                              "refused: give a number")
        if _is_integer_only(schema):
            hint = f" (write {int(value)})" if value.is_integer() else ""
            raise ParamsError(f"{source}: '{where}' = {value!r} must be an integer, written without a decimal "
                              f"point{hint}")
    elif isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, sub in value.items():
            _walk_values(sub, props.get(key, extra if isinstance(extra, dict) else {}), root, [*parts, key], source)
    elif isinstance(value, list):
        items = schema.get("items")
        for i, sub in enumerate(value):
            _walk_values(sub, items if isinstance(items, dict) else {}, root, [*parts, i], source)


def name_schema(schema: dict | None = None) -> dict:
    """The one safe-name rule (``$defs.name`` of the schema): tables, datasets, attacks, run names ..."""
    return (schema or load_schema())["$defs"]["name"]


def is_safe_name(name: Any, schema: dict | None = None, max_length: int | None = None) -> bool:
    rule = name_schema(schema)
    return (isinstance(name, str) and re.search(rule["pattern"], name) is not None
            and len(name) <= (max_length or rule["maxLength"]))


def _unsafe_name(where: str, name: Any, source: str, limit: int) -> ParamsError:
    if not isinstance(name, str):
        return ParamsError(f"{source}: '{where}' = {name!r} is not a safe name: names must be text; quote it "
                           f"('{name}'), and {NAME_RULE.format(n=limit)}")
    return ParamsError(f"{source}: '{where}' is not a safe name: {NAME_RULE.format(n=limit)}; it becomes part of "
                       "file paths and job commands")


def check_values_and_names(config: Any, schema: dict, source: str) -> None:
    """NaN/inf anywhere, a float where the schema says integer, and every name against ``$defs.name``:
    one ParamsError naming the key. Runs on the raw config, before the schema (so a non-dict is skipped)."""
    if not isinstance(config, dict):
        return
    _walk_values(config, schema, schema, [], source)
    limit = name_schema(schema)["maxLength"]
    for section in NAME_KEY_SECTIONS:
        node: Any = config
        for part in section:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            for name in node:
                if not is_safe_name(name, schema):
                    raise _unsafe_name(".".join(section) + f".{name}", name, source, limit)
    if "run" in config and not is_safe_name(config["run"], schema):
        raise _unsafe_name("run", config["run"], source, limit)
    for section in ("tables", "combined_tables"):  # values that name files: paper/<file>, datasets
        for tname, table in (config.get(section) or {}).items() if isinstance(config.get(section), dict) else ():
            for key in ("paper", "dataset"):
                if isinstance(table, dict) and key in table and not is_safe_name(table[key], schema):
                    raise _unsafe_name(f"{section}.{tname}.{key}", table[key], source, limit)
    wb_tables = config.get("whitebox", {}).get("tables") if isinstance(config.get("whitebox"), dict) else None
    for i, name in enumerate(wb_tables if isinstance(wb_tables, list) else []):
        if not is_safe_name(name, schema):
            raise _unsafe_name(f"whitebox.tables[{i}]", name, source, limit)


def check_derived_names(cfg: dict, source: str) -> None:
    """Model and denoiser names are built from dataset names, lambdas and seeds (plan.model_name): each must
    obey the same rule, with room for a longer name (a lambda of 1e300 makes a 300-digit file name)."""
    from pipeline_src.plan import build_plan  # local: plan imports config

    plan, schema = build_plan(cfg), load_schema()
    for kind, names in (("model", plan.models), ("denoiser", plan.denoisers)):
        for name in names:
            if not is_safe_name(name, schema, max_length=NAME_MAX_DERIVED):
                raise ParamsError(f"{source}: the {kind} name {name[:80]!r}{'...' if len(name) > 80 else ''} "
                                  f"({len(name)} characters), derived from a table's dataset, arch, lambdas and "
                                  f"seed, is not a safe file name: {NAME_RULE.format(n=NAME_MAX_DERIVED)}; "
                                  "shorten the dataset name or use smaller lambdas")


# --------------------------------------------------------------------------- typed stage configs

def fmt_number(x: float) -> str:
    """Canonical short form used in model names and tables: 0.1 -> '0.1', 10.0 -> '10'."""
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"not a finite number: {x}")
    return str(int(x)) if x.is_integer() else repr(x)


@dataclass(frozen=True)
class DatasetSpec:
    """How one dataset is obtained and subsampled (the paper's rules as data)."""
    source: str
    image_size: int
    classes: tuple[str, ...]
    caps: dict[str, int] = field(default_factory=dict)
    test_fraction: float | None = None
    train_count: int | None = None
    test_count: int | None = None
    synthetic_counts: dict[str, int] = field(default_factory=dict)
    path: str | None = None
    channels: int | None = None
    seed: int = 0
    # downloading sources only (None elsewhere, so the other sources' commands do not change)
    raw_dir: str | None = None         # download cache
    downloads: str | None = None       # JSON of params' URL/checksum overrides
    lesion_aware: bool | None = None   # isic2018: split by HAM10000 lesion_id
    variant: str | None = None         # medmnist: dermamnist / pneumoniamnist

    @classmethod
    def from_params(cls, ds: dict, seed: int) -> "DatasetSpec":
        split = ds["split"]
        downloading = ds["source"] in DOWNLOADING_SOURCES
        return cls(source=ds["source"], image_size=ds["image_size"], classes=tuple(ds["classes"]),
                   caps=dict(ds.get("caps", {})), test_fraction=split.get("test_fraction"),
                   train_count=split.get("train"), test_count=split.get("test"),
                   synthetic_counts=dict(ds.get("synthetic_counts", {})), path=ds.get("path"),
                   channels=ds.get("channels"), seed=seed,
                   raw_dir=ds.get("raw_dir", "data/raw") if downloading else None,
                   downloads=json.dumps(ds["downloads"], sort_keys=True) if ds.get("downloads") else None,
                   lesion_aware=ds.get("lesion_aware", False) if ds["source"] == "isic2018" else None,
                   variant=ds.get("variant"))


OMIT_IF_NONE = {"omit_if_none": True}


def recipe_options(cfg: dict, arch: str, dataset: str | None = None) -> dict:
    """The training options added with issue 18, as TrainConfig fields; today's behaviour maps to None so that
    the commands, saved configs and hashes of every model trained without them do not change.
    ``datasets.<dataset>.flips``, where given, overrides ``training.flips`` for that dataset's models."""
    t, m = cfg["training"], cfg["model"]
    schedule, flips = t.get("lr_schedule", "step"), t.get("flips", "none")
    if dataset is not None and "flips" in cfg.get("datasets", {}).get(dataset, {}):
        flips = cfg["datasets"][dataset]["flips"]
    return {"lr_schedule": None if schedule == "step" else schedule, "flips": None if flips == "none" else flips,
            "vgg_feature": m.get("vgg_feature", "last_conv") if arch == "vgg16" else None}


def config_dict(obj: Any) -> dict:
    """``dataclasses.asdict`` without the optional fields left at None (metadata ``omit_if_none``)."""
    out = dataclasses.asdict(obj)
    for f in fields(obj):
        if f.metadata.get("omit_if_none") and out[f.name] is None:
            del out[f.name]
    return out


@dataclass(frozen=True)
class TrainConfig:
    """One training configuration: arch, lambdas, seed and every hyperparameter it depends on."""
    arch: str
    lambda_n: float
    lambda_a: float
    seed: int
    epochs: int
    batch_size: int
    lr: float
    momentum: float
    weight_decay: float
    lr_milestones: tuple[int, ...]
    lr_gamma: float
    noise_sigma: float
    noisy_copies: int
    undefended_noisy_ce: bool
    neighbor_distance: str
    neighbor_detach_clean: bool
    reconstruction_distance: str
    reconstruct: str
    decoder_stage: str
    decoder_activation: str
    vgg_head: str | None  # the vgg_* fields: None for other archs (their params do not touch them)
    vgg_width: float | None
    vgg_batch_norm: bool | None
    pretrained: bool
    threads: int
    compile: bool | None = None  # GPU only: torch.compile the forward passes (None = off; keeps CPU commands)
    # Options added after the first release. None = the behaviour before them; a None field is left out of
    # the saved config and its hash (``config_dict``), so models trained without them stay byte-identical.
    lr_schedule: str | None = field(default=None, metadata=OMIT_IF_NONE)   # None = step (lr_milestones)
    flips: str | None = field(default=None, metadata=OMIT_IF_NONE)         # None = no flips
    vgg_feature: str | None = field(default=None, metadata=OMIT_IF_NONE)   # vgg16 only; None = last_conv

    @property
    def defended(self) -> bool:
        return self.lambda_n > 0 or self.lambda_a > 0

    @classmethod
    def from_params(cls, cfg: dict, arch: str, lambda_n: float, lambda_a: float, seed: int,
                    dataset: str | None = None) -> "TrainConfig":
        """``dataset``: the name under ``datasets`` the model is trained on (for its ``flips`` override)."""
        t, m, vgg = cfg["training"], cfg["model"], arch == "vgg16"
        return cls(arch=arch, lambda_n=float(lambda_n), lambda_a=float(lambda_a), seed=seed,
                   epochs=t["epochs"], batch_size=t["batch_size"], lr=float(t["lr"]), momentum=float(t["momentum"]),
                   weight_decay=float(t["weight_decay"]), lr_milestones=tuple(t["lr_milestones"]),
                   lr_gamma=float(t["lr_gamma"]), noise_sigma=float(t["noise_sigma"]),
                   noisy_copies=t["noisy_copies"], undefended_noisy_ce=t["undefended_noisy_ce"],
                   neighbor_distance=t["neighbor_distance"], neighbor_detach_clean=t["neighbor_detach_clean"],
                   reconstruction_distance=t["reconstruction_distance"], reconstruct=t["reconstruct"],
                   decoder_stage=m["decoder_stage"][arch], decoder_activation=m["decoder_activation"],
                   vgg_head=m["vgg_head"] if vgg else None, vgg_width=float(m["vgg_width"]) if vgg else None,
                   vgg_batch_norm=m["vgg_batch_norm"] if vgg else None,
                   pretrained=m["pretrained"], threads=t["threads"], compile=True if t.get("compile") else None,
                   **recipe_options(cfg, arch, dataset))


@dataclass(frozen=True)
class AttackConfig:
    """One attack, crafted on the surrogate. eps on the 0-255 scale, as in the paper."""
    method: str
    eps: float | None = None
    steps: int | None = None
    binary_search_steps: int | None = None
    stepsize: float | None = None
    confidence: float | None = None
    initial_const: float | None = None
    abort_early: bool | None = None
    batch_size: int = 256
    seed: int = 0
    threads: int = 1

    @classmethod
    def from_params(cls, cfg: dict, name: str) -> "AttackConfig":
        a = cfg["attacks"][name]
        return cls(**{k: v for k, v in a.items()}, batch_size=cfg["evaluation"]["batch_size"], seed=cfg["seed"],
                   threads=cfg["training"]["threads"])


@dataclass(frozen=True)
class WhiteboxAttack:
    """One white-box attack with every value resolved; eps and stepsize on the 0-255 scale."""
    name: str
    method: str
    eps: float
    steps: int = 1
    stepsize: float | None = None
    random_start: bool = False

    @classmethod
    def from_params(cls, name: str, a: dict) -> "WhiteboxAttack":
        method, eps = a["method"], float(a["eps"])
        steps = int(a.get("steps", 1))
        # defaults written out, so the command (and DVC's params) show the step actually used:
        # I-FGSM eps/steps as in the paper, PGD 2.5*eps/steps as in Madry et al.
        default_step = {"fgsm": None, "ifgsm": eps / steps, "pgd": 2.5 * eps / steps}[method]
        stepsize = float(a["stepsize"]) if "stepsize" in a else default_step
        return cls(name, method, eps, steps, stepsize, bool(a.get("random_start", method == "pgd")))

    def spec(self) -> str:
        """One CLI token: NAME:method=..,eps=..[,steps=..,stepsize=..,random_start=..]."""
        items = {"method": self.method, "eps": repr(self.eps)}
        if self.method != "fgsm":
            items |= {"steps": str(self.steps), "stepsize": repr(self.stepsize)}
        if self.method == "pgd":
            items["random_start"] = str(self.random_start).lower()
        return f"{self.name}:" + ",".join(f"{k}={v}" for k, v in items.items())

    @classmethod
    def parse(cls, spec: str) -> "WhiteboxAttack":
        name, _, rest = spec.partition(":")
        try:
            items = dict(item.split("=", 1) for item in rest.split(","))
            return cls(name, items["method"], float(items["eps"]), int(items.get("steps", 1)),
                       float(items["stepsize"]) if "stepsize" in items else None,
                       items.get("random_start", "false") == "true")
        except (KeyError, ValueError) as err:
            raise ValueError(f"white-box attack {spec!r} is not NAME:method=..,eps=..[,steps=..,stepsize=..,"
                             f"random_start=true|false] ({err})") from None


@dataclass(frozen=True)
class WhiteboxConfig:
    """The white-box evaluation of one model: attacks as ``WhiteboxAttack.spec`` tokens (table column order)."""
    attacks: tuple[str, ...]
    max_images: int = 0
    batch_size: int = 256
    seed: int = 0
    threads: int = 1

    @classmethod
    def from_params(cls, cfg: dict, columns: tuple[str, ...]) -> "WhiteboxConfig":
        wb = cfg["whitebox"]
        return cls(attacks=tuple(WhiteboxAttack.from_params(n, wb["attacks"][n]).spec() for n in columns),
                   max_images=wb["max_images"], batch_size=cfg["evaluation"]["batch_size"], seed=cfg["seed"],
                   threads=cfg["training"]["threads"])

    def parsed(self) -> list[WhiteboxAttack]:
        return [WhiteboxAttack.parse(s) for s in self.attacks]


# --------------------------------------------------------------------------- audit (issue 16, docs/audit.md)

AUDIT_KEYS = {"mi_fgsm": {"eps", "steps", "stepsize", "decay", "surrogate"},
              "di_fgsm": {"eps", "steps", "stepsize", "decay", "p", "resize_rate", "surrogate"}}


def _check_audit(cfg: dict, source: str) -> None:
    """What the schema cannot say about the 'audit' section."""
    au = cfg.get("audit", {})
    for name in au.get("tables", []):
        if name not in cfg["tables"]:
            raise ParamsError(f"{source}: 'audit.tables' names {name!r}, not a table under 'tables'; "
                              f"tables: {', '.join(cfg['tables'])}")
    reserved = {"clean", *(f"autoattack_eps{fmt_number(e)}" for e in au.get("autoattack", {}).get("eps", [])),
                f"square_eps{fmt_number(au.get('square', {}).get('eps', 8))}", "pgd_unbounded"}
    for name, attack in au.get("transfer", {}).items():
        method = attack["method"]
        extra = set(attack) - {"method"} - AUDIT_KEYS[method]
        if extra:
            raise ParamsError(f"{source}: 'audit.transfer.{name}.{sorted(extra)[0]}' does not apply to method "
                              f"{method}; allowed keys for {method}: {', '.join(sorted(AUDIT_KEYS[method]))}")
        if name in reserved or name in cfg["attacks"]:
            raise ParamsError(f"{source}: 'audit.transfer.{name}' reuses the name of another column "
                              f"({'an attack under attacks' if name in cfg['attacks'] else 'an audit column'}); "
                              "rename it")
    wb = cfg.get("whitebox", {})
    shared = set(au.get("tables", cfg["tables"])) & set(wb.get("tables", cfg["tables"]))
    if au.get("enabled") and wb.get("enabled") and shared and wb.get("max_images", 0) > 0 \
            and not 0 < au.get("max_images", 0) <= wb["max_images"]:
        raise ParamsError(f"{source}: 'audit.max_images' = {au.get('max_images', 0)} (0 = all) exceeds "
                          f"'whitebox.max_images' = {wb['max_images']}: the audit compares with the white-box attacks "
                          "on the same images; set audit.max_images to at most whitebox.max_images (or both to 0)")
    archs = au.get("ensemble", {}).get("archs", [])
    if au.get("enabled") and any(a.get("surrogate") == "ensemble" for a in au.get("transfer", {}).values()) \
            and cfg["surrogate"]["arch"] not in archs:
        raise ParamsError(f"{source}: 'audit.ensemble.archs' ({', '.join(archs)}) lacks the surrogate's arch "
                          f"{cfg['surrogate']['arch']!r} ('surrogate.arch'): the ensemble extends the surrogate")


@dataclass(frozen=True)
class AuditTransfer:
    """One transfer attack of the audit, every value resolved; eps and stepsize on the 0-255 scale."""
    name: str
    method: str
    eps: float
    steps: int
    stepsize: float
    decay: float
    surrogate: str = "surrogate"
    p: float = 0.5
    resize_rate: float = 1.1

    @classmethod
    def from_params(cls, name: str, a: dict) -> "AuditTransfer":
        eps, steps = float(a["eps"]), int(a.get("steps", 10))
        return cls(name, a["method"], eps, steps, float(a.get("stepsize", eps / steps)),
                   float(a.get("decay", 1.0 if a["method"] == "mi_fgsm" else 0.0)), a.get("surrogate", "surrogate"),
                   float(a.get("p", 0.5)), float(a.get("resize_rate", 1.1)))


@dataclass(frozen=True)
class AuditConfig:
    """The audit's section of params.yaml, resolved (audit.py, audit_tables.py)."""
    transfer: tuple[AuditTransfer, ...] = ()
    ensemble_archs: tuple[str, ...] = ("resnet18", "vgg16", "mobilenetv2")
    max_images: int = 0
    square_eps: float = 8.0
    square_queries: int = 1000
    square_p_init: float = 0.8
    autoattack_version: str = "standard"
    autoattack_eps: tuple[float, ...] = (4.0, 8.0)
    unbounded_eps: float = 255.0
    unbounded_steps: int = 100
    masking_threshold: float = 10.0
    eps_tolerance_images: int = 1
    significance: float = 0.05
    batch_size: int = 256
    seed: int = 0
    threads: int = 1

    @classmethod
    def from_params(cls, cfg: dict) -> "AuditConfig":
        au = cfg["audit"]
        return cls(transfer=tuple(AuditTransfer.from_params(n, a) for n, a in au["transfer"].items()),
                   ensemble_archs=tuple(au["ensemble"]["archs"]), max_images=au["max_images"],
                   square_eps=float(au["square"]["eps"]), square_queries=au["square"]["queries"],
                   square_p_init=float(au["square"]["p_init"]), autoattack_version=au["autoattack"]["version"],
                   autoattack_eps=tuple(float(e) for e in au["autoattack"]["eps"]),
                   unbounded_eps=float(au["unbounded"]["eps"]), unbounded_steps=au["unbounded"]["steps"],
                   masking_threshold=float(au["masking_threshold"]), eps_tolerance_images=au["eps_tolerance_images"],
                   significance=float(au["significance"]), batch_size=cfg["evaluation"]["batch_size"],
                   seed=cfg["seed"], threads=cfg["training"]["threads"])

    @property
    def square_column(self) -> str:
        return f"square_eps{fmt_number(self.square_eps)}"

    def autoattack_columns(self) -> dict[str, float]:
        return {f"autoattack_eps{fmt_number(e)}": e for e in self.autoattack_eps}

    def transfer_by_name(self, name: str) -> AuditTransfer:
        for attack in self.transfer:
            if attack.name == name:
                return attack
        raise KeyError(f"no audit transfer attack {name!r}; defined: {', '.join(a.name for a in self.transfer)}")


def config_hash(obj: Any) -> str:
    """Stable short hash of a dataclass config, stored in checkpoints to refuse resuming a different run."""
    import hashlib

    blob = json.dumps(config_dict(obj), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
