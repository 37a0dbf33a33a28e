"""`python -m celery_tasks diff REF` on real git commits in a temporary repository: each
kind of contract change classified, with the deploy order and the exit code."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from celery_tasks.core.errors import EXIT_BREAKING, EXIT_OK, EXIT_USAGE

PACKAGE = Path(__file__).resolve().parents[1]
DIVIDE = "    def run(self, a: float, b: float) -> float:"
DIGITS = "    def run(self, a: float, b: float, digits: int = 3) -> float:"
GIT = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
       "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_GLOBAL": "/dev/null"}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, env={**os.environ, **GIT},
                          capture_output=True, text=True, check=True, timeout=60).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository holding this package at celery_tasks/, committed (tag `base`)."""
    root = tmp_path / "repo"
    shutil.copytree(PACKAGE, root / "celery_tasks", ignore=shutil.ignore_patterns(
        ".git", "__pycache__", "*.egg-info", "build", ".*_cache", "COMMIT"))
    git(root, "init", "--quiet")
    git(root, "add", "-A")
    git(root, "commit", "--quiet", "-m", "base")
    git(root, "tag", "base")
    return root


def edit(repo: Path, old: str, new: str, commit: str | None = None) -> None:
    tasks = repo / "celery_tasks" / "tasks.py"
    text = tasks.read_text()
    assert old in text
    tasks.write_text(text.replace(old, new))
    if commit:
        git(repo, "commit", "--quiet", "-am", commit)
        git(repo, "tag", "-f", commit)


def diff(repo: Path, ref: str, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-m", "celery_tasks", "diff", ref, *extra],
                          cwd=repo, env=env, capture_output=True, text=True, timeout=120)


def verdicts(repo: Path, ref: str) -> tuple[int, dict[str, dict]]:
    out = diff(repo, ref, "--json")
    assert "Traceback" not in out.stderr, out.stderr
    return out.returncode, {c["name"]: c for c in json.loads(out.stdout)["contracts"]}


@pytest.mark.parametrize(("base", "new", "verdict", "mode", "reason"), [
    (DIVIDE, DIVIDE, "unchanged", "FULL", None),
    (DIVIDE, DIGITS, "compatible, deploy consumers first", "BACKWARD", "old producers"),
    (DIGITS, DIVIDE, "compatible, deploy producers first", "FORWARD", "old workers"),
    (DIGITS, DIGITS.replace("= 3", "= 4"), "BREAKING", None, "default of 'digits' changed"),
    (DIVIDE, DIVIDE.replace(", b: float", ""), "BREAKING", None, "parameter 'b' removed"),
    (DIVIDE, DIVIDE.replace("b: float", "divisor: float"), "BREAKING", None,
     "parameter 'b' renamed to 'divisor'"),
    (DIVIDE, DIVIDE.replace("b: float", "b: int"), "BREAKING", None,
     "parameter 'b' retyped (number -> integer)"),
    (DIVIDE, DIVIDE.replace("a: float, b: float", "b: float, a: float"), "BREAKING", None,
     "parameters reordered (a, b -> b, a)"),
    (DIVIDE, DIVIDE.replace("b: float)", "b: float, c: float)"), "BREAKING", None,
     "new required parameter 'c'"),
    (DIVIDE, DIVIDE.replace("-> float", "-> str"), "BREAKING", None,
     "other return type (number -> string)"),
])
def test_each_kind_of_change_is_classified_with_its_deploy_order(
    repo: Path, base: str, new: str, verdict: str, mode: str | None, reason: str | None
) -> None:
    if base != DIVIDE:
        edit(repo, DIVIDE, base, commit="deployed")
    edit(repo, base, new)
    code, found = verdicts(repo, "deployed" if base != DIVIDE else "base")
    divide = found["divide"]
    assert (divide["verdict"], divide["mode"]) == (verdict, mode)
    assert reason is None or reason in divide["reason"], divide["reason"]
    assert code == (EXIT_BREAKING if verdict == "BREAKING" else EXIT_OK)
    others = {name: (c["verdict"], c["mode"]) for name, c in found.items() if name != "divide"}
    assert set(others.values()) == {("unchanged", "FULL")}


def test_a_new_task_is_compatible_and_a_removed_one_breaking(repo: Path) -> None:
    edit(repo, 'name = "divide"', 'name = "divide_v2"')
    code, found = verdicts(repo, "base")
    assert found["divide_v2"]["verdict"] == "compatible, deploy consumers first"
    assert found["divide"]["verdict"] == "BREAKING"
    assert "task removed" in found["divide"]["reason"]
    assert code == EXIT_BREAKING
    text = diff(repo, "base")
    assert "divide: BREAKING: task removed" in text.stdout
    assert "instead, keep the contract until no producer sends it" in text.stdout


def test_a_breaking_change_says_what_to_do_instead(repo: Path) -> None:
    edit(repo, DIVIDE, DIVIDE.replace("b: float)", "b: float, c: float)"))
    out = diff(repo, "base")
    assert out.returncode == EXIT_BREAKING
    assert ("divide: BREAKING: new required parameter 'c'; instead, add the new version as "
            "a new task (a new name, e.g. divide_v2) beside the old one") in out.stdout


def test_the_working_tree_and_a_committed_change_compare_alike(repo: Path) -> None:
    edit(repo, DIVIDE, DIGITS, commit="later")
    assert verdicts(repo, "base")[1]["divide"]["mode"] == "BACKWARD"
    assert verdicts(repo, "later")[1]["divide"]["verdict"] == "unchanged"


@pytest.mark.parametrize(("ref", "says"), [("nope", "unknown git ref 'nope'")])
def test_an_unknown_ref_is_exit_2_in_one_line(repo: Path, ref: str, says: str) -> None:
    out = diff(repo, ref)
    assert out.returncode == EXIT_USAGE and says in out.stderr
    assert len(out.stderr.splitlines()) == 1


def test_outside_a_git_checkout_is_exit_2_in_one_line(repo: Path) -> None:
    shutil.rmtree(repo / ".git")
    out = diff(repo, "HEAD")
    assert out.returncode == EXIT_USAGE and "is not in a git checkout" in out.stderr
    assert len(out.stderr.splitlines()) == 1
