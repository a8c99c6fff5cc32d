"""YAML as this project reads it: PyYAML's safe loader, but a key given twice in one mapping is an error.

Plain YAML keeps the last of two equal keys silently, so a second ``lr:`` further down params.yaml would
win without a word. Here it stops with the file, the line and the key. Merge keys (``<<: *base``) still
work: a key of the mapping itself may override a merged one, as YAML intends.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import yaml

# libyaml's parser when PyYAML was built with it (the wheels are): params.yaml and the schema are read at every
# Snakemake start, and the pure-Python parser took 0.47 s of a 3.7 s dry run. The constructor, where duplicate
# keys are caught, is Python either way; marks carry the same names and lines.
_SafeBase: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlError(ValueError):
    """A YAML file cannot be read: a syntax error or a duplicated key (the message names file and line)."""


class StrictLoader(_SafeBase):  # type: ignore[misc, valid-type]
    """PyYAML's safe loader that refuses a key repeated within one mapping."""


def _construct_mapping(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.get(key)
        except TypeError:  # an unhashable key: SafeLoader's own error says so
            break
        line = key_node.start_mark.line + 1
        if first is not None:
            raise YamlError(f"{key_node.start_mark.name}, line {line}: key {key!r} is given twice in the same "
                            f"mapping (first on line {first}); keep one (YAML would silently use the last)")
        seen[key] = line
    return _SafeBase.construct_mapping(loader, node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def loads(text: str, name: str = "<string>") -> Any:
    """Parse YAML text strictly; ``name`` is what messages call it."""
    stream = io.StringIO(text)
    stream.name = name  # both parsers take the marks' name from the stream
    loader = StrictLoader(stream)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as err:
        raise YamlError(f"{name}: not valid YAML: {err}") from None
    finally:
        loader.dispose()


def load(path: str | Path) -> Any:
    """Parse one YAML file strictly (UTF-8, a BOM allowed)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise YamlError(f"{path}: not UTF-8 text ({err}); save it as UTF-8") from None
    return loads(text, str(path))
