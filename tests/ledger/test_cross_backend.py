"""Validators may keep their tables on different databases: the same blocks must give the same
receipts and the same state root on SQLite, PostgreSQL and MariaDB, block by block."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from tablechain.crypto import address_to_text, generate_private_key
from tablechain.errors import TablechainError
from tablechain.ledger.chain import Genesis, Ledger, rebuild
from tablechain.ledger.transactions import CryptoSuite, parse_transaction, sign_transaction
from tests.conftest import MARIADB_ADMIN_URL, PG_ADMIN_URL, _fresh_server_database

FIELDS = [
    {"field": "id", "type": "int", "PK": 1},
    {"field": "name", "type": "varchar", "length": 20, "index": 1},
    {"field": "amt", "type": "decimal", "length": 12, "accuracy": 3},
    {"field": "f", "type": "float"},
    {"field": "d", "type": "datetime"},
    {"field": "dd", "type": "date"},
    {"field": "b", "type": "blob", "length": 32},
    {"field": "t", "type": "text"},
    {"field": "c", "type": "char", "length": 4},
    {"field": "n", "type": "int", "default": 5},
]
# Strings that backends are apt to compare or store differently: case, trailing and leading
# space, combining marks, astral characters, LIKE's wildcards and escapes, quotes, controls.
STRINGS = ["", "a", "A", "a ", " a", "é", "e\u0301", "日本", "😀", "a\nb", "Z" * 20, "abc%",
           "a_b", "'", '"', "\\", "\t"]
CONDITIONS = [
    {}, {"name": "a"}, {"name": {"$like": "a%"}}, {"amt": {"$gt": "1"}},
    {"d": {"$ge": "2000-01-01 00:00:00"}},
    {"$or": [{"id": {"$lt": 5}}, {"name": {"$in": ["é", "日本"]}}]}, {"t": {"$regex": "^x+$"}},
    {"b": {"$eq": "DEADBEEF"}}, {"name": {"$ne": "a "}}, {"c": "ab"}, {"name": {"$isnot": None}},
    {"f": {"$le": "1.25"}}, {"name": {"$like": "%\\_%"}}, {"name": {"$nin": ["a", "A"]}},
]


@pytest.fixture
def three_backends(tmp_path) -> Iterator[dict[str, str]]:
    with ExitStack() as stack:
        urls = {"sqlite": f"sqlite:///{tmp_path / 'x.db'}"}
        for name, admin, label in (("postgres", PG_ADMIN_URL, "PostgreSQL"),
                                   ("mariadb", MARIADB_ADMIN_URL, "MariaDB")):
            gen = _fresh_server_database(admin, label)
            urls[name] = next(gen)
            stack.callback(lambda g=gen: next(g, None))
        yield urls


def _blocks(seed: int) -> list[list[dict[str, Any]]]:
    rng = random.Random(seed)
    keys = [generate_private_key() for _ in range(3)]
    owner = address_to_text(keys[0].address())
    seq = [0, 0, 0]

    def tx(i: int, **fields: Any) -> dict[str, Any]:
        seq[i] += 1
        return sign_transaction({"NetworkID": 7, "Sequence": seq[i], **fields}, keys[i])

    def table(name: str) -> list[dict[str, Any]]:
        return [{"Table": {"TableName": name}}]

    def row(i: int) -> dict[str, Any]:
        r: dict[str, Any] = {"id": i}
        for field, values, p in (
            ("name", STRINGS, 0.8),
            ("amt", ["0", "-0.001", "123456789.123", "1.5", "-999999999.999", "0.1"], 0.8),
            ("f", ["1.25", "-3", "0.000001", "123456789012.123456"], 0.6),
            ("d", ["2024-02-29 23:59:59", "1970-01-01 00:00:00", "9999-12-31 23:59:59",
                   "0001-01-01 00:00:00"], 0.6),
            ("dd", ["2024-02-29", "1000-01-01"], 0.6),
            ("b", ["", "00", "ff" * 32, "DEADbeef"], 0.5),
            ("t", [*STRINGS, "x" * 3000], 0.5),
            ("c", ["", "ab", "abcd", "é", "a ", " "], 0.5),
        ):
            if rng.random() < p:
                r[field] = rng.choice(values)
        return r

    def statement(op: int, raw: Any) -> dict[str, Any]:
        return {"TransactionType": "SQLStatement", "OpType": op, "Owner": owner,
                "Tables": table("t1"), "Raw": raw}

    blocks = [[tx(0, TransactionType="TableListSet", OpType=1, Tables=table("t1"), Raw=FIELDS),
               tx(0, TransactionType="TableListSet", OpType=11, Tables=table("t1"),
                  User="everyone",
                  Raw=[{"insert": True, "update": True, "delete": True, "select": True}])]]
    next_id = 0
    for height in range(20):
        txs = []
        for _ in range(rng.randrange(1, 12)):
            who, pick = rng.randrange(3), rng.random()
            if pick < 0.45:
                rows = []
                for _ in range(rng.randrange(1, 4)):
                    next_id += 1
                    rows.append(row(next_id if rng.random() < 0.9 else rng.randrange(1, next_id)))
                txs.append(tx(who, **statement(6, rows)))
            elif pick < 0.65:
                values = {k: v for k, v in row(0).items() if k != "id"} or {"n": 7}
                txs.append(tx(who, **statement(8, [values, rng.choice(CONDITIONS)])))
            elif pick < 0.75:
                txs.append(tx(who, **statement(9, [rng.choice(CONDITIONS[1:])])))
            elif pick < 0.82:
                txs.append(tx(who, **statement(10, [rng.choice(CONDITIONS)])))
            elif pick < 0.9:
                next_id += 2
                txs.append(tx(who, TransactionType="SQLTransaction", Statements=[
                    statement(6, [row(next_id - 1)]),
                    statement(8, [{"n": rng.randrange(100)}, rng.choice(CONDITIONS)]),
                    statement(6, [row(next_id if rng.random() < 0.7 else 1)])]))
            elif pick < 0.95 and who == 0:
                change = rng.choice([
                    {"OpType": 14, "Raw": [{"field": f"x{height}", "type": "varchar",
                                            "length": 10, "default": "q"}]},
                    {"OpType": 16, "Raw": [{"field": "name", "type": "varchar",
                                            "length": rng.choice([5, 20, 30])}]},
                    {"OpType": 17, "Raw": [{"field": "amt"}]},
                    {"OpType": 15, "Raw": [{"field": "t"}]}])
                txs.append(tx(0, TransactionType="TableListSet", Tables=table("t1"), **change))
            else:
                txs.append(tx(who, TransactionType="TableListSet", OpType=1,
                              Tables=table(f"s{height}_{who}"), Raw=FIELDS[:4]))
        blocks.append(txs)
    return blocks


@pytest.mark.parametrize("seed", [1, 2])
def test_the_same_blocks_give_the_same_roots_on_every_backend(three_backends, seed, tmp_path):
    """...and each backend's chain replays (``rebuild``: every block re-executed and checked
    against its stored header, as catch-up does) into a fresh SQLite database."""
    blocks = _blocks(seed)
    rows: dict[str, Any] = {}

    def look(backend: str, ledger: Ledger) -> None:
        rows[backend] = _all_rows(ledger)
        replayed = rebuild(ledger, f"sqlite:///{tmp_path / f'{backend}-replayed.db'}")
        assert replayed.head == ledger.head
        replayed.close()

    seen = _run_everywhere(three_backends, blocks, look)
    reference = seen["sqlite"]
    assert sum(len(table_rows) for table_rows in rows["sqlite"].values()) > 20
    assert sum(r == "tesSUCCESS" for _, results in reference for r in results) > 50
    for backend in ("postgres", "mariadb"):
        for height, (mine, theirs) in enumerate(zip(seen[backend], reference, strict=True)):
            assert mine == theirs, f"{backend} differs from sqlite at height {height + 1}"
        # The root covers the rows as execution saw them; the databases must hold the same.
        assert rows[backend] == rows["sqlite"], backend


def _run_everywhere(
    urls: dict[str, str],
    blocks: list[list[dict[str, Any]]],
    look: Callable[[str, Ledger], None] | None = None,
) -> dict[str, list[tuple[str, list[str]]]]:
    """Execute and commit ``blocks`` (fixed timestamps) on a fresh ledger per backend: per
    backend, each block's (state root, receipt results). ``look`` sees each ledger at the end."""
    seen = {}
    for backend, url in urls.items():
        ledger = Ledger(url, Genesis(network_id=7))
        try:
            out = []
            for height, txs in enumerate(blocks):
                parsed = [parse_transaction(t, ledger.suite, 7) for t in txs]
                block = ledger.execute(parsed, 10_000 + 1000 * height, "0x" + "11" * 20).commit()
                out.append((block.header.state_root, [r.result for r in block.receipts]))
            seen[backend] = out
            if look is not None:
                look(backend, ledger)
        finally:
            ledger.close()
    return seen


