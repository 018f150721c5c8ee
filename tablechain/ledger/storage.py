"""The node's database: chain records and state beside the user tables, in one database.

Blocks, transactions, receipts, the state key-value store and the table digests live in ``tc_*``
tables of the same SQL database as the user tables, so that a block, its state and its rows land
in a single commit. SQLite runs in WAL mode; PostgreSQL and MariaDB are reached the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tablechain.ledger.query import prepare_engine

__all__ = [
    "existing",
    "LedgerTables",
    "READ_ONLY",
    "create_ledger_engine",
    "insert_many",
    "physical_table_name",
]


def physical_table_name(name_in_db: str) -> str:
    """The SQL table that holds a ChainSQL table's rows (NameInDB indirection)."""
    return "t_" + name_in_db


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # FULL: each commit (one per block) fsyncs the log. NORMAL survives a process crash but a
    # power loss could take back blocks clients were told were committed, and a validator
    # whose signer record (fsynced) then ran ahead of its database could not vote until it had
    # fetched them back from its peers.
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


READ_ONLY = "tablechain_read_only"  # execution option of connections that only read


def create_ledger_engine(url: str) -> Engine:
    """An engine for ``url`` with the settings the ledger relies on."""
    engine = _create_engine(url)
    prepare_engine(engine)
    return engine


