"""Certificate admission through the ledger: each refusal has its own code and changes nothing."""

from __future__ import annotations

import pytest

from tablechain.ca import CertificateAuthority
from tablechain.ledger.chain import Genesis, Ledger
from tablechain.ledger.errors import LedgerError
from tests.ledger.conftest import Account, Harness

T0 = 1_700_000_000  # certificates' clock, seconds; blocks run at T0 + a little
PEOPLE = [{"field": "id", "type": "int", "PK": 1}]


class AdmissionHarness(Harness):
    def __init__(self, url: str, root: CertificateAuthority, admins: list[str]) -> None:
        self.genesis = Genesis(network_id=7, admission={
            "enabled": True, "trusted_roots": [_pem(root.certificate.der)], "admins": admins})
        self.ledger = Ledger(url, self.genesis)
        self.clock = T0 * 1000


def _pem(der: bytes, label: str = "CERTIFICATE") -> str:
    import base64

    if der.startswith(b"-----BEGIN"):
        return der.decode()
    body = base64.encodebytes(der).decode().replace("\n", "")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n"


@pytest.fixture
def pki(tmp_path):
    root = CertificateAuthority.init_root(tmp_path / "root", name="Root", not_before=T0 - 10,
                                          not_after=T0 + 10**9)
    inter = CertificateAuthority.init_intermediate(tmp_path / "inter", root, name="Issuing CA",
                                                   not_before=T0 - 10, not_after=T0 + 10**9)
    return root, inter


def certify(ca, who: Account, not_before=T0 - 10, not_after=T0 + 10**7, role="user") -> str:
    leaf = ca.issue(name=who.address, role=role, public_key=who.key.public_key.to_bytes(),
                    scheme=who.key.scheme, not_before=not_before, not_after=not_after)
    return "".join(_pem(d) for d in ca.chain_for(leaf))


def test_admission_end_to_end(pki, tmp_path):
    root, inter = pki
    admin = Account()
    h = AdmissionHarness(f"sqlite:///{tmp_path / 'a.db'}", root, [admin.address])
    alice, mallory = Account(), Account()
    chain = certify(inter, alice)

    def create(who, name, cert=None):
        extra = {} if cert is None else {"Certificate": cert}
        receipt = h.create(who, name, PEOPLE, **extra)
        if receipt.result.startswith("ca"):
            who.sequence -= 1  # a refused signer's Sequence does not move
        return receipt

    # No certificate: refused, and nothing changes (not even the nonce).
    root_before = h.ledger.head.state_root
    r = create(alice, "t0")
    assert r.result == "caCERTIFICATE_REQUIRED"
    assert h.ledger.head.state_root == root_before
    assert h.ledger.account_sequence(alice.address) == 0
    # Carried chain: admitted and registered; later referenced by fingerprint.
    r = create(alice, "t1", chain)
    assert r.success, r
    from tablechain.ca import load_certificates

    fp = load_certificates(chain.encode())[0].fingerprint
    assert create(alice, "t2", fp).success
    # Someone else's certificate: key mismatch.
    assert create(mallory, "m", chain).result == "caKEY_MISMATCH"
    assert create(mallory, "m", fp).result == "caKEY_MISMATCH"
    # Unknown fingerprint.
    assert create(mallory, "m", "ab" * 32).result == "caUNKNOWN_CERTIFICATE"
    # Not yet valid / expired at the block's time (never the wall clock).
    bob = Account()
    assert create(bob, "b", certify(inter, bob, not_before=T0 + 10**6)).result == "caCERT_NOT_YET_VALID"
    carol = Account()
    assert create(carol, "c", certify(inter, carol, not_after=T0 - 1)).result == "caCERT_EXPIRED"
    # Wrong root.
    other_root = CertificateAuthority.init_root(tmp_path / "other", name="Root", not_before=T0 - 10,
                                                not_after=T0 + 10**9)
    dave = Account()
    assert create(dave, "d", certify(other_root, dave)).result in ("caUNKNOWN_ROOT", "caBAD_SIGNATURE")
    # Revocation by the issuing CA's CRL, applied on-chain: alice is out from that block on.
    serial = load_certificates(chain.encode())[0].serial
    inter.revoke(serial, at=T0)
    crl = _pem(inter.crl(this_update=T0, next_update=T0 + 10**6), "X509 CRL")
    # Alice is admitted earlier in the same block (the check is memoised per block), then the
    # CRL lands, then Alice again: the revocation must take effect at once.
    before = h.sign(alice, {"TransactionType": "TableListSet", "OpType": 1, "Certificate": fp,
                            "Tables": [{"Table": {"TableName": "t2b"}}], "Raw": PEOPLE})
    revoke = h.sign(admin, {"TransactionType": "CertificateSet", "Action": "import_crl", "CRL": crl,
                            "Issuer": _pem(inter.certificate.der),
                            "Certificate": certify(inter, admin)})
    after = h.sign(alice, {"TransactionType": "TableListSet", "OpType": 1, "Certificate": fp,
                           "Tables": [{"Table": {"TableName": "t2c"}}], "Raw": PEOPLE})
    receipts = h.block(before, revoke, after).receipts
    assert [r.result for r in receipts] == ["tesSUCCESS", "tesSUCCESS", "caREVOKED"], receipts
    alice.sequence -= 1
    assert create(alice, "t3", fp).result == "caREVOKED"
    # Only an admin revokes directly or changes roots.
    eve = Account()
    eve_chain = certify(inter, eve)
    r = h.run(eve, {"TransactionType": "CertificateSet", "Action": "set_roots",
                    "TrustedRoots": [_pem(other_root.certificate.der)], "Certificate": eve_chain})
    assert r.result == "tefBAD_AUTH_NO"
    r = h.run(eve, {"TransactionType": "CertificateSet", "Action": "revoke",
                    "Revocations": [{"IssuerKeyId": "00" * 32, "Serial": 1}], "Certificate": eve_chain})
    assert r.result == "tefBAD_AUTH_NO"
    assert root_before != h.ledger.head.state_root
    h.ledger.close()