def _all_rows(ledger: Ledger) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, read back from the database (through the query engine)."""
    out = {}
    with ledger.reader() as (state, tables):
        for key, meta in state.scan("table/"):
            owner, name = meta["owner"], meta["name"]
            out[f"{owner}/{name}"] = ledger.read(
                owner, name, [[], {"$limit": {"index": 0, "total": 1000}}], owner)
    return out


# --- mutated transactions ----------------------------------------------------------------------

_FIELDS = [{"field": "id", "type": "int", "PK": 1},
           {"field": "name", "type": "varchar", "length": 8},
           {"field": "amt", "type": "decimal", "length": 6, "accuracy": 2},
           {"field": "account", "type": "varchar", "length": 42}]
_RULE = {"Insert": {"Condition": {"account": "$account"},
                    "Count": {"AccountField": "account", "CountLimit": 2}},
         "Update": {"Condition": {"id": {"$ge": 1}}, "Fields": ["name"]},
         "Delete": {"Condition": {"account": "$account"}},
         "Get": {"Condition": {"id": {"$ge": 0}}}}
_EVERYTHING = [{"insert": True, "update": True, "delete": True, "select": True}]


def _templates(owner: str) -> list[dict[str, Any]]:
    def tls(name: str, op: int, **more: Any) -> dict[str, Any]:
        return {"TransactionType": "TableListSet", "OpType": op,
                "Tables": [{"Table": {"TableName": name}}], **more}

    def sql(name: str, op: int, raw: Any) -> dict[str, Any]:
        return {"TransactionType": "SQLStatement", "OpType": op, "Owner": owner,
                "Tables": [{"Table": {"TableName": name}}], "Raw": raw}

    return [
        tls("t", 1, Raw=_FIELDS), tls("r", 1, Raw=_FIELDS, OperationRule=_RULE),
        tls("t", 11, User="everyone", Raw=_EVERYTHING),
        tls("r", 11, User="everyone", Raw=_EVERYTHING),
        sql("t", 6, [{"id": 1, "name": "a", "amt": "1.5"}]), sql("r", 6, [{"id": 1, "name": "a"}]),
        sql("t", 8, [{"name": "b"}, {"id": 1}]), sql("r", 8, [{"name": "b"}, {"id": {"$gt": 0}}]),
        sql("t", 9, [{"id": 1}]), sql("r", 9, [{"name": "b"}]), sql("t", 10, [{"id": 1}]),
        {"TransactionType": "SQLTransaction",
         "Statements": [sql("t", 6, [{"id": 2}]), tls("u", 1, Raw=_FIELDS)]},
        tls("t", 14, Raw=[{"field": "x", "type": "int", "default": 1}]),
        {"TransactionType": "TableListSet", "OpType": 3,
         "Tables": [{"Table": {"TableName": "t", "TableNewName": "t2"}}]},
        tls("u", 2), tls("t", 17, Raw=[{"field": "name"}]),
        # A confidential table: sealed definitions and rows, Tokens (opaque hex to a node).
        tls("c", 1, Raw="ab" * 40, Token="cd" * 50),
        tls("c", 11, User="0x" + "11" * 20, Raw=[{"select": True, "insert": True}],
            Token="ef" * 40),
        sql("c", 6, "0123" * 20), sql("c", 8, [{"id": 1}, {}]),
    ]


_ODD = [None, True, False, 0, -1, 1, 2, 3, 2**63, 2**70, "", "x", "a%", "1.505", "-0.01",
        "$account", "$tx_hash", "everyone", [], {}, [1], [{}], {"$gt": 1}, {"$in": [1, 2]},
        {"$like": "%"}, {"$regex": "("}, {"$or": [{"id": 1}, {}]}, "t", "r", "u", "t2", "name",
        "id", "account", "amt", "c", "00", "ABCD", "ab" * 70000]
_KEYS = ["id", "name", "amt", "account", "Raw", "Owner", "User", "OperationRule", "Fields",
         "Condition", "Count", "$limit", "$order", "AutoFillField", "StrictMode", "TxCheckHash",
         "Token"]


def _mutate(rng: random.Random, value: Any, templates: list[dict[str, Any]], depth: int = 0) -> Any:
    if depth > 4:
        return rng.choice(_ODD)
    if isinstance(value, dict):
        value = dict(value)
        keys = [k for k in value if k != "TransactionType"]
        pick = rng.random()
        if keys and pick < 0.5:
            key = rng.choice(keys)
            value[key] = (_mutate(rng, value[key], templates, depth + 1) if rng.random() < 0.6
                          else rng.choice(_ODD))
        elif keys and pick < 0.7:
            value.pop(rng.choice(keys))
        else:
            value[rng.choice(_KEYS)] = rng.choice(_ODD)
        return value
    if isinstance(value, list):
        value = list(value)
        if value and rng.random() < 0.6:
            i = rng.randrange(len(value))
            value[i] = _mutate(rng, value[i], templates, depth + 1)
        elif value and rng.random() < 0.3:
            value.pop(rng.randrange(len(value)))
        else:
            extra = rng.choice(templates).get("Raw", []) if rng.random() < 0.2 else rng.choice(_ODD)
            value.append(_mutate(rng, extra, templates, depth + 1))
        return value
    return rng.choice(_ODD)


@pytest.mark.parametrize("seed", [1, 2])
def test_mutated_transactions_execute_alike_everywhere_and_never_break_a_block(three_backends,
                                                                                 seed):
    """Signed transactions built by mutating valid ones (odd values, missing and extra fields,
    rules, SQL transactions, schema changes, renames, drops): whatever parses executes without
    an exception leaving the block, never with tefEXCEPTION, alike on every backend."""
    rng = random.Random(seed)
    keys = [generate_private_key() for _ in range(2)]
    templates = _templates(address_to_text(keys[0].address()))
    suite = CryptoSuite("international")
    # The tables and grants first, so that most of what follows acts on something.
    blocks = [[sign_transaction({"NetworkID": 7, "Sequence": i + 1, **body}, keys[0])
               for i, body in enumerate(templates[:4])]]
    sequences = [4, 0]
    for height in range(1, 30):
        txs = []
        for _ in range(rng.randrange(1, 15)):
            who = rng.randrange(2)
            body = rng.choice(templates)
            if height > 2 and rng.random() < 0.7:
                body = _mutate(rng, body, templates)
            signed = sign_transaction(
                {"NetworkID": 7, "Sequence": sequences[who] + 1, **body}, keys[who])
            try:
                parse_transaction(signed, suite, 7)
            except TablechainError:
                continue  # refused at the door: it never reaches a block
            sequences[who] += 1
            txs.append(signed)
        blocks.append(txs)
    seen = _run_everywhere(three_backends, blocks)
    results = [r for _, rs in seen["sqlite"] for r in rs]
    assert "tefEXCEPTION" not in results
    assert results.count("tesSUCCESS") > 20 and len(set(results)) > 5
    assert seen["postgres"] == seen["sqlite"]
    assert seen["mariadb"] == seen["sqlite"]
