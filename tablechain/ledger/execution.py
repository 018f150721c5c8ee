"""Applying transactions and blocks to state: the executor registry and the table executors.

Each transaction type has an executor (``TxExecutor``) that validates and applies it against
the block's state overlay. The ledger registers the table executors; contracts, jobs and the CA
register theirs through ``ExecutorRegistry`` (wired in ``platform``). A transaction runs inside
``state.atomic()``: when it fails it is recorded with its code and changes nothing but its
account's sequence.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import sqlalchemy as sa

from tablechain.crypto import canonical_json
from tablechain.errors import TablechainError
from tablechain.ledger.blocks import SUCCESS, BlockEnvironment, Receipt, TxEnvironment
from tablechain.ledger.errors import (
    AssertFailed,
    BadField,
    BadNonce,
    BadRule,
    ConfidentialTable,
    FutureNonce,
    InvalidTransaction,
    LedgerError,
    PermissionDenied,
    RuleViolation,
    StrictModeMismatch,
    TableExists,
    TooLarge,
)
from tablechain.ledger.permissions import grant_key, merge_grant, require
from tablechain.ledger.query import Condition, conjoin, match_row, parse_condition, parse_read
from tablechain.ledger.rules import OperationRule, parse_rule
from tablechain.ledger.schema import (
    FieldDef,
    parse_add_fields,
    parse_delete_fields,
    parse_fields,
    parse_modify_fields,
)
from tablechain.ledger.state import StateOverlay
from tablechain.ledger.tables import (
    CONFIDENTIAL_FIELDS,
    RowConflict,
    TableEngine,
    TableMeta,
    table_key,
)
from tablechain.ledger.transactions import (
    EVERYONE,
    SignedTransaction,
    SQLStatement,
    SQLTransaction,
    Statement,
    TableListSet,
)

__all__ = [
    "ExecutionContext",
    "TxExecutor",
    "AdmissionHook",
    "ExecutorRegistry",
    "TableExecutor",
    "apply_transactions",
    "account_sequence",
    "read_table",
    "MAX_INSERT_ROWS",
]

log = logging.getLogger(__name__)
MAX_INSERT_ROWS = 10_000


@dataclass
class ExecutionContext:
    """What an executor works with during one block."""

    state: StateOverlay
    tables: TableEngine
    env: BlockEnvironment
    extensions: dict[str, Any] = field(default_factory=dict)


class TxExecutor(Protocol):
    """Validates and applies one family of transaction types."""

    def apply(
        self, ctx: ExecutionContext, tx: SignedTransaction, txenv: TxEnvironment
    ) -> Mapping[str, Any]:
        """Apply ``tx``; return receipt details; raise a ``TablechainError`` to fail it."""
        ...


class AdmissionHook(Protocol):
    """Decides, deterministically at the block's time, whether a signer may transact."""

    def check(self, ctx: ExecutionContext, tx: SignedTransaction) -> None:
        """Raise a ``TablechainError`` to refuse ``tx``."""
        ...


class ExecutorRegistry:
    """Executors by ``TransactionType``."""

    def __init__(self) -> None:
        self._executors: dict[str, TxExecutor] = {}

    def register(self, transaction_type: str, executor: TxExecutor) -> None:
        self._executors[transaction_type] = executor

    def get(self, transaction_type: str) -> TxExecutor | None:
        return self._executors.get(transaction_type)

    @classmethod
    def with_tables(cls) -> ExecutorRegistry:
        reg = cls()
        table = TableExecutor()
        for name in ("TableListSet", "SQLStatement", "SQLTransaction"):
            reg.register(name, table)
        return reg


# --- nonces ----------------------------------------------------------------------------------


def account_sequence(state: StateOverlay, account: str) -> int:
    """The last Sequence the account used (0 if none)."""
    return int(state.get(f"acct/{account}", {"sequence": 0})["sequence"])


def _check_sequence(state: StateOverlay, tx: SignedTransaction) -> None:
    last = account_sequence(state, tx.account)
    if tx.sequence <= last:
        raise BadNonce(f"Sequence {tx.sequence} was already used; next is {last + 1}")
    if tx.sequence > last + 1:
        raise FutureNonce(f"Sequence {tx.sequence} skips ahead; next is {last + 1}")


# --- the block loop --------------------------------------------------------------------------


