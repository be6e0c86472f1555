"""Offline checks of docker/: the compose file as docker-compose resolves it, pinned images, the
KubeRay manifests, and the security defaults (loopback ports, credentials only from the env)."""
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import require_tool

DOCKER = Path(__file__).resolve().parent.parent / "docker"
COMPOSE = DOCKER / "compose.yaml"
STUDY_IMAGE = "cxr-study:0.1.0"
SERVICES = {"postgres", "mlflow", "ray-head", "ray-worker"}


def kube_docs() -> list[dict]:
    return [d for f in sorted((DOCKER / "kuberay").glob("*.yaml")) for d in yaml.safe_load_all(f.read_text())]


def images(node) -> list[str]:
    """Every ``image:`` value anywhere in a parsed document."""
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "image" and isinstance(v, str)] + \
               [i for v in node.values() for i in images(v)]
    if isinstance(node, list):
        return [i for v in node for i in images(v)]
    return []


@pytest.fixture(scope="module")
def resolved():
    """``docker-compose config`` of the compose file: it must accept it (with the env it needs)."""
    tool = require_tool("docker-compose")
    r = subprocess.run([tool, "-f", str(COMPOSE), "config"], capture_output=True, text=True, timeout=60,
                       env={"PATH": "/usr/bin:/bin", "POSTGRES_PASSWORD": "not-a-real-secret"})
    assert r.returncode == 0, r.stderr
    return yaml.safe_load(r.stdout)


def test_compose_resolves_to_the_stack(resolved):
    services = resolved["services"]
    assert set(services) == SERVICES
    assert all(s.get("user") not in ("root", "0") for s in services.values())  # the image's user "study"
    assert services["ray-head"]["depends_on"]["mlflow"]["condition"] == "service_healthy"
    assert services["mlflow"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["ray-worker"]["depends_on"]["ray-head"]["condition"] == "service_healthy"
    for name in ("postgres", "mlflow", "ray-head"):
        assert services[name]["healthcheck"]["test"], name
    gpu = services["ray-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert gpu == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert services["ray-worker"]["deploy"]["replicas"] >= 1
    assert "postgresql://mlflow:not-a-real-secret@postgres:5432/mlflow" in \
        services["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"]
    assert "--workers=2" in services["mlflow"]["command"]
    for name in ("ray-head", "ray-worker"):  # one shared volume for storage_path and data
        assert "shared:/shared:rw" in services[name]["volumes"]
        assert services[name]["environment"]["STUDY_STORAGE"].startswith("/shared/")


def test_compose_publishes_ports_on_loopback_only(resolved):
    published = [p for s in resolved["services"].values() for p in s.get("ports", [])]
    assert published and all(str(p).startswith("127.0.0.1:") for p in published), published
    assert any(":8265:8265" in p for p in published) and any(":5000:5000" in p for p in published)


def test_compose_takes_credentials_only_from_the_environment():
    tool = require_tool("docker-compose")
    r = subprocess.run([tool, "-f", str(COMPOSE), "config"], capture_output=True, text=True, timeout=60,
                       env={"PATH": "/usr/bin:/bin"})
    assert r.returncode != 0 and "set POSTGRES_PASSWORD in the environment" in r.stderr
    for f in [COMPOSE, *(DOCKER / "kuberay").glob("*.yaml"), DOCKER / "Dockerfile"]:
        for line in f.read_text().splitlines():
            if re.search(r"(?i)(password|secret|token)\w*\s*[:=]\s*\S", line.split("#")[0]):
                assert re.search(r"\$\{\w+|secretKeyRef", line), f"{f.name}: {line.strip()}"


def test_every_image_is_pinned_and_the_study_image_is_shared():
    raw = yaml.safe_load(COMPOSE.read_text())
    froms = re.findall(r"^FROM\s+(\S+)", (DOCKER / "Dockerfile").read_text(), re.MULTILINE)
    every = images(raw) + images(kube_docs()) + froms
    assert froms and len(every) > 3
    for image in every:
        name, _, tag = image.rpartition(":")
        assert name and tag and tag != "latest" and "/" not in tag, image
    assert {raw["services"][s]["image"] for s in ("mlflow", "ray-head", "ray-worker")} == {STUDY_IMAGE}
    assert set(images(kube_docs())) == {STUDY_IMAGE}


def test_dockerfile_installs_the_locked_set_as_a_non_root_user():
    text = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"pip install -r requirements\.lock", text)
    lock = (DOCKER.parent / "requirements.lock").read_text()
    assert "torch==2.14.1" in lock and "torchvision==0.29.1" in lock
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    assert "python:3.11" in re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE)[0]


def test_kuberay_manifests_describe_a_gpu_cluster_and_a_study_job():
    docs = {d["kind"]: d for d in kube_docs()}
    assert set(docs) == {"RayCluster", "RayJob", "PersistentVolumeClaim"}
    cluster, job = docs["RayCluster"]["spec"], docs["RayJob"]["spec"]
    (gpu,) = cluster["workerGroupSpecs"]
    worker = gpu["template"]["spec"]["containers"][0]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"
    head = cluster["headGroupSpec"]["template"]["spec"]
    env = {e["name"]: e for e in head["containers"][0]["env"]}
    assert env["MLFLOW_TRACKING_URI"]["valueFrom"]["secretKeyRef"]["name"] == "cxr-study-mlflow"
    assert env["STUDY_STORAGE_SHARED"]["value"] == "true"
    volumes = {v["name"]: v for v in head["volumes"]}
    assert volumes["specs"]["configMap"]["name"] == "cxr-study-specs"
    assert volumes["shared"]["persistentVolumeClaim"]["claimName"] == docs["PersistentVolumeClaim"]["metadata"]["name"]
    assert docs["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteMany"]
    assert job["clusterSelector"]["ray.io/cluster"] == docs["RayCluster"]["metadata"]["name"]
    spec_file = job["entrypoint"].split()[2]
    assert job["entrypoint"].startswith("study run /specs/") and "--address auto" in job["entrypoint"]
    assert (DOCKER.parent / "search_spaces" / Path(spec_file).name).is_file()
