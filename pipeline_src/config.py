"""Parameters: loading, validation with clear messages, and the typed configs each stage reads.

params.yaml is the single source of truth. Snakemake validates it before building the DAG, then
passes each stage only the values it depends on as CLI arguments (see ``to_cli_args``), so a
changed value re-runs exactly the jobs that read it.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import jsonschema
import yaml

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
        with path.open() as fh:
            data = yaml.safe_load(fh) or {}
        if not isinstance(data, dict):
            raise ParamsError(f"parameter file '{path}' must hold a mapping of keys, not {type(data).__name__}")
        merged = deep_merge(merged, data)
    return merged


def load_schema() -> dict:
    with SCHEMA_PATH.open() as fh:
        return yaml.safe_load(fh)


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
    schema = load_schema()
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(config),
                    key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        raise ParamsError(_describe(errors[0], source))
    cfg = copy.deepcopy(config)
    _fill_defaults(cfg, schema)
    _check_semantics(cfg, source)
    return cfg


def _check_semantics(cfg: dict, source: str) -> None:
    from pipeline_src.data.synthetic import SYNTHETIC_CLASSES  # local: keeps `import config` light

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
    from pipeline_src.combined import check_combined  # Table 4's rows (local: combined imports config)

    check_combined(cfg, source)
    _check_whitebox(cfg, source)



def _check_downloading_source(ds: dict, where: str, source: str) -> None:
    """Keys that belong to one source only, and the classes a downloading source can deliver."""
    from pipeline_src.data.catalog import MEDMNIST_SIZES, source_classes

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
    if dataset is not None and "flips" in cfg["datasets"].get(dataset, {}):
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
    vgg_head: str
    vgg_width: float
    vgg_batch_norm: bool
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
        t, m = cfg["training"], cfg["model"]
        return cls(arch=arch, lambda_n=float(lambda_n), lambda_a=float(lambda_a), seed=seed,
                   epochs=t["epochs"], batch_size=t["batch_size"], lr=float(t["lr"]), momentum=float(t["momentum"]),
                   weight_decay=float(t["weight_decay"]), lr_milestones=tuple(t["lr_milestones"]),
                   lr_gamma=float(t["lr_gamma"]), noise_sigma=float(t["noise_sigma"]),
                   noisy_copies=t["noisy_copies"], undefended_noisy_ce=t["undefended_noisy_ce"],
                   neighbor_distance=t["neighbor_distance"], neighbor_detach_clean=t["neighbor_detach_clean"],
                   reconstruction_distance=t["reconstruction_distance"], reconstruct=t["reconstruct"],
                   decoder_stage=m["decoder_stage"][arch], decoder_activation=m["decoder_activation"],
                   vgg_head=m["vgg_head"], vgg_width=float(m["vgg_width"]), vgg_batch_norm=m["vgg_batch_norm"],
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


# --------------------------------------------------------------------------- dataclass <-> CLI

def _encode(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [f"{k}={v}" for k, v in value.items()]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [str(value)]


def to_cli_args(obj: Any) -> list[str]:
    """Dataclass -> ['--key', 'value', ...]; booleans as --key / --no-key, dicts as k=v items, None omitted."""
    args: list[str] = []
    for f in fields(obj):
        value = getattr(obj, f.name)
        if value is None:
            continue
        if isinstance(value, bool):
            args.append(f"--{f.name}" if value else f"--no-{f.name}")
        else:
            args += [f"--{f.name}", *_encode(value)]
    return args


def _kv_int(item: str) -> tuple[str, int]:
    key, sep, value = item.rpartition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected NAME=COUNT, got {item!r}")
    return key, int(value)


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Mirror of ``to_cli_args``: one option per field, typed from the annotations."""
    hints = get_type_hints(cls)
    for f in fields(cls):
        hint = hints[f.name]
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        kwargs: dict[str, Any] = {"dest": f.name, "required": required}
        if not required:
            kwargs["default"] = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        origin, targs = get_origin(hint), [a for a in get_args(hint) if a is not type(None)]
        base = targs[0] if (origin is not None and origin not in (dict, tuple) and targs) else hint
        if base is bool:
            parser.add_argument(f"--{f.name}", action=argparse.BooleanOptionalAction, **kwargs)
        elif origin is dict or base is dict or get_origin(base) is dict:
            parser.add_argument(f"--{f.name}", nargs="*", type=_kv_int, **kwargs)
        elif origin is tuple or get_origin(base) is tuple:
            item = (get_args(base) or get_args(hint) or (str,))[0]
            parser.add_argument(f"--{f.name}", nargs="*", type=item, **kwargs)
        else:
            parser.add_argument(f"--{f.name}", type=base, **kwargs)


def from_namespace(cls: type, ns: argparse.Namespace) -> Any:
    """Inverse of ``add_dataclass_arguments``: list options become dicts or tuples by the field's type."""
    hints = get_type_hints(cls)
    values = {}
    for f in fields(cls):
        v = getattr(ns, f.name)
        if isinstance(v, list):
            v = dict(v) if get_origin(hints[f.name]) is dict else tuple(v)
        values[f.name] = v
    return cls(**values)


def config_hash(obj: Any) -> str:
    """Stable short hash of a dataclass config, stored in checkpoints to refuse resuming a different run."""
    import hashlib

    blob = json.dumps(config_dict(obj), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
