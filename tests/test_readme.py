"""The README and docs/ against the code: a drift test.

Each check is a pure function of the documents' text (and the repository it describes) that returns the
problems it found; the positive tests run it on the real README.md and docs/*.md, and the negative cases
run it on a copy broken in one way, so every check is shown to be able to fail.
"""
from __future__ import annotations

import argparse
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAX_README_LINES = 250

FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
INLINE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
CONFIG = re.compile(r"\bconfigs/([A-Za-z0-9_.-]+\.yaml)\b")
CLI = re.compile(r"python -m pipeline_src(?![.\w])((?:\s+[A-Za-z<-][\w<>-]*)*)")
STAGE = re.compile(r"python -m pipeline_src\.stages\.([A-Za-z_]\w*)")
MAKE = re.compile(r"(?:^|[\s;&|(])make\s+([a-z][\w-]*)")
PATHLIKE = re.compile(r"(?<![\w/<.-])((?:[A-Za-z0-9_.-]+/)+[A-Za-z0-9_.*-]*)")


# --------------------------------------------------------------------------- the documents and the repository

def readme_text() -> str:
    return (REPO / "README.md").read_text()


def docs_texts() -> dict[str, str]:
    return {str(p.relative_to(REPO)): p.read_text() for p in sorted((REPO / "docs").rglob("*.md"))}


def all_texts(readme: str) -> dict[str, str]:
    return {"README.md": readme, **docs_texts()}


def tracked_top_level_dirs() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        pytest.skip(f"not a git checkout ({err}): the Layout check needs `git ls-files`")
    return sorted({line.split("/")[0] for line in out.splitlines()
                   if "/" in line and not line.startswith(".")})


def code_spans(text: str) -> list[str]:
    """Fenced blocks and inline code: where commands are written (prose uses 'make' as a verb)."""
    fenced = FENCE.findall(text)
    rest = FENCE.sub("", text)
    return fenced + INLINE.findall(rest)


def section(text: str, heading: str) -> str:
    start = text.index(f"## {heading}")
    nxt = text.find("\n## ", start + 1)
    return text[start: nxt if nxt >= 0 else len(text)]


# --------------------------------------------------------------------------- the checks

def layout_problems(readme: str, top_dirs: list[str], repo: Path = REPO) -> list[str]:
    """Every tracked top-level directory is in Layout; every path Layout names exists."""
    layout = section(readme, "Layout")
    block = FENCE.search(layout)
    if not block:
        return ["Layout has no code block listing the tree"]
    named, problems = set(), []
    for line in block.group(0).splitlines()[1:-1]:
        if not line.strip():
            continue
        column = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]
        description = line.strip()[len(column):]
        for entry in (e.strip() for e in column.split(",")):
            named.add(entry.rstrip("/").split("/")[0])
            if not list(repo.glob(entry.rstrip("/"))):
                problems.append(f"Layout names {entry!r}, which does not exist")
        for path in PATHLIKE.findall(description):  # paths in the descriptions, when rooted at a tracked entry
            if path.split("/")[0] in top_dirs and not list(repo.glob(path.rstrip("/"))):
                problems.append(f"Layout's description names {path!r}, which does not exist")
    problems += [f"tracked directory {d}/ is missing from Layout" for d in top_dirs if d not in named]
    return problems


def cli_subcommands() -> dict[str, set[str]]:
    """`python -m pipeline_src` subcommands -> their own subcommands (empty when they have none)."""
    from pipeline_src.cli import build_parser

    def choices(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
        for action in parser._actions:  # argparse has no public accessor for subparsers
            if isinstance(action, argparse._SubParsersAction):
                return dict(action.choices)
        return {}

    return {name: set(choices(sub)) for name, sub in choices(build_parser()).items()}


def cli_problems(texts: dict[str, str], commands: dict[str, set[str]], repo: Path = REPO) -> list[str]:
    problems = []
    for name, text in texts.items():
        for match in CLI.finditer(text):
            words = match.group(1).split()
            words = [w for w in words if not w.startswith("-")][:2]
            if not words or words[0].startswith("<"):
                problems.append(f"{name}: `{match.group(0).strip()}` names no subcommand "
                                f"(real ones: {', '.join(sorted(commands))})")
                continue
            sub = words[0]
            if sub not in commands:
                problems.append(f"{name}: `python -m pipeline_src {sub}` is not a subcommand of pipeline_src/cli.py "
                                f"(real ones: {', '.join(sorted(commands))})")
            elif commands[sub] and len(words) > 1 and words[1] not in commands[sub]:
                problems.append(f"{name}: `python -m pipeline_src {sub} {words[1]}`: {sub} has only "
                                f"{', '.join(sorted(commands[sub]))}")
        for stage in STAGE.findall(text):
            if stage.startswith("_") or not (repo / "pipeline_src" / "stages" / f"{stage}.py").is_file():
                problems.append(f"{name}: `python -m pipeline_src.stages.{stage}` is not a stage module")
    return problems


def make_targets(repo: Path = REPO) -> set[str]:
    text = (repo / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w-]*)\s*:(?!=)", text, re.MULTILINE))


