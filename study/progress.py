"""What a phase shows while it runs: one line per finished trial on stdout, and a status bar on
stderr (tqdm) with the trials done of the total, how many run, stopped early or failed, the best
score so far per strategy, and an ETA. On a terminal the bar refreshes in place; in a log it prints
a line at most every 30 s, whenever a trial reports, so a long stretch never passes silently."""
from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path

from ray import tune
from tqdm import tqdm

from .tracking import error_line


def progress_bar(items, desc: str, unit: str, total: int | None = None) -> tqdm:
    """``items`` with a bar on stderr: refreshed in place on a terminal, a line every 30 s in a log."""
    tty = sys.stderr.isatty()
    return tqdm(items, desc=desc, unit=unit, total=total, file=sys.stderr, mininterval=0.5 if tty else 30,
                dynamic_ncols=tty)


def plural(n: int, word: str) -> str:
    """``1 epoch``, ``2 epochs``, ``3 strategies``."""
    if n == 1:
        return f"{n} {word}"
    return f"{n} {word[:-1]}ies" if word.endswith("y") and word[-2:-1] not in "aeiou" else f"{n} {word}s"


class Progress(tune.Callback):
    """The lines and the bar of one phase. ``view`` maps a Tune config to (strategy, trial config);
    ``totals`` holds the trials per label (strategy in the search, the phase in the repeats)."""

    def __init__(self, view: Callable[[dict], tuple[str, dict]], totals: dict[str, int], metric: str,
                 epochs: int, phase: str | None = None, mode: str = "max") -> None:
        self.view, self.totals, self.metric, self.epochs, self.phase = view, totals, metric, epochs, phase
        self.mode = mode
        self._bar: tqdm | None = None
        self._best: dict[str, float] = {}
        self._early = self._failed = 0

    def __getstate__(self) -> dict:  # Tune saves its callbacks with the experiment; the bar stays here
        return {k: v for k, v in self.__dict__.items() if k != "_bar"}

    def setup(self, **info) -> None:
        tty = sys.stderr.isatty()
        self._bar = tqdm(total=sum(self.totals.values()), desc=self.phase or "search", unit="trial",
                         file=sys.stderr, mininterval=0.5 if tty else 30, dynamic_ncols=tty)

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

    def _status(self, trials: list) -> None:
        if self._bar is None:
            return
        done = sum(t.status in ("TERMINATED", "ERROR") for t in trials)
        running = sum(t.status == "RUNNING" for t in trials)
        best = " ".join(f"{k} {v:.3f}" for k, v in self._best.items())
        self._bar.set_postfix_str(f"{running} running, {self._early} stopped early, {self._failed} failed"
                                  + (f"; best {self.metric}: {best}" if best else ""), refresh=False)
        self._bar.update(done - self._bar.n)

    def _write(self, line: str) -> None:
        if self._bar is None:
            print(line, flush=True)
        else:
            tqdm.write(line, file=sys.stdout)
            sys.stdout.flush()

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        self._status(trials)

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        self._status(trials)

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        result = trial.last_result or {}
        epochs = int(result.get("epoch", 0))
        early = epochs < self.epochs
        value = result.get(self.metric, float("nan"))
        label = self._label(trial)
        if math.isfinite(value):
            better = max if self.mode == "max" else min
            self._best[label] = better(self._best.get(label, value), value)
        self._early += early
        self._write(f"{self._head(trials, trial)}: {epochs}/{plural(self.epochs, 'epoch')}, {self.metric} "
                    f"{value:.4f} ({'stopped early' if early else 'full budget'})")
        self._status(trials)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        why = error_line(Path(trial.error_file).read_text()) if trial.error_file else "unknown error"
        self._failed += 1
        self._write(f"{self._head(trials, trial)}: FAILED {why}")
        self._status(trials)

    def on_experiment_end(self, trials: list, **info) -> None:
        if self._bar is not None:
            self._status(trials)
            self._bar.close()
            self._bar = None
