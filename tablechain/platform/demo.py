"""``make demo``: a local node on SQLite, a table with row-level rules, two accounts, a restart.

It starts a real node process (``tablechain node start``) on a temporary data directory,
creates the seed's ``tableWithRule`` with its OperationRule, grants a second account, inserts
and reads as both (showing the ``Get`` rule and the ``$account`` / ``$tx_hash`` filling), shows
the rules refusing what they should, restarts the node and shows the data survived; then a
confidential table (rows only key holders read) and the tamper check finding a row edited in
the database file behind the chain's back.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

import tablechain
from tablechain.crypto import generate_private_key
from tablechain.platform.client import Client, ClientError
from tablechain.platform.config import RPC_URL_FILE, init_datadir

__all__ = ["main", "NodeProcess", "SEED_FIELDS", "SEED_RULE"]

# The seed's example (shared/seeds/001, line 21), verbatim in meaning.
SEED_FIELDS: list[dict[str, Any]] = [
    {"field": "id", "type": "int", "length": 11, "PK": 1, "NN": 1, "UQ": 1},
    {"field": "age", "type": "int"},
    {"field": "name", "type": "varchar", "length": 32},
    {"field": "account", "type": "varchar", "length": 64},
    {"field": "txid", "type": "varchar", "length": 64},
]
SEED_RULE: dict[str, Any] = {
    "Insert": {"Condition": {"account": "$account", "txid": "$tx_hash"},
               "Count": {"AccountField": "account", "CountLimit": 5}},
    "Update": {"Condition": {"$or": [{"age": {"$le": 28}}, {"id": 2}]}, "Fields": ["age"]},
    "Delete": {"Condition": {"account": "$account"}},
    "Get": {"Condition": {"id": {"$ge": 3}}},
}
TABLE = "tableWithRule"


class NodeProcess:
    """A ``tablechain node start`` subprocess on a data directory, on a free port."""

    def __init__(self, datadir: Path, log_level: str = "warning") -> None:
        self.datadir = datadir
        self.log_level = log_level
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self._log = datadir / "node.log"

    @staticmethod
    def environment() -> dict[str, str]:
        """This interpreter's environment, with this copy of tablechain first on the path."""
        env = dict(os.environ)
        root = str(Path(tablechain.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        return env

    def start(self, timeout: float = 30.0) -> str:
        url_file = self.datadir / RPC_URL_FILE
        url_file.unlink(missing_ok=True)
        log = open(self._log, "ab")  # noqa: SIM115 - the child keeps it open
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tablechain.platform.cli", "node", "start",
             str(self.datadir), "--port", "0", "--log-level", self.log_level],
            stdout=log, stderr=subprocess.STDOUT, env=self.environment())
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the node exited with {self.proc.returncode}:\n"
                                   + self._log.read_text(errors="replace")[-3000:])
            if url_file.exists():
                self.url = url_file.read_text().strip()
                try:
                    Client(self.url, timeout=2).server_info()
                    return self.url
                except ClientError:
                    pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("the node did not start in time")
            time.sleep(0.05)

    def stop(self, timeout: float = 20.0, sig: int = signal.SIGTERM) -> int:
        """Signal (SIGTERM) and wait: the node commits what is queued and closes its database."""
        if self.proc is None:
            return 0
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        return code

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def log_text(self) -> str:
        return self._log.read_text(errors="replace") if self._log.exists() else ""


def _rows(console: Console, title: str, rows: Sequence[dict[str, Any]],
          columns: Sequence[str] = ("id", "age", "name", "account", "txid")) -> None:
    table = Table(title=title, title_justify="left")
    for name in columns:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*(_short(row.get(name)) for name in columns))
    console.print(table)


def _short(value: Any) -> str:
    if value is None:
        return ""
    text = str(value)
    return text[:10] + "…" + text[-4:] if len(text) > 20 else text


def _expect_refusal(console: Console, what: str, call: Any) -> str:
    try:
        call()
    except ClientError as exc:
        console.print(f"  [yellow]refused[/yellow] {escape(what)}: [bold]{exc.code}[/bold] — "
                      f"{escape(exc.message)}")
        return exc.code
    raise RuntimeError(f"the node accepted {what}, which the rule forbids")


