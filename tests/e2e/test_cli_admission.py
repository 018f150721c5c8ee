"""Certificate admission from the command line: a CA, a node that trusts it, certified writes."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tablechain.platform.cli import app
from tablechain.platform.config import load_settings, open_node
from tablechain.platform.server import serve_in_thread

runner = CliRunner()
FIELDS = '[{"field":"id","type":"int","PK":1}]'


def run(*args: str, code: int = 0, env: dict | None = None):
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code == code, (result.output, result.exception)
    return result


def test_admission_from_the_command_line(tmp_path: Path) -> None:
    run("ca", "init", str(tmp_path / "root"), "--name", "Test Root")
    run("ca", "init", str(tmp_path / "issuing"), "--name", "Issuing CA",
        "--parent", str(tmp_path / "root"))
    alice = json.loads(run("account", "new", "--out", str(tmp_path / "alice.key"), "--json").stdout)
    run("ca", "issue", str(tmp_path / "issuing"), "--name", "alice", "--public-key",
        alice["public_key"], "--out", str(tmp_path / "alice.pem"))
    root_pem = tmp_path / "root" / "ca.pem"
    run("node", "init", str(tmp_path / "node"), "--admission-root", str(root_pem),
        "--max-block-wait-ms", "5")
    with serve_in_thread(open_node(load_settings(tmp_path / "node"))) as srv:
        base = ["--url", srv.url, "--key", str(tmp_path / "alice.key")]
        refused = run("table", "create", "t", FIELDS, *base, code=1)
        assert "caCERTIFICATE_REQUIRED" in refused.output
        ok = run("table", "create", "t", FIELDS, *base, "--json",
                 env={"TABLECHAIN_CERT": str(tmp_path / "alice.pem")})
        assert json.loads(ok.stdout)["result"] == "tesSUCCESS"
        # A stranger's key with alice's certificate is refused.
        run("account", "new", "--out", str(tmp_path / "eve.key"))
        eve = run("table", "create", "e", FIELDS, "--url", srv.url, "--key",
                  str(tmp_path / "eve.key"), code=1,
                  env={"TABLECHAIN_CERT": str(tmp_path / "alice.pem")})
        assert "caKEY_MISMATCH" in eve.output
