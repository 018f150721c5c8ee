"""Row-level operation rules (ChainSQL's ``OperationRule``), checked at create and applied on use.

```
{"Insert": {"Condition": {"account": "$account", "txid": "$tx_hash"},
            "Count": {"AccountField": "account", "CountLimit": 5}},
 "Update": {"Condition": {...}, "Fields": ["age"]},
 "Delete": {"Condition": {"account": "$account"}},
 "Get":    {"Condition": {"id": {"$ge": 3}}}}
```

Insert fields bound to ``$account`` / ``$tx_hash`` are filled with the signer's address / the
transaction hash when omitted and must equal them when given; other Insert conditions must hold
for the inserted row. ``Count`` limits the rows one account may insert. Update, Delete and Get
conditions are ANDed into the user's own condition, with the variables bound to the real signer
and transaction. A Get condition knows ``$account`` (the reader) only: a read is no transaction,
and an assert must see exactly the rows a read by its signer sees.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tablechain.ledger.errors import BadRule, LedgerError
from tablechain.ledger.query import Condition, parse_condition
from tablechain.ledger.schema import FieldDef, coerce_value

__all__ = ["OperationRule", "parse_rule", "VARIABLES"]

VARIABLES = ("$account", "$tx_hash")
_SECTIONS = {
    "Insert": {"Condition", "Count"},
    "Update": {"Condition", "Fields"},
    "Delete": {"Condition"},
    "Get": {"Condition"},
}
_PLACEHOLDER = {"$account": "0x" + "00" * 20, "$tx_hash": "00" * 32}
_READER_PLACEHOLDER = {"$account": _PLACEHOLDER["$account"]}


@dataclass(frozen=True)
class OperationRule:
    """A parsed, validated rule; conditions kept as JSON and bound per use."""

    raw: Mapping[str, Any]
    insert_fill: tuple[tuple[str, str], ...]  # (field, variable)
    insert_check: Mapping[str, Any] | None  # the non-variable part of the Insert condition
    count_field: str | None
    count_limit: int | None
    update_condition: Any
    update_fields: tuple[str, ...] | None
    delete_condition: Any
    get_condition: Any

    def bind(
        self, condition: Any, fields: Sequence[FieldDef], account: str, tx_hash: str
    ) -> Condition | None:
        """``condition`` with ``$account`` / ``$tx_hash`` bound, parsed; None if absent."""
        if condition is None:
            return None
        return parse_condition(condition, fields, {"$account": account, "$tx_hash": tx_hash})

    def visible(self, fields: Sequence[FieldDef], reader: str) -> Condition | None:
        """The Get condition for ``reader``: the rows their reads and asserts see."""
        if self.get_condition is None:
            return None
        return parse_condition(self.get_condition, fields, {"$account": reader})


def _field_names(fields: Sequence[FieldDef]) -> dict[str, FieldDef]:
    return {f.name: f for f in fields}


def parse_rule(raw: Any, fields: Sequence[FieldDef]) -> OperationRule | None:
    """Validate an ``OperationRule`` against the table's fields; None when there is none."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or not raw:
        raise BadRule("OperationRule must be a non-empty object")
    unknown = set(raw) - set(_SECTIONS)
    if unknown:
        raise BadRule(f"OperationRule: unknown sections {sorted(unknown)}")
    by_name = _field_names(fields)
    sections: dict[str, dict[str, Any]] = {}
    for name, body in raw.items():
        if not isinstance(body, dict):
            raise BadRule(f"OperationRule.{name} must be an object")
        bad = set(body) - _SECTIONS[name]
        if bad:
            raise BadRule(f"OperationRule.{name}: unknown keys {sorted(bad)}")
        sections[name] = body

    def check_condition(where: str, cond: Any, variables: Mapping[str, str] = _PLACEHOLDER) -> None:
        try:
            parse_condition(cond, fields, variables)
        except LedgerError as exc:
            raise BadRule(f"OperationRule.{where}.Condition: {exc.message}") from None

    insert = sections.get("Insert", {})
    fill: list[tuple[str, str]] = []
    check: dict[str, Any] = {}
    cond = insert.get("Condition")
    if cond is not None:
        if not isinstance(cond, dict):
            raise BadRule("OperationRule.Insert.Condition must be an object")
        for key in sorted(cond):
            value = cond[key]
            if isinstance(value, str) and value in VARIABLES:
                if key not in by_name:
                    raise BadRule(f"OperationRule.Insert.Condition names unknown field {key!r}")
                try:  # every insert fills it: a field that cannot hold the value is no rule
                    coerce_value(by_name[key], _PLACEHOLDER[value])
                except LedgerError as exc:
                    raise BadRule(
                        f"OperationRule.Insert.Condition: field {key!r} cannot hold {value}: "
                        f"{exc.message}"
                    ) from None
                fill.append((key, value))
            else:
                check[key] = value
        if check:
            check_condition("Insert", check)
    count_field = count_limit = None
    count = insert.get("Count")
    if count is not None:
        if not isinstance(count, dict) or set(count) != {"AccountField", "CountLimit"}:
            raise BadRule('OperationRule.Insert.Count is {"AccountField": ..., "CountLimit": n}')
        count_field, count_limit = count["AccountField"], count["CountLimit"]
        if not isinstance(count_field, str):
            raise BadRule("OperationRule.Insert.Count.AccountField must be a field name")
        if (f := by_name.get(count_field)) is None:
            raise BadRule(f"OperationRule.Insert.Count.AccountField: no field {count_field!r}")
        if (count_field, "$account") not in fill:
            raise BadRule(
                "OperationRule.Insert.Count.AccountField must be bound to $account "
                "in Insert.Condition"
            )
        if not isinstance(count_limit, int) or isinstance(count_limit, bool) or count_limit < 1:
            raise BadRule("OperationRule.Insert.Count.CountLimit must be a positive integer")
        if f.type not in ("varchar", "char", "text"):
            raise BadRule("OperationRule.Insert.Count.AccountField must be a text field")
    update = sections.get("Update", {})
    if update.get("Condition") is not None:
        check_condition("Update", update["Condition"])
    update_fields = None
    if "Fields" in update:
        names = update["Fields"]
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise BadRule("OperationRule.Update.Fields must be a non-empty list of field names")
        lower = {n.lower(): n for n in by_name}
        resolved = []
        for n in names:
            if n.lower() not in lower:
                raise BadRule(f"OperationRule.Update.Fields names unknown field {n!r}")
            resolved.append(lower[n.lower()])
        update_fields = tuple(sorted(set(resolved)))
    delete_cond = sections.get("Delete", {}).get("Condition")
    if delete_cond is not None:
        check_condition("Delete", delete_cond)
    if count_field is not None:
        # A per-account insert quota is meaningless if others may delete an account's rows.
        if not (isinstance(delete_cond, dict) and delete_cond.get(count_field) == "$account"):
            raise BadRule(
                f"with Insert.Count, Delete.Condition must bind {count_field!r} to "
                "$account so that rows stay tied to the account that inserted them"
            )
    get_cond = sections.get("Get", {}).get("Condition")
    if get_cond is not None:
        check_condition("Get", get_cond, _READER_PLACEHOLDER)
    return OperationRule(
        raw,
        tuple(fill),
        check or None,
        count_field,
        count_limit,
        update.get("Condition"),
        update_fields,
        delete_cond,
        get_cond,
    )
