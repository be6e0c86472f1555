"""Multi-node checks: a study's ``storage_path`` must be shared storage when Ray has several nodes."""
from __future__ import annotations

from pathlib import Path

import ray

from .errors import StudyError
from .spec import StudySpec

# File systems that every node can mount at the same path (``fuse.*`` covers s3fs, gcsfuse, juicefs).
NETWORK_FS = {"nfs", "nfs4", "cifs", "smb3", "ceph", "cephfs", "lustre", "glusterfs", "beegfs", "gpfs",
              "9p", "virtiofs", "efs"}


def mount_type(path: Path, mounts: str | None = None) -> str:
    """The file-system type of the mount holding ``path`` (longest matching mount point in
    ``/proc/mounts``), or ``""`` when unknown."""
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return ""
    best, kind = "", ""
    target = str(path)
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def is_shared(path: Path, mounts: str | None = None) -> bool:
    kind = mount_type(path, mounts)
    return kind in NETWORK_FS or kind.startswith("fuse.")


def check_shared_storage(spec: StudySpec) -> None:
    """On a Ray cluster with more than one live node, refuse a ``storage_path`` that is a local
    folder: trials on other nodes would write their checkpoints where the driver cannot restore
    them. URIs (``s3://``...), network file systems and ``storage_shared: true`` pass."""
    if "://" in spec.storage_path or spec.storage_shared:
        return
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    path = Path(spec.storage_path).expanduser().resolve()
    if nodes < 2 or is_shared(path):
        return
    raise StudyError(
        f"storage_path: {spec.storage_path!r} ({path}, {mount_type(path) or 'unknown'} file system) is "
        f"local to this machine, but the Ray cluster has {nodes} nodes: trials on other nodes could not "
        "save or restore their checkpoints. Use shared storage (s3://bucket/prefix, or an NFS path), "
        "or set storage_shared: true if this folder is the same shared mount on every node")
