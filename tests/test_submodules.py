"""The vendored copies are real submodules, pinned to commits split from celery_tasks/."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from harness.processes import ROOT, share_venv

GIT_ENV = {"GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
           "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.invalid"}


def git(*args: str, cwd: Path) -> str:
    out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                         env={**os.environ, **GIT_ENV})
    assert out.returncode == 0, f"git {' '.join(args)}: {out.stderr}"
    return out.stdout


def make(target: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "--no-print-directory", target], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**os.environ, **GIT_ENV})


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh clone of this repository's HEAD with its submodules checked out."""
    dest = tmp_path_factory.mktemp("clone") / "harness"
    git("clone", "--quiet", str(ROOT), str(dest), cwd=ROOT)
    git("-c", "protocol.file.allow=always", "submodule", "update", "--init", cwd=dest)
    return dest


@pytest.mark.parametrize("part", ["producer", "consumer"])
def test_each_part_vendors_celery_tasks_as_a_gitlink(clone: Path, part: str) -> None:
    mode = git("ls-files", "--stage", f"{part}/celery_tasks", cwd=clone).split()[0]
    assert mode == "160000"
    assert git("config", "-f", ".gitmodules", f"submodule.{part}/celery_tasks.url",
               cwd=clone).strip() == "./"


@pytest.mark.parametrize("part", ["producer", "consumer"])
def test_a_fresh_clone_checks_out_both_copies_equal_to_the_source(clone: Path, part: str) -> None:
    for name in ("tasks.py", "utils.py", "celery_config.py", "rabbitmq_config.py"):
        assert (clone / part / "celery_tasks" / name).read_text() == (
            clone / "celery_tasks" / name).read_text()


def test_check_vendor_passes_on_the_repository(clone: Path) -> None:
    out = make("check-vendor", clone)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("ok: ") == 2


def test_a_shallow_clone_checks_out_the_submodules(tmp_path: Path) -> None:
    dest = tmp_path / "shallow"
    git("clone", "--quiet", "--depth", "1", f"file://{ROOT}", str(dest), cwd=ROOT)
    git("-c", "protocol.file.allow=always", "submodule", "update", "--init", cwd=dest)
    assert (dest / "producer" / "celery_tasks" / "tasks.py").is_file()
    assert make("check-vendor", dest).returncode == 0


def test_a_contract_change_fails_check_vendor_until_make_vendor(clone: Path) -> None:
    tasks = clone / "celery_tasks" / "tasks.py"
    tasks.write_text(tasks.read_text() + "\n# a contract change\n")
    git("commit", "--quiet", "-am", "change a contract", cwd=clone)

    lagging = make("check-vendor", clone)
    assert lagging.returncode != 0
    assert "differs from celery_tasks/ at HEAD: run 'make vendor'" in lagging.stderr

    vendored = make("vendor", clone)
    assert vendored.returncode == 0, vendored.stderr
    assert make("check-vendor", clone).returncode == 0
    for part in ("producer", "consumer"):
        assert (clone / part / "celery_tasks" / "tasks.py").read_text().endswith(
            "# a contract change\n")
    assert "Vendor celery_tasks" in git("log", "-1", "--format=%s", cwd=clone)
    assert git("status", "--porcelain", cwd=clone) == ""


def test_check_contracts_diffs_the_last_vendored_change_and_fails_on_a_breaking_one(
    tmp_path: Path
) -> None:
    """`make check-contracts` (in `make test`, so in CI) compares celery_tasks/ with the pin
    before the last `make vendor`: a vendored compatible change passes with its deploy
    order, a vendored breaking one fails (diff's exit 13)."""
    dest = tmp_path / "harness"
    git("clone", "--quiet", str(ROOT), str(dest), cwd=ROOT)
    git("-c", "protocol.file.allow=always", "submodule", "update", "--init", cwd=dest)
    share_venv(dest)
    tasks = dest / "celery_tasks" / "tasks.py"
    steps = [("    def run(self, a: float, b: float) -> float:",
              "    def run(self, a: float, b: float, digits: int = 3) -> float:"),
             ("    def run(self, a: float, b: float, digits: int = 3) -> float:",
              "    def run(self, a: float, b: float, c: float) -> float:")]
    checks = []
    for old, new in steps:
        tasks.write_text(tasks.read_text().replace(old, new))
        git("commit", "--quiet", "-am", "change the divide contract", cwd=dest)
        assert make("vendor", dest).returncode == 0
        checks.append(make("check-contracts", dest))
    compatible, breaking = checks
    assert compatible.returncode == 0, compatible.stdout + compatible.stderr
    assert "divide: compatible, deploy consumers first (BACKWARD)" in compatible.stdout
    assert breaking.returncode != 0 and "Error 13" in breaking.stderr
    assert ("divide: BREAKING: parameter 'digits' removed; new required parameter 'c'"
            in breaking.stdout), breaking.stdout
