"""What a phase shows while it runs: one line per finished trial on stdout, and its status on
stderr: the trials done of the total, how many run, stopped early or failed, the best score so far
per strategy, and an ETA. On a terminal the status is a tqdm bar refreshed in place; in a log it is
a plain line, printed at most every 30 s whenever a trial reports, so a long stretch never passes
silently and the log holds no carriage returns."""
from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ray import tune
from tqdm import tqdm

from .tracking import error_line


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
        self._start = self._said = 0.0

    def __getstate__(self) -> dict:  # Tune saves its callbacks with the experiment; the bar stays here
        return {k: v for k, v in self.__dict__.items() if k != "_bar"}

    def __setstate__(self, state: dict) -> None:  # restored on resume, or remote under Ray Client
        self.__dict__.update(state, _bar=None)

    def setup(self, **info) -> None:
        self._start = self._said = time.monotonic()
        if sys.stderr.isatty():
            self._bar = tqdm(total=sum(self.totals.values()), desc=self.phase or "search", unit="trial",
                             file=sys.stderr, mininterval=0.5, dynamic_ncols=True)

    def _label(self, trial) -> str:
        return self.phase or self.view(trial.config)[0]

    def _name(self, trial) -> str:
        if self.phase is None:
            return f"trial {trial.trial_id}"
        if hasattr(self.view, "run_name"):  # the repeat view names the search seed where there are several
            return self.view.run_name(trial.config)
        strategy, config = self.view(trial.config)
        return f"{strategy} seed {config['seed']}"

    def _head(self, trials, trial) -> str:
        label = self._label(trial)
        done = 1 + sum(t.status in ("TERMINATED", "ERROR") and self._label(t) == label
                       for t in trials if t is not trial)
        return f"[{label}] {done}/{self.totals[label]} {self._name(trial)}"

    def _status(self, trials: list, final: bool = False) -> None:
        done = sum(t.status in ("TERMINATED", "ERROR") for t in trials)
        running = sum(t.status == "RUNNING" for t in trials)
        best = " ".join(f"{k} {v:.3f}" for k, v in self._best.items())
        state = (f"{running} running, {self._early} stopped early, {self._failed} failed"
                 + (f"; best {self.metric}: {best}" if best else ""))
        if self._bar is not None:
            self._bar.set_postfix_str(state, refresh=False)
            self._bar.update(done - self._bar.n)
            return
        now, total = time.monotonic(), sum(self.totals.values())
        if final or now - self._said >= 30:
            elapsed = now - self._start
            eta = f", about {(total - done) * elapsed / done / 60:.0f} min left" if 0 < done < total else ""
            print(f"{self.phase or 'search'}: {done}/{total} trials done after {elapsed / 60:.1f} min{eta}; "
                  f"{state}", file=sys.stderr, flush=True)
            self._said = now

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
        self._status(trials, final=True)
        if self._bar is not None:
            self._bar.close()
            self._bar = None