def _apply_one(
    ctx: ExecutionContext,
    tx: SignedTransaction,
    index: int,
    registry: ExecutorRegistry,
    admission: AdmissionHook | None,
    batched: bool,
) -> Receipt:
    txenv = TxEnvironment(ctx.env, tx.account, tx.hash_hex, index)
    try:
        _check_sequence(ctx.state, tx)
    except LedgerError as exc:
        return Receipt(tx.hash_hex, index, exc.code, receipt_message(exc.message))
    if admission is not None:
        # An uncertified signer is no member: its transaction is recorded as refused and
        # changes nothing at all, not even its account's Sequence.
        try:
            with ctx.state.journaled():
                admission.check(ctx, tx)
        except TablechainError as exc:
            return Receipt(tx.hash_hex, index, exc.code, receipt_message(exc.message))
        except Exception as exc:  # a failing check refuses one transaction, never the block
            log.exception("admission of %s raised unexpectedly", tx.hash_hex)
            message = f"internal error in admission: {type(exc).__name__}"
            return Receipt(tx.hash_hex, index, "tefEXCEPTION", message)
    executor = registry.get(tx.transaction_type)
    result, message, details = SUCCESS, "", {}
    try:
        if executor is None:
            raise InvalidTransaction(f"no executor for {tx.transaction_type}")
        if batched:  # overlay-only undo (the batch's SQL writes are deferred)
            mark = ctx.state.mark()
            try:
                details = dict(executor.apply(ctx, tx, txenv))
            except BaseException:
                ctx.state.rollback_to(mark)
                raise
        else:
            with ctx.state.atomic():
                details = dict(executor.apply(ctx, tx, txenv))
    except LedgerError as exc:
        if batched and isinstance(exc, RowConflict):
            raise  # the batch cannot tell whose row conflicted: replay it one by one
        result, message = exc.code, exc.message
    except Exception as exc:  # a failing transaction must never take the node down
        if batched and isinstance(exc, sa.exc.SQLAlchemyError):
            raise
        if isinstance(exc, TablechainError):
            result, message = exc.code, exc.message
        elif isinstance(exc, sa.exc.SQLAlchemyError):
            # SQLAlchemy's own error codes and the driver's words differ between backends:
            # a receipt must not (it is hashed into the block).
            log.exception("transaction %s: the database refused a statement", tx.hash_hex)
            result, message = "tefEXCEPTION", "the database refused a statement"
        else:
            log.exception("transaction %s raised unexpectedly", tx.hash_hex)
            result, message = "tefEXCEPTION", f"internal error: {type(exc).__name__}"
    ctx.state.set(f"acct/{tx.account}", {"sequence": tx.sequence})
    return Receipt(tx.hash_hex, index, result, receipt_message(message), details)


# A receipt's message is for people and may quote the transaction (its unknown fields, say): it
# is kept short so that a receipt always fits its column (MariaDB's TEXT holds 64 KiB) and a
# large transaction cannot fail the storing of every block that carries it.
MAX_RECEIPT_MESSAGE = 1000  # characters


def receipt_message(message: str) -> str:
    """``message`` bounded to ``MAX_RECEIPT_MESSAGE`` characters (deterministically, as a
    receipt is part of the block's receipts root) and encodable as UTF-8."""
    if len(message) <= MAX_RECEIPT_MESSAGE and message.isascii():
        return message  # the common case (every success): nothing to cut or escape
    if len(message) > MAX_RECEIPT_MESSAGE:
        message = f"{message[:MAX_RECEIPT_MESSAGE]}... ({len(message)} characters in all)"
    return message.encode("utf-8", "backslashreplace").decode("utf-8")


def _batchable(registry: ExecutorRegistry, tx: SignedTransaction) -> bool:
    executor = registry.get(tx.transaction_type)
    check = getattr(executor, "batchable", None)
    return bool(check is not None and check(tx))


def apply_transactions(
    ctx: ExecutionContext,
    txs: Sequence[SignedTransaction],
    registry: ExecutorRegistry,
    admission: AdmissionHook | None = None,
) -> list[Receipt]:
    """Apply a block's transactions in order; one receipt each.

    Runs of transactions whose executors call them batchable (plain inserts) share one SQL
    savepoint and one ``executemany`` per table; each keeps its own undo journal, so a failed
    one still changes nothing. If the batched write itself fails (a constraint, which the batch
    cannot attribute), the run is rolled back and replayed one transaction at a time. Either
    way the outcome is the same as applying one by one.
    """
    receipts: list[Receipt] = []
    ctx.state.prefetch([f"acct/{tx.account}" for tx in txs])  # one query, not one per account
    i = 0
    while i < len(txs):
        j = i
        while j < len(txs) and _batchable(registry, txs[j]):
            j += 1
        if j - i >= 2:
            batch = _apply_batch(ctx, txs, i, j, registry, admission)
            if batch is not None:
                receipts.extend(batch)
                i = j
                continue
        else:
            j = i + 1
        for k in range(i, j):
            receipts.append(_apply_one(ctx, txs[k], k, registry, admission, False))
        i = j
    return receipts