def make_problems(texts: dict[str, str], targets: set[str]) -> list[str]:
    return [f"{name}: `make {target}` is not a Makefile target ({', '.join(sorted(targets))})"
            for name, text in texts.items() for span in code_spans(text) for target in MAKE.findall(span)
            if target not in targets]


def link_problems(texts: dict[str, str], repo: Path = REPO) -> list[str]:
    problems = []
    for name, text in texts.items():
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # a URL, or an anchor in the same file
            path = target.split("#", 1)[0]
            if not ((repo / name).parent / path).exists():
                problems.append(f"{name}: link to {target!r}, which does not exist")
    return problems


def config_problems(texts: dict[str, str], repo: Path = REPO) -> list[str]:
    problems = [f"{name}: names configs/{c}, which does not exist"
                for name, text in texts.items() for c in CONFIG.findall(text) if not (repo / "configs" / c).is_file()]
    in_readme = set(CONFIG.findall(texts["README.md"]))
    problems += [f"configs/{p.name} is not mentioned in README.md"
                 for p in sorted((repo / "configs").glob("*")) if p.is_file() and p.name not in in_readme]
    return problems


def config_comment_texts(repo: Path = REPO) -> dict[str, str]:
    """The usage lines in configs/*.yaml's comments, as text (a user copies those commands too)."""
    return {str(p.relative_to(repo)): "\n".join(line.lstrip("#")[1:] for line in p.read_text().splitlines()
                                               if line.startswith("#"))
            for p in sorted((repo / "configs").glob("*.yaml"))}


def snakemake_commands(texts: dict[str, str]) -> Iterator[tuple[str, str]]:
    """(document, the words after `snakemake`) for every command line, continuation lines joined; markdown is
    read in its code spans, a config's comment text whole."""
    for name, text in texts.items():
        for span in code_spans(text) if name.endswith(".md") else [text]:
            for line in span.replace("\\\n", " ").splitlines():
                for match in re.finditer(r"(?:^|[\s(])snakemake\s+(.*)", line):
                    yield name, match.group(1).strip()


def snakemake_problems(texts: dict[str, str], repo: Path = REPO) -> list[str]:
    """Every `snakemake ...` command, parsed by Snakemake's own argument parser: `--configfile` takes every
    word after it, so a target written after it is read as a config file (YAML-parsing a CSV path fails)."""
    import shlex

    from snakemake.cli import get_argument_parser

    parser = get_argument_parser()
    problems = []
    for name, command in snakemake_commands(texts):
        try:
            words = shlex.split(command, comments=True)
        except ValueError:
            continue  # unbalanced quotes: prose in backticks, not a command
        try:
            args = parser.parse_args(words)
        except SystemExit:
            problems.append(f"{name}: `snakemake {command}` does not parse")
            continue
        for conf in args.configfile or []:
            if "<" in str(conf):
                continue  # a placeholder: configs/<x>.yaml
            if Path(conf).suffix not in {".yaml", ".yml", ".json"} or not (repo / conf).is_file():
                problems.append(f"{name}: `snakemake {command}` reads {conf} as a config file: "
                                "put the targets before --configfile")
    return problems


def length_problems(readme: str) -> list[str]:
    n = len(readme.splitlines())
    return [f"README.md has {n} lines (at most {MAX_README_LINES}: move detail to docs/)"] if n > MAX_README_LINES else []


# --------------------------------------------------------------------------- the real documents

def test_layout_lists_every_tracked_directory_and_only_paths_that_exist():
    assert layout_problems(readme_text(), tracked_top_level_dirs()) == []


def test_every_pipeline_src_command_in_the_docs_exists():
    commands = cli_subcommands()
    assert {"validate", "summary", "dvc-yaml", "tracking"} <= set(commands)  # the parse itself found them
    texts = all_texts(readme_text())
    assert any(CLI.search(t) for t in texts.values()) and any(STAGE.search(t) for t in texts.values())
    assert cli_problems(texts, commands) == []


