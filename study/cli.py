"""The ``study`` command line."""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import yaml

from trainables.errors import ConfigError, DataError

from .spec import SpecError, load_spec, trial_config
from .synth import write_synthetic


def _parse_set(items: list[str]) -> dict[str, Any]:
    """``a.b=value`` pairs (values parsed as YAML) into a nested dict."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SpecError(f"--set {item!r}: expected KEY=VALUE")
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(value)
    return out


def _merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for k, v in extra.items():
        merged[k] = _merge(merged[k], v) if isinstance(v, dict) and isinstance(merged.get(k), dict) else v
    return merged


def cmd_synth(args: argparse.Namespace) -> None:
    out = write_synthetic(args.out, args.n, args.seed, args.size, args.difficulty)
    print(f"wrote {args.n} images to {out} (metadata: {out / 'metadata.txt'})")


def cmd_trial(args: argparse.Namespace) -> None:
    from trainables.train import run  # torch import is slow; only commands that train pay for it

    spec = load_spec(args.spec)
    overrides = _parse_set(args.set)
    spec_with = _merge(spec, {"data": overrides.pop("data")}) if "data" in overrides else spec
    strategy = args.strategy or next(iter(spec.get("strategies") or {"control": "control"}))
    config = trial_config(spec_with, strategy, args.seed, overrides)
    print(f"trial: strategy={strategy} seed={args.seed} model={config['model']} "
          f"epochs={config['epochs']} sampler={config['sampler']} loss={config['loss']} "
          f"augment={config['augment']}", flush=True)
    start = time.perf_counter()

    def report(metrics: dict, checkpoint: str | None) -> None:
        print(f"epoch {metrics['epoch']:3d}  train/loss {metrics['train/loss']:.4f}  "
              f"val/accuracy {metrics['val/accuracy']:.3f}  val/balanced_accuracy "
              f"{metrics['val/balanced_accuracy']:.3f}  val/sensitivity {metrics['val/sensitivity']:.3f}"
              f"  ({time.perf_counter() - start:.1f}s)", flush=True)

    final = run(config, report)
    summary = {k: round(v, 4) for k, v in final.items() if k.startswith("test/") and isinstance(v, float)}
    print("test:", json.dumps(summary))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="study", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="data set utilities").add_subparsers(dest="data_cmd", required=True)
    synth = data.add_parser("synth", help="write the synthetic X-ray set as an image folder")
    synth.add_argument("--out", required=True)
    synth.add_argument("--n", type=int, default=3000)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--size", type=int, default=256)
    synth.add_argument("--difficulty", type=float, default=1.0)
    synth.set_defaults(fn=cmd_synth)

    trial = sub.add_parser("trial", help="run one trial of a spec's strategy in this process")
    trial.add_argument("spec")
    trial.add_argument("--strategy", help="a strategy of the spec (default: its first)")
    trial.add_argument("--seed", type=int, default=0)
    trial.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. --set epochs=2 --set data.synthetic.n=600")
    trial.set_defaults(fn=cmd_trial)

    args = parser.parse_args(argv)
    try:
        args.fn(args)
    except (SpecError, ConfigError, DataError) as exc:
        print(f"study: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