def run(console: Console, workdir: Path) -> None:
    datadir = workdir / "node"
    settings = init_datadir(datadir, chain_name="demo", max_block_wait_ms=20)
    console.rule("[bold]tablechain demo")
    console.print(f"data directory {settings.datadir} (SQLite: {settings.resolved_db_url})")
    node = NodeProcess(datadir)
    url = node.start()
    try:
        alice = Client(url, generate_private_key())
        bob = Client(url, generate_private_key())
        info = alice.server_info()
        console.print(f"node [bold]{info['validator']}[/bold] on {url}, "
                      f"chain {info['chain'][:16]}…, suite {info['suite']}, "
                      f"height {info['ledger_index']}")
        console.print(f"alice = {alice.address}\nbob   = {bob.address}")

        console.rule("alice creates tableWithRule with the seed's OperationRule")
        record = alice.create_table(TABLE, SEED_FIELDS, SEED_RULE)
        console.print(f"  {record['result']} in ledger {record['ledger_index']}, NameInDB "
                      f"{record['receipt']['details']['NameInDB']}")
        record = alice.grant(TABLE, bob.address, select=True, insert=True, update=True,
                             delete=True)
        console.print(f"  alice grants bob select/insert/update/delete: {record['result']}")

        console.rule("both insert (account and txid are filled by the Insert rule)")
        alice.insert(TABLE, [{"id": 1, "age": 20, "name": "alice-1"},
                             {"id": 3, "age": 33, "name": "alice-3"}])
        console.print("  alice inserted ids 1, 3")
        bob.insert(TABLE, [{"id": 2, "age": 40, "name": "bob-2"},
                           {"id": 4, "age": 24, "name": "bob-4"}], owner=alice.address)
        console.print("  bob inserted ids 2, 4 into alice's table")

        console.rule("reads (the Get rule shows only id >= 3)")
        before_alice = alice.get(alice.address, TABLE)
        before_bob = bob.get(alice.address, TABLE)
        _rows(console, "alice reads", before_alice)
        _rows(console, "bob reads", before_bob)

        console.rule("the rules at work")
        _expect_refusal(console, "bob changing a name (the Update rule allows only age)",
                        lambda: bob.update(TABLE, {"name": "x"}, {"id": 4}, owner=alice.address))
        _expect_refusal(console, "bob inserting a row claiming alice's account",
                        lambda: bob.insert(TABLE, [{"id": 9, "account": alice.address}],
                                           owner=alice.address))
        _expect_refusal(console, "bob inserting 4 more rows (CountLimit 5 per account)",
                        lambda: bob.insert(TABLE, [{"id": 10 + i} for i in range(4)],
                                           owner=alice.address))
        done = bob.update(TABLE, {"age": 25}, {"id": 2}, owner=alice.address)
        console.print(f"  bob updates age where id=2 (allowed by id=2): affected "
                      f"{done['receipt']['details']['affected']}")
        done = bob.delete(TABLE, {"id": 1}, owner=alice.address)
        console.print(f"  bob deletes id=1 (alice's row; Delete rule needs account=bob): "
                      f"affected {done['receipt']['details']['affected']}")
        done = bob.delete(TABLE, {"id": 4}, owner=alice.address)
        console.print(f"  bob deletes id=4 (his own row): affected "
                      f"{done['receipt']['details']['affected']}")
        final = alice.get(alice.address, TABLE)
        _rows(console, "alice reads", final)
        height = alice.ledger_closed()["ledger_index"]

        console.rule("restart the node")
        code = node.stop()
        console.print(f"  node stopped (exit code {code}) at height {height}")
        if code != 0:
            raise RuntimeError(f"the node exited with {code}:\n{node.log_text()[-2000:]}")
        url = node.start()
        alice = Client(url, alice.key)
        bob = Client(url, bob.key)
        after = alice.get(alice.address, TABLE)
        info = alice.server_info()
        console.print(f"  node back on {url} at height {info['ledger_index']}")
        _rows(console, "alice reads after the restart", after)
        if after != final or info["ledger_index"] != height:
            raise RuntimeError("the data did not survive the restart")
        record = bob.insert(TABLE, [{"id": 7, "age": 27, "name": "bob-7"}], owner=alice.address)
        console.print(f"  bob inserts id 7 after the restart: {record['result']} in ledger "
                      f"{record['ledger_index']}")
        console.print(f"  bob reads: ids {[r['id'] for r in bob.get(alice.address, TABLE)]}")
        console.print("  [green]the data survived the restart[/green]")
        _confidential(console, alice, bob)
    finally:
        node.stop()
    _tamper_check(console, settings)
    console.rule("[green]done")