def _apply_batch(
    ctx: ExecutionContext,
    txs: Sequence[SignedTransaction],
    start: int,
    end: int,
    registry: ExecutorRegistry,
    admission: AdmissionHook | None,
) -> list[Receipt] | None:
    _prefetch_grants(ctx, txs[start:end])
    mark = ctx.state.mark()
    ctx.state.conn.exec_driver_sql("SAVEPOINT tc_batch")
    ctx.tables.batching = True
    try:
        run = _InsertRun(ctx, admission)
        out = []
        for k in range(start, end):
            receipt = run.apply(txs[k], k)
            if receipt is None:  # not the common case: the general path, on synced state
                run.sync()
                receipt = _apply_one(ctx, txs[k], k, registry, admission, True)
            out.append(receipt)
        run.sync()
        ctx.tables.flush_pending()
    except (RowConflict, sa.exc.SQLAlchemyError):
        ctx.tables.discard_pending()
        ctx.state.conn.exec_driver_sql("ROLLBACK TO SAVEPOINT tc_batch")
        ctx.state.conn.exec_driver_sql("RELEASE SAVEPOINT tc_batch")
        ctx.state.rollback_to(mark)
        return None
    finally:
        ctx.tables.batching = False
    ctx.state.conn.exec_driver_sql("RELEASE SAVEPOINT tc_batch")
    return out


def _prefetch_grants(ctx: ExecutionContext, txs: Sequence[SignedTransaction]) -> None:
    """Read the grants a run of statements will check with one query: the signer's own and
    everyone's, on each statement's table (as one by one, a grant is read once per block)."""
    signers: set[tuple[str, str, str]] = set()  # (owner, table, signer): few distinct ones
    for tx in txs:
        st = tx.body
        if isinstance(st, SQLStatement) and st.owner and len(st.tables) == 1:
            signers.add((st.owner, st.tables[0].name, tx.account))
    metas: dict[tuple[str, str], TableMeta | None] = {}
    keys = set()
    for owner, name, account in signers:
        if (owner, name) not in metas:
            metas[(owner, name)] = ctx.tables.find(owner, name)
        meta = metas[(owner, name)]
        if meta is not None and account != meta.owner:
            keys.add(grant_key(meta.name_in_db, account))
            keys.add(grant_key(meta.name_in_db, EVERYONE))
    if keys:
        ctx.state.prefetch(sorted(keys))


