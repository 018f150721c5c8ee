"""Paillier: fast encryption, CRT decryption, phe interoperability, packing, protocols."""

from __future__ import annotations

import os
import pickle

import gmpy2
import numpy as np
import phe
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tablechain.mpc.channel import LocalNetwork
from tablechain.mpc.he_errors import (
    InvalidCiphertext,
    KeyMismatch,
    PlaintextOutOfRange,
    ProtocolInputError,
)
from tablechain.mpc.paillier import (
    CiphertextVector,
    HeteroLRConfig,
    MaskedVector,
    PaillierPrivateKey,
    PaillierPublicKey,
    PlainResult,
    decrypt_packed,
    encrypt_packed,
    generate_keypair,
    keypair_from_phe,
    packing_layout,
    secure_aggregate,
    train_hetero_lr,
    train_lr_plain,
)

HYP = settings(max_examples=40, deadline=None)


@pytest.fixture(scope="module")
def keys() -> tuple[PaillierPublicKey, PaillierPrivateKey]:
    return generate_keypair(1024)


@pytest.fixture(scope="module")
def keys2048() -> tuple[PaillierPublicKey, PaillierPrivateKey]:
    return generate_keypair(2048)


# -- core scheme ------------------------------------------------------------------------------


def test_key_shape_and_table(keys2048):
    pub, priv = keys2048
    assert pub.n.bit_length() == 2048 and pub.n == priv.p * priv.q
    assert pub.random_bits == 448 and pub.window_bits == 8
    # the table needs ceil(448/8) = 56 rows of 255 ciphertext-size entries
    assert pub.table_bytes() == 56 * 255 * 512
    # hs is an n-th residue: it decrypts to 0
    assert priv.raw_decrypt(pub.hs) == 0


@pytest.mark.parametrize("window", [8, 5])
def test_fixed_base_table_matches_powmod(keys, window):
    pub, _ = keys
    key = PaillierPublicKey(pub.n, pub.hs, random_bits=448, window_bits=window)
    for _ in range(5):
        raw = os.urandom(56)
        r = int.from_bytes(raw, "little")
        assert key._hs_pow_random(raw) == gmpy2.powmod(key.hs, r, key.nsquare)
    assert key._hs_pow_random(bytes(56)) == 1


@HYP
@given(st.data())
def test_encrypt_decrypt_roundtrip(keys, data):
    pub, priv = keys
    half = (pub.n - 1) // 2
    m = data.draw(
        st.one_of(
            st.integers(-(2**64), 2**64),
            st.integers(-half, half),
            st.sampled_from([0, 1, -1, half, -half]),
        )
    )
    c = pub.encrypt_int(m)
    assert 0 < c < pub.nsquare
    assert priv.decrypt_int(c) == m
    assert priv.raw_decrypt(c) == m % pub.n


@HYP
@given(
    a=st.integers(-(2**200), 2**200),
    b=st.integers(-(2**200), 2**200),
    k=st.integers(-(2**64), 2**64),
)
def test_homomorphic_operations(keys, a, b, k):
    pub, priv = keys
    ca, cb = pub.encrypt_ints([a, b])
    assert priv.decrypt_int(pub.add(ca, cb)) == a + b
    assert priv.decrypt_int(pub.add_plain(ca, b)) == a + b
    assert priv.decrypt_int(pub.mul_plain(ca, k)) == a * k
    assert priv.decrypt_int(pub.sum_ciphertexts([ca, cb, ca])) == 2 * a + b


def test_encryption_is_randomized_and_rerandomizable(keys):
    pub, priv = keys
    c1, c2 = pub.encrypt_int(7), pub.encrypt_int(7)
    assert c1 != c2
    c3 = pub.rerandomize(c1)
    assert c3 != c1 and priv.decrypt_int(c3) == 7


