"""The README's `prefect deploy --all`: every deployment of prefect.yaml registers on a Prefect server.

A real `prefect server start` on a free 127.0.0.1 port (its own PREFECT_HOME and SQLite
database), the work pool of prefect.yaml, then Prefect's own CLI, as a user runs it from the
repository folder: deploy, and list the deployments and work pools back.
"""

from __future__ import annotations

import importlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.deployments import ROOT

PREFECT = str(Path(sys.executable).parent / "prefect")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A Prefect server of its own; yields the environment that points Prefect's CLI at it."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    environment = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "COLUMNS": "250",  # tables wide enough for whole names
    }
    server = subprocess.Popen(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, "prefect server start exited"
            assert time.monotonic() < deadline, "the Prefect server did not answer within 120 s"
            time.sleep(0.5)
        yield environment
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def prefect(environment: dict[str, str], *arguments: str) -> str:
    """Run Prefect's CLI from the repository folder; its output, after checking it succeeded."""
    done = subprocess.run(
        [PREFECT, "--no-prompt", *arguments], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, f"prefect {' '.join(arguments)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def flow_name(entrypoint: str) -> str:
    path, function = entrypoint.split(":")
    return str(getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), function).name)


def test_prefect_deploy_all_registers_every_deployment_of_prefect_yaml(prefect_server: dict[str, str]) -> None:
    declared = yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))["deployments"]
    for pool in {str(deployment["work_pool"]["name"]) for deployment in declared}:
        prefect(prefect_server, "work-pool", "create", pool, "--type", "process")
    prefect(prefect_server, "deploy", "--all")

    expected = {f"{flow_name(deployment['entrypoint'])}/{deployment['name']}": deployment for deployment in declared}
    listed = prefect(prefect_server, "deployment", "ls")
    assert all(name in listed for name in expected), listed
    assert "ctsync" in prefect(prefect_server, "work-pool", "ls")

    with temporary_settings({PREFECT_API_URL: prefect_server["PREFECT_API_URL"]}):
        with get_client(sync_client=True) as client:
            registered = {
                f"{client.read_flow(deployment.flow_id).name}/{deployment.name}": deployment
                for deployment in client.read_deployments()
            }
    assert registered.keys() == expected.keys()
    for name, declaration in expected.items():
        deployment = registered[name]
        assert deployment.work_pool_name == declaration["work_pool"]["name"]
        assert deployment.parameters == declaration.get("parameters", {})
        intervals = [getattr(schedule.schedule, "interval", None) for schedule in deployment.schedules]
        assert [interval.total_seconds() for interval in intervals if interval] == [
            schedule["interval"] for schedule in declaration.get("schedules", [])
        ]
