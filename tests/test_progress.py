"""The training bar shows the work really left: steps, or the seconds of a time budget."""

from __future__ import annotations

import io
import re

import pytest

from trainer.progress import Progress


def shown(p: Progress) -> str:
    return str(p.bar)  # tqdm renders its current line


def test_without_a_budget_it_counts_steps() -> None:
    p = Progress("cgan", steps=6000, step=100, minutes=0, elapsed=0.0, file=io.StringIO())
    for step in range(101, 171):
        p.update(step, elapsed=step * 0.25)
    assert p.bar.total == 6000 and p.bar.n == 170
    assert "170/6000" in shown(p)
    p.close()


def test_with_minutes_the_total_is_the_budget_in_seconds() -> None:
    """minutes=7 with steps=6000 once showed 170/6000 and a 28-minute ETA."""
    p = Progress("cgan", steps=6000, step=0, minutes=7, elapsed=0.0, file=io.StringIO())
    for step in range(1, 171):
        p.update(step, elapsed=step * 42 / 170)  # 170 steps in 42 s: 6000 would take 25 min
    assert p.bar.total == pytest.approx(420) and p.bar.n == pytest.approx(42)
    line = shown(p)
    assert "step 170/6000" in line and re.search(r"\b42/420 s\b", line), line
    p.close()


def test_with_minutes_but_few_steps_the_steps_set_the_total() -> None:
    p = Progress("cgan", steps=300, step=0, minutes=7, elapsed=0.0, file=io.StringIO())
    for step in range(1, 101):
        p.update(step, elapsed=step * 0.5)  # 300 steps end after 150 s, within the budget
    assert p.bar.total == pytest.approx(150) and p.bar.n == pytest.approx(50)
    p.close()


def test_a_resumed_run_starts_from_the_time_already_used() -> None:
    p = Progress("cgan", steps=6000, step=500, minutes=7, elapsed=300.0, file=io.StringIO())
    assert p.bar.n == pytest.approx(300) and p.bar.total == pytest.approx(420)
    p.update(510, elapsed=305.0)  # this start's pace: 0.5 s per step
    assert p.bar.n == pytest.approx(305) and p.bar.total == pytest.approx(420)
    p.close()
    spent = Progress("cgan", steps=6000, step=900, minutes=7, elapsed=500.0, file=io.StringIO())
    assert spent.bar.n == pytest.approx(420)  # a budget already used up shows as full
    spent.close()
