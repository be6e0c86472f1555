"""Trial checkpoints kept until no experiment snapshot a resume could read still names them.

Tune's own ``CheckpointConfig(num_to_keep=k)`` deletes the checkpoint that the last experiment
snapshot names as soon as ``k`` newer ones exist, and only then forces a new snapshot. A driver
killed in between (seconds, while the snapshot waits for the MLflow writer, see
:mod:`study.mlflow_writer`) leaves a snapshot whose trial cannot be restored: "Could not recover
from checkpoint as it does not exist on storage anymore" (seen in
``tests/test_resume.py::test_a_driver_killed_with_results_not_yet_in_mlflow_resumes_with_every_epoch_once``).
So the phases let Tune keep every checkpoint (``num_to_keep=None``) and :class:`CheckpointRetention`
deletes them instead, at each snapshot, once they are older than what the last ``SNAPSHOTS``
snapshots named (the newest may still be on its way to storage when the driver dies).
"""
from __future__ import annotations

import contextlib
from collections import deque

from ray import tune

SNAPSHOTS = 2  # the snapshots whose checkpoints are kept: the newest, and the one before it


class CheckpointRetention(tune.Callback):
    """Keeps, of each trial, the checkpoints named by the last ``SNAPSHOTS`` experiment snapshots
    and every newer one; deletes the older ones (from the checkpoint's own file system) as Tune
    saves a snapshot. Its state (the checkpoints not deleted yet) is saved with the snapshot, so a
    resumed experiment goes on deleting them."""

    def __init__(self) -> None:
        self._saved: dict[str, list[tuple[int, tune.Checkpoint]]] = {}  # trial id -> (number, checkpoint), oldest first
        self._count: dict[str, int] = {}  # trial id -> checkpoints it saved
        self._named: deque[dict[str, int]] = deque(maxlen=SNAPSHOTS)  # per snapshot: trial id -> its latest's number

    def on_checkpoint(self, iteration: int, trials: list, trial, checkpoint: tune.Checkpoint, **info) -> None:
        number = self._count[trial.trial_id] = self._count.get(trial.trial_id, 0) + 1
        self._saved.setdefault(trial.trial_id, []).append((number, checkpoint))

    def get_state(self) -> dict:
        """Called as Tune saves a snapshot: delete what no kept snapshot names, then name this one's."""
        if len(self._named) == SNAPSHOTS:
            for trial_id, named in self._named[0].items():
                saved = self._saved.get(trial_id, [])
                while saved and saved[0][0] < named:
                    _, checkpoint = saved.pop(0)
                    with contextlib.suppress(FileNotFoundError, OSError):
                        checkpoint.filesystem.delete_dir(checkpoint.path)
        self._named.append(dict(self._count))
        return {"saved": self._saved, "count": self._count, "named": list(self._named)}

    def set_state(self, state: dict) -> None:
        self._saved, self._count = state["saved"], state["count"]
        self._named = deque(state["named"], maxlen=SNAPSHOTS)
