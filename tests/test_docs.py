"""The docs match the code: settings, exit codes, command-line options, the harness's
variables, links and the commands README and docs tell users to run.

Each command's `--help` is run for real, against a broker address nothing listens on:
it must answer without doing any work.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from celery_tasks.core import errors
from celery_tasks.core.settings import DEFAULTS
from harness import services

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = (ROOT / "docs" / "reference.md").read_text()
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# A broker address nothing answers at: a command that tried to connect would fail.
NO_BROKER = {"CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:1//", "BROKER_CONNECT_TIMEOUT": "1"}


def section(text: str, heading: str) -> str:
    """The body of `## heading` (up to the next `## `)."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"docs/reference.md has no '## {heading}' section"
    return match.group(1)


def table_rows(text: str) -> list[list[str]]:
    """The cells of every Markdown table row in `text`, header and rule rows left out."""
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in text.splitlines() if line.startswith("|")]
    return [row for row in rows[1:] if not set(row[0]) <= set("-: ")]


def tables_after(text: str, marker: str) -> list[list[str]]:
    """The rows of the first table after the line holding `marker`."""
    start = text.index(marker)
    block = text[start:].split("\n\n", 2)
    table = next(part for part in block[1:] if part.lstrip().startswith("|"))
    return table_rows(table)


def names_in(cell: str) -> list[str]:
    return re.findall(r"`([A-Z][A-Z0-9_]+)`", cell)


def test_every_setting_is_documented_with_its_default() -> None:
    rows = table_rows(section(REFERENCE, "Settings"))
    documented = {name: row[1] for row in rows for name in names_in(row[0])}
    assert set(documented) == set(DEFAULTS), (
        f"only in the code: {sorted(set(DEFAULTS) - set(documented))}; "
        f"only in the docs: {sorted(set(documented) - set(DEFAULTS))}")
    for name, default in DEFAULTS.items():
        if default:
            assert documented[name] == f"`{default}`", (name, documented[name], default)


def test_every_exit_code_is_documented() -> None:
    in_code = {value for key, value in vars(errors).items()
               if key.startswith("EXIT_") and isinstance(value, int)}
    documented = {int(row[0]) for row in table_rows(section(REFERENCE, "Exit codes"))}
    assert documented == in_code


def options_of(help_output: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", help_output)) - {"--help"}


def documented_options(heading_marker: str) -> set[str]:
    cells = [row[0] for row in tables_after(section(REFERENCE, "Command lines"), heading_marker)]
    return {option for cell in cells for option in re.findall(r"--[a-z][a-z-]*", cell)}


@pytest.mark.parametrize(("marker", "command", "folder", "codes_column"), [
    ("`python -m producer`", "producer", "producer", 1),
    ("`python -m consumer`", "consumer", "consumer", 2),
    ("`python -m celery_tasks`", "celery_tasks", "producer", None),
    ("`python -m celery_tasks diff REF`", "celery_tasks diff", "producer", None),
    ("`python -m celery_tasks status`", "celery_tasks status", "producer", None),
    ("`python -m celery_tasks asyncapi`", "celery_tasks asyncapi", "producer", None),
    ("`python -m bench`", "bench", ".", None),
])
def test_every_command_line_option_is_documented(
        marker: str, command: str, folder: str, codes_column: int | None) -> None:
    env = {**os.environ, **NO_BROKER}
    result = subprocess.run([sys.executable, "-m", *command.split(), "--help"], cwd=ROOT / folder,
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    # Only the examples mention other commands' options: compare the option list alone.
    listing = result.stdout.split("examples:")[0]
    assert options_of(listing) == documented_options(marker), command
    if codes_column is not None:
        # The exit codes --help prints are the ones the table gives this command.
        printed = {int(code) for code in
                   re.findall(r"^  (\d+) ", result.stdout.split("exit codes:")[1], re.M)}
        table = table_rows(section(REFERENCE, "Exit codes"))
        documented = {int(row[0]) for row in table if row[codes_column] != "—"}
        assert printed == documented, command


def test_bench_help_does_no_work() -> None:
    latest = ROOT / "bench" / "results" / "latest.json"
    before = latest.stat().st_mtime_ns if latest.exists() else None
    result = subprocess.run([sys.executable, "-m", "bench", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and "BENCH_N" in result.stdout
    assert (latest.stat().st_mtime_ns if latest.exists() else None) == before


def test_every_harness_variable_is_documented_with_its_default() -> None:
    rows = table_rows(section(REFERENCE, "The harness's services"))
    documented = {name for row in rows for name in names_in(row[0])}
    assert documented == set(services.DEFAULTS)
    for row in rows:
        names = names_in(row[0])
        defaults = re.findall(r"`([^`]+)`", row[1])
        # One default per name, in the same order.
        assert defaults == [services.DEFAULTS[name] for name in names], names


def make_targets() -> set[str]:
    makefile = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z-]*):", makefile, re.M))


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_links_resolve_and_make_targets_exist(doc: Path) -> None:
    text = doc.read_text()
    for link in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
        assert (doc.parent / link).exists(), f"{doc.name}: broken link {link}"
    targets = make_targets()
    for target in re.findall(r"(?:`|^ {4,}|&& )make ([a-z][a-z-]*)", text, re.M):
        assert target in targets, f"{doc.name}: `make {target}` is no Makefile target"


def test_env_example_holds_only_known_keys() -> None:
    from celery_tasks.core.settings import ALIASES, ENV_FILE_VARIABLE, FOREIGN_KEYS

    keys = {line.split("=", 1)[0].strip() for line in
            (ROOT / ".env.example").read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")}
    assert keys
    assert keys <= DEFAULTS.keys() | ALIASES.keys() | FOREIGN_KEYS | {ENV_FILE_VARIABLE}


def test_performance_page_shows_the_latest_run() -> None:
    from bench.__main__ import RESULTS, docs_block

    report = json.loads((RESULTS / "latest.json").read_text())
    assert docs_block(report) in (ROOT / "docs" / "performance.md").read_text()


SCRIPTS = [["bash", str(path)] for path in sorted((ROOT / "scripts").glob("*.sh"))] + [
    [sys.executable, str(path)] for path in sorted((ROOT / "scripts").glob("*.py"))] + [
    ["bash", str(ROOT / "docker" / "engine.sh")],
    ["bash", str(ROOT / "docker" / "build-stand-ins.sh")],
    [sys.executable, "-m", "harness.demo"]]


@pytest.mark.parametrize("command", SCRIPTS, ids=lambda command: command[-1].split("/")[-1])
def test_every_script_answers_help_and_does_nothing_else(command: list[str]) -> None:
    def state() -> tuple[str, bool]:
        status = subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=ROOT,
                                capture_output=True, text=True, check=True).stdout
        return status, (ROOT / ".env").exists()

    before = state()
    result = subprocess.run([*command, "--help"], cwd=ROOT, env={**os.environ, **NO_BROKER},
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) >= 2 and "Traceback" not in result.stderr
    assert state() == before
