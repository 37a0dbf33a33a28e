"""Live worker discovery: which workers run now, what each accepts, and whether this copy's
contracts can call them.

Workers answer the remote-control command `celery_tasks_contracts` (registered by
celery_tasks.worker.consumer) with their node, host, pinned celery_tasks commit and, per
contract they run, its description and fingerprint. The question is broadcast on the
broker's control exchange (Celery's remote control): it costs nothing on the normal path,
and one broadcast when asked. `status` waits the whole reply window (it lists every
worker); `require_worker` asks only the task's own workers (their node names start with
the task name) and stops at the first compatible answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import (
    EXIT_NO_WORKER,
    BrokerUnreachable,
    CeleryTasksError,
    ConfigError,
    refusal,
)
from .fingerprint import Description, fingerprint, incompatibility

#: The remote-control command workers answer.
COMMAND = "celery_tasks_contracts"
#: Seconds the broadcast waits for replies.
REPLY_WINDOW = 1.0


class NoWorker(CeleryTasksError):
    """--require-worker: no live worker can run the call; nothing was published."""

    exit_code = EXIT_NO_WORKER


@dataclass(frozen=True)
class LiveWorker:
    """One worker's answer."""

    node: str
    host: str = "?"
    commit: str = "unknown"
    contracts: dict[str, Description] = field(default_factory=dict)
    answered: bool = True  # False: a worker whose celery_tasks predates discovery

    def verdict(self, mine: Description) -> str | None:
        """Why `mine` cannot call this worker's contract of that name; None if it can."""
        theirs = self.contracts.get(mine["name"])
        if theirs is None:
            return "it does not run this task" if self.answered else \
                "its celery_tasks predates discovery (no contracts reported)"
        return incompatibility(mine, theirs)

    def as_json(self, mine: dict[str, Description]) -> dict[str, Any]:
        return {"node": self.node, "host": self.host, "commit": self.commit,
                "contracts": {name: {"fingerprint": fingerprint(d),
                                     "callable": name in mine and self.verdict(mine[name]) is None,
                                     "reason": self.verdict(mine[name]) if name in mine else
                                     "this copy has no such contract"}
                              for name, d in self.contracts.items()}}


def _parse(replies: list[dict[str, Any]] | None) -> list[LiveWorker]:
    workers = []
    for reply in replies or []:
        for node, answer in reply.items():
            if not isinstance(answer, dict) or "contracts" not in answer:
                workers.append(LiveWorker(node, node.partition("@")[2] or "?",
                                          answered=False))
                continue
            workers.append(LiveWorker(
                node, str(answer.get("host") or node.partition("@")[2]),
                str(answer.get("commit") or "unknown"),
                {str(c["name"]): c["description"] for c in answer["contracts"]}))
    return sorted(workers, key=lambda w: w.node)


def live_workers(app: Any, timeout: float = REPLY_WINDOW,
                 task: str | None = None, limit: int | None = None) -> list[LiveWorker]:
    """The workers that answer within `timeout` seconds (only `task`'s, if given)."""
    pattern = {"pattern": f"{task}.*", "matcher": "glob"} if task else {}
    try:
        replies = app.control.broadcast(COMMAND, reply=True, timeout=timeout, limit=limit,
                                        **pattern)
    except Exception as exc:
        code, text = refusal(exc)
        if code == 403 or "ACCESS_REFUSED" in text:
            raise ConfigError(
                f"RabbitMQ refused Celery's remote control to this user ({text}): asking the "
                "workers needs permission to write to exchange celery.pidbox and to declare "
                "exchange reply.celery.pidbox and a reply queue bound to it (the worker or "
                "admin role, not the producer's: see docs/contracts.md#live-workers)") from None
        raise BrokerUnreachable(f"could not ask the workers: {type(exc).__name__}: "
                                f"{text}") from None
    return _parse(replies)


def require_worker(app: Any, mine: Description, timeout: float = REPLY_WINDOW) -> LiveWorker:
    """A live worker that can run a call of contract `mine`; NoWorker otherwise."""
    name = mine["name"]
    first = live_workers(app, timeout, task=name, limit=1)
    if first and first[0].verdict(mine) is None:
        return first[0]
    found = live_workers(app, timeout, task=name) if first else []
    for worker in found:
        if worker.verdict(mine) is None:
            return worker
    if not found:
        raise NoWorker(f"no live worker runs {name} (none answered within {timeout:g} s); "
                       "nothing was sent")
    why = "; ".join(f"{w.node} (celery_tasks {w.commit}): {w.verdict(mine)}" for w in found)
    raise NoWorker(f"no live worker of {name} can run this call, nothing was sent: {why}")
