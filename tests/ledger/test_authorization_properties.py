"""Property tests: grants and row rules never let an unauthorised operation through."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tablechain.ledger.errors import LedgerError
from tests.ledger.conftest import Harness
from tests.ledger.test_execution import PEOPLE, SEED_FIELDS, SEED_RULE

ACTIONS = ("select", "insert", "update", "delete")
flags = st.fixed_dictionaries({}, optional={a: st.booleans() for a in ACTIONS}).filter(bool)
grant_step = st.tuples(st.just("grant"), st.sampled_from(["everyone", 0, 1, 2]), flags)
op_step = st.tuples(st.just("op"), st.sampled_from([0, 1, 2]), st.sampled_from(ACTIONS))


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.one_of(grant_step, op_step), min_size=1, max_size=14))
def test_grants_match_the_model(tmp_path_factory, steps):
    h = Harness(f"sqlite:///{tmp_path_factory.mktemp('g') / 'n.db'}")
    owner = h.account()
    users = [h.account() for _ in range(3)]
    assert h.create(owner, "t", PEOPLE).success
    model: dict[str, dict[str, bool]] = {}
    next_id = 0
    for step in steps:
        if step[0] == "grant":
            _, who, fl = step
            user = "everyone" if who == "everyone" else users[who].address
            assert h.grant(owner, "t", user, **fl).success
            merged = dict.fromkeys(ACTIONS, False) | model.get(user, {})
            merged.update(fl)
            model[user] = merged
            continue
        _, who, action = step
        u = users[who]
        grant = model.get(u.address) or model.get("everyone") or {}
        allowed = grant.get(action, False)
        if action == "select":
            try:
                h.read(u, owner, "t", [[]])
                ok = True
            except LedgerError as exc:
                assert exc.code == "tefBAD_AUTH_NO"
                ok = False
        else:
            next_id += 1
            raw = {"insert": [{"id": next_id}], "update": [{"age": 1}],
                   "delete": [{"id": next_id}]}[action]
            op = {"insert": 6, "update": 8, "delete": 9}[action]
            r = h.statement(u, op, owner, "t", raw)
            ok = r.success
            if not ok:
                assert r.result == "tefBAD_AUTH_NO", r
        assert ok == allowed, (step, model)
    h.ledger.close()


row_op = st.tuples(st.sampled_from(["insert", "update", "delete", "read"]), st.integers(0, 2),
                   st.integers(0, 12), st.integers(0, 60))


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(row_op, min_size=1, max_size=25))
def test_row_rules_hold_under_random_operations(tmp_path_factory, ops):
    h = Harness(f"sqlite:///{tmp_path_factory.mktemp('r') / 'n.db'}")
    owner = h.account()
    users = [owner, h.account(), h.account()]
    assert h.create(owner, "r", SEED_FIELDS, SEED_RULE).success
    for u in users[1:]:
        assert h.grant(owner, "r", u.address, select=True, insert=True, update=True,
                       delete=True).success
    inserter: dict[int, str] = {}
    for kind, who, row_id, age in ops:
        u = users[who]
        if kind == "insert":
            r = h.statement(u, 6, owner, "r", [{"id": row_id, "age": age}])
            mine = sum(1 for a in inserter.values() if a == u.address)
            if row_id in inserter or mine >= 5:
                assert not r.success
            else:
                assert r.success, r
                inserter[row_id] = u.address
        elif kind == "update":
            h.statement(u, 8, owner, "r", [{"age": age}, {"id": row_id}])
        elif kind == "delete":
            r = h.statement(u, 9, owner, "r", [{"id": row_id}])
            if r.success and r.details["affected"]:
                assert inserter.pop(row_id) == u.address
        else:
            rows = h.read(u, owner, "r", [[]])
            assert all(row["id"] >= 3 for row in rows)  # the Get rule
    # Everything left is tied to its inserter; nobody exceeds the quota; reads see id >= 3 only.
    everything = h.ledger.read(owner.address, "r", [[], {"$limit": {"index": 0, "total": 1000}}],
                               owner.address)
    assert {row["id"] for row in everything} == {i for i in inserter if i >= 3}
    for row in everything:
        assert row["account"] == inserter[row["id"]]
        assert len(row["txid"]) == 64
    for u in users:
        assert sum(1 for a in inserter.values() if a == u.address) <= 5
    h.ledger.close()
