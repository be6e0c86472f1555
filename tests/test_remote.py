"""Fast checks of the cluster helpers: shared-storage detection, the submitted command, bad
addresses and bad tracking-server options (each one message before anything starts)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from study.cluster import is_shared, mount_type
from study.jobs import entrypoint

MOUNTS = """overlay / overlay rw,relatime 0 0
/dev/sda1 /data ext4 rw 0 0
nas:/export /data/shared nfs4 rw,vers=4.2 0 0
s3fs /mnt/bucket fuse.s3fs rw 0 0
/dev/sdb1 /mnt/my\\040disk xfs rw 0 0
"""


def test_mount_type_takes_the_longest_matching_mount_point():
    assert mount_type(Path("/data/shared/results"), MOUNTS) == "nfs4"
    assert mount_type(Path("/data/sharedx"), MOUNTS) == "ext4"
    assert mount_type(Path("/home/me"), MOUNTS) == "overlay"
    assert mount_type(Path("/mnt/my disk/r"), MOUNTS) == "xfs"
    assert is_shared(Path("/data/shared"), MOUNTS) and is_shared(Path("/mnt/bucket/x"), MOUNTS)
    assert not is_shared(Path("/data/results"), MOUNTS) and not is_shared(Path("/tmp"), MOUNTS)


def test_the_submitted_command_quotes_overrides():
    cmd = entrypoint("my spec.yaml", ["search.samples_per_strategy=2", "training.lr=1e-3 "], ["--resume"])
    assert cmd == ("study run 'my spec.yaml' --address auto --resume --set search.samples_per_strategy=2 "
                   "--set 'training.lr=1e-3 '")


def test_unreachable_jobs_address_is_one_error(port, tiny_spec_file):
    free = port()
    r = subprocess.run([sys.executable, "-m", "study.cli", "submit", str(tiny_spec_file()), "--address",
                        f"http://127.0.0.1:{free}"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"study: error: --address: cannot reach the Ray jobs API at http://127.0.0.1:{free}" in r.stderr


def test_jobs_commands_without_an_address_say_so():
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    r = subprocess.run([sys.executable, "-m", "study.cli", "status", "raysubmit_x"], capture_output=True,
                       text=True, timeout=120, env=env)
    assert r.returncode == 2 and "study: error: --address: give the Ray jobs API address" in r.stderr


@pytest.mark.parametrize("args, message", [
    (["--backend-store-uri", "./mlruns"], "--backend-store-uri: './mlruns' is not a SQL database URI"),
    (["--basic-auth"], "--basic-auth: "),
])
def test_tracking_server_bad_options_are_one_error(args, message):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_AUTH_")}
    r = subprocess.run([sys.executable, "-m", "study.cli", "tracking-server", *args], capture_output=True,
                       text=True, timeout=60, env=env)
    assert r.returncode == 2 and f"study: error: {message}" in r.stderr, r.stderr
