"""The study command line: hyperparameter studies of class-imbalance strategies for chest X-ray
classification (search, paired repeats, comparison), on Ray Tune, Optuna and MLflow.

Commands import what they need when they run (torch, Ray, MLflow take seconds to import), so
``study --help`` answers at once.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from trainables.errors import ConfigError, DataError

from .errors import SpecError, StudyError, StudyInterrupted, TrackingError

DESCRIPTION = ("Hyperparameter studies of class-imbalance strategies for chest X-ray classification: "
               "every strategy gets the same Optuna (TPE) budget with ASHA on Ray Tune, its best config "
               "re-runs over paired seeds, and paired statistics compare them; everything is in MLflow.")


def load(args: argparse.Namespace):
    """The command's spec with its ``--set`` overrides (and, for run and repeat, ``--address`` as
    ``ray.address``)."""
    from .spec import load_spec, parse_overrides

    overrides = parse_overrides(args.set)
    if getattr(args, "address", None) and args.command in ("run", "repeat"):
        overrides.setdefault("ray", {})["address"] = args.address
    return load_spec(args.spec, overrides)


def cmd_synth(args: argparse.Namespace) -> None:
    from .synth import write_synthetic

    out = write_synthetic(args.out, args.n, args.seed, args.size, args.difficulty)
    print(f"wrote {args.n} images to {out} (metadata: {out / 'metadata.txt'})")


def cmd_inspect(args: argparse.Namespace) -> None:
    from trainables.data.inspect import describe

    spec = load(args)
    info = describe(spec.data)
    if args.json:
        print(json.dumps(info, indent=1))
        return
    print(render_inspect(info))


def render_inspect(info: dict) -> str:
    """``study data inspect``'s text: one section per question a user asks of their data."""
    lines = [f"source: {info['source']}" + (f" (preset {info['preset']})" if info["preset"] else "")
             + f", path {info['path']}"]
    lines += [f"label file: {f}" for f in info["label_files"]]
    lines.append(f"files: {info['files_found']} found, {info['files_missing']} named but missing"
                 + (f" (e.g. {'; '.join(info['missing_examples'])})" if info["missing_examples"] else "")
                 + (f", {info['os_files_ignored']} hidden or OS-made files ignored" if info["os_files_ignored"] else ""))
    if info["dropped"]:
        lines.append("left out: " + ", ".join(f"{rule} {n}" for rule, n in info["dropped"].items()))
    if "splits" in info:
        classes = info["classes"]
        width = max(len(c) for c in [*classes, "patients", "split"]) + 2
        lines.append(f"classes: {', '.join(classes)} (positive {info['positive_class']})")
        lines.append(f"split: {info['split']}")
        lines.append("".join(f"{h:>{width}}" for h in ["split", *classes, "images", "patients"]))
        for split, row in info["splits"].items():
            cells = [split, *(row["per_class"][c] for c in classes), row["images"], row["patients"]]
            lines.append("".join(f"{v:>{width}}" for v in cells))
        lines.append("sampled files: " + ", ".join(f"{k} x{n}" for k, n in info["sampled"].items()))
    lines += [f"note: {n}" for n in info["notes"]]
    state = "prepared (a study loads it without decoding)" if info["cache"]["exists"] else \
        "not prepared yet (the first load decodes every file)"
    lines.append(f"cache entry: {info['cache']['folder']}: {state}")
    return "\n".join(lines)


def cmd_trial(args: argparse.Namespace) -> None:
    from trainables.train import run

    from .spec import trial_config

    spec = load(args)
    strategy = args.strategy or next(iter(spec.strategies))
    config = trial_config(spec, strategy, args.seed)
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


def cmd_validate(args: argparse.Namespace) -> None:
    spec = load(args)
    searches = (f" in each of {len(spec.search_seeds)} searches (search seeds {spec.search_seeds})"
                if len(spec.search_seeds) > 1 else "")
    print(f"{args.spec}: ok — study {spec.name!r}, {len(spec.strategies)} strategies "
          f"({', '.join(spec.strategies)}), {spec.search.samples_per_strategy} samples each{searches}, "
          f"{spec.epochs} epochs, scheduler {spec.scheduler.type}, tracking {spec.tracking.uri}")
    if note := spec.search.random_search_note():
        print(note)
    if args.no_data:
        print("not checked (--no-data): the data, the tracking store, Ray and the storage")
        return
    from trainables.data import load_arrays

    from .preflight import check_data
    from .tracking import check_tracking_uri

    check_tracking_uri(spec.tracking.uri)
    arrays = load_arrays(spec.data)
    check_data(spec, arrays)
    counts = ", ".join(f"{c} {n}" for c, n in zip(arrays.class_names, arrays.class_counts().tolist()))
    print(f"data: ok — {len(arrays.images)} images ({counts}); the classes and class metrics the spec names "
          "exist, and every split the study uses can be made; tracking store reachable")
    print("not checked here: the Ray address and the trials' resources against the cluster, and whether "
          "storage_path can be written (study run checks them before any trial)")