def _confidential(console: Console, alice: Client, bob: Client) -> None:
    console.rule("a confidential table: rows sealed by the client, keys wrapped per account")
    fields = [{"field": "id", "type": "int", "PK": 1},
              {"field": "diagnosis", "type": "varchar", "length": 64}]
    alice.create_confidential_table("medical", fields)
    alice.insert_confidential("medical", [{"id": 1, "diagnosis": "flu, confidential"}])
    record = alice.grant_confidential("medical", bob.address, bob._key().public_key,
                                      select=True)
    console.print(f"  alice grants bob select with his Token: {record['result']}")
    _rows(console, "bob opens the rows with his key",
          bob.get_confidential(alice.address, "medical"), ("id", "diagnosis"))
    stored = alice.get(alice.address, "medical")[0]
    console.print(f"  what the node keeps: account {_short(stored['account'])}, sealed "
                  f"{_short(stored['sealed'])} ({len(stored['sealed']) // 2} bytes)")
    _expect_refusal(console, "an update (validators cannot read the rows)",
                    lambda: alice.update("medical", {"diagnosis": "x"}, {"id": 1}))


def _tamper_check(console: Console, settings: Any) -> None:
    """Edit a row in the stopped node's SQLite file behind the chain: ``node verify`` finds it."""
    import sqlite3

    from tablechain.ledger.chain import Ledger
    from tablechain.ledger.integrity import verify_ledger
    from tablechain.ledger.storage import physical_table_name
    from tablechain.platform.config import load_genesis

    console.rule("tamper evidence: tablechain node verify")
    ledger = Ledger(settings.resolved_db_url, load_genesis(settings))
    try:
        report = verify_ledger(ledger, signatures=True)
        console.print(f"  {report.tables} tables, {report.rows} rows, {report.blocks} blocks, "
                      f"{report.transactions} transactions recomputed: "
                      f"{'ok' if report.ok else report.problems}")
        owner = ledger.block(1)["transactions"][0]["Account"]
        name_in_db = ledger.table_info(owner, TABLE)["name_in_db"]
    finally:
        ledger.close()
    db = sqlite3.connect(settings.resolved_db_url.removeprefix("sqlite:///"))
    try:
        db.execute(f'UPDATE "{physical_table_name(name_in_db)}" SET age = age + 1')
        db.commit()
    finally:
        db.close()
    console.print("  an administrator edits the ages in the SQLite file directly")
    ledger = Ledger(settings.resolved_db_url, load_genesis(settings))
    try:
        found = verify_ledger(ledger).problems
    finally:
        ledger.close()
    for problem in found:
        console.print(f"  [red]found[/red] {problem.kind} {escape(problem.where)}: "
                      f"{escape(problem.detail)}")
    if not found:
        raise RuntimeError("the edit behind the chain's back went unseen")


def main(argv: Sequence[str] | None = None) -> int:
    console = Console(highlight=False)
    workdir = Path(tempfile.mkdtemp(prefix="tablechain-demo-"))
    started = time.monotonic()
    try:
        run(console, workdir)
    except (RuntimeError, ClientError) as exc:
        console.print(f"[red]demo failed[/red]: {exc}")
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    console.print(f"finished in {time.monotonic() - started:.1f} s; cleaned up {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
