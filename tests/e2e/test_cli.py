"""The ``tablechain`` command line, through typer's CliRunner against a real RPC server."""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tablechain.ledger.chain import Ledger
from tablechain.platform.cli import app, main
from tablechain.platform.config import (
    init_datadir,
    load_cluster,
    load_genesis,
    load_settings,
    national_available,
    open_node,
    read_key_file,
)
from tablechain.platform.server import BackgroundServer, serve_in_thread

runner = CliRunner()
FIELDS = '[{"field":"id","type":"int","PK":1},{"field":"name","type":"varchar","length":16}]'


def run(*args: str, code: int = 0) -> Any:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, (result.output, result.exception)
    return result


def run_json(*args: str) -> Any:
    return json.loads(run(*args, "--json").stdout)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, BackgroundServer]]:
    datadir = tmp_path_factory.mktemp("cli") / "node"
    settings = init_datadir(datadir, max_block_wait_ms=5)
    with serve_in_thread(open_node(settings)) as srv:
        yield datadir, srv


def new_key(tmp: Path, name: str) -> tuple[Path, str]:
    path = tmp / f"{name}.key"
    info = run_json("account", "new", "--out", str(path))
    return path, info["address"]


def test_node_init_writes_a_data_directory(tmp_path: Path) -> None:
    datadir = tmp_path / "d"
    info = run_json("node", "init", str(datadir), "--network-id", "77", "--port", "6006",
                    "--max-block-txs", "50")
    assert info["network_id"] == 77 and info["suite"] == "international"
    assert stat.S_IMODE(os.stat(datadir / "validator.key").st_mode) == 0o600
    node_json = json.loads((datadir / "node.json").read_text())
    assert node_json["rpc"] == {"host": "127.0.0.1", "port": 6006, "max_body_bytes": 2097152}
    assert node_json["db_url"] == "sqlite:///{datadir}/node.db"
    assert node_json["mempool_per_account"] == 10_000
    node_json["mempool_per_account"] = 7
    (datadir / "node.json").write_text(json.dumps(node_json))
    assert open_node(load_settings(datadir)).mempool.max_per_account == 7
    settings = load_settings(datadir)
    assert settings.resolved_db_url == f"sqlite:///{datadir.resolve()}/node.db"
    genesis = load_genesis(settings)
    assert genesis.max_block_txs == 50 and genesis.hash() == info["chain"]
    key = read_key_file(settings.key_path, settings.key_scheme)
    assert genesis.validators[0]["address"] == info["validator"]
    assert key.public_key.to_bytes().hex() == genesis.validators[0]["public_key"]
    # a second init refuses to overwrite the chain
    result = run("node", "init", str(datadir), code=1)
    assert "tecBAD_CONFIG" in result.stderr and "already" in result.stderr


def test_node_init_national(tmp_path: Path) -> None:
    if national_available():
        info = run_json("node", "init", str(tmp_path / "n"), "--national")
        assert info["suite"] == "national"
    else:
        result = run("node", "init", str(tmp_path / "n"), "--national", code=1)
        assert "SM2" in result.stderr
        assert not (tmp_path / "n" / "genesis.json").exists()


def test_account_new(tmp_path: Path) -> None:
    path, address = new_key(tmp_path, "a")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert "0x" + read_key_file(path).address().hex() == address
    result = run("account", "new", "--out", str(path), code=1)  # never overwrites a key
    assert "already exists" in result.stderr
    ed = run_json("account", "new", "--out", str(tmp_path / "ed.key"), "--scheme", "ed25519")
    assert (tmp_path / "ed.key").read_text().startswith("ed25519:")
    assert read_key_file(tmp_path / "ed.key").scheme == "ed25519" and ed["scheme"] == "ed25519"
    run("account", "new", "--out", str(tmp_path / "x.key"), "--scheme", "rsa", code=1)
    # without --out the key lands in ./<address>.key
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        printed = run("account", "new").stdout.strip()
        assert (tmp_path / f"{printed}.key").exists()
    finally:
        os.chdir(cwd)


