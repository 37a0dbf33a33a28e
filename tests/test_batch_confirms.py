"""The batch path's confirm bookkeeping: every message settled once, nothing kept after."""

from __future__ import annotations

from celery_tasks.publisher.confirms import Confirms


def confirms_for(n: int) -> Confirms:
    confirms = Confirms()
    for i in range(n):
        confirms.add(f"t{i}")
    return confirms


def test_a_multiple_confirm_settles_every_message_up_to_its_tag() -> None:
    confirms = confirms_for(5)
    assert confirms.settle(3, multiple=True) == ["t0", "t1", "t2"]  # tags start at 1
    assert confirms.settle(3, multiple=True) == []  # settled once
    assert confirms.settle(5, multiple=True) == ["t3", "t4"]
    assert len(confirms) == 0 and not confirms.order


def test_single_confirms_in_any_order_leave_nothing_behind() -> None:
    confirms = confirms_for(1000)
    settled = [confirms.settle(tag, multiple=False) for tag in range(1000, 0, -1)]
    assert [ids[0] for ids in settled] == [f"t{i}" for i in range(999, -1, -1)]
    assert len(confirms) == 0 and not confirms.order  # memory stays flat on long streams


def test_single_confirms_in_order_keep_the_queue_short() -> None:
    confirms = confirms_for(100_000)
    for tag in range(1, 100_001):
        confirms.settle(tag, multiple=False)
        assert len(confirms.order) == 100_000 - tag  # never longer than what is pending


def test_a_confirm_of_an_unknown_or_settled_tag_settles_nothing() -> None:
    confirms = confirms_for(3)
    assert confirms.settle(2, multiple=False) == ["t1"]
    assert confirms.settle(2, multiple=False) == []
    assert confirms.settle(99, multiple=False) == []
    assert confirms.settle(3, multiple=True) == ["t0", "t2"]
