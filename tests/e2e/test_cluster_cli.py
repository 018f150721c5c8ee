"""``tablechain cluster up`` as a real process (on the session's Ray instance, via --address),
``tablechain cluster status`` against it, the Python client on two different validators, and
Ctrl-C stopping the cluster."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tablechain.crypto import address_to_text, generate_private_key
from tablechain.platform.cli import app
from tablechain.platform.client import Client
from tablechain.platform.config import load_cluster
from tablechain.platform.demo import NodeProcess

pytestmark = pytest.mark.ray

FIELDS = [{"field": "id", "type": "int", "PK": 1}, {"field": "name", "type": "varchar",
                                                     "length": 16}]


def read_json_object(stream: Any, timeout: float) -> dict[str, Any]:
    """The first JSON object printed on ``stream`` (indented over several lines)."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        if line.startswith("{") or text:
            text += line
            try:
                return json.loads(text)  # type: ignore[no-any-return]
            except json.JSONDecodeError:
                continue
    raise AssertionError(f"no JSON object from `cluster up`; got {text!r}")


def test_cluster_up_status_client_and_ctrl_c(ray_session: Any, tmp_path: Path) -> None:
    root = tmp_path / "cluster"
    address = ray_session.get_runtime_context().gcs_address
    log = open(tmp_path / "up.err", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "tablechain.platform.cli", "cluster", "up", "--validators", "4",
         "--dir", str(root), "--address", address, "--max-block-wait-ms", "30", "--json"],
        stdout=subprocess.PIPE, stderr=log, env=NodeProcess.environment(), text=True)
    try:
        shown = read_json_object(proc.stdout, timeout=180)
        urls = shown["validators"]
        assert sorted(urls) == ["v0", "v1", "v2", "v3"]
        assert all(u.startswith("http://127.0.0.1:") for u in urls.values())
        layout = load_cluster(root)
        assert shown["namespace"] == layout.namespace and len(layout.members) == 4

        owner = generate_private_key()
        with Client(urls["v2"], owner) as client:
            client.create_table("people", FIELDS)
            record = client.insert("people", [{"id": 1, "name": "ada"}])
        owner_addr = address_to_text(owner.address())
        with Client(urls["v0"], owner) as other:
            deadline = time.monotonic() + 60
            while other.server_info()["ledger_index"] < record["ledger_index"]:
                assert time.monotonic() < deadline, "v0 never reached the block"
                time.sleep(0.05)
            assert other.get(owner_addr, "people") == [{"id": 1, "name": "ada"}]
            assert other.tx(record["hash"])["ledger_index"] == record["ledger_index"]

        result = CliRunner().invoke(app, ["cluster", "status", "--dir", str(root), "--json"])
        assert result.exit_code == 0, result.output
        rows = json.loads(result.stdout)
        assert [r["validator"] for r in rows] == ["v0", "v1", "v2", "v3"]
        assert all(r["height"] >= record["ledger_index"] - 1 for r in rows), rows
        assert {r["proposer"] for r in rows} <= {"v0", "v1", "v2", "v3"}
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        finally:
            log.close()
    assert code == 0, (tmp_path / "up.err").read_text()
    assert "cluster stopped" in (tmp_path / "up.err").read_text()
    assert not any((m.datadir / "rpc.url").exists() for m in load_cluster(root).members)
    down = CliRunner().invoke(app, ["cluster", "status", "--dir", str(root)])
    assert down.exit_code == 1 and "no validator" in down.output


def test_cluster_up_detach_then_down(ray_session: Any, tmp_path: Path) -> None:
    root = tmp_path / "detached"
    address = ray_session.get_runtime_context().gcs_address
    refused = CliRunner().invoke(app, ["cluster", "up", "--dir", str(root), "--detach"])
    assert refused.exit_code == 1 and "--detach needs --address" in refused.output
    done = subprocess.run(
        [sys.executable, "-m", "tablechain.platform.cli", "cluster", "up", "--validators", "4",
         "--dir", str(root), "--address", address, "--detach", "--json"],
        capture_output=True, text=True, env=NodeProcess.environment(), timeout=180)
    assert done.returncode == 0, done.stderr
    urls = json.loads(done.stdout)["validators"]
    try:
        with Client(urls["v1"]) as client:  # the actors outlived the process that made them
            assert client.server_info()["consensus"]["validator"] == "v1"
    finally:
        down = subprocess.run(
            [sys.executable, "-m", "tablechain.platform.cli", "cluster", "down", "--dir",
             str(root), "--address", address],
            capture_output=True, text=True, env=NodeProcess.environment(), timeout=120)
    assert down.returncode == 0, down.stderr
    status = CliRunner().invoke(app, ["cluster", "status", "--dir", str(root)])
    assert status.exit_code == 1 and "no validator" in status.output


def test_a_validator_whose_directory_is_in_use_fails_clearly(ray_session: Any,
                                                             tmp_path: Path) -> None:
    from tablechain.platform.cluster import ClusterError, RayCluster
    from tablechain.platform.config import datadir_lock, init_cluster

    layout = init_cluster(tmp_path / "locked", 1)
    cluster = RayCluster(layout, max_restarts=0)
    with datadir_lock(layout.members[0].datadir):
        with pytest.raises(ClusterError, match="another node is running"):
            cluster.start(timeout=90)
    cluster.shutdown()