def test_table_commands(tmp_path: Path, served: tuple[Path, BackgroundServer]) -> None:
    datadir, srv = served
    alice, alice_addr = new_key(tmp_path, "alice")
    bob, bob_addr = new_key(tmp_path, "bob")
    common = ["--url", srv.url]
    a = [*common, "--key", str(alice)]
    b = [*common, "--key", str(bob)]

    status = run_json("node", "status", str(datadir), "--url", srv.url)
    assert status["ledger_index"] >= 0
    out = run("node", "status", "--url", srv.url).stdout
    assert "network_id" in out

    record = run_json("table", "create", "cli_t", FIELDS, *a)
    assert record["result"] == "tesSUCCESS"
    run("table", "grant", "cli_t", bob_addr, '{"select":true,"insert":true}', *a)
    run("table", "insert", "cli_t", '[{"id":1,"name":"one"},{"id":2,"name":"two"}]', *a)
    run("table", "insert", "cli_t", '{"id":3,"name":"bob"}', "--owner", alice_addr, *b)
    rows = run_json("table", "get", "cli_t", *a)
    assert rows == [{"id": 1, "name": "one"}, {"id": 2, "name": "two"}, {"id": 3, "name": "bob"}]
    shown = run("table", "get", "cli_t", '[["name"], {"id": {"$ge": 2}}]', "--owner",
                alice_addr, *b).stdout
    assert "│ two" in shown and "│ bob" in shown and "│ one" not in shown
    assert "2 row(s) of cli_t" in shown

    done = run_json("table", "update", "cli_t", '{"name":"uno"}', '{"id":1}', '{"id":9}', *a)
    assert done["receipt"]["details"]["affected"] == 1
    done = run_json("table", "delete", "cli_t", '{"id":2}', *a)
    assert done["receipt"]["details"]["affected"] == 1
    result = run("table", "delete", "cli_t", '{"id":3}', "--owner", alice_addr, *b, code=1)
    assert "tefBAD_AUTH_NO" in result.stderr
    assert [r["name"] for r in run_json("table", "get", "cli_t", *a)] == ["uno", "bob"]

    info = run_json("table", "info", "cli_t", "--owner", alice_addr, *common)
    assert info["rows"] == 2 and set(info["grants"]) == {bob_addr}
    run("table", "info", "cli_t", *common, code=1)  # needs --owner or --key

    queued = run_json("table", "insert", "cli_t", '[{"id":7,"name":"q"}]', "--no-wait", *a)
    assert queued["engine_result"] == "tesSUCCESS"
    tx = run_json("tx", queued["hash"], *common) if _committed(srv, queued["hash"]) else None
    assert tx is not None and tx["result"] == "tesSUCCESS"
    assert "tesSUCCESS" in run("tx", queued["hash"], *common).stdout
    acct = run_json("account", "info", *a)
    assert acct["account"] == alice_addr and acct["sequence"] == acct["next_sequence"] - 1

    run("table", "rename", "cli_t", "cli_t2", *a)
    assert len(run_json("table", "get", "cli_t2", *a)) == 3
    run("table", "drop", "cli_t2", *a)
    result = run("table", "get", "cli_t2", *a, code=1)
    assert "tefTABLE_NOTEXIST" in result.stderr

    # bad input: clear errors, exit code 1
    assert "--key" in run("table", "insert", "t", "[]", *common, code=1).stderr
    assert "not valid JSON" in run("table", "insert", "t", "[{", *a, code=1).stderr
    assert "tecBAD_CONFIG" in run("table", "get", "t", '{"a":1}', *a, code=1).stderr
    assert "clientTransport" in run("node", "status", "--url", "http://127.0.0.1:9",
                                    code=1).stderr