def test_admission_off_needs_no_certificate(tmp_path):
    h = Harness(f"sqlite:///{tmp_path / 'b.db'}")
    a = h.account()
    assert h.create(a, "t", PEOPLE).success
    h.ledger.close()


def test_submission_is_checked_too(pki, tmp_path):
    from tablechain.crypto import generate_private_key
    from tablechain.ledger.node import Node

    root, inter = pki
    genesis = Genesis(network_id=7, admission={
        "enabled": True, "trusted_roots": [_pem(root.certificate.der)], "admins": []})
    node = Node(f"sqlite:///{tmp_path / 'n.db'}", genesis, generate_private_key())
    a = Account()
    h = Harness.__new__(Harness)
    tx = h.sign(a, {"TransactionType": "TableListSet", "OpType": 1,
                    "Tables": [{"Table": {"TableName": "t"}}], "Raw": PEOPLE})
    with pytest.raises(LedgerError.__mro__[1]) as err:  # TablechainError
        node.submit(tx)
    assert err.value.code == "caCERTIFICATE_REQUIRED"
    assert len(node.mempool) == 0
    [refused] = node.submit_many([tx])
    assert getattr(refused, "code", None) == "caCERTIFICATE_REQUIRED"
    assert len(node.mempool) == 0
    a.sequence = 0
    ok = h.sign(a, {"TransactionType": "TableListSet", "OpType": 1, "Certificate": certify(inter, a, not_after=T0 + 10**9),
                    "Tables": [{"Table": {"TableName": "t"}}], "Raw": PEOPLE})
    node.submit(ok)
    assert node.produce_block().receipts[0].success
    node.stop()


def test_validators_need_validator_certificates(pki):
    from tablechain.crypto import generate_private_key
    from tablechain.ledger.validator import validator_set_from_genesis

    root, inter = pki
    keys = [generate_private_key("ed25519") for _ in range(4)]

    def entry(i, role="validator", with_cert=True):
        k = keys[i]
        e = {"id": f"v{i}", "scheme": "ed25519", "public_key": k.public_key.to_bytes().hex()}
        if with_cert:
            leaf = inter.issue(name=f"v{i}", role=role, public_key=k.public_key.to_bytes(),
                               scheme="ed25519", not_before=T0 - 10, not_after=T0 + 10**9)
            e["certificate"] = "".join(_pem(d) for d in inter.chain_for(leaf))
        return e

    def genesis(validators):
        return Genesis(network_id=7, timestamp_ms=T0 * 1000, validators=tuple(validators),
                       admission={"enabled": True, "trusted_roots": [_pem(root.certificate.der)]})

    assert validator_set_from_genesis(genesis([entry(i) for i in range(4)])).size == 4
    with pytest.raises(LedgerError.__mro__[1]) as err:
        validator_set_from_genesis(genesis([entry(0), entry(1, role="user")]))
    assert err.value.code == "caROLE_MISMATCH"
    with pytest.raises(LedgerError.__mro__[1]) as err:
        validator_set_from_genesis(genesis([entry(0), entry(1, with_cert=False)]))
    assert err.value.code == "caCERTIFICATE_REQUIRED"
    swapped = entry(2)
    swapped["certificate"] = entry(3)["certificate"]
    with pytest.raises(LedgerError.__mro__[1]) as err:
        validator_set_from_genesis(genesis([swapped]))
    assert err.value.code == "caKEY_MISMATCH"