class _InsertRun:
    """The common case of a batch of plain inserts, with its lookups made once per run.

    ``apply`` handles an insert into an existing rule-less table by a permitted signer with the
    next Sequence, not in strict mode, whose rows are valid: the same checks and the same
    effects as the general path (``_apply_one``), but the Sequences, strict-mode pointers and
    rows it produces are kept here and written to the overlay by ``sync``. For anything else
    it returns None without changing anything, and the caller syncs and takes the general
    path, which records the failure or applies the rarer case exactly as one by one.
    """

    def __init__(self, ctx: ExecutionContext, admission: AdmissionHook | None) -> None:
        self.ctx = ctx
        self.admission = admission
        self._sequences: dict[str, int] = {}  # account -> last Sequence used
        self._accounts: dict[str, int] = {}  # accounts whose Sequence moved -> that Sequence
        # (owner, table) -> [meta, fields, pointer, rows queued, pointer moved]
        self._tables: dict[tuple[str, str], list[Any] | None] = {}
        self._allowed: set[tuple[str, str]] = set()

    def _table(self, owner: str, name: str) -> list[Any] | None:
        key = (owner, name)
        if key not in self._tables:
            tables = self.ctx.tables
            meta = tables.find(owner, name)
            entry = None
            if meta is not None and not meta.confidential:
                _, fields = tables.physical(meta)
                if tables.rule(meta, fields) is None:
                    entry = [meta, fields, meta.strict_pointer, [], False]
            self._tables[key] = entry
        return self._tables[key]

    def apply(self, tx: SignedTransaction, index: int) -> Receipt | None:
        st = tx.body
        if st.strict_mode or len(st.tables) != 1 or st.owner is None:
            return None
        account = tx.account
        last = self._sequences.get(account)
        if last is None:
            last = self._sequences[account] = account_sequence(self.ctx.state, account)
        if tx.sequence != last + 1:
            return None
        entry = self._table(st.owner, st.tables[0].name)
        if entry is None:
            return None
        meta, fields, pointer, queued, _ = entry
        if (meta.name_in_db, account) not in self._allowed:
            try:
                require(self.ctx.state, meta.owner, meta.name_in_db, meta.name, account, "insert")
            except PermissionDenied:
                return None
            self._allowed.add((meta.name_in_db, account))
        raw = st.raw
        if not isinstance(raw, list) or not raw or len(raw) > MAX_INSERT_ROWS:
            return None
        if self.admission is not None:
            mark = self.ctx.state.mark()
            try:
                self.admission.check(self.ctx, tx)
            except Exception:  # refused (or worse): the general path records it
                self.ctx.state.rollback_to(mark)
                return None
        first = self.ctx.tables.next_rowid(meta) + len(queued)
        tx_hash = tx.hash_hex
        rows = []
        try:
            for i, given in enumerate(raw):
                if not isinstance(given, dict):
                    return None
                if st.auto_fill_field is not None and st.auto_fill_field not in given:
                    given = {**given, st.auto_fill_field: tx_hash}
                rows.append(self.ctx.tables.complete_row(fields, given, first + i))
        except Exception:  # the general path records why (or how it failed)
            return None
        queued.extend(rows)
        entry[2] = _next_pointer(self.ctx, pointer, raw)
        entry[4] = True
        self._sequences[account] = tx.sequence
        self._accounts[account] = tx.sequence
        return Receipt(tx_hash, index, SUCCESS, "", {"affected": len(rows)})

    def sync(self) -> None:
        """Write what the run applied into the overlay and forget the run's caches."""
        tables = self.ctx.tables
        for entry in self._tables.values():
            if entry is not None and entry[4]:
                meta, _, pointer, queued, _ = entry
                if queued:
                    tables.insert_rows(meta, queued)
                tables.set_pointer(meta, pointer)
        for account, sequence in self._accounts.items():
            self.ctx.state.set(f"acct/{account}", {"sequence": sequence})
        self._sequences.clear()
        self._accounts.clear()
        self._tables.clear()
        self._allowed.clear()


# --- tables ----------------------------------------------------------------------------------


def _next_pointer(ctx: ExecutionContext, previous: str, raw: Any) -> str:
    return ctx.env.suite.hash(bytes.fromhex(previous) + canonical_json(raw, trusted=True)).hex()


def _conditions(raw_conditions: Sequence[Any], fields: Sequence[FieldDef]) -> Condition | None:
    if not raw_conditions:
        return None
    return parse_condition(list(raw_conditions), fields)


def _and(a: Condition | None, b: Condition | None) -> Condition | None:
    if a is None:
        return b
    if b is None:
        return a
    return conjoin(a, b)


def _ruled_condition(
    st: SQLStatement, fields: Sequence[FieldDef], rule_condition: Condition | None, what: str
) -> Condition | None:
    """The statement's conditions (``Raw``, ORed) ANDed with the table rule's (bound)."""
    if not isinstance(st.raw, list) or not st.raw:
        raise BadField(f"the Raw of {what} is a non-empty list of conditions")
    return _and(_conditions(st.raw, fields), rule_condition)


def _altered_fields(
    raw_fields: Sequence[Any], fields: Sequence[FieldDef], op: int, raw: list[Any]
) -> list[dict[str, Any]]:
    """The field definitions after schema change ``op`` (14-18), as they will be stored.

    What could fail on rows already in the table is refused here, whatever rows it holds
    (``parse_add_fields`` / ``parse_delete_fields`` / ``parse_modify_fields``), so whether a
    change is accepted never depends on the data and copying the rows cannot fail.
    """
    current = [dict(f) for f in raw_fields]
    if op == 14:
        parse_add_fields(fields, raw)
        return [*current, *(dict(item) for item in raw)]
    if op == 15:
        kept = {f.name for f in parse_delete_fields(fields, raw)}
        return [f for f in current if f["field"] in kept]
    if op == 16:
        parse_modify_fields(fields, raw)
        given = {item["field"]: dict(item) for item in raw}
        return [given.get(f["field"], f) for f in current]
    names = [f["field"] for f in current]
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("field"), str):
            raise BadField('each entry of Raw is {"field": name}')
        if item["field"] not in names:
            raise BadField(f"no field {item['field']!r}")
        if set(item) != {"field"}:
            raise BadField('an index entry is {"field": name}')
        current[names.index(item["field"])]["index"] = 1 if op == 17 else 0
    return current