def test_confidential_table_commands(tmp_path: Path,
                                     served: tuple[Path, BackgroundServer]) -> None:
    _, srv = served
    alice, alice_addr = new_key(tmp_path, "alice")
    bob_path = tmp_path / "bob.key"
    bob_info = run_json("account", "new", "--out", str(bob_path))
    a = ["--url", srv.url, "--key", str(alice)]
    b = ["--url", srv.url, "--key", str(bob_path)]
    assert "cannot carry a rule" in run("table", "create", "sec", FIELDS, "--confidential",
                                        "--rule", "{}", *a, code=1).stderr
    run("table", "create", "sec", FIELDS, "--confidential", *a)
    run("table", "insert", "sec", '[{"id":1,"name":"hidden"}]', *a)
    assert run_json("table", "get", "sec", *a) == [{"id": 1, "name": "hidden"}]
    # Without a Token the grant is refused; with Bob's public key the key is wrapped to him.
    refused = run("table", "grant", "sec", bob_info["address"], '{"select":true}', *a, code=1)
    assert "tefTABLE_CONFIDENTIAL" in refused.stderr
    run("table", "grant", "sec", bob_info["address"], '{"select":true,"insert":true}',
        "--public-key", bob_info["public_key"], *a)
    run("table", "insert", "sec", '{"id":2,"name":"bob"}', "--owner", alice_addr, *b)
    rows = run_json("table", "get", "sec", "--owner", alice_addr, *b)
    assert rows == [{"id": 1, "name": "hidden"}, {"id": 2, "name": "bob"}]
    info = run_json("table", "info", "sec", "--owner", alice_addr, "--url", srv.url)
    assert "hidden" not in json.dumps(info) and info["token"]


def _committed(srv: BackgroundServer, tx_hash: str) -> bool:
    srv.node.wait_for(tx_hash, 10)
    return True


@contextlib.contextmanager
def _served_table(tmp_path: Path, inserts: list[str]) -> Iterator[tuple[Path, Any]]:
    """A node in ``tmp_path/node`` serving table ``r`` after the given inserts (one each)."""
    datadir = tmp_path / "node"
    settings = init_datadir(datadir, max_block_wait_ms=5)
    key, _ = new_key(tmp_path, "k")
    with serve_in_thread(open_node(settings)) as srv:
        a = ["--url", srv.url, "--key", str(key)]
        run("table", "create", "r", FIELDS, *a)
        for rows in inserts:
            run("table", "insert", "r", rows, *a)
        yield datadir, settings


def test_node_rebuild_to_a_height(tmp_path: Path) -> None:
    with _served_table(tmp_path, [json.dumps([{"id": i, "name": str(i)}]) for i in range(3)]
                       ) as (datadir, settings):
        pass
    ledger = Ledger(settings.resolved_db_url, load_genesis(settings))
    try:
        head = ledger.height
        headers = {h: ledger.block(h) for h in (2, head)}
    finally:
        ledger.close()
    full = run_json("node", "rebuild", str(datadir))
    assert full["height"] == head and full["matches_chain"] is True
    assert full["state_root"] == headers[head]["header"]["state_root"]
    target = tmp_path / "at2.db"
    part = run_json("node", "rebuild", str(datadir), "--height", "2", "--out",
                    f"sqlite:///{target}")
    assert part["height"] == 2 and part["ledger_hash"] == headers[2]["hash"]
    rebuilt = Ledger(f"sqlite:///{target}", load_genesis(settings))
    try:
        assert rebuilt.table_info(rebuilt.block(1)["transactions"][0]["Account"], "r")["rows"] == 1
    finally:
        rebuilt.close()
    result = run("node", "rebuild", str(datadir), code=1)  # rebuild-<head>.db already exists
    assert "already exists" in result.stderr
    for bad in ("bogus://x", f"sqlite:///{tmp_path / 'missing' / 'dir' / 'x.db'}"):
        result = run("node", "rebuild", str(datadir), "--out", bad, code=1)
        assert "tecBAD_CONFIG" in result.stderr and "cannot open the database" in result.stderr
    result = run("node", "rebuild", str(datadir), "--height", str(head + 5), "--out",
                 f"sqlite:///{tmp_path / 'x.db'}", code=1)
    assert "txnNotFound" in result.stderr or "outside" in result.stderr