def _create_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        sa.event.listen(engine, "connect", _sqlite_pragmas)

        # Let SQLAlchemy emit BEGIN itself so savepoints nest properly under pysqlite.
        @sa.event.listens_for(engine, "connect")
        def _no_autobegin(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None

        @sa.event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            # Writers take the write lock up front; readers (READ_ONLY connections) read a WAL
            # snapshot and never wait for a writer, e.g. for a block executed but not committed.
            if conn.get_execution_options().get(READ_ONLY):
                conn.exec_driver_sql("BEGIN")
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if url.startswith("mysql") or url.startswith("mariadb"):
        return sa.create_engine(url, pool_pre_ping=True, isolation_level="READ COMMITTED")
    return sa.create_engine(url, pool_pre_ping=True)


class _Compiled:
    """A statement compiled once for one dialect: its SQL, how the driver takes its parameters
    (in ``names`` order, positionally or by name) and the bind processors SQLAlchemy would
    apply to them."""

    __slots__ = ("sql", "names", "keys", "processors", "positional")

    def __init__(self, statement: Any, dialect: Any) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = compiled.string
        self.positional = bool(compiled.positional)
        self.names = list(compiled.positiontup or []) if self.positional else list(compiled.binds)
        self.keys = [compiled.binds[name].key for name in self.names]  # e.g. the columns' keys
        procs = compiled._bind_processors  # plain binds: one callable or none
        self.processors: list[Callable[[Any], Any] | None] = [
            cast("Callable[[Any], Any] | None", procs.get(name)) for name in self.names
        ]

    def params(self, values: Sequence[Any]) -> Any:
        """One row of parameters (``values`` in ``names`` order, processed) for the driver."""
        return tuple(values) if self.positional else dict(zip(self.names, values, strict=True))


_COMPILED: dict[tuple[str, str, int], tuple[Any, _Compiled]] = {}


def _compiled(kind: str, target: Any, dialect: Any, build: Callable[[Any], Any]) -> _Compiled:
    """The ``kind`` statement ``build(target)`` compiled for ``dialect``, once."""
    key = (kind, dialect.name, id(target))
    cached = _COMPILED.get(key)
    if cached is None or cached[0] is not target:  # an id may be reused by a new object
        cached = (target, _Compiled(build(target), dialect))
        if len(_COMPILED) > 4096:
            _COMPILED.clear()
        _COMPILED[key] = cached
    return cached[1]


def insert_many(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts with every column) through the driver's ``executemany``.

    The statement is SQLAlchemy's own compilation (quoted identifiers, bound parameters) made
    once per table and dialect; only the per-row parameter building of ``Connection.execute``,
    which dominates the cost of large batches, is skipped. Values go through the same bind
    processors SQLAlchemy would apply.
    """
    if rows:
        _execute_many(conn, _compiled("insert", table, conn.dialect, sa.insert), rows)


def update_values(
    conn: sa.Connection, table: sa.Table, key: str, value: str, pairs: list[tuple[Any, Any]]
) -> None:
    """``UPDATE table SET value = v WHERE key = k`` for each ``(k, v)``, as ``insert_many``."""
    if pairs:
        _execute_many(conn, _update(conn, table, key, value), [{"k": k, "v": v} for k, v in pairs])


def upsert_value(
    conn: sa.Connection, table: sa.Table, key: str, value: str, k: Any, v: Any
) -> None:
    """Set ``value`` of the row whose ``key`` is ``k`` to ``v``, inserting the row if there is
    none (an UPDATE, then an INSERT if it touched no row; the block holds the write lock)."""
    upd = _update(conn, table, key, value)
    (params,) = _parameters(upd, [{"k": k, "v": v}])
    if conn.exec_driver_sql(upd.sql, params).rowcount == 0:
        insert_many(conn, table, [{key: k, value: v}])


def _update(conn: sa.Connection, table: sa.Table, key: str, value: str) -> _Compiled:
    def build(t: sa.Table) -> Any:
        return sa.update(t).where(t.c[key] == sa.bindparam("k")).values({value: sa.bindparam("v")})

    return _compiled(f"update:{key}:{value}", table, conn.dialect, build)


def _execute_many(conn: sa.Connection, stmt: _Compiled, rows: list[dict[str, Any]]) -> None:
    conn.exec_driver_sql(stmt.sql, _parameters(stmt, rows))


def _parameters(stmt: _Compiled, rows: list[dict[str, Any]]) -> list[Any]:
    """Each row's parameters as the driver takes them for ``stmt`` (bind processors applied)."""
    keys, procs = stmt.keys, stmt.processors
    if any(procs):
        values = [
            [(p(row[k]) if p is not None else row[k]) for k, p in zip(keys, procs, strict=True)]
            for row in rows
        ]
    else:
        values = [[row[k] for k in keys] for row in rows]
    if stmt.positional:
        return [tuple(v) for v in values]
    return [dict(zip(stmt.names, v, strict=True)) for v in values]


_LOOKUP_SIZE = 100  # binds per statement; the last chunk is padded with a repeated value


def _lookup(column: sa.Column[Any], *selected: sa.Column[Any]) -> Any:
    binds = [sa.bindparam(f"v{i}", type_=column.type) for i in range(_LOOKUP_SIZE)]
    return sa.select(*(selected or (column,))).where(column.in_(binds))


def _rows_among(
    conn: sa.Connection, look: _Compiled, values: Sequence[Any]
) -> Iterator[Sequence[Any]]:
    """The rows of ``look`` (an ``IN`` of ``_LOOKUP_SIZE`` binds) for ``values``, one statement
    per ``_LOOKUP_SIZE`` values, run through the driver: the expanding ``IN`` of
    ``Connection.execute`` renders and caches a new statement per call, which cost twice the
    lookups themselves."""
    proc = look.processors[0]
    for start in range(0, len(values), _LOOKUP_SIZE):
        chunk = list(values[start : start + _LOOKUP_SIZE])
        chunk += [chunk[0]] * (_LOOKUP_SIZE - len(chunk))
        if proc is not None:
            chunk = [proc(v) for v in chunk]
        yield from conn.exec_driver_sql(look.sql, look.params(chunk))


def existing(conn: sa.Connection, column: sa.Column[Any], values: Sequence[Any]) -> set[Any]:
    """Which of ``values`` occur in ``column`` (e.g. which transaction hashes are committed)."""
    if not values:
        return set()
    look = _compiled("in", column, conn.dialect, _lookup)
    return {row[0] for row in _rows_among(conn, look, values)}


def stored_value(
    conn: sa.Connection, key: sa.Column[Any], value: sa.Column[Any], wanted: str
) -> bytes | None:
    """The binary ``value`` of the row whose ``key`` is ``wanted`` (None if there is none),
    through one statement compiled once (building a select per read cost more than the read)."""

    def build(v: sa.Column[Any]) -> Any:
        return sa.select(v).where(key == sa.bindparam("k", type_=key.type))

    look = _compiled(f"get:{key.name}", value, conn.dialect, build)
    proc = look.processors[0]
    param = wanted if proc is None else proc(wanted)
    row = conn.exec_driver_sql(look.sql, look.params([param])).first()
    if row is None:
        return None
    found = row[0]
    return found if type(found) is bytes else bytes(found)


def stored_values(
    conn: sa.Connection, key: sa.Column[Any], value: sa.Column[Any], keys: Sequence[str]
) -> dict[str, bytes]:
    """``{key: value}`` of the rows whose ``key`` is among ``keys`` (a binary ``value``
    column, e.g. the state store's): the same driver path as ``existing``."""
    if not keys:
        return {}
    look = _compiled(f"pairs:{key.name}", value, conn.dialect, lambda v: _lookup(key, key, v))
    return {
        k: v if type(v) is bytes else bytes(v) for k, v in _rows_among(conn, look, keys)
    }


class LedgerTables:
    """SQLAlchemy metadata of the ledger's own tables."""

    def __init__(self) -> None:
        self.metadata = sa.MetaData()
        m = self.metadata
        self.meta = sa.Table(
            "tc_meta",
            m,
            sa.Column("key", sa.String(64), primary_key=True),
            sa.Column("value", sa.LargeBinary(length=1 << 20), nullable=False),
        )
        self.blocks = sa.Table(
            "tc_blocks",
            m,
            sa.Column("height", sa.BigInteger, primary_key=True, autoincrement=False),
            sa.Column("hash", sa.String(64), nullable=False, unique=True),
            sa.Column("header", sa.Text, nullable=False),
            sa.Column("certificate", sa.Text, nullable=True),
        )
        self.txs = sa.Table(
            "tc_txs",
            m,
            sa.Column("hash", sa.String(64), primary_key=True),
            sa.Column("height", sa.BigInteger, nullable=False, index=True),
            sa.Column("idx", sa.Integer, nullable=False),
            sa.Column("account", sa.String(42), nullable=False),
            sa.Column("sequence", sa.BigInteger, nullable=False),
            sa.Column(
                "tx", sa.Text().with_variant(sa.dialects.mysql.LONGTEXT(), "mysql"), nullable=False
            ),
            sa.Column("result", sa.String(64), nullable=False),
            sa.Column("receipt", sa.Text, nullable=False),
        )
        self.kv = sa.Table(
            "tc_kv",
            m,
            sa.Column(
                "key",
                sa.String(255).with_variant(
                    sa.dialects.mysql.VARCHAR(255, collation="utf8mb4_bin"), "mysql"
                ),
                primary_key=True,
            ),
            sa.Column("value", sa.LargeBinary(length=1 << 24), nullable=False),
        )
        self.digests = sa.Table(
            "tc_digests",
            m,
            sa.Column("name_in_db", sa.String(64), primary_key=True),
            sa.Column("vector", sa.LargeBinary(length=4096), nullable=False),
        )

    def create_all(self, engine: Engine) -> None:
        self.metadata.create_all(engine)