def test_every_make_target_in_the_docs_exists():
    targets = make_targets()
    assert {"run", "test", "test-fast", "audit", "dvc-yaml"} <= targets
    texts = all_texts(readme_text())
    assert any(MAKE.search(s) for s in code_spans(texts["README.md"]))
    assert make_problems(texts, targets) == []


def test_make_reads_the_makefile_and_every_target_plans(tmp_path):
    """`make -n` of every target: a Makefile that make cannot parse (a recipe line without its tab, a target
    mangled by an edit) fails here instead of in CI's first command."""
    import shutil
    import subprocess

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    for name in ("Makefile", "requirements.lock", "pyproject.toml"):  # what the recipes' prerequisites name
        shutil.copy(REPO / name, tmp_path / name)
    targets = sorted(make_targets())
    result = subprocess.run(["make", "-n", *targets], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "snakemake --cores" in result.stdout and "pytest" in result.stdout


def test_every_relative_link_points_to_a_file():
    texts = all_texts(readme_text())
    assert sum(len(LINK.findall(t)) for t in texts.values()) > 10
    assert link_problems(texts) == []


def test_every_config_named_exists_and_every_config_is_in_the_readme():
    assert config_problems(all_texts(readme_text())) == []


def test_every_snakemake_command_in_the_docs_and_configs_parses_as_meant():
    texts = {**all_texts(readme_text()), **config_comment_texts()}
    assert sum(t.count("--configfile configs/") for t in texts.values()) > 5  # the commands were found
    assert snakemake_problems(texts) == []


def test_readme_is_short():
    assert length_problems(readme_text()) == []


# --------------------------------------------------------------------------- each check, broken on purpose

def _broken(kind: str) -> str:
    readme = readme_text()
    edits = {
        "layout_missing_dir": lambda t: re.sub(r"^bench/ .*\n", "", t, flags=re.MULTILINE),
        "layout_bad_path": lambda t: t.replace("paper/     ", "papers/    ", 1),
        "layout_bad_description": lambda t: t.replace("kubernetes (docs/cluster.md)", "kubernetes (docs/clusters.md)", 1),
        "cli_subcommand": lambda t: t + "\n`python -m pipeline_src frobnicate params.yaml`\n",
        "cli_nested": lambda t: t + "\n`python -m pipeline_src tracking purge`\n",
        "cli_placeholder": lambda t: t + "\n`python -m pipeline_src <stage> --help`\n",
        "stage_module": lambda t: t + "\n`python -m pipeline_src.stages.nonesuch --model X`\n",
        "make_target": lambda t: t + "\n```bash\nmake everything\n```\n",
        "link": lambda t: t + "\nSee [the manual](docs/manual.md#start).\n",
        "config_missing": lambda t: t + "\n`configs/gpu_fast.yaml`\n",
        "config_unmentioned": lambda t: t.replace("configs/na_attacker.yaml", "configs/NA"),
        "length": lambda t: t + "\n" * (MAX_README_LINES + 1 - len(t.splitlines())),
        "snakemake_target_after_configfile": lambda t: t + (
            "\n```bash\nsnakemake --cores 2 --configfile configs/smoke.yaml \\\n"
            "    results/tables/table1_skin4_resnet18.csv\n```\n"),
    }
    broken = edits[kind](readme)
    assert broken != readme, f"the {kind} edit changed nothing: update the negative case"
    return broken


@pytest.mark.parametrize("kind", ["layout_missing_dir", "layout_bad_path", "layout_bad_description", "cli_subcommand",
                                  "cli_nested", "cli_placeholder", "stage_module", "make_target", "link",
                                  "config_missing", "config_unmentioned", "length",
                                  "snakemake_target_after_configfile"])
def test_each_check_fails_on_a_broken_readme(kind):
    readme = _broken(kind)
    texts = {"README.md": readme}  # the README alone: the docs are checked above, this is about the check
    check = {
        "layout": lambda: layout_problems(readme, tracked_top_level_dirs()),
        "cli": lambda: cli_problems(texts, cli_subcommands()),
        "stage": lambda: cli_problems(texts, cli_subcommands()),
        "make": lambda: make_problems(texts, make_targets()),
        "link": lambda: link_problems(texts),
        "config": lambda: config_problems(texts),
        "length": lambda: length_problems(readme),
        "snakemake": lambda: snakemake_problems(texts),
    }[kind.split("_")[0]]
    problems = check()
    assert problems, f"{kind}: the broken README passed"
    # and the unbroken README passes the same check (the lambdas read these names when called), so it is the
    # edit that was caught
    readme, texts = readme_text(), {"README.md": readme_text()}
    assert check() == []
