"""How contracts changed between two versions, and in which order to deploy the change.

Compares the contracts' descriptions (fingerprint.py) of an older version (a git ref) with
this one, by task name, under the compatibility rule of fingerprint.py, in both directions:

- the same fingerprint (a docstring or an implementation changed): unchanged, deployed in
  either order (Schema Registry's FULL);
- old producers can call new workers (BACKWARD, Schema Registry's name): deploy the
  consumers first (a new optional parameter at the end);
- new producers can call old workers (FORWARD): deploy the producers first (an optional
  parameter at the end removed);
- neither: breaking, with the reason, and what to do instead. (Both BACKWARD and FORWARD
  would take equal descriptions: the same fingerprint.)

A new contract is compatible (its workers first: calls wait in its queue until they run); a
removed one is breaking while workers or queued messages may still need it.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UsageError
from .fingerprint import Description, fingerprint, incompatibility

UNCHANGED, CONSUMERS_FIRST, PRODUCERS_FIRST, BREAKING = (
    "unchanged", "compatible, deploy consumers first", "compatible, deploy producers first",
    "BREAKING")

#: What to do instead of a breaking change.
INSTEAD = ("add the new version as a new task (a new name, e.g. NAME_v2) beside the old "
           "one, move the producers to it, and remove the old one once no producer sends "
           "it and its queue is empty")


@dataclass(frozen=True)
class Change:
    """What became of one contract between the old version and the new."""

    name: str
    verdict: str
    mode: str = ""  # BACKWARD, FORWARD or FULL (Schema Registry's), where one applies
    reason: str = ""
    instead: str = ""
    old: str = ""  # fingerprints
    new: str = ""

    @property
    def breaking(self) -> bool:
        return self.verdict == BREAKING

    def line(self) -> str:
        text = f"{self.name}: {self.verdict}"
        if self.mode:
            text += f" ({self.mode})"
        if self.reason:
            text += f": {self.reason}"
        if self.instead:
            text += f"; instead, {self.instead.replace('NAME', self.name)}"
        return text

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "verdict": self.verdict, "mode": self.mode or None,
                "reason": self.reason or None, "breaking": self.breaking,
                "instead": self.instead.replace("NAME", self.name) or None,
                "old_fingerprint": self.old or None, "new_fingerprint": self.new or None}


def compare(old: dict[str, Description], new: dict[str, Description]) -> list[Change]:
    """Every contract of either version, by name (the old order, then the new ones)."""
    return [_change(name, old.get(name), new.get(name))
            for name in [*old, *(n for n in new if n not in old)]]


def _change(name: str, old: Description | None, new: Description | None) -> Change:
    if new is None:
        assert old is not None
        return Change(name, BREAKING, reason="task removed: workers or queued messages may "
                      "still need it", instead="keep the contract until no producer sends "
                      "it and its queue is empty, then remove it", old=fingerprint(old))
    if old is None:
        return Change(name, CONSUMERS_FIRST, "BACKWARD", reason="a new task (its workers "
                      "first: calls wait in its queue until they run)", new=fingerprint(new))
    prints = {"old": fingerprint(old), "new": fingerprint(new)}
    if prints["old"] == prints["new"]:
        return Change(name, UNCHANGED, "FULL", **prints)
    # Both directions at once would mean equal descriptions: the same fingerprint, above.
    backward, forward = incompatibility(old, new) is None, incompatibility(new, old) is None
    if backward:
        return Change(name, CONSUMERS_FIRST, "BACKWARD",
                      "new workers take the old producers' calls", **prints)
    if forward:
        return Change(name, PRODUCERS_FIRST, "FORWARD",
                      "old workers take the new producers' calls, but new workers refuse the "
                      "old ones': upgrade the consumers once the calls old producers queued "
                      "have drained", **prints)
    return Change(name, BREAKING, reason=why_breaking(old, new), instead=INSTEAD, **prints)


def why_breaking(old: Description, new: Description) -> str:
    """The kinds of change that make `new` incompatible with `old`, in words."""
    reasons: list[str] = []
    if old["returns"] != new["returns"]:
        reasons.append(f"other return type ({_type(old['returns'])} -> "
                       f"{_type(new['returns'])})")
    before = {p["name"]: (i, p) for i, p in enumerate(old["params"])}
    after = {p["name"]: (i, p) for i, p in enumerate(new["params"])}
    gone = [n for n in before if n not in after]
    added = [n for n in after if n not in before]
    for name in gone:
        index, param = before[name]
        twin = next((n for n in added if after[n][0] == index
                     and after[n][1]["annotation"] == param["annotation"]), None)
        if twin is not None:
            reasons.append(f"parameter {name!r} renamed to {twin!r}")
            added.remove(twin)
        else:
            reasons.append(f"parameter {name!r} removed")
    kept = [n for n in before if n in after]
    if kept != sorted(kept, key=lambda n: after[n][0]):
        reasons.append(f"parameters reordered ({', '.join(kept)} -> "
                       f"{', '.join(sorted(kept, key=lambda n: after[n][0]))})")
    for name in kept:
        was, now = before[name][1], after[name][1]
        if was["annotation"] != now["annotation"]:
            reasons.append(f"parameter {name!r} retyped ({_type(was['annotation'])} -> "
                           f"{_type(now['annotation'])})")
        if was["default"] != now["default"]:
            reasons.append(f"default of {name!r} changed ({_default(was)} -> "
                           f"{_default(now)})")
        if was["kind"] != now["kind"]:
            reasons.append(f"parameter {name!r} is now {now['kind'].lower()}")
    for name in added:
        if after[name][1]["default"] is None:
            reasons.append(f"new required parameter {name!r}")
        elif after[name][0] < len(old["params"]):
            reasons.append(f"new parameter {name!r} before existing ones")
    return "; ".join(reasons) or (incompatibility(old, new) or "the descriptions differ")


def _default(param: dict[str, Any]) -> str:
    """A parameter's default as its description holds it (a repr), or `required`."""
    return "required" if param["default"] is None else str(param["default"])