def _one_create_per_name(tx: SQLTransaction) -> None:
    """Refuse an SQLTransaction that creates the same table name twice.

    A table's NameInDB (its physical table) is derived from its owner, its name and the
    transaction's hash, so a second create of the name in the same transaction (after a rename
    or a drop of the first) would get the same physical table: the backends then disagree
    (SQLite and PostgreSQL fail with their own driver errors, MariaDB waits on its own lock).
    """
    seen: set[str] = set()
    for st in tx.statements:
        if isinstance(st, TableListSet) and st.op_type == 1:
            if st.table.name in seen:
                raise InvalidTransaction(
                    f"an SQLTransaction creates table {st.table.name!r} at most once"
                )
            seen.add(st.table.name)


class TableExecutor:
    """TableListSet, SQLStatement and SQLTransaction."""

    @staticmethod
    def batchable(tx: SignedTransaction) -> bool:
        """Plain inserts can share a batched write (see ``apply_transactions``)."""
        return isinstance(tx.body, SQLStatement) and tx.body.op_type == 6

    def apply(
        self, ctx: ExecutionContext, tx: SignedTransaction, txenv: TxEnvironment
    ) -> Mapping[str, Any]:
        body = tx.body
        if isinstance(body, SQLTransaction):
            _one_create_per_name(body)
            results = []
            for statement in body.statements:
                results.append(self.apply_statement(ctx, statement, txenv, body.strict_mode))
            return {"statements": results}
        return self.apply_statement(ctx, body, txenv, False)

    def apply_statement(
        self, ctx: ExecutionContext, st: Statement, txenv: TxEnvironment, strict: bool
    ) -> dict[str, Any]:
        if isinstance(st, TableListSet):
            return self._table_list_set(ctx, st, txenv, strict)
        return self._sql_statement(ctx, st, txenv, strict)

    # --- TableListSet ------------------------------------------------------------------------

    def _owned(
        self, ctx: ExecutionContext, st: TableListSet, txenv: TxEnvironment, what: str
    ) -> TableMeta:
        owner = st.owner or txenv.signer
        meta = ctx.tables.lookup(owner, st.table.name)
        if txenv.signer != meta.owner:
            raise PermissionDenied(f"only the owner may {what} table {meta.name!r}")
        return meta

    def _table_list_set(
        self, ctx: ExecutionContext, st: TableListSet, txenv: TxEnvironment, strict: bool
    ) -> dict[str, Any]:
        op = st.op_type
        if op == 1:
            return self._create(ctx, st, txenv, strict)
        if op == 2:
            meta = self._owned(ctx, st, txenv, "drop")
            for key, _ in ctx.state.scan(f"grant/{meta.name_in_db}/"):
                ctx.state.delete(key)
            ctx.state.delete(table_key(meta.owner, meta.name))
            ctx.tables.set_pointer(meta, None)
            ctx.tables.drop_physical(meta)
            return {"table": meta.name}
        if op == 3:
            meta = self._owned(ctx, st, txenv, "rename")
            new_name = st.table.new_name or ""
            if ctx.tables.find(meta.owner, new_name) is not None:
                raise TableExists(f"table {new_name!r} already exists")
            ctx.state.delete(table_key(meta.owner, meta.name))
            ctx.tables.save(dataclasses.replace(meta, name=new_name))
            return {"table": new_name, "NameInDB": meta.name_in_db}
        if op == 11:
            meta = self._owned(ctx, st, txenv, "grant on")
            user = st.user or ""
            if user == meta.owner:
                raise InvalidTransaction("the owner already holds every permission")
            key = grant_key(meta.name_in_db, user)
            previous = ctx.state.get(key)
            grant: dict[str, Any] = dict(merge_grant(previous, st.raw))
            if meta.confidential:
                token = _confidential_grant_token(st, user, grant, previous)
                if token is not None:
                    # With the transaction that gave it: a client checks the Token against
                    # that certified, owner-signed transaction rather than believe its node.
                    grant["token"], grant["token_tx"] = token, (
                        txenv.tx_hash if st.token is not None else previous["token_tx"]
                    )
            elif st.token is not None:
                raise BadField("a grant carries Token only on a confidential table")
            ctx.state.set(key, grant)
            return {"table": meta.name, "user": user}
        if op in (14, 15, 16, 17, 18):
            return self._alter(ctx, st, txenv, strict)
        if op == 12:
            raise InvalidTransaction(
                "recreate rebuilds a node's database from the chain: "
                "run `tablechain node rebuild` on that node"
            )
        raise InvalidTransaction(f"OpType {op} is not a TableListSet operation")

    def _create(
        self, ctx: ExecutionContext, st: TableListSet, txenv: TxEnvironment, strict: bool
    ) -> dict[str, Any]:
        owner = txenv.signer
        if st.owner is not None and st.owner != owner:
            raise InvalidTransaction("a table is created by its owner: Owner must equal Account")
        if st.table.name_in_db is not None:
            raise InvalidTransaction("NameInDB is assigned by the chain on create")
        if ctx.tables.find(owner, st.table.name) is not None:
            raise TableExists(f"table {st.table.name!r} already exists")
        token = sealed = None
        if st.token is not None:
            # Confidential: Token is the table key wrapped to the owner, Raw the field
            # definitions sealed with it (both opaque here); rows go into CONFIDENTIAL_FIELDS.
            token = _sealed_hex(st.token, "Token", MAX_TOKEN_BYTES)
            sealed = _sealed_hex(st.raw, "the Raw of a confidential create (sealed fields)")
            if st.operation_rule is not None:
                raise ConfidentialTable(
                    "a confidential table cannot carry an OperationRule: validators cannot "
                    "read its rows"
                )
            raw_fields: tuple[Any, ...] = CONFIDENTIAL_FIELDS
        else:
            if not isinstance(st.raw, list):
                raise BadField("a create's Raw is the list of field definitions")
            parse_rule(st.operation_rule, parse_fields(st.raw))
            raw_fields = tuple(st.raw)
        name_in_db = ctx.env.suite.hash(
            canonical_json([owner, st.table.name, txenv.tx_hash])
        ).hex()[:40]
        pointer = ctx.env.suite.hash(canonical_json(st.raw)).hex()
        if (strict or st.strict_mode) and st.tx_check_hash != pointer:
            raise StrictModeMismatch(f"TxCheckHash {st.tx_check_hash} != {pointer}")
        meta = TableMeta(
            owner,
            st.table.name,
            name_in_db,
            raw_fields,
            st.operation_rule,
            token,
            pointer,
            ctx.env.height,
            sealed,
            None if token is None else txenv.tx_hash,
        )
        ctx.tables.save(meta)
        ctx.tables.create_physical(meta)
        details: dict[str, Any] = {"table": st.table.name, "NameInDB": name_in_db}
        if token is not None:
            details["confidential"] = True
        return details

    def _alter(
        self, ctx: ExecutionContext, st: TableListSet, txenv: TxEnvironment, strict: bool
    ) -> dict[str, Any]:
        meta = self._owned(ctx, st, txenv, "alter")
        if meta.confidential:
            raise ConfidentialTable(
                "the fields of a confidential table are sealed: they cannot be altered"
            )
        if not isinstance(st.raw, list) or not st.raw:
            raise BadField("Raw lists the fields to change")
        _, fields = ctx.tables.physical(meta)
        current = _altered_fields(meta.raw_fields, fields, st.op_type, st.raw)
        new_fields = parse_fields(current)
        if meta.rule is not None:
            try:
                parse_rule(meta.rule, new_fields)
            except BadRule as exc:
                raise BadField(
                    f"the change breaks the table's OperationRule: {exc.message}"
                ) from None
        pointer = _next_pointer(ctx, meta.strict_pointer, st.raw)
        if (strict or st.strict_mode) and st.tx_check_hash != pointer:
            raise StrictModeMismatch(f"TxCheckHash {st.tx_check_hash} != {pointer}")
        new_meta = ctx.tables.rebuild_schema(meta, current, pointer, txenv.tx_hash)
        # Grants are kept by NameInDB: they move with the rows to the new physical table.
        old_prefix = f"grant/{meta.name_in_db}/"
        for key, grant in ctx.state.scan(old_prefix):
            ctx.state.set(grant_key(new_meta.name_in_db, key[len(old_prefix) :]), grant)
            ctx.state.delete(key)
        return {"table": meta.name, "NameInDB": new_meta.name_in_db}

    # --- SQLStatement ------------------------------------------------------------------------

    def _sql_statement(
        self, ctx: ExecutionContext, st: SQLStatement, txenv: TxEnvironment, strict: bool
    ) -> dict[str, Any]:
        meta = ctx.tables.lookup(st.owner, st.table.name)
        _, fields = ctx.tables.physical(meta)
        rule = ctx.tables.rule(meta, fields)
        action = {6: "insert", 8: "update", 9: "delete", 10: "select"}[st.op_type]
        if meta.confidential and st.op_type != 6:
            raise ConfidentialTable(
                f"table {meta.name!r} is confidential: validators hold only ciphertext of its "
                "rows, so they cannot evaluate updates, deletes or asserts"
            )
        require(ctx.state, meta.owner, meta.name_in_db, meta.name, txenv.signer, action)
        pointer = _next_pointer(ctx, meta.strict_pointer, st.raw)
        if (strict or st.strict_mode) and st.tx_check_hash != pointer:
            raise StrictModeMismatch(
                f"TxCheckHash does not match table {meta.name!r}'s strict-mode pointer: "
                "the writer's view of the table is stale"
            )
        if st.op_type == 6 and meta.confidential:
            details = self._insert_sealed(ctx, meta, fields, st, txenv)
        elif st.op_type == 6:
            details = self._insert(ctx, meta, fields, rule, st, txenv)
        elif st.op_type == 8:
            details = self._update(ctx, meta, fields, rule, st, txenv)
        elif st.op_type == 9:
            details = self._delete(ctx, meta, fields, rule, st, txenv)
        else:
            details = self._assert(ctx, meta, fields, rule, st, txenv)
        ctx.tables.set_pointer(meta, pointer)
        return details

    def _insert(
        self,
        ctx: ExecutionContext,
        meta: TableMeta,
        fields: Sequence[FieldDef],
        rule: OperationRule | None,
        st: SQLStatement,
        txenv: TxEnvironment,
    ) -> dict:
        raw = st.raw
        if not isinstance(raw, list) or not raw:
            raise BadField("an insert's Raw is a non-empty list of rows")
        if len(raw) > MAX_INSERT_ROWS:
            raise TooLarge(f"an insert holds at most {MAX_INSERT_ROWS} rows")
        variables = {"$account": txenv.signer, "$tx_hash": txenv.tx_hash}
        first = ctx.tables.next_rowid(meta)
        rows = []
        for i, given in enumerate(raw):
            if not isinstance(given, dict):
                raise BadField("each row to insert is a JSON object")
            given = dict(given)
            if st.auto_fill_field is not None:
                given.setdefault(st.auto_fill_field, txenv.tx_hash)
            if rule is not None:
                for name, variable in rule.insert_fill:
                    expected = variables[variable]
                    if given.get(name) is None:
                        given[name] = expected
                    elif given[name] != expected:
                        raise RuleViolation(f"field {name!r} must be {variable} ({expected})")
            row = ctx.tables.complete_row(fields, given, first + i)
            if rule is not None and rule.insert_check is not None:
                check = parse_condition(rule.insert_check, fields, variables)
                if not match_row(check, row):
                    raise RuleViolation("the row does not satisfy the table's Insert condition")
            rows.append(row)
        if rule is not None and rule.count_field is not None and rule.count_limit is not None:
            mine = parse_condition({rule.count_field: txenv.signer}, fields)
            existing = ctx.tables.count_rows(meta, mine)
            if existing + len(rows) > rule.count_limit:
                raise RuleViolation(
                    f"{txenv.signer} may insert at most {rule.count_limit} rows "
                    f"into {meta.name!r} ({existing} already)"
                )
        ids = ctx.tables.insert_rows(meta, rows)
        return {"affected": len(ids)}

    def _insert_sealed(
        self,
        ctx: ExecutionContext,
        meta: TableMeta,
        fields: Sequence[FieldDef],
        st: SQLStatement,
        txenv: TxEnvironment,
    ) -> dict:
        """An insert into a confidential table: ``Raw`` is the batch of rows sealed by the
        client, kept as one record with its inserter and transaction."""
        if st.auto_fill_field is not None:
            raise ConfidentialTable("AutoFillField cannot fill a sealed row")
        record = {
            "tx_hash": txenv.tx_hash,
            "account": txenv.signer,
            "sealed": _sealed_hex(st.raw, "the Raw of a confidential insert (sealed rows)"),
        }
        row = ctx.tables.complete_row(fields, record, ctx.tables.next_rowid(meta))
        ctx.tables.insert_rows(meta, [row])
        return {"affected": 1}

    def _update(
        self,
        ctx: ExecutionContext,
        meta: TableMeta,
        fields: Sequence[FieldDef],
        rule: OperationRule | None,
        st: SQLStatement,
        txenv: TxEnvironment,
    ) -> dict:
        raw = st.raw
        if not isinstance(raw, list) or not raw or not isinstance(raw[0], dict) or not raw[0]:
            raise BadField("an update's Raw is [{field: value, ...}, {condition}, ...]")
        changes = raw[0]
        condition = _conditions(raw[1:], fields)
        if rule is not None:
            if rule.update_fields is not None:
                lower = {n.lower() for n in rule.update_fields}
                bad = sorted(n for n in changes if n.lower() not in lower)
                if bad:
                    raise RuleViolation(
                        f"the table's rule lets updates change only "
                        f"{list(rule.update_fields)}, not {bad}"
                    )
            bound = {name for name, _ in rule.insert_fill}
            if bound & set(changes):
                raise RuleViolation(
                    f"fields {sorted(bound & set(changes))} are bound to the "
                    "inserting account or transaction and cannot change"
                )
            condition = _and(
                condition, rule.bind(rule.update_condition, fields, txenv.signer, txenv.tx_hash)
            )
        return {"affected": ctx.tables.update_rows(meta, changes, condition)}

    def _delete(
        self,
        ctx: ExecutionContext,
        meta: TableMeta,
        fields: Sequence[FieldDef],
        rule: OperationRule | None,
        st: SQLStatement,
        txenv: TxEnvironment,
    ) -> dict:
        rule_condition = None
        if rule is not None:
            rule_condition = rule.bind(rule.delete_condition, fields, txenv.signer, txenv.tx_hash)
        condition = _ruled_condition(st, fields, rule_condition, "a delete ([{}] for all rows)")
        return {"affected": ctx.tables.delete_rows(meta, condition)}

    def _assert(
        self,
        ctx: ExecutionContext,
        meta: TableMeta,
        fields: Sequence[FieldDef],
        rule: OperationRule | None,
        st: SQLStatement,
        txenv: TxEnvironment,
    ) -> dict:
        # The rows a read by the signer would see (the Get rule), whatever else it is.
        rule_condition = None if rule is None else rule.visible(fields, txenv.signer)
        condition = _ruled_condition(st, fields, rule_condition, "an assert")
        if ctx.tables.count_rows(meta, condition) == 0:
            raise AssertFailed(f"no row of {meta.name!r} satisfies the asserted condition")
        return {}


