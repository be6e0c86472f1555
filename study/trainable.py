"""The Ray Tune function trainable: a thin adapter over :func:`trainables.train.run`."""
from __future__ import annotations

import ray
from ray import tune

from trainables.data import ImageArrays
from trainables.train import run


def tune_trainable(config: dict, data: ImageArrays | None = None) -> None:
    """Run one trial inside Tune: report each epoch with its checkpoint, resume from Tune's."""
    node = ray.get_runtime_context().get_node_id()

    def report(metrics: dict, checkpoint_dir: str | None) -> None:
        checkpoint = tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        tune.report({**metrics, "node_id": node}, checkpoint=checkpoint)

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        run(config, report, data=data)
    else:
        with checkpoint.as_directory() as folder:
            run(config, report, checkpoint_dir=folder, data=data)
