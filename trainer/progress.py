"""The training progress bar, whose total and ETA are the work really left.

Without a time budget the bar counts steps. With ``minutes=`` the run ends at the budget
or at ``steps``, whichever comes first, so the bar counts training seconds instead: its
total is the budget, or sooner the projected time of the remaining steps at this start's
pace, and its ETA follows. The description shows the step (``cgan_avatars step
170/6000: 10%|#   | 42/420 s [00:42<06:18]``).
"""

from __future__ import annotations

from typing import Any

SECONDS_FORMAT = ("{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s "
                  "[{elapsed}<{remaining}{postfix}]")


class Progress:
    """A tqdm bar over steps, or over the seconds of a time budget."""

    def __init__(self, name: str, steps: int, step: int, minutes: float, elapsed: float,
                 disable: bool = False, file: Any = None):
        from tqdm.auto import tqdm

        self.name, self.steps, self.budget = name, steps, max(0.0, minutes * 60)
        self.start_step, self.start_elapsed = step, elapsed
        if self.budget:
            self.bar = tqdm(total=self.budget, initial=min(elapsed, self.budget),
                            desc=self._desc(step), bar_format=SECONDS_FORMAT,
                            dynamic_ncols=True, disable=disable, file=file)
        else:
            self.bar = tqdm(total=steps, initial=step, desc=name, unit="it", dynamic_ncols=True,
                            disable=disable, file=file)

    def _desc(self, step: int) -> str:
        return f"{self.name} step {step}/{self.steps}"

    def total_seconds(self, step: int, elapsed: float) -> float:
        """The budget, or sooner when the remaining steps at this start's pace end first."""
        done = step - self.start_step
        if done <= 0:
            return self.budget
        per_step = (elapsed - self.start_elapsed) / done
        return min(self.budget, elapsed + (self.steps - step) * per_step)

    def update(self, step: int, elapsed: float) -> None:
        """After each step: ``step`` steps and ``elapsed`` training seconds done in all."""
        if not self.budget:
            self.bar.update(step - self.bar.n)
            return
        self.bar.set_description_str(self._desc(step), refresh=False)
        self.bar.total = max(self.total_seconds(step, elapsed), min(elapsed, self.budget))
        self.bar.update(min(elapsed, self.budget) - self.bar.n)

    def set_postfix(self, values: dict[str, str]) -> None:
        self.bar.set_postfix(values)

    def close(self) -> None:
        self.bar.close()
