"""What a phase prints while it runs: one line per finished trial."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ray import tune

from .tracking import error_line


class Progress(tune.Callback):
    """One line per finished trial: its strategy (search) or phase (repeats), the count of finished
    trials of that label, the trial, epochs run, metric, stopped early or not."""

    def __init__(self, view: Callable[[dict], tuple[str, dict]], totals: dict[str, int], metric: str,
                 epochs: int, phase: str | None = None) -> None:
        self.view, self.totals, self.metric, self.epochs, self.phase = view, totals, metric, epochs, phase

    def _label(self, trial) -> str:
        return self.phase or self.view(trial.config)[0]

    def _name(self, trial) -> str:
        if self.phase is None:
            return f"trial {trial.trial_id}"
        strategy, config = self.view(trial.config)
        return f"{strategy} seed {config['seed']}"

    def _head(self, trials, trial) -> str:
        label = self._label(trial)
        done = 1 + sum(t.status in ("TERMINATED", "ERROR") and self._label(t) == label
                       for t in trials if t is not trial)
        return f"[{label}] {done}/{self.totals[label]} {self._name(trial)}"

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        result = trial.last_result or {}
        epochs = int(result.get("epoch", 0))
        note = "stopped early" if epochs < self.epochs else "full budget"
        value = result.get(self.metric, float("nan"))
        print(f"{self._head(trials, trial)}: {epochs}/{self.epochs} epochs, {self.metric} {value:.4f} "
              f"({note})", flush=True)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        why = error_line(Path(trial.error_file).read_text()) if trial.error_file else "unknown error"
        print(f"{self._head(trials, trial)}: FAILED {why}", flush=True)