def test_bad_inputs_are_refused(keys):
    pub, priv = keys
    with pytest.raises(PlaintextOutOfRange):
        pub.encrypt_int(pub.n)
    with pytest.raises(PlaintextOutOfRange):
        pub.encrypt_int(-pub.n)
    with pytest.raises(ProtocolInputError):
        pub.encrypt_int(True)
    with pytest.raises(ProtocolInputError):
        pub.encrypt_int(1.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidCiphertext):
        priv.raw_decrypt(0)
    with pytest.raises(InvalidCiphertext):
        pub.add(pub.nsquare, 1)
    with pytest.raises(ProtocolInputError):
        PaillierPublicKey(pub.n, 1)
    with pytest.raises(ProtocolInputError):
        PaillierPublicKey(pub.n + 1, pub.hs)
    with pytest.raises(ProtocolInputError):
        PaillierPrivateKey(pub, priv.p, priv.p)


def test_ciphertexts_that_are_not_units_are_refused(keys):
    # multiples of p (or of n) lie in (0, n^2) but encrypt nothing: decrypting them returned
    # an unrelated number, and a negative scalar power failed inside gmpy2 with ValueError
    pub, priv = keys
    for bad in (pub.n, 2 * pub.n, priv.p, priv.q * 5):
        with pytest.raises(InvalidCiphertext):
            priv.decrypt_int(bad)
        with pytest.raises(InvalidCiphertext):
            pub.mul_plain(bad, -1)
    with pytest.raises(InvalidCiphertext):  # a sum involving one is caught at decryption
        priv.decrypt_int(pub.add(pub.encrypt_int(3), pub.n))
    assert priv.decrypt_int(pub.mul_plain(pub.encrypt_int(3), -2)) == -6


def test_keys_and_errors_pickle(keys):
    pub, priv = keys
    pub2 = pickle.loads(pickle.dumps(pub))
    priv2 = pickle.loads(pickle.dumps(priv))
    assert pub2._table is None and pub2 == pub
    assert priv2.decrypt_int(pub2.encrypt_int(-99)) == -99
    err = pickle.loads(pickle.dumps(PlaintextOutOfRange("too big")))
    assert isinstance(err, PlaintextOutOfRange) and err.code == "tecMPC_PLAINTEXT_RANGE"
    assert str(err) == "tecMPC_PLAINTEXT_RANGE: too big"


# -- phe interoperability ---------------------------------------------------------------------


def test_phe_decrypts_ours_and_we_decrypt_phes(keys2048):
    pub, priv = keys2048
    phe_pub = phe.PaillierPublicKey(pub.n)
    phe_priv = phe.PaillierPrivateKey(phe_pub, priv.p, priv.q)
    assert phe_priv.raw_decrypt(pub.encrypt_int(123456789)) == 123456789
    theirs = phe_pub.encrypt(-42)
    assert priv.decrypt(phe.EncryptedNumber(pub, theirs.ciphertext(), theirs.exponent)) == -42
    assert priv.raw_decrypt(phe_pub.raw_encrypt(5)) == 5


def test_phe_encrypted_number_api(keys):
    pub, priv = keys
    x = pub.encrypt(3.5)
    assert isinstance(x, phe.EncryptedNumber)
    before = x.ciphertext(be_secure=False)
    assert x.ciphertext() == before  # already randomized by the fast path: phe does not redo it
    y = x * -2 + 1.25 + pub.encrypt(10)
    assert priv.decrypt(y) == pytest.approx(4.25)
    fresh = pub.rerandomize_number(y)
    assert fresh.ciphertext(be_secure=False) != y.ciphertext(be_secure=False)
    assert priv.decrypt(fresh) == pytest.approx(4.25)
    other_pub, _ = generate_keypair(512)
    with pytest.raises(KeyMismatch):
        other_pub.rerandomize_number(x)


def test_wrapping_existing_phe_keys():
    phe_pub, phe_priv = phe.generate_paillier_keypair(n_length=512)
    pub, priv = keypair_from_phe(phe_pub, phe_priv)
    assert priv is not None
    assert phe_priv.raw_decrypt(pub.encrypt_int(77)) == 77
    assert priv.decrypt_int(phe_pub.raw_encrypt(78)) == 78


