"""The ``tablechain`` command line.

```
tablechain node init DIR [--national] [--network-id N] [--port P]
tablechain node start DIR [--host H] [--port P]
tablechain node status [DIR] [--url URL]
tablechain node rebuild DIR [--height N] [--out DB_URL]
tablechain account new [--out FILE] [--scheme secp256k1|ed25519|sm2]
tablechain account info [ADDRESS] [--key FILE]
tablechain table create NAME FIELDS_JSON [--rule RULE_JSON] [--strict]
tablechain table grant NAME USER FLAGS_JSON
tablechain table insert NAME ROWS_JSON [--owner ADDR] [--strict]
tablechain table update NAME SET_JSON [COND_JSON ...] [--owner ADDR] [--strict]
tablechain table delete NAME [COND_JSON ...] [--owner ADDR] [--strict]
tablechain table get NAME [RAW_JSON] [--owner ADDR]
tablechain table drop NAME | rename NAME NEW_NAME | info NAME
tablechain tx HASH
tablechain cluster init|up [--validators N] [--dir DIR] [--base-port P] [--address RAY] [--detach]
tablechain cluster status [--dir DIR] | down [--dir DIR] --address RAY
```
Commands that talk to a node take ``--url`` (env ``TABLECHAIN_URL``, default
``http://127.0.0.1:5005``) and, to sign, ``--key FILE`` (env ``TABLECHAIN_KEY``). Every command
prints readable output, or JSON with ``--json``. Errors print their stable code and exit 1.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from tablechain.errors import TablechainError
from tablechain.platform.errors import ConfigError

__all__ = ["app", "main"]

DEFAULT_URL = "http://127.0.0.1:5005"

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False,
                  help="tablechain: a permissioned blockchain database.")
node_app = typer.Typer(no_args_is_help=True, help="Create, run and inspect a node.")
account_app = typer.Typer(no_args_is_help=True, help="Accounts (keys) and their state.")
table_app = typer.Typer(no_args_is_help=True, help="Table transactions and signed reads.")
app.add_typer(node_app, name="node")
app.add_typer(account_app, name="account")
cluster_app = typer.Typer(no_args_is_help=True,
                          help="A local network of BFT validators, each a Ray actor.")
app.add_typer(table_app, name="table")
app.add_typer(cluster_app, name="cluster")

try:
    from tablechain.platform.ca_cli import app as ca_app
except ModuleNotFoundError as exc:  # the CA commands are optional in this build
    if exc.name != "tablechain.platform.ca_cli":
        raise
else:
    app.add_typer(ca_app, name="ca")

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

F = TypeVar("F", bound=Callable[..., Any])

UrlOpt = Annotated[str, typer.Option("--url", envvar="TABLECHAIN_URL",
                                     help="The node's RPC URL.")]
KeyOpt = Annotated[Path | None, typer.Option("--key", envvar="TABLECHAIN_KEY",
                                             help="Key file of the signing account.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
OwnerOpt = Annotated[str | None, typer.Option("--owner",
                                              help="The table's owner (default: the signer).")]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Send with StrictMode and TxCheckHash.")]
NoWaitOpt = Annotated[bool, typer.Option("--no-wait",
                                         help="Return once queued, not once committed.")]
DatadirArg = Annotated[Path, typer.Argument(help="The node's data directory.")]
TableOwnerOpt = Annotated[str, typer.Option("--owner", help="The table's owner.")]
TableNameOpt = Annotated[str, typer.Option("--table", help="The table, as it is called now.")]


def _handled(fn: F) -> F:
    """Print a tablechain error as ``error: <code>: <message>`` and exit 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TablechainError as exc:
            err.print(f"[red]error[/red]: {exc.code}: {exc.message}", markup=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _json_arg(text: str, what: str) -> Any:
    from tablechain.crypto import parse_json

    try:
        return parse_json(text)
    except TablechainError as exc:
        raise ConfigError(f"{what} is not valid JSON: {exc.message}") from None


def _print_json(obj: Any) -> None:
    # Plain JSON (no rich wrapping or colour): for scripts and pipes.
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _show(info: dict[str, Any], title: str, as_json: bool, sort: bool = False) -> None:
    """A command's result: JSON for scripts, or a two-column table."""
    if as_json:
        _print_json(info)
    else:
        out.print(_kv_table(title, sorted(info.items()) if sort else list(info.items())))


def _kv_table(title: str, items: Sequence[tuple[str, Any]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in items:
        table.add_row(key, value if isinstance(value, str) else json.dumps(value))
    return table


def rows_table(rows: Sequence[dict[str, Any]], title: str = "") -> Table:
    """A rich table of query rows (columns in first-seen order)."""
    columns: list[str] = []
    for row in rows:
        for name in row:
            if name not in columns:
                columns.append(name)
    table = Table(title=title or None, title_justify="left")
    for name in columns:
        table.add_column(name)
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    return table


def _client(url: str, key: Path | None, need_key: bool = True) -> Any:
    from tablechain.platform.client import Client
    from tablechain.platform.config import read_key_file

    if key is None and need_key:
        raise ConfigError("this command signs: pass --key FILE (or set TABLECHAIN_KEY)")
    certificate = None
    cert_file = os.environ.get("TABLECHAIN_CERT")
    if cert_file:  # admission: the signer's certificate chain (PEM), attached to each transaction
        certificate = Path(cert_file).read_text(encoding="ascii")
    return Client(url, read_key_file(key) if key is not None else None, certificate=certificate)


def _report_tx(record: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _print_json(record)
        return
    if "ledger_index" not in record:
        out.print(f"queued [bold]{record['hash']}[/bold] ({record.get('engine_result')})")
        return
    details = record.get("receipt", {}).get("details") or {}
    out.print(f"[green]{record['result']}[/green] tx {record['hash']} "
              f"in ledger {record['ledger_index']}"
              + (f"  {json.dumps(details)}" if details else ""))


# --- node --------------------------------------------------------------------------------------


@node_app.command("init")
@_handled
def node_init(
    datadir: Annotated[Path, typer.Argument(help="Data directory to create.")],
    national: Annotated[bool, typer.Option("--national",
                                           help="SM2/SM3 national suite.")] = False,
    network_id: Annotated[int | None, typer.Option("--network-id")] = None,
    chain_name: Annotated[str, typer.Option("--chain-name")] = "tablechain",
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 5005,
    db_url: Annotated[str | None, typer.Option("--db-url",
                                               help="Default: SQLite in DIR.")] = None,
    max_block_txs: Annotated[int | None, typer.Option("--max-block-txs")] = None,
    max_block_wait_ms: Annotated[int | None, typer.Option("--max-block-wait-ms")] = None,
    admission_root: Annotated[list[Path] | None, typer.Option(
        "--admission-root", help="Turn certificate admission on, trusting this root "
        "certificate (PEM); repeatable.")] = None,
    admin: Annotated[list[str] | None, typer.Option(
        "--admin", help="An admin account (may revoke and change roots); repeatable.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a new chain with one validator in DIR."""
    from tablechain.platform.config import init_datadir, load_genesis

    roots = []
    for root_file in admission_root or []:
        try:
            roots.append(root_file.read_text(encoding="ascii"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the admission root {root_file}: {exc}") from None
    settings = init_datadir(datadir, national=national, network_id=network_id,
                            chain_name=chain_name, host=host, port=port, db_url=db_url,
                            max_block_txs=max_block_txs, max_block_wait_ms=max_block_wait_ms,
                            trusted_roots=roots, admins=list(admin or []))
    genesis = load_genesis(settings)
    info = {"datadir": str(settings.datadir), "chain": genesis.hash(),
            "network_id": genesis.network_id, "suite": genesis.suite,
            "validator": genesis.validators[0]["address"],
            "db_url": settings.resolved_db_url,
            "rpc": f"http://{settings.rpc_host}:{settings.rpc_port}"}
    _show(info, "new chain", as_json)
    if not as_json:
        out.print(f"start it with: tablechain node start {settings.datadir}")


@node_app.command("start")
@_handled
def node_start(
    datadir: DatadirArg,
    host: Annotated[str | None, typer.Option("--host")] = None,
    port: Annotated[int | None, typer.Option("--port", help="0 picks a free port.")] = None,
    log_level: Annotated[str, typer.Option("--log-level")] = "info",
) -> None:
    """Run the node and its RPC server in the foreground until SIGINT / SIGTERM."""
    from tablechain.platform.server import run_node

    code = run_node(datadir, host, port, log_level,
                    announce=lambda text: print(text, flush=True))
    raise typer.Exit(code)


@node_app.command("status")
@_handled
def node_status(
    datadir: Annotated[Path | None, typer.Argument(help="Read the URL from here.")] = None,
    url: Annotated[str | None, typer.Option("--url", envvar="TABLECHAIN_URL")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Ask a running node for its server_info."""
    from tablechain.platform.client import Client
    from tablechain.platform.config import load_settings, rpc_url_of

    if url is None:
        url = rpc_url_of(load_settings(datadir)) if datadir is not None else DEFAULT_URL
    with Client(url) as client:
        info = client.server_info()
    _show(info, f"node at {url}", as_json, sort=True)


@node_app.command("rebuild")
@_handled
def node_rebuild(
    datadir: DatadirArg,
    height: Annotated[int | None, typer.Option("--height", help="Default: the head.")] = None,
    out_url: Annotated[str | None, typer.Option(
        "--out", help="Target database URL (default sqlite:///DIR/rebuild-<height>.db).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Replay the chain into a new database up to --height, checking every state root."""
    from tablechain.ledger.chain import rebuild
    from tablechain.ledger.storage import create_ledger_engine
    from tablechain.platform.config import database_errors, load_settings, open_ledger

    settings = load_settings(datadir)
    source = open_ledger(settings)
    finished: tuple[Path, Path] | None = None  # (built, final) of the default target
    try:
        end = source.height if height is None else height
        if out_url is None:
            target_file = settings.datadir / f"rebuild-{end}.db"
            if target_file.exists():
                raise ConfigError(f"{target_file} already exists; pass --out or remove it")
            # Built under another name and renamed once complete: an interrupted rebuild leaves
            # no file that looks like a finished one, and a new run carries it on.
            partial = target_file.with_name(target_file.name + ".partial")
            finished = (partial, target_file)
            out_url = f"sqlite:///{partial}"
        with database_errors(out_url):  # a target that cannot be opened: a clear error
            probe = create_ledger_engine(out_url)
            try:
                probe.connect().close()
            finally:
                probe.dispose()
        target = rebuild(source, out_url, end)
        try:
            head = target.head
            info = {"height": head.height, "ledger_hash": head.hash(target.suite),
                    "state_root": head.state_root, "database": out_url,
                    "matches_chain": source.block(end)["hash"] == head.hash(target.suite)}
        finally:
            target.close()
        if finished is not None:
            built, final = finished
            _single_file(built)
            built.replace(final)
            info["database"] = f"sqlite:///{final}"
    finally:
        source.close()
    _show(info, "rebuilt", as_json)


def _single_file(path: Path) -> None:
    """Fold a closed SQLite database's write-ahead log back into its file (and drop the log), so
    that the file alone holds the database and can be renamed."""
    import sqlite3

    db = sqlite3.connect(path)
    try:
        (mode,) = db.execute("PRAGMA journal_mode=DELETE").fetchone()
    finally:
        db.close()
    if mode != "delete":  # another process holds it open
        raise ConfigError(f"cannot finish {path}: the database is in use")


@node_app.command("verify")
@_handled
def node_verify(
    datadir: DatadirArg,
    signatures: Annotated[bool, typer.Option(
        "--signatures", help="Also re-check every stored transaction's signature.")] = False,
    no_blocks: Annotated[bool, typer.Option(
        "--no-blocks", help="Check tables and state only, not the chain of blocks.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Recompute every table's digest from its rows, the state root from the state and the
    chain's hashes from the stored blocks; exit 2 if anything was changed outside the chain.

    Safe on a running node (reads one snapshot)."""
    from tablechain.ledger.chain import ChainMismatch
    from tablechain.ledger.integrity import verify_ledger

    try:
        ledger = _open_ledger(datadir)
    except ChainMismatch as exc:  # its head block itself was changed or removed
        err.print(f"[red]tampered[/red] block head: {exc.message}", markup=True)
        raise typer.Exit(2) from None
    try:
        report = verify_ledger(ledger, blocks=not no_blocks, signatures=signatures)
    finally:
        ledger.close()
    if as_json:
        _print_json(report.to_json())
    else:
        summary = {k: v for k, v in report.to_json().items() if k != "problems"}
        _show(summary, "verified", False)
        for p in report.problems:
            err.print(f"[red]tampered[/red] {p.kind} {p.where}: {p.detail}", markup=True)
    if not report.ok:
        raise typer.Exit(2)


@node_app.command("follow")
@_handled
def node_follow(
    source: Annotated[str, typer.Argument(help="RPC URL of any node of the chain.")],
    genesis_file: Annotated[Path, typer.Option(
        "--genesis", help="The chain's genesis.json (the follower trusts only it).")],
    db: Annotated[str, typer.Option(
        "--db", help="Database URL of the replica, e.g. postgresql+psycopg://.../replica "
        "or sqlite:///replica.db")],
    once: Annotated[bool, typer.Option(
        "--once", help="Catch up to the source's head and exit.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Keep a read replica of the chain in your own database: fetch each block from SOURCE,
    check its certificate and signatures, re-execute it and commit it if it reproduces its
    header. Ctrl-C stops it; a restart resumes."""
    import threading

    from tablechain.crypto import parse_json
    from tablechain.ledger.chain import Ledger
    from tablechain.platform.client import Client
    from tablechain.platform.config import database_errors, genesis_from_json
    from tablechain.platform.follow import Follower

    try:
        obj = parse_json(genesis_file.read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read {genesis_file}: {exc.strerror}") from None
    except TablechainError as exc:
        raise ConfigError(f"{genesis_file} is not valid JSON: {exc.message}") from None
    genesis = genesis_from_json(obj, genesis_file)
    with database_errors(db):
        ledger = Ledger(db, genesis)
    try:
        with Client(source) as client:
            follower = Follower(ledger, client)
            if once:
                applied = follower.sync()
                _show({"applied": applied, "ledger_index": ledger.height,
                       "ledger_hash": ledger.head.hash(ledger.suite)}, "followed", as_json)
                return
            stop = threading.Event()
            err.print(f"following {source} from block {ledger.height} (Ctrl-C stops)")
            try:
                follower.run(stop)
            except KeyboardInterrupt:
                stop.set()
    finally:
        ledger.close()


def _open_ledger(datadir: Path) -> Any:
    from tablechain.platform.config import load_settings, open_ledger

    return open_ledger(load_settings(datadir))


@node_app.command("dump")
@_handled
def node_dump(
    datadir: DatadirArg,
    owner: TableOwnerOpt,
    table: TableNameOpt,
    out_file: Annotated[Path, typer.Option(
        "--out", help="JSON-lines file; if it exists, the dump resumes after its last line.")],
    as_json: JsonOpt = False,
) -> None:
    """Write a table's operation log (every successful statement on it since its create,
    across renames and schema changes) as JSON lines."""
    from tablechain.ledger.history import dump_table

    ledger = _open_ledger(datadir)
    try:
        written = dump_table(ledger, owner, table, out_file)
    finally:
        ledger.close()
    _show({"written": written, "file": str(out_file)}, "dumped", as_json)


@node_app.command("audit")
@_handled
def node_audit(
    datadir: DatadirArg,
    owner: TableOwnerOpt,
    table: TableNameOpt,
    fields: Annotated[str, typer.Option("--fields", help="Fields to audit, e.g. name,salary")],
    where: Annotated[str | None, typer.Option(
        "--where", help='Rows to audit, a condition such as \'{"id": 1}\' (default: all).')
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Every transaction that changed those fields of those rows, with values before and after
    (re-executes the chain in a scratch database)."""
    from tablechain.ledger.history import audit_table

    condition = None if where is None else _json_arg(where, "--where")
    names = [f.strip() for f in fields.split(",") if f.strip()]
    ledger = _open_ledger(datadir)
    try:
        found = audit_table(ledger, owner, table, names, condition)
    finally:
        ledger.close()
    if as_json:
        _print_json(found)
        return
    rows = [{"ledger_index": c["ledger_index"], "hash": c["hash"][:16], "account": c["account"],
             "row": x["row"], "field": x["field"], "before": x["before"], "after": x["after"]}
            for c in found for x in c["changes"]]
    out.print(rows_table(rows))
    out.print(f"{len(found)} transaction(s) changed {', '.join(names)} of {table}")


# --- accounts ----------------------------------------------------------------------------------


@account_app.command("new")
@_handled
def account_new(
    out_file: Annotated[Path | None, typer.Option(
        "--out", help="Key file to write (0600). Default: ./<address>.key")] = None,
    scheme: Annotated[str, typer.Option("--scheme",
                                        help="secp256k1, ed25519 or sm2.")] = "secp256k1",
    as_json: JsonOpt = False,
) -> None:
    """Make a new account key and print its address."""
    from tablechain.crypto import address_to_text, generate_private_key
    from tablechain.crypto.keys import CryptoError
    from tablechain.platform.config import write_key_file

    try:
        key = generate_private_key(scheme)
    except (CryptoError, ModuleNotFoundError) as exc:
        raise ConfigError(f"cannot make a {scheme} key: {exc}") from None
    address = address_to_text(key.address())
    path = write_key_file(out_file or Path(f"{address}.key"), key)
    info = {"address": address, "scheme": scheme, "key_file": str(path),
            "public_key": key.public_key.to_bytes().hex()}
    if as_json:
        _print_json(info)
    else:
        out.print(address)
        err.print(f"key written to {path} (mode 0600)")


@account_app.command("info")
@_handled
def account_info(
    address: Annotated[str | None, typer.Argument(help="Default: the --key's address.")] = None,
    url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
) -> None:
    """An account's last committed Sequence and the next one to use."""
    with _client(url, key, need_key=address is None) as client:
        info = client.account_info(address)
    _show(info, "account", as_json)


# --- tables ------------------------------------------------------------------------------------


@table_app.command("create")
@_handled
def table_create(
    name: str,
    fields: Annotated[str, typer.Argument(help='e.g. \'[{"field":"id","type":"int","PK":1}]\'')],
    rule: Annotated[str | None, typer.Option("--rule", help="OperationRule JSON.")] = None,
    confidential: Annotated[bool, typer.Option(
        "--confidential",
        help="Seal the fields and rows with a table key only you (and grantees) hold.")] = False,
    strict: StrictOpt = False, no_wait: NoWaitOpt = False,
    url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
) -> None:
    """Create a table (TableListSet OpType 1)."""
    if confidential and rule is not None:
        raise ConfigError("a confidential table cannot carry a rule (validators see no rows)")
    with _client(url, key) as client:
        if confidential:
            record = client.create_confidential_table(name, _json_arg(fields, "FIELDS"),
                                                      strict=strict, wait=not no_wait)
        else:
            record = client.create_table(name, _json_arg(fields, "FIELDS"),
                                         None if rule is None else _json_arg(rule, "--rule"),
                                         strict=strict, wait=not no_wait)
    _report_tx(record, as_json)


def _confidential(client: Any, owner: str, name: str) -> bool:
    return client.table_info(owner, name).get("token") is not None


@table_app.command("grant")
@_handled
def table_grant(
    name: str,
    user: Annotated[str, typer.Argument(help='An address, or "everyone".')],
    flags: Annotated[str, typer.Argument(help='e.g. \'{"select":true,"insert":true}\'')],
    public_key: Annotated[str | None, typer.Option(
        "--public-key", help="The user's public key (hex): on a confidential table, the "
        "table key is wrapped to it.")] = None,
    no_wait: NoWaitOpt = False,
    url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
) -> None:
    """Grant a user (or everyone) select / insert / update / delete on your table."""
    parsed = _json_arg(flags, "FLAGS")
    if not isinstance(parsed, dict) or not all(isinstance(v, bool) for v in parsed.values()):
        raise ConfigError('FLAGS is an object of booleans, e.g. {"select": true}')
    with _client(url, key) as client:
        if public_key is not None:
            record = client.grant_confidential(name, user, public_key, wait=not no_wait,
                                               **parsed)
        else:
            record = client.grant(name, user, wait=not no_wait, **parsed)
    _report_tx(record, as_json)


@table_app.command("insert")
@_handled
def table_insert(
    name: str,
    rows: Annotated[str, typer.Argument(help='e.g. \'[{"id":1,"name":"a"}]\'')],
    owner: OwnerOpt = None, strict: StrictOpt = False, no_wait: NoWaitOpt = False,
    url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
) -> None:
    """Insert rows (SQLStatement OpType 6)."""
    parsed = _json_arg(rows, "ROWS")
    if isinstance(parsed, dict):
        parsed = [parsed]
    with _client(url, key) as client:
        if _confidential(client, owner or client.address, name):
            record = client.insert_confidential(name, parsed, owner=owner, strict=strict,
                                                wait=not no_wait)
        else:
            record = client.insert(name, parsed, owner=owner, strict=strict, wait=not no_wait)
    _report_tx(record, as_json)


@table_app.command("update")
@_handled
def table_update(
    name: str,
    changes: Annotated[str, typer.Argument(help='e.g. \'{"age":30}\'')],
    conditions: Annotated[list[str] | None, typer.Argument(
        help='Conditions (ORed), e.g. \'{"id":1}\'')] = None,
    owner: OwnerOpt = None, strict: StrictOpt = False, no_wait: NoWaitOpt = False,
    url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
) -> None:
    """Update rows matching any condition (SQLStatement OpType 8)."""
    conds = [_json_arg(c, "CONDITION") for c in conditions or []]
    with _client(url, key) as client:
        record = client.update(name, _json_arg(changes, "SET"), *conds, owner=owner,
                               strict=strict, wait=not no_wait)
    _report_tx(record, as_json)


@table_app.command("delete")
@_handled
def table_delete(
    name: str,
    conditions: Annotated[list[str] | None, typer.Argument(
        help="Conditions (ORed); none deletes every row you may delete.")] = None,
    owner: OwnerOpt = None, strict: StrictOpt = False, no_wait: NoWaitOpt = False,
    url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
) -> None:
    """Delete rows (SQLStatement OpType 9)."""
    conds = [_json_arg(c, "CONDITION") for c in conditions or []]
    with _client(url, key) as client:
        record = client.delete(name, *conds, owner=owner, strict=strict, wait=not no_wait)
    _report_tx(record, as_json)


@table_app.command("get")
@_handled
def table_get(
    name: str,
    raw: Annotated[str | None, typer.Argument(
        help='Query, e.g. \'[["id","name"], {"id": {"$ge": 2}}]\' (default: all rows).')] = None,
    owner: OwnerOpt = None,
    url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
) -> None:
    """A signed read: your permissions and the table's Get rule apply."""
    query = None if raw is None else _json_arg(raw, "RAW")
    if query is not None and not isinstance(query, list):
        raise ConfigError('RAW is a list: [[fields], {condition}, ...]')
    with _client(url, key) as client:
        if _confidential(client, owner or client.address, name):  # opened with your Token
            rows = client.get_confidential(owner or client.address, name, query)
        else:
            rows = client.get(owner or client.address, name, query)
    if as_json:
        _print_json(rows)
    else:
        out.print(rows_table(rows))
        out.print(f"{len(rows)} row(s) of {name}")


@table_app.command("drop")
@_handled
def table_drop(name: str, no_wait: NoWaitOpt = False, url: UrlOpt = DEFAULT_URL,
               key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """Drop your table."""
    with _client(url, key) as client:
        _report_tx(client.drop(name, wait=not no_wait), as_json)


@table_app.command("rename")
@_handled
def table_rename(name: str, new_name: str, no_wait: NoWaitOpt = False,
                 url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """Rename your table (its NameInDB stays)."""
    with _client(url, key) as client:
        _report_tx(client.rename(name, new_name, wait=not no_wait), as_json)


@table_app.command("info")
@_handled
def table_info(name: str, owner: OwnerOpt = None, url: UrlOpt = DEFAULT_URL,
               key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """A table's fields, rule, NameInDB, strict-mode pointer and grants."""
    if owner is None and key is None:
        raise ConfigError("pass --owner (or --key to mean your own table)")
    with _client(url, key, need_key=False) as client:
        info = client.table_info(owner or client.address, name)
    _show(info, f"table {name}", as_json, sort=True)


@app.command("tx")
@_handled
def tx_command(tx_hash: str, url: UrlOpt = DEFAULT_URL, as_json: JsonOpt = False) -> None:
    """A committed transaction and its receipt."""
    from tablechain.platform.client import Client

    with Client(url) as client:
        record = client.tx(tx_hash)
    if as_json:
        _print_json(record)
    else:
        receipt = record["receipt"]
        out.print(_kv_table(f"tx {tx_hash}", [
            ("ledger_index", record["ledger_index"]), ("result", record["result"]),
            ("message", receipt.get("message") or ""), ("details", receipt.get("details")),
            ("type", record["tx"].get("TransactionType")), ("account", record["tx"]["Account"]),
        ]))


# --- cluster -----------------------------------------------------------------------------------

DirOpt = Annotated[Path, typer.Option("--dir", help="The cluster directory.")]
DEFAULT_CLUSTER_DIR = Path("tablechain-cluster")


def _init_or_load_cluster(root: Path, validators: int | None, base_port: int,
                          max_block_txs: int | None, max_block_wait_ms: int | None,
                          network_id: int | None, scheme: str) -> Any:
    from tablechain.platform.config import CLUSTER_FILE, init_cluster, load_cluster

    if (root / CLUSTER_FILE).exists():
        layout = load_cluster(root)
        if validators is not None and validators != len(layout.members):
            raise ConfigError(f"{root} holds a cluster of {len(layout.members)} validators, "
                              f"not {validators}")
        return layout
    return init_cluster(root, 4 if validators is None else validators, scheme=scheme,
                        base_port=base_port, max_block_txs=max_block_txs,
                        max_block_wait_ms=max_block_wait_ms, network_id=network_id)


def _print_cluster(layout: Any, urls: dict[str, str], as_json: bool) -> None:
    if as_json:
        _print_json({"dir": str(layout.root), "chain": layout.chain,
                     "namespace": layout.namespace, "validators": urls})
        return
    table = Table(title=f"cluster {layout.root} (chain {layout.chain[:16]}...)",
                  title_justify="left")
    for name in ("validator", "rpc", "datadir"):
        table.add_column(name)
    for m in layout.members:
        table.add_row(m.validator_id, urls.get(m.validator_id, ""), str(m.datadir))
    out.print(table)
    sys.stdout.flush()


@cluster_app.command("init")
@_handled
def cluster_init(
    validators: Annotated[int, typer.Option("--validators", help="How many (3f+1).")] = 4,
    root: DirOpt = DEFAULT_CLUSTER_DIR,
    base_port: Annotated[int, typer.Option("--base-port",
                                           help="vi serves on P+i; 0: free ports.")] = 0,
    max_block_txs: Annotated[int | None, typer.Option("--max-block-txs")] = None,
    max_block_wait_ms: Annotated[int | None, typer.Option("--max-block-wait-ms")] = None,
    network_id: Annotated[int | None, typer.Option("--network-id")] = None,
    scheme: Annotated[str, typer.Option("--scheme", help="secp256k1 or ed25519.")] = "secp256k1",
    as_json: JsonOpt = False,
) -> None:
    """Create a genesis naming N validator keys and one data directory per validator."""
    from tablechain.platform.config import init_cluster

    layout = init_cluster(root, validators, scheme=scheme, base_port=base_port,
                          max_block_txs=max_block_txs, max_block_wait_ms=max_block_wait_ms,
                          network_id=network_id)
    _print_cluster(layout, {m.validator_id: f"port {m.rpc_port or 'any'}"
                            for m in layout.members}, as_json)


@cluster_app.command("up")
@_handled
def cluster_up(
    validators: Annotated[int | None, typer.Option(
        "--validators", help="How many (3f+1); default 4, or what DIR holds.")] = None,
    root: DirOpt = DEFAULT_CLUSTER_DIR,
    base_port: Annotated[int, typer.Option("--base-port",
                                           help="vi serves on P+i; 0: free ports.")] = 0,
    address: Annotated[str | None, typer.Option(
        "--address", help="A running Ray cluster (host:port); default: start one here.")] = None,
    num_cpus: Annotated[int | None, typer.Option("--num-cpus",
                                                 help="CPUs of the local Ray.")] = None,
    detach: Annotated[bool, typer.Option(
        "--detach", help="Leave the actors running and exit (needs --address).")] = False,
    max_block_txs: Annotated[int | None, typer.Option("--max-block-txs")] = None,
    max_block_wait_ms: Annotated[int | None, typer.Option("--max-block-wait-ms")] = None,
    network_id: Annotated[int | None, typer.Option("--network-id")] = None,
    scheme: Annotated[str, typer.Option("--scheme", help="secp256k1 or ed25519.")] = "secp256k1",
    as_json: JsonOpt = False,
) -> None:
    """Start the validators of DIR (creating it first if needed) as Ray actors, print their
    RPC endpoints and run until Ctrl-C (or, with --detach, leave them running)."""
    import signal
    import threading

    from tablechain.platform.cluster import RayCluster, init_ray

    if detach and address is None:
        raise ConfigError("--detach needs --address: the actors must outlive this process on a "
                          "Ray cluster started with `ray start --head` (see docs/cluster.md)")
    layout = _init_or_load_cluster(root, validators, base_port, max_block_txs,
                                   max_block_wait_ms, network_id, scheme)
    ray = init_ray(address, validators=layout.ids, num_cpus=num_cpus,
                   namespace=layout.namespace)
    cluster = RayCluster(layout, detached=detach)
    try:
        urls = cluster.start()
        _print_cluster(layout, urls, as_json)
        if detach:
            err.print(f"detached; stop with: tablechain cluster down --dir {layout.root} "
                      f"--address {address}")
            return
        err.print("running; Ctrl-C stops the cluster")
        stopping = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: stopping.set())
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            while not stopping.wait(0.5):
                pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        cluster.shutdown()
        err.print("cluster stopped")
    except BaseException:
        if not detach:
            cluster.shutdown()
        raise
    finally:
        ray.shutdown()


@cluster_app.command("status")
@_handled
def cluster_status_command(
    root: DirOpt = DEFAULT_CLUSTER_DIR,
    as_json: JsonOpt = False,
) -> None:
    """Each validator's height, round, step, proposer (leader) and how far it is behind."""
    from tablechain.platform.cluster import cluster_status, require_urls
    from tablechain.platform.config import load_cluster

    rows = cluster_status(require_urls(load_cluster(root)))
    if as_json:
        _print_json(rows)
        return
    table = Table(title=f"cluster {root}", title_justify="left")
    columns = ("validator", "url", "height", "behind", "round", "step", "proposer", "mempool")
    for name in columns:
        table.add_column(name)
    for r in rows:
        if "error" in r:
            table.add_row(r["validator"], r["url"] or "-", "down", "", "", "",
                          "", r["error"][:60])
        else:
            table.add_row(*("" if r.get(c) is None else str(r[c]) for c in columns))
    out.print(table)


@cluster_app.command("down")
@_handled
def cluster_down(
    root: DirOpt = DEFAULT_CLUSTER_DIR,
    address: Annotated[str, typer.Option("--address",
                                         help="The Ray cluster the actors run on.")] = "auto",
) -> None:
    """Stop the validators of DIR that run (detached) on a Ray cluster."""
    from tablechain.platform.cluster import RayCluster, init_ray
    from tablechain.platform.config import load_cluster

    layout = load_cluster(root)
    ray = init_ray(address, namespace=layout.namespace)
    try:
        RayCluster(layout).shutdown()
    finally:
        ray.shutdown()
    err.print(f"stopped the validators of {layout.root}")


def main(argv: Sequence[str] | None = None) -> int:
    """The console script's entry point."""
    try:
        app(args=list(argv) if argv is not None else None, prog_name="tablechain")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