def _type(schema: Any) -> str:
    """A JSON schema in short: its type, or the schema itself."""
    if isinstance(schema, dict) and isinstance(schema.get("type"), str) and len(schema) == 1:
        return str(schema["type"])
    return json.dumps(schema, sort_keys=True) if schema else "any"


class DiffError(UsageError):
    """The older version cannot be read: not a git checkout, an unknown ref, no contracts."""


def contracts_at(ref: str, package: Path) -> tuple[str, dict[str, Description]]:
    """(commit, descriptions by task name) of the contracts at git `ref`, read by that
    version's own code (`python -m celery_tasks --json` on a copy of it). `package` is this
    copy's folder: its repository is searched (the monorepo, with the package at
    celery_tasks/, or a celery_tasks checkout, with it at the root)."""
    top = Path(_git(package, "rev-parse", "--show-toplevel",
                    fail=f"{package} is not in a git checkout: diff needs git history"))
    prefix = _git(package, "rev-parse", "--show-prefix", fail="git rev-parse failed")
    commit = _git(top, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}",
                  fail=f"unknown git ref {ref!r} (a commit, branch or tag of this checkout)")
    where = next((p for p in dict.fromkeys((prefix, "celery_tasks/", ""))
                  if _has(top, f"{commit}:{p}tasks.py")), None)
    if where is None:
        raise DiffError(f"{ref} ({commit[:12]}) holds no celery_tasks/tasks.py")
    try:
        archive = subprocess.run(["git", "-C", str(top), "archive", "--format=tar",
                                  f"{commit}:{where}" if where else f"{commit}^{{tree}}"],
                                 capture_output=True, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        raise DiffError(f"git archive {ref} took over 60 s") from None
    if archive.returncode != 0:
        raise DiffError(f"cannot read {ref} ({commit[:12]}): "
                        f"{archive.stderr.decode(errors='replace').strip()}")
    with tempfile.TemporaryDirectory(prefix="celery-tasks-diff-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(Path(tmp) / "celery_tasks", filter="data")  # git's own files
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        try:
            out = subprocess.run([sys.executable, "-m", "celery_tasks", "--json"], cwd=tmp,
                                 env={**env, "CELERY_TASKS_ENV_FILE": ""},
                                 capture_output=True, text=True, timeout=120, check=False)
        except subprocess.TimeoutExpired:
            raise DiffError(f"listing the contracts at {ref} took over 120 s") from None
    try:
        listed = json.loads(out.stdout)["contracts"]
        return commit, {c["name"]: c["description"] for c in listed}
    except (ValueError, KeyError, TypeError):
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise DiffError(f"cannot list the contracts at {ref} ({commit[:12]}), whose "
                        f"celery_tasks predates 'python -m celery_tasks --json': {last}") from None


def _git(package: Path, *args: str, fail: str) -> str:
    try:
        out = subprocess.run(["git", "-C", str(package), *args], capture_output=True,
                             text=True, timeout=30, check=False)
    except OSError:
        raise DiffError(f"git is not installed: {fail}") from None
    except subprocess.TimeoutExpired:
        raise DiffError(f"git took over 30 s: {fail}") from None
    if out.returncode != 0:
        raise DiffError(fail)
    return out.stdout.strip()


def _has(package: Path, path: str) -> bool:
    try:
        return subprocess.run(["git", "-C", str(package), "cat-file", "-e", path],
                              capture_output=True, timeout=30, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        raise DiffError(f"git took over 30 s to read {path}") from None