def _print_ui_hint(uri: str) -> None:
    if uri.startswith("sqlite:///"):
        print(f"browse the runs: mlflow ui --backend-store-uri {uri}")
    else:
        print(f"browse the runs: {uri}")


def _print_compare(summary: dict, spec) -> None:
    searches = summary.get("search_seeds", [])
    nested = f" x {len(searches)} searches (search x seed test)" if len(searches) > 1 else ""
    print(f"\ncompare ({summary['seeds']} paired seeds{nested}, baseline {summary['baseline']}, "
          f"{spec.repeats.use} epoch, Holm per metric):")
    shown = [m for m in ("test/sensitivity", "test/ppv", "test/balanced_accuracy") if m in summary["verdicts"]]
    for metric in shown or list(summary["verdicts"])[:3]:
        for verdict in summary["verdicts"][metric]:
            print(f"  {verdict}")
    for w in summary["warnings"]:
        print(f"  warning: {w}")
    print(f"report: {summary['report_html']}")


def cmd_run(args: argparse.Namespace) -> None:
    from .layout import search_summary_file
    from .lock import holding
    from .repeats import run_repeats
    from .report import run_compare
    from .search import print_summary, run_search

    if args.resume and args.fresh:
        raise StudyError("--resume continues the study's search and --fresh deletes it: give one of them")
    spec = load(args)
    with holding(spec, "study run"):
        summaries = run_search(spec, resume=args.resume, fresh=args.fresh)
        for search_seed, summary in summaries.items():
            print_summary(summary, spec)
            print(f"search summary: {search_summary_file(spec, spec.search_phase(search_seed))}")
        empty = [s + ("" if len(summaries) == 1 else f" (search seed {k})")
                 for k, summary in summaries.items() for s, part in summary["strategies"].items() if part["best"] is None]
        if empty:
            raise StudyError(f"the search of {', '.join(empty)} has no successful trial (see the failures "
                             "above): no result to repeat or compare")
        if not args.search_only:
            searches = "" if len(summaries) == 1 else f" of each of {len(summaries)} searches"
            print(f"\nrepeats: the best config of each strategy{searches} x {spec.repeats.seeds} paired seeds")
            run_repeats(spec, resume=args.resume or args.fresh)
            _print_compare(run_compare(spec), spec)
    _print_ui_hint(spec.tracking.uri)


def cmd_repeat(args: argparse.Namespace) -> None:
    from .lock import holding
    from .repeats import run_repeats
    from .results import refuse_search_changes

    spec = load(args)
    with holding(spec, "study repeat") as tracker:
        refuse_search_changes(spec, tracker, "study repeat")
        run_repeats(spec, resume=args.resume)
    _print_ui_hint(spec.tracking.uri)


def cmd_compare(args: argparse.Namespace) -> None:
    from .lock import holding
    from .report import run_compare
    from .results import refuse_search_changes

    spec = load(args)
    with holding(spec, "study compare") as tracker:
        refuse_search_changes(spec, tracker, "study compare")
        summary = run_compare(spec)
    _print_compare(summary, spec)
    _print_ui_hint(spec.tracking.uri)


def cmd_plan(args: argparse.Namespace) -> None:
    from .layout import report_dir
    from .plan import describe, plan

    spec = load(args)
    frame = plan(spec, args.effect, args.power, args.max_seeds, args.simulations)
    text = describe(frame, args.power, spec.compare.alpha)
    folder = report_dir(spec)
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "plan.csv", index=False)
    (folder / "plan.md").write_text(text)
    print(text)
    print(f"plan: {folder / 'plan.md'}")