def test_node_rebuild_interrupted_then_run_again(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A rebuild killed midway leaves no ``rebuild-<height>.db`` that looks finished; run again,
    it completes (from where it stopped) and matches the chain."""
    with _served_table(tmp_path, [json.dumps([{"id": i, "name": str(i)}]) for i in range(3)]
                       ) as (datadir, settings):
        pass
    real_apply = Ledger.apply_block

    def killed(self, header, txs, certificate=None):  # type: ignore[no-untyped-def]
        if header.height == 3:
            raise KeyboardInterrupt
        return real_apply(self, header, txs, certificate)

    monkeypatch.setattr(Ledger, "apply_block", killed)
    result = runner.invoke(app, ["node", "rebuild", str(datadir), "--height", "4"])
    assert result.exit_code == 130  # Ctrl-C at block 3
    monkeypatch.undo()
    assert not (settings.datadir / "rebuild-4.db").exists()
    again = run_json("node", "rebuild", str(datadir), "--height", "4")
    assert again["height"] == 4 and again["matches_chain"] is True
    assert again["database"] == f"sqlite:///{settings.datadir / 'rebuild-4.db'}"
    assert sorted(p.name for p in settings.datadir.glob("rebuild-*")) == ["rebuild-4.db"]
    rebuilt = Ledger(again["database"], load_genesis(settings))
    try:
        assert rebuilt.head.hash(rebuilt.suite) == again["ledger_hash"]
    finally:
        rebuilt.close()


def test_node_verify_finds_an_edit_behind_the_chain(tmp_path: Path) -> None:
    import sqlite3

    with _served_table(tmp_path, ['[{"id":1,"name":"one"},{"id":2,"name":"two"}]']
                       ) as (datadir, settings):
        # Verifying a running node reads one snapshot.
        assert run_json("node", "verify", str(datadir), "--signatures")["ok"] is True
    shown = run("node", "verify", str(datadir)).stdout
    assert "verified" in shown
    db = sqlite3.connect(settings.resolved_db_url.removeprefix("sqlite:///"))
    (table,) = db.execute("SELECT name FROM sqlite_master WHERE name LIKE 't!_%' ESCAPE '!'"
                          ).fetchone()
    db.execute(f'UPDATE "{table}" SET name = ? WHERE id = 2', ("evil",))
    db.commit()
    db.close()
    result = run("node", "verify", str(datadir), code=2)
    assert "tampered table" in result.stderr and "/r" in result.stderr
    report = json.loads(run("node", "verify", str(datadir), "--json", code=2).stdout)
    assert report["ok"] is False and [p["kind"] for p in report["problems"]] == ["table"]
    db = sqlite3.connect(settings.resolved_db_url.removeprefix("sqlite:///"))
    db.execute("UPDATE tc_blocks SET header = '{}'")  # even the head block is unreadable
    db.commit()
    db.close()
    assert "head block" in run("node", "verify", str(datadir), code=2).stderr


def test_node_dump_and_audit(tmp_path: Path) -> None:
    with _served_table(tmp_path, ['[{"id":1,"name":"one"}]', '[{"id":2,"name":"two"}]']
                       ) as (datadir, _):
        pass
    ledger = Ledger(load_settings(datadir).resolved_db_url, load_genesis(load_settings(datadir)))
    try:
        account = ledger.block(1)["transactions"][0]["Account"]
    finally:
        ledger.close()
    out = tmp_path / "r.jsonl"
    args = [str(datadir), "--owner", account, "--table", "r"]
    assert run_json("node", "dump", *args, "--out", str(out))["written"] == 3
    assert [json.loads(x)["op_type"] for x in out.read_text().splitlines()] == [1, 6, 6]
    found = run_json("node", "audit", *args, "--fields", "name", "--where", '{"id": 2}')
    assert [[x["after"] for x in c["changes"]] for c in found] == [["two"]]
    shown = run("node", "audit", *args, "--fields", "name").stdout
    assert "2 transaction(s) changed name of r" in shown
    assert "tefTABLE_NOTEXIST" in run("node", "dump", str(datadir), "--owner", account,
                                      "--table", "nope", "--out", str(out), code=1).stderr


def test_main_returns_exit_codes() -> None:
    assert main(["--help"]) == 0
    assert main(["node", "status", "--url", "http://127.0.0.1:9"]) == 1
    assert main(["no-such-command"]) == 2


def refused(*args: str, code: str = "tecBAD_CONFIG") -> str:
    """Run a command that must fail cleanly: exit 1 and ``error: <code>: ...``, no traceback."""
    result = runner.invoke(app, list(args))
    assert result.exit_code == 1, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    assert f"error: {code}: " in result.stderr, result.stderr
    return " ".join(result.stderr.split())  # rich wraps long lines


def test_node_start_refuses_a_port_out_of_range(tmp_path: Path) -> None:
    settings = init_datadir(tmp_path / "d")
    for port in ("70000", "-1"):
        assert "0 to 65535" in refused("node", "start", str(settings.datadir), "--port", port)
    assert not (settings.datadir / "rpc.url").exists()


def test_init_refuses_options_out_of_range_and_creates_nothing(tmp_path: Path) -> None:
    target = tmp_path / "d"
    for option, value in (("--max-block-txs", "0"), ("--max-block-txs", "-5"),
                          ("--max-block-wait-ms", "0"), ("--port", "70000"),
                          ("--network-id", "-1")):
        refused("node", "init", str(target), option, value)
        assert not target.exists()
        if option != "--port":
            refused("cluster", "init", "--dir", str(target), option, value)
            assert not target.exists()
    assert "--max-block-txs must be a positive integer, got 0" in refused(
        "node", "init", str(target), "--max-block-txs", "0")
    assert "cannot read the admission root" in refused(
        "node", "init", str(target), "--admission-root", str(tmp_path / "missing.pem"))
    assert not target.exists()


def test_a_data_directory_this_user_cannot_write_is_a_clear_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A node started once as another user (root) leaves its LOCK file, 0600, behind: the next
    start, as the service's user, cannot open it: a refusal naming the file, not a
    PermissionError traceback; so is a directory where the user can write the lock file but
    nothing else."""
    from tablechain.platform import config

    settings = init_datadir(tmp_path / "d")
    real_open = os.open

    def not_ours(path, flags, mode=0o777):  # type: ignore[no-untyped-def]
        if str(path).endswith(config.LOCK_FILE):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, mode)

    monkeypatch.setattr(config.os, "open", not_ours)
    message = refused("node", "start", str(settings.datadir), "--port", "0")
    assert "Permission denied" in message and str(settings.datadir / "LOCK") in message
    monkeypatch.undo()
    real_write = Path.write_text

    def read_only(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if self.name == "rpc.tmp":  # a directory the user cannot write, its lock file it can
            raise PermissionError(13, "Permission denied", str(self))
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", read_only)
    message = refused("node", "start", str(settings.datadir), "--port", "0")
    assert "Permission denied" in message and "rpc.url" in message


def test_init_over_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("not a directory")
    assert "not a directory" in refused("node", "init", str(tmp_path / "f"))
    assert "not a directory" in refused("cluster", "init", "--dir", str(tmp_path / "f"))
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "v1").write_text("not a directory")
    assert "not an empty directory" in refused("cluster", "init", "--dir", str(tmp_path / "c"))
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["v1"]


