"""``study tracking-server``: MLflow's own tracking server with a SQL backend and served artifacts,
bound to 127.0.0.1 unless asked otherwise. Nothing here serves HTTP itself."""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from .errors import StudyError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def server_argv(backend_store_uri: str, artifacts: str, host: str = "127.0.0.1", port: int = 5000,
                workers: int = 1, basic_auth: bool = False, allowed_hosts: str | None = None) -> list[str]:
    """The ``mlflow server`` command line: SQL backend, artifacts served through the server (so
    remote drivers need no access to the artifact store), one worker (~0.8 GB instead of ~2.3)."""
    if backend_store_uri.split(":", 1)[0].split("+")[0] not in ("sqlite", "postgresql", "mysql", "mssql"):
        raise StudyError(f"--backend-store-uri: {backend_store_uri!r} is not a SQL database URI "
                         "(sqlite:///path.db, postgresql://..., mysql://...)")
    if "://" not in artifacts:
        artifacts = str(Path(artifacts).expanduser().resolve())
    argv = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_store_uri,
            "--serve-artifacts", "--artifacts-destination", artifacts,
            "--default-artifact-root", "mlflow-artifacts:/",
            "--host", host, "--port", str(port), "--workers", str(workers)]
    if allowed_hosts:
        argv += ["--allowed-hosts", allowed_hosts]
    if basic_auth:
        if importlib.util.find_spec("flask_wtf") is None:
            raise StudyError("--basic-auth: MLflow's basic-auth app needs Flask-WTF: pip install "
                             "'Flask-WTF==1.3.0' (the docker image has it)")
        if len(os.environ.get("MLFLOW_AUTH_ADMIN_PASSWORD", "")) < 12 and not os.environ.get(
                "MLFLOW_AUTH_CONFIG_PATH"):
            raise StudyError("--basic-auth: set MLFLOW_AUTH_ADMIN_PASSWORD (12 characters or more) in the "
                             "environment: MLflow creates its admin user with it on first start")
        argv += ["--app-name", "basic-auth"]
    return argv


def serve(argv: list[str], host: str) -> None:
    """Replace this process with the MLflow server (its pid is the server's)."""
    if host not in LOOPBACK:
        print(f"warning: MLflow listens on {host}: without --basic-auth anyone who reaches this port can "
              "read and change every run; keep it off public networks", file=sys.stderr)
    print("mlflow server:", " ".join(argv[1:]), flush=True)
    os.execv(argv[0], argv)
