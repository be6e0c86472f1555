"""The ``init: ssl`` pre-stage at study level: each distinct setting the strategies ask for is
pretrained once in the driver before the search (trials then find it in the cache), and its loss
curve is logged to MLflow as a run tagged ``phase=ssl``."""
from __future__ import annotations

from trainables.config import parse_config
from trainables.data import ImageArrays
from trainables.self_supervised import pretrain, ssl_folder
from trainables.train import resolve_device

from .spec import StudySpec
from .tracking import StudyTracker, flat_params


def run_ssl_stages(spec: StudySpec, arrays: ImageArrays, tracker: StudyTracker) -> list[str]:
    """Pretrain (or find in the cache) every SSL setting of the strategies' configs; returns the
    MLflow run ids of their loss curves (one run per setting, found again on a resumed study)."""
    stages: dict[str, tuple] = {}
    for strategy in spec.strategies:
        cfg = parse_config(spec.base_config(strategy, seed=spec.search.seed))
        if cfg.init == "ssl":
            stages.setdefault(ssl_folder(cfg, arrays).name, (cfg, []))[1].append(strategy)
    run_ids = []
    for key, (cfg, strategies) in stages.items():
        _, curve = pretrain(cfg, arrays, resolve_device(cfg.device))
        found = tracker.find_runs(phase="ssl", ssl_key=key)
        if found:
            run_ids.append(found[0].info.run_id)
            continue
        run_id = tracker.client.create_run(tracker.experiment_id, run_name=f"ssl pretraining ({key})", tags={
            "study": tracker.study, "phase": "ssl", "ssl_key": key, "strategies": ",".join(strategies)}
        ).info.run_id
        for name, value in flat_params({"model": cfg.model, "ssl": cfg.ssl.model_dump()}).items():
            tracker.client.log_param(run_id, name, value)
        for epoch, loss in enumerate(curve, 1):
            tracker.client.log_metric(run_id, "ssl/loss", loss, step=epoch)
        tracker.client.set_terminated(run_id, "FINISHED")
        run_ids.append(run_id)
    return run_ids