def cmd_compare_across(args: argparse.Namespace) -> None:
    from .across import compare_across
    from .spec import load_spec

    summary = compare_across([load_spec(path) for path in args.specs], Path(args.out) if args.out else None)
    for metric, result in summary["friedman"].items():
        ranks = ", ".join(f"{k} {v:.2f}" for k, v in sorted(result["mean_ranks"].items(), key=lambda kv: kv[1]))
        print(f"{metric}: Friedman p = {result['p_value']:.3g} over {result['n']} data sets; mean ranks {ranks}; "
              f"critical difference {result['critical_difference']:.2f}")
    for w in summary["warnings"]:
        print(f"  warning: {w}")
    print(f"report: {summary['report_html']}")


def cmd_list(args: argparse.Namespace) -> None:
    from .results import studies
    from .tracking import check_tracking_uri

    check_tracking_uri(args.tracking_uri)
    table = studies(args.tracking_uri)
    if table.empty:
        print(f"no studies in {args.tracking_uri}")
    else:
        print(table.to_string(index=False))


def cmd_submit(args: argparse.Namespace) -> None:
    from .jobs import submit

    spec = load(args)
    flags = [f for f, on in (("--resume", args.resume), ("--search-only", args.search_only)) if on]
    job = submit(Path(args.spec), spec, args.address, args.set, flags)
    print(job)
    print(f"follow it: study logs {job} --follow{' --address ' + args.address if args.address else ''}",
          file=sys.stderr)


def cmd_status(args: argparse.Namespace) -> None:
    from .jobs import status

    state, message = status(args.job, args.address)
    print(f"{args.job}: {state}" + (f" ({message})" if message else ""))


def cmd_logs(args: argparse.Namespace) -> int:
    from .jobs import logs

    state = logs(args.job, args.address, follow=args.follow)
    if args.follow:
        print(f"{args.job}: {state}", file=sys.stderr)
        return 0 if state == "SUCCEEDED" else 1
    return 0


