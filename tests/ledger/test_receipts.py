"""A receipt's encoding is the canonical JSON of its ``to_json()``, whichever way it is made."""

from hypothesis import given, settings
from hypothesis import strategies as st

from tablechain.crypto import canonical_json
from tablechain.ledger.blocks import SUCCESS, Receipt

_hashes = st.one_of(
    st.text("0123456789abcdef", max_size=64),
    st.text("0123456789ABCDEFabcdef", min_size=1, max_size=8),
    st.text(max_size=8),
)
_details = st.one_of(
    st.fixed_dictionaries({"affected": st.integers(-(2**70), 2**70)}),
    st.fixed_dictionaries({"affected": st.booleans()}),
    st.dictionaries(st.sampled_from(["affected", "address", "x"]), st.integers(0, 9), max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(
    tx_hash=_hashes,
    index=st.integers(0, 2**66),
    result=st.sampled_from([SUCCESS, "tefTABLE_RULEDISSATISFIED", "tesSUCCESS "]),
    message=st.sampled_from(["", "denied", '"quoted"\n']),
    details=_details,
)
def test_encoded_is_canonical_json(tx_hash, index, result, message, details):
    receipt = Receipt(tx_hash, index, result, message, details)
    assert receipt.encoded() == canonical_json(receipt.to_json())
    assert Receipt.from_json(receipt.to_json()).encoded() == receipt.encoded()


def test_the_common_success_receipt():
    receipt = Receipt("ab" * 32, 7, SUCCESS, "", {"affected": 1})
    assert receipt.encoded() == (
        b'{"details":{"affected":1},"index":7,"message":"","result":"tesSUCCESS",'
        b'"tx_hash":"' + b"ab" * 32 + b'"}'
    )
