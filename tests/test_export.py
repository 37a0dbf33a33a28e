"""`make export`: three standalone repos that clone, test and work together on their own."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.processes import ROOT, Worker, clean_env, stop_all
from tests.conftest import Broker
from tests.test_end_to_end import ARTICLE_SNIPPET
from tests.test_submodules import git


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("export")
    out = subprocess.run(["make", "--no-print-directory", "export", f"DEST={dest}"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return dest


@pytest.fixture(scope="module")
def clones(exported: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each exported repo cloned on its own, with its submodule checked out."""
    work = tmp_path_factory.mktemp("standalone")
    paths = {}
    for repo in ("celery_tasks", "producer", "consumer"):
        git("clone", "--quiet", str(exported / f"{repo}.git"), str(work / repo), cwd=work)
        git("-c", "protocol.file.allow=always", "submodule", "update", "--init",
            cwd=work / repo)
        paths[repo] = work / repo
    return paths


def test_export_writes_three_bare_repos_with_history(exported: Path) -> None:
    for repo in ("celery_tasks", "producer", "consumer"):
        count = git("--git-dir", str(exported / f"{repo}.git"), "rev-list", "--count", "main",
                    cwd=exported)
        assert int(count) >= 1
    gitmodules = git("--git-dir", str(exported / "producer.git"), "show", "main:.gitmodules",
                     cwd=exported)
    assert "url = ../celery_tasks.git" in gitmodules


@pytest.mark.parametrize("repo", ["celery_tasks", "producer", "consumer"])
def test_each_standalone_repo_passes_its_own_tests(clones: dict[str, Path], repo: str) -> None:
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                         cwd=clones[repo], capture_output=True, text=True, timeout=300,
                         env=clean_env({}))
    assert out.returncode == 0, out.stdout + out.stderr
    assert " passed" in out.stdout


@pytest.fixture
def standalone_worker(clones: dict[str, Path], broker: Broker, broker_env: dict[str, str],
                      tmp_path: Path) -> Iterator[Worker]:
    worker = Worker("unique_magic_task", broker_env, tmp_path, cwd=clones["consumer"])
    yield worker.start()
    stop_all([worker])


def test_the_article_round_trip_between_standalone_clones(
    clones: dict[str, Path], standalone_worker: Worker, broker_env: dict[str, str]
) -> None:
    out = subprocess.run([sys.executable, "-c", ARTICLE_SNIPPET], cwd=clones["producer"],
                         env=clean_env(broker_env), capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stdout.strip()) == (0, "6"), out.stderr
    assert len(standalone_worker.received()) == 1