# --- confidential tables -------------------------------------------------------------------

MAX_TOKEN_BYTES = 1024  # a wrapped key is 77 to 130 bytes (tablechain.crypto.envelope)
MAX_SEALED_BYTES = 65535  # what the record's blob column holds
_HEX_TEXT = re.compile(r"(?:[0-9a-f]{2})+")


def _sealed_hex(value: Any, what: str, limit: int = MAX_SEALED_BYTES) -> str:
    """A client's ciphertext as carried in a transaction: non-empty lowercase hex."""
    if not isinstance(value, str) or _HEX_TEXT.fullmatch(value) is None:
        raise BadField(f"{what} is a non-empty lowercase hex string (ciphertext)")
    if len(value) > 2 * limit:
        raise TooLarge(f"{what} holds {len(value) // 2} bytes; the limit is {limit}")
    return value


def _confidential_grant_token(
    st: TableListSet, user: str, grant: Mapping[str, Any], previous: Mapping[str, Any] | None
) -> str | None:
    """The Token a grant on a confidential table keeps: the grantee needs the table key to
    read (select) or write (insert) sealed rows, so such a grant carries it wrapped to them
    (or keeps the one given before); a grant that leaves neither keeps none."""
    if user == EVERYONE:
        raise ConfidentialTable(
            "a confidential table is granted to accounts one by one: each needs its own Token"
        )
    if not (grant.get("select") or grant.get("insert")):
        return None
    if st.token is not None:
        return _sealed_hex(st.token, "Token", MAX_TOKEN_BYTES)
    kept = None if previous is None else previous.get("token")
    if kept is None:
        raise ConfidentialTable(
            "granting select or insert on a confidential table needs Token: the table key "
            "wrapped to the grantee's public key"
        )
    return str(kept)


# --- reads -----------------------------------------------------------------------------------


def read_table(
    state: StateOverlay, tables: TableEngine, owner: str, name: str, raw: Any, reader: str
) -> list[dict[str, Any]]:
    """A read as ``reader``: select permission and the table's Get rule apply."""
    meta = tables.lookup(owner, name)
    _, fields = tables.physical(meta)
    require(state, meta.owner, meta.name_in_db, meta.name, reader, "select")
    query = parse_read(raw, fields, {"$account": reader})
    extra = None
    rule = parse_rule(meta.rule, fields)
    if rule is not None:
        extra = rule.visible(fields, reader)
    return tables.select(meta, query, extra)


def table_grants(state: StateOverlay, name_in_db: str) -> dict[str, dict[str, bool]]:
    """Every explicit grant on a table, by user (``everyone`` included)."""
    prefix = f"grant/{name_in_db}/"
    return {key[len(prefix) :]: value for key, value in state.scan(prefix)}


__all__ += ["table_grants", "EVERYONE"]