def cmd_tracking_server(args: argparse.Namespace) -> None:
    from .server import serve, server_argv

    serve(server_argv(args.backend_store_uri, args.artifacts_destination, args.host, args.port,
                      args.workers, args.basic_auth, args.allowed_hosts), args.host)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="study", description=DESCRIPTION)
    try:
        parser.add_argument("--version", action="version", version=f"%(prog)s {version('cxr-study')}")
    except PackageNotFoundError:  # run from a source tree that is not installed
        pass
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="data set utilities").add_subparsers(dest="data_cmd", required=True)
    synth = data.add_parser("synth", help="write the synthetic X-ray set as an image folder")
    synth.add_argument("--out", required=True)
    synth.add_argument("--n", type=int, default=3000)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--size", type=int, default=256)
    synth.add_argument("--difficulty", type=float, default=1.0)
    synth.set_defaults(fn=cmd_synth)
    insp = data.add_parser("inspect", help="what a spec's data resolve to, before any training: files found "
                           "and missing, rows dropped per rule, classes and patients per split, the cache entry")
    insp.add_argument("spec")
    insp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="override a spec value, as study run takes it")
    insp.add_argument("--json", action="store_true", help="the same as one JSON object")
    insp.set_defaults(fn=cmd_inspect)

    trial = sub.add_parser("trial", help="run one trial of a spec's strategy in this process")
    trial.add_argument("spec")
    trial.add_argument("--strategy", help="a strategy of the spec (default: its first)")
    trial.add_argument("--seed", type=int, default=0)
    trial.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a spec value, e.g. --set training.epochs=2 --set data.synthetic.n=600")
    trial.set_defaults(fn=cmd_trial)

    validate = sub.add_parser("validate", help="check a spec without running anything")
    validate.add_argument("spec")
    validate.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                          help="override a spec value, as study run takes it")
    validate.add_argument("--no-data", action="store_true", help="check the spec only (no data loaded)")
    validate.set_defaults(fn=cmd_validate)

    runp = sub.add_parser("run", help="search every strategy of a spec on Ray Tune, tracked in MLflow")
    runp.add_argument("spec")
    runp.add_argument("--resume", action="store_true",
                      help="continue an interrupted study (starts it if there is nothing to resume)")
    runp.add_argument("--fresh", action="store_true",
                      help="delete this study's previous searches, and the repeats of their configs, first")
    runp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="override a spec value, e.g. --set search.samples_per_strategy=2")
    runp.add_argument("--search-only", action="store_true", help="stop after the search phase")
    runp.add_argument("--address", help="Ray cluster to run on (sets ray.address): auto, HOST:PORT or "
                      "ray://HOST:10001")
    runp.set_defaults(fn=cmd_run)

    rep = sub.add_parser("repeat", help="re-run each strategy's best config over paired seeds (from MLflow)")
    rep.add_argument("spec")
    rep.add_argument("--resume", action="store_true", help="continue an interrupted repeat phase")
    rep.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a spec value, e.g. --set repeats.seeds=21")
    rep.add_argument("--address", help="Ray cluster to run on (sets ray.address)")
    rep.set_defaults(fn=cmd_repeat)

    cmp_ = sub.add_parser("compare", help="statistics and report from the repeats in MLflow")
    cmp_.add_argument("spec")
    cmp_.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    cmp_.set_defaults(fn=cmd_compare)

    pln = sub.add_parser("plan", help="how many paired seeds each comparison needs, simulated from the repeats "
                         "in MLflow (a pilot)")
    pln.add_argument("spec")
    pln.add_argument("--effect", type=float, help="a minimum effect to plan for, in the metric's units "
                     "(e.g. 0.05: 5 points of a proportion)")
    pln.add_argument("--power", type=float, default=0.8, help="target power (default 0.8)")
    pln.add_argument("--max-seeds", type=int, default=50, help="largest number of seeds tried (default 50)")
    pln.add_argument("--simulations", type=int, default=400, help="simulated studies per number of seeds")
    pln.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    pln.set_defaults(fn=cmd_plan)

    acr = sub.add_parser("compare-across", help="the same strategies over several data sets (one study per "
                         "spec): Friedman over data sets with Nemenyi's critical difference")
    acr.add_argument("specs", nargs="+", metavar="SPEC")
    acr.add_argument("--out", help="report folder (default <storage_path>/across-<studies>)")
    acr.set_defaults(fn=cmd_compare_across)

    lst = sub.add_parser("list", help="the studies in a tracking store: phase reached, trials and runs, report")
    lst.add_argument("--tracking-uri", default="sqlite:///mlflow.db", help="default: sqlite:///mlflow.db")
    lst.set_defaults(fn=cmd_list)

    address_help = "Ray jobs API, e.g. http://HEAD:8265 (default: $RAY_ADDRESS)"
    sbm = sub.add_parser("submit", help="run `study run SPEC` on a Ray cluster as a Ray job; prints its id")
    sbm.add_argument("spec")
    sbm.add_argument("--address", help=address_help)
    sbm.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    sbm.add_argument("--resume", action="store_true")
    sbm.add_argument("--search-only", action="store_true")
    sbm.set_defaults(fn=cmd_submit)
    stp = sub.add_parser("status", help="status of a submitted study job")
    stp.add_argument("job")
    stp.add_argument("--address", help=address_help)
    stp.set_defaults(fn=cmd_status)
    lgp = sub.add_parser("logs", help="logs of a submitted study job")
    lgp.add_argument("job")
    lgp.add_argument("--address", help=address_help)
    lgp.add_argument("--follow", action="store_true",
                     help="stream until the job ends; exit status 0 only if it succeeded")
    lgp.set_defaults(fn=cmd_logs)

    srv = sub.add_parser("tracking-server", help="run an MLflow tracking server (SQL backend, served "
                         "artifacts) on 127.0.0.1")
    srv.add_argument("--backend-store-uri", default="sqlite:///mlflow-server.db")
    srv.add_argument("--artifacts-destination", default="mlartifacts",
                     help="folder or URI (s3://...) where the server keeps artifacts")
    srv.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    srv.add_argument("--port", type=int, default=5000)
    srv.add_argument("--workers", type=int, default=1)
    srv.add_argument("--allowed-hosts", help="Host headers the server accepts (mlflow --allowed-hosts)")
    srv.add_argument("--basic-auth", action="store_true",
                     help="MLflow's basic-auth app (clients: MLFLOW_TRACKING_USERNAME/PASSWORD)")
    srv.set_defaults(fn=cmd_tracking_server)

    args = parser.parse_args(argv)
    try:
        return args.fn(args) or 0
    except StudyInterrupted as exc:
        print(f"study: {exc}", file=sys.stderr)
        return 130
    except (SpecError, ConfigError, DataError, TrackingError, StudyError) as exc:
        print(f"study: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