# -- packing ----------------------------------------------------------------------------------


def test_layout_dimensions(keys2048):
    layout = packing_layout(keys2048[0], frac_bits=16, value_bits=40, headroom_bits=16)
    assert layout.slot_bits == 56 and layout.slots == (2048 - 2) // 56 == 36
    assert layout.max_terms == 2**16
    assert layout.max_abs_value == pytest.approx(2.0**23)
    with pytest.raises(ProtocolInputError):
        packing_layout(keys2048[0], frac_bits=40, value_bits=40)
    with pytest.raises(PlaintextOutOfRange):
        packing_layout(4096).check_key(keys2048[0])


finite = st.floats(min_value=-(2.0**20), max_value=2.0**20, allow_nan=False)


@HYP
@given(st.lists(finite, min_size=1, max_size=80))
def test_packing_roundtrip_floats(keys, values):
    pub, priv = keys
    layout = packing_layout(pub, frac_bits=16, value_bits=40, headroom_bits=8)
    cts = encrypt_packed(pub, layout, values)
    assert len(cts) == -(-len(values) // layout.slots)
    got = decrypt_packed(priv, layout, cts, len(values))
    np.testing.assert_allclose(got, values, atol=2.0**-17)


@settings(max_examples=15, deadline=None)
@given(st.data())
def test_packed_sums_at_the_range_edges(keys, data):
    """max_terms packed vectors of extreme values (both signs) sum exactly."""
    pub, priv = keys
    layout = packing_layout(pub, frac_bits=4, value_bits=40, headroom_bits=2)
    limit = (1 << 39) - 1  # largest |fixed-point integer|
    count = data.draw(st.integers(1, 2 * layout.slots + 3))
    element = st.sampled_from([limit, -limit, 0, 1, -1]) | st.integers(-limit, limit)
    vectors = [
        data.draw(st.lists(element, min_size=count, max_size=count))
        for _ in range(layout.max_terms)
    ]
    floats = [np.array(v, dtype=np.float64) / 16 for v in vectors]
    per_party = [encrypt_packed(pub, layout, f) for f in floats]
    summed = [pub.sum_ciphertexts(column) for column in zip(*per_party, strict=True)]
    got = layout.decode_fixed((priv.decrypt_int(c) for c in summed), count)
    assert got == [sum(col) for col in zip(*vectors, strict=True)]


def test_packing_rejects_out_of_range(keys):
    pub, _ = keys
    layout = packing_layout(pub, frac_bits=4, value_bits=12, headroom_bits=2)
    assert layout.encode([layout.max_abs_value, -layout.max_abs_value])  # the edge itself fits
    with pytest.raises(PlaintextOutOfRange):
        layout.encode([layout.max_abs_value + 2.0**-4])
    with pytest.raises(PlaintextOutOfRange):
        layout.encode([-128])  # int input: -128 * 16 = -2^11 is just outside
    with pytest.raises(PlaintextOutOfRange):
        layout.encode([float("nan")])
    with pytest.raises(ProtocolInputError):
        layout.encode(["x"])
    for huge in (1e308, -1.7e308):  # scaling overflows a float: OverflowError before the fix
        with pytest.raises(PlaintextOutOfRange):
            layout.encode([huge])


def test_decrypt_packed_refuses_a_negative_count(keys):
    pub, priv = keys
    layout = packing_layout(pub)
    cts = encrypt_packed(pub, layout, [1.0, 2.0])
    assert decrypt_packed(priv, layout, cts, np.int64(2)).tolist() == [1.0, 2.0]
    for bad in (-1, True, 1.5):
        with pytest.raises(ProtocolInputError):  # -1 returned slots - 1 values
            decrypt_packed(priv, layout, cts, bad)


def test_packed_overflow_is_detected(keys):
    pub, priv = keys
    layout = packing_layout(pub, frac_bits=0, value_bits=4, headroom_bits=0)
    # the top slot overflows when 7 + 7 exceeds the balanced range of a 4-bit slot
    top = [0] * (layout.slots - 1) + [7]
    c = encrypt_packed(pub, layout, top)[0]
    with pytest.raises(PlaintextOutOfRange):
        layout.decode_fixed([priv.decrypt_int(pub.add(c, c))], layout.slots)


# -- secure aggregation -----------------------------------------------------------------------


def test_secure_aggregation_sums_and_reveals_only_ciphertexts(keys):
    pub, priv = keys
    rng = np.random.default_rng(1)
    inputs = {p: rng.normal(0, 1000, size=100) for p in (0, 1, 3, 4)}
    seen: list[tuple[int, int, object]] = []
    net = LocalNetwork(5, taps=[lambda s, r, m: seen.append((s, r, m))])
    result = secure_aggregate(net, inputs, priv, key_holder=2, combiner=1, reveal_to=[0])
    expected = sum(inputs.values())
    np.testing.assert_allclose(result.total, expected, atol=4 * 2.0**-16)
    assert result.receivers == (0, 2) and result.contributors == (0, 1, 3, 4)
    layout = packing_layout(pub)
    chunks = -(-100 // layout.slots)
    assert result.ciphertexts_per_party == chunks
    for sender, receiver, msg in seen:
        if sender == 2:  # the key holder sends its key, and the sum only to reveal_to
            assert isinstance(msg, PaillierPublicKey) or (
                isinstance(msg, PlainResult) and receiver == 0
            )
        else:  # everybody else sends ciphertexts only, the key holder hears only the combiner
            assert isinstance(msg, CiphertextVector) and len(msg) == chunks
            assert receiver == 1 or (sender == 1 and receiver == 2)
    # accounting: 4 rounds; contributors 0, 3, 4 each send chunks ciphertexts of 2*128 bytes
    t = result.traffic
    assert t.rounds == 4
    assert t.bytes_sent[3] == t.bytes_sent[4] == chunks * 256
    assert t.bytes_sent[1] == chunks * 256  # the combiner forwards one sum
    assert t.bytes_sent[2] == 4 * pub.wire_size() + expected.nbytes


def test_secure_aggregation_refuses_bad_setups(keys):
    _, priv = keys
    net = LocalNetwork(4)
    with pytest.raises(ProtocolInputError):
        secure_aggregate(net, {0: [1.0]}, priv, key_holder=1, combiner=1)
    with pytest.raises(ProtocolInputError):
        secure_aggregate(net, {0: [1.0], 3: [1.0, 2.0]}, priv, key_holder=1, combiner=2)
    tiny = packing_layout(priv.public_key, frac_bits=0, value_bits=8, headroom_bits=1)
    with pytest.raises(PlaintextOutOfRange):
        secure_aggregate(net, {0: [1], 2: [1], 3: [1]}, priv, key_holder=1, combiner=2, layout=tiny)
    with pytest.raises(PlaintextOutOfRange):
        secure_aggregate(net, {0: [1e30]}, priv, key_holder=1, combiner=2)
    # Party ids that are not ints (a string raised TypeError; True passed as party 1).
    for bad in ({"0": [1.0]}, {True: [1.0]}):
        with pytest.raises(ProtocolInputError):
            secure_aggregate(net, bad, priv, key_holder=1, combiner=2)
    with pytest.raises(ProtocolInputError):
        secure_aggregate(net, {0: [1.0]}, priv, key_holder="1", combiner=2)  # type: ignore[arg-type]
    with pytest.raises(ProtocolInputError):
        secure_aggregate(net, {0: [1.0]}, priv, key_holder=1, combiner=2, reveal_to=["0"])  # type: ignore[list-item]
    assert net.traffic.rounds == 0 and net.traffic.total_bytes == 0  # nothing was sent


# -- vertical logistic regression -------------------------------------------------------------


def _breast_cancer_split():
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    x, y = load_breast_cancer(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    mu, sd = xtr.mean(0), xtr.std(0)
    return (xtr - mu) / sd, (xte - mu) / sd, ytr, yte


def _sklearn_auc(xtr, xte, ytr, yte) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    return float(
        roc_auc_score(yte, LogisticRegression(max_iter=1000).fit(xtr, ytr).decision_function(xte))
    )


AUC_TOLERANCE = 0.02  # the Taylor-approximated loss of FATE's hetero-LR costs about 0.01 AUC


def _run_hetero_lr(priv, config):
    from sklearn.metrics import roc_auc_score

    xtr, xte, ytr, yte = _breast_cancer_split()
    # FATE's breast_hetero split: the guest has 10 features and the labels, the host 20
    seen: list[tuple[int, int, object]] = []
    net = LocalNetwork(3, taps=[lambda s, r, m: seen.append((s, r, m))])
    model = train_hetero_lr(net, xtr[:, :10], ytr, xtr[:, 10:], priv, config=config)
    plain = train_lr_plain(xtr[:, :10], ytr, xtr[:, 10:], config=config)
    auc = roc_auc_score(yte, model.decision_function(xte[:, :10], xte[:, 10:]))
    return model, plain, auc, _sklearn_auc(xtr, xte, ytr, yte), seen, xtr, ytr


def test_hetero_lr_matches_plaintext_and_sklearn(keys):
    _, priv = keys
    config = HeteroLRConfig(epochs=2)
    model, plain, auc, sk_auc, seen, xtr, ytr = _run_hetero_lr(priv, config)
    # the encrypted run is the plaintext algorithm up to fixed-point rounding
    np.testing.assert_allclose(model.guest_weights, plain.guest_weights, atol=1e-3)
    np.testing.assert_allclose(model.host_weights, plain.host_weights, atol=1e-3)
    assert model.intercept == pytest.approx(plain.intercept, abs=1e-3)
    assert auc >= sk_auc - AUC_TOLERANCE
    # privacy: only keys, ciphertexts and masked values travel; the arbiter sends nothing else
    guest, host, arbiter = 0, 1, 2
    labels = {int(v) for v in ytr}
    for sender, receiver, msg in seen:
        assert not isinstance(msg, np.ndarray)
        if sender == arbiter:
            assert isinstance(msg, (PaillierPublicKey, MaskedVector))
        else:
            assert {sender, receiver} <= {guest, host, arbiter}
            assert isinstance(msg, CiphertextVector)
            assert all(v > 2**64 for v in msg.values)  # no small plaintext label/feature leaks
        if isinstance(msg, MaskedVector):
            assert all(v not in labels for v in msg.values)
    to_host = [m for s, r, m in seen if r == host]
    assert all(isinstance(m, (PaillierPublicKey, CiphertextVector, MaskedVector)) for m in to_host)
    batches = -(-len(ytr) // config.batch_size)
    assert model.traffic.rounds == 1 + 4 * batches * config.epochs


def test_hetero_lr_rejects_bad_input(keys):
    _, priv = keys
    net = LocalNetwork(3)
    x = np.zeros((4, 2))
    with pytest.raises(ProtocolInputError):
        train_hetero_lr(net, x, [0, 1, 2, 0], x, priv)
    with pytest.raises(ProtocolInputError):
        train_hetero_lr(net, x, [0, 1, 1], x, priv)
    with pytest.raises(ProtocolInputError):
        train_hetero_lr(net, x, [0, 1, 1, 0], x, priv, arbiter=0)
    assert net.traffic.rounds == 0


@pytest.mark.slow
@pytest.mark.slow
def test_hetero_lr_full_2048(keys2048):
    _, priv = keys2048
    model, plain, auc, sk_auc, _, _, _ = _run_hetero_lr(priv, HeteroLRConfig(epochs=5))
    assert auc >= sk_auc - AUC_TOLERANCE
    np.testing.assert_allclose(model.host_weights, plain.host_weights, atol=1e-3)