def test_an_interrupted_init_leaves_nothing_that_blocks_the_next(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An init stopped after the key was written but before node.json left DIR with a key and
    no node: start said 'run init first', init said 'already holds a node'. Init now builds
    beside DIR and renames into place once complete: a failed one leaves nothing, a killed one
    only its own ``.partial`` directory, which the next init neither reads nor touches."""
    from tablechain.platform import config

    datadir = tmp_path / "node"
    real_write = Path.write_text

    def stopped_at(name: str, error: BaseException) -> Any:
        def write_text(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            if self.name == name:
                raise error
            return real_write(self, *args, **kwargs)
        return write_text

    monkeypatch.setattr(Path, "write_text", stopped_at("node.json", KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        init_datadir(datadir)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(config.shutil, "rmtree", lambda *args, **kwargs: None)  # killed instead
    with pytest.raises(KeyboardInterrupt):
        init_datadir(datadir)
    (left,) = tmp_path.iterdir()
    assert left.name.startswith("node.init-") and left.name.endswith(".partial")
    assert sorted(p.name for p in left.iterdir()) == ["genesis.json", "validator.key"]
    left_key = (left / "validator.key").read_text()
    monkeypatch.undo()
    info = run_json("node", "init", str(datadir), "--port", "0")
    settings = load_settings(datadir)
    with serve_in_thread(open_node(settings)) as srv:
        status = run_json("node", "status", str(datadir), "--url", srv.url)
    assert status["validator"] == info["validator"] and status["ledger_index"] == 0
    assert (left / "validator.key").read_text() == left_key  # never deleted nor read
    assert "already holds a node" in refused("node", "init", str(datadir))
    # the same for a cluster, and a failure (a full disk) is a clear error that leaves nothing
    monkeypatch.setattr(Path, "write_text",
                        stopped_at("node.json", OSError(28, "No space left on device")))
    assert "No space left on device" in refused("cluster", "init", "--dir",
                                                str(tmp_path / "c"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node", left.name]
    monkeypatch.undo()
    run_json("cluster", "init", "--dir", str(tmp_path / "c"))
    layout = load_cluster(tmp_path / "c")
    assert [load_settings(m.datadir).extra["validator_id"] for m in layout.members] == \
        ["v0", "v1", "v2", "v3"]
    # an empty directory made for the node is filled (and keeps its mode); another is refused
    (tmp_path / "empty").mkdir(mode=0o700)
    run_json("node", "init", str(tmp_path / "empty"))
    assert stat.S_IMODE((tmp_path / "empty").stat().st_mode) == 0o700
    assert load_settings(tmp_path / "empty").key_path.exists()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert "not an empty directory" in refused("node", "init", str(tmp_path / "other"))
    # what an interrupted init of an earlier version left: refused, saying why; the key stays
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "validator.key").write_text(left_key)
    assert "holds validator.key but no node.json" in refused("node", "init",
                                                             str(tmp_path / "old"))
    assert (tmp_path / "old" / "validator.key").read_text() == left_key


@pytest.mark.parametrize("field, value", [
    ("timestamp_ms", "1e400"), ("max_block_txs", "-1"), ("max_block_txs", "1.5"),
    ("network_id", '"7"'), ("validators", "5"), ("admission", "[1]"),
])
def test_a_malformed_genesis_is_a_clear_error(tmp_path: Path, field: str, value: str) -> None:
    settings = init_datadir(tmp_path / "d")
    text = json.dumps({**json.loads(settings.genesis_path.read_text()), field: "@"})
    settings.genesis_path.write_text(text.replace('"@"', value))
    assert field in refused("node", "verify", str(settings.datadir))
    refused("node", "follow", "http://127.0.0.1:9", "--genesis", str(settings.genesis_path),
            "--db", f"sqlite:///{tmp_path}/r.db")  # its strict parser refuses floats already


@pytest.mark.parametrize("db_url", ["bogus://u:secret@host/x", "not a url",
                                    "sqlite:////nonexistent/dir/node.db"])
def test_a_database_that_cannot_be_opened_is_a_clear_error(tmp_path: Path, db_url: str) -> None:
    settings = init_datadir(tmp_path / "d", db_url=db_url, port=0)
    for command in ("verify", "start", "rebuild"):
        shown = refused("node", command, str(settings.datadir))
        assert "cannot open the database" in shown and "secret" not in shown
    assert not (settings.datadir / "rpc.url").exists()
    shown = refused("node", "follow", "http://127.0.0.1:9", "--genesis",
                    str(settings.genesis_path), "--db", db_url)
    assert "cannot open the database" in shown and "secret" not in shown


def test_a_node_refuses_a_key_that_genesis_does_not_name(tmp_path: Path) -> None:
    from tablechain.platform.errors import ConfigError

    settings = init_datadir(tmp_path / "d", port=0)
    hex_key = settings.key_path.read_text().strip()
    node_json = json.loads((settings.datadir / "node.json").read_text())
    # the same hex read as an Ed25519 key is another account
    (settings.datadir / "node.json").write_text(json.dumps({**node_json,
                                                           "key_scheme": "ed25519"}))
    with pytest.raises(ConfigError, match="is not the key of a validator"):
        open_node(load_settings(settings.datadir))
    (settings.datadir / "node.json").write_text(json.dumps(node_json))
    settings.key_path.write_text("11" * 32 + "\n")  # another secp256k1 key
    with pytest.raises(ConfigError, match="is not the key of a validator"):
        open_node(load_settings(settings.datadir))
    assert "is not the key of a validator" in refused("node", "start", str(settings.datadir))
    settings.key_path.write_text(hex_key + "\n")
    open_node(load_settings(settings.datadir)).ledger.close()  # the right key still opens