def test_fingerprint_means_the_chain_on_chain(pki, tmp_path):
    """A leaf may end several chains (its CA renewed with the same key). A fingerprint refers
    to the chain registered on-chain; another chain for that leaf, seen later by one node, must
    not change that node's decision, or a restarted validator would decide differently."""
    from tablechain.ca import load_certificates
    from tablechain.ca.builder import subject_name

    root, inter = pki
    renewed = root._issue(subject=subject_name("Issuing CA"), subject_algorithm="p256",
                          subject_key=inter.certificate.public_key, not_before=T0 - 10,
                          not_after=T0 + 10**9, is_ca=True)
    admin, alice = Account(), Account()
    chain = certify(inter, alice, not_after=T0 + 10**9)
    leaf = load_certificates(chain.encode())[0]
    other_chain = _pem(leaf.der) + _pem(renewed)
    url = f"sqlite:///{tmp_path / 'fp.db'}"
    h = AdmissionHarness(url, root, [admin.address])
    admin_chain = certify(inter, admin)
    assert h.create(alice, "t1", PEOPLE, Certificate=chain).success
    # The same leaf under the renewed CA certificate: registering it changes nothing on-chain.
    r = h.run(admin, {"TransactionType": "CertificateSet", "Action": "register",
                      "Certificates": other_chain, "Certificate": admin_chain})
    assert r.success and r.details["fingerprint"] == leaf.fingerprint, r
    # The root revokes the CA certificate of the chain on-chain (not the renewed one).
    root.revoke(inter.certificate.serial, at=T0)
    crl = _pem(root.crl(this_update=T0, next_update=T0 + 10**6), "X509 CRL")
    r = h.run(admin, {"TransactionType": "CertificateSet", "Action": "import_crl", "CRL": crl,
                      "Issuer": _pem(root.certificate.der), "Certificate": admin_chain})
    assert r.success, r
    results = []
    for restart in (False, True):
        if restart:  # a validator with a cold cache
            h.ledger.close()
            h.ledger = Ledger(url, h.genesis)
        r = h.create(alice, f"t{2 + restart}", PEOPLE, Certificate=leaf.fingerprint)
        alice.sequence -= 1
        results.append(r.result)
    assert results == ["caREVOKED", "caREVOKED"]
    h.ledger.close()


def test_chain_stays_registered_when_a_batch_is_replayed(pki, tmp_path):
    """A run of inserts that breaks a constraint is rolled back and replayed one by one; the
    chain a transaction of it carried must end up registered, as it would one by one."""
    from tablechain.ca import load_certificates

    root, inter = pki
    alice, bob = Account(), Account()
    alice_chain, bob_chain = certify(inter, alice), certify(inter, bob)
    alice_fp = load_certificates(alice_chain.encode())[0].fingerprint
    bob_fp = load_certificates(bob_chain.encode())[0].fingerprint
    h = AdmissionHarness(f"sqlite:///{tmp_path / 'batch.db'}", root, [])
    assert h.create(alice, "t", PEOPLE, Certificate=alice_chain).success
    assert h.run(alice, {"TransactionType": "TableListSet", "OpType": 11, "User": bob.address,
                         "Tables": [{"Table": {"TableName": "t"}}], "Raw": [{"insert": True}],
                         "Certificate": alice_fp}).success

    def insert(who, certificate, row_id):
        return h.sign(who, {"TransactionType": "SQLStatement", "OpType": 6,
                            "Owner": alice.address, "Tables": [{"Table": {"TableName": "t"}}],
                            "Raw": [{"id": row_id}], "Certificate": certificate})

    # Bob's first use carries his chain; Alice's duplicate key then fails the batched write.
    receipts = h.block(insert(bob, bob_chain, 1), insert(alice, alice_fp, 1)).receipts
    assert [r.result for r in receipts] == ["tesSUCCESS", "tefTABLE_CONSTRAINT"]
    with h.ledger.reader() as (state, _tables):
        assert state.get(f"cert/{bob_fp}") is not None
    assert h.block(insert(bob, bob_fp, 2)).receipts[0].success
    h.ledger.close()


def test_undoing_writes_forgets_what_the_memo_derived_from_them(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The overlay's memo may rest on writes that a failed transaction undoes: a rollback
    clears it (keeping it is how a replayed batch once skipped a registration)."""
    from tablechain.ledger.chain import Genesis, Ledger
    from tablechain.ledger.state import StateOverlay

    ledger = Ledger(f"sqlite:///{tmp_path / 'n.db'}", Genesis(network_id=5))
    try:
        with ledger.engine.connect() as conn:
            state = StateOverlay(conn, ledger.t)
            mark = state.mark()
            state.set("cert/x", {"chain": "..."})
            state.memo["admission"] = {("", b"k"): "x"}
            state.rollback_to(mark)
            assert state.memo == {} and state.get("cert/x") is None
            state.memo["kept"] = 1
            state.rollback_to(state.mark())  # nothing undone: nothing forgotten
            assert state.memo == {"kept": 1}
            with pytest.raises(ValueError), state.journaled():
                state.set("cert/y", {})
                raise ValueError
            assert state.memo == {}
            conn.rollback()
    finally:
        ledger.close()


def test_genesis_admins_in_any_case_are_admins() -> None:
    """An admin address written in upper case in genesis is the same account (it silently
    matched nobody before); something that is not an address is refused at once."""
    from tablechain.errors import TablechainError
    from tablechain.ledger.admission import genesis_entries

    upper = "0x" + "AB" * 20
    entries = genesis_entries({"enabled": True, "trusted_roots": [], "admins": [upper]})
    assert entries["admission/config"]["admins"] == [upper.lower()]
    with pytest.raises(TablechainError):
        genesis_entries({"enabled": True, "trusted_roots": [], "admins": ["alice"]})
