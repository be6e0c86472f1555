"""Remote launch through Ray's Job Submission API: ``study submit``, ``study status``, ``study logs``.

The spec travels in the job's ``runtime_env`` working directory; the cluster runs ``study run`` on
it with ``--address auto`` (the job's driver runs on the head node), so the cluster's nodes need
the project installed (the image in docker/ has it).
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlparse

import yaml

from .errors import StudyError
from .spec import StudySpec

ADDRESS_VARS = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")


def jobs_address(address: str | None) -> str:
    """``--address`` if given, else ``RAY_API_SERVER_ADDRESS`` / ``RAY_ADDRESS``."""
    address = address or next((os.environ[v] for v in ADDRESS_VARS if os.environ.get(v)), None)
    if not address:
        raise StudyError("--address: give the Ray jobs API address, e.g. --address http://HEAD:8265, "
                         "or set RAY_ADDRESS")
    return address


@contextlib.contextmanager
def _without_address_env():
    """JobSubmissionClient lets RAY_ADDRESS override its argument; an explicit --address wins here."""
    saved = {v: os.environ.pop(v) for v in ADDRESS_VARS if v in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def client(address: str | None):
    """A JobSubmissionClient for the address, or one error naming it."""
    from ray.job_submission import JobSubmissionClient

    address = jobs_address(address)
    parsed = urlparse(address)
    if parsed.scheme in ("http", "https"):
        try:
            socket.create_connection((parsed.hostname, parsed.port or 80), timeout=5).close()
        except (OSError, ValueError) as exc:
            raise StudyError(f"--address: cannot reach the Ray jobs API at {address} ({exc})") from None
    try:
        with _without_address_env():
            return JobSubmissionClient(address)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise StudyError(f"--address: {address} does not answer as a Ray jobs API "
                         f"({str(exc).splitlines()[0][:200]})") from None


def entrypoint(spec_name: str, sets: list[str], flags: list[str]) -> str:
    """The shell command the job runs on the head node."""
    args = ["study", "run", spec_name, "--address", "auto", *flags]
    for item in sets:
        args += ["--set", item]
    return shlex.join(args)


def submit(spec_path: Path, spec: StudySpec, address: str | None, sets: list[str],
           flags: list[str]) -> str:
    """Submit ``study run`` on the spec to the cluster; returns the job's submission id."""
    jobs = client(address)
    for note in _local_path_notes(spec, spec_path.read_text()):
        print(f"note: {note}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="study-submit-") as folder:
        shutil.copy(spec_path, Path(folder) / spec_path.name)
        try:
            return jobs.submit_job(entrypoint=entrypoint(spec_path.name, sets, flags),
                                   runtime_env={"working_dir": folder},
                                   metadata={"study": spec.name, "spec": spec_path.name})
        except RuntimeError as exc:
            raise StudyError(f"--address: the Ray jobs API at {jobs.get_address()} refused the job "
                             f"({str(exc).splitlines()[0][:300]})") from None


def _local_path_notes(spec: StudySpec, text: str) -> list[str]:
    """Warnings about paths that would land in the job's temporary working directory (values the
    spec takes from the environment are resolved on the cluster, so they are not judged here)."""
    raw = yaml.safe_load(text)
    from_env = {"storage_path": "${" in str(raw.get("storage_path", "")),
                "tracking.uri": "${" in str((raw.get("tracking") or {}).get("uri", ""))}
    notes = []
    if not from_env["storage_path"] and "://" not in spec.storage_path \
            and not Path(spec.storage_path).is_absolute():
        notes.append(f"storage_path {spec.storage_path!r} is relative: on the cluster it lands in the "
                     "job's temporary working directory; give an absolute shared path or s3://...")
    uri = spec.tracking.uri
    if not from_env["tracking.uri"] and uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        notes.append(f"tracking.uri {uri!r} is a relative SQLite file: on the cluster it lands in the "
                     "job's temporary working directory; use an MLflow server (http://...)")
    return notes


def status(job_id: str, address: str | None) -> tuple[str, str]:
    """The job's status and Ray's message about it."""
    jobs = client(address)
    try:
        info = jobs.get_job_info(job_id)
    except RuntimeError as exc:
        raise StudyError(f"job {job_id!r}: not found at {jobs.get_address()} "
                         f"({str(exc).splitlines()[0][:200]})") from None
    return info.status.value, info.message or ""


def logs(job_id: str, address: str | None, follow: bool = False) -> str:
    """Print the job's logs (following them until the job ends with ``follow``); returns its status."""
    jobs = client(address)
    try:
        if not follow:
            print(jobs.get_job_logs(job_id), end="", flush=True)
        else:
            async def tail() -> None:
                async for chunk in jobs.tail_job_logs(job_id):
                    print(chunk, end="", flush=True)

            asyncio.run(tail())
        return jobs.get_job_status(job_id).value
    except RuntimeError as exc:
        raise StudyError(f"job {job_id!r}: cannot read its logs at {jobs.get_address()} "
                         f"({str(exc).splitlines()[0][:200]})") from None
