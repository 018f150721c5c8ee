import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tablechain.crypto import CanonicalJSONError, canonical_json, parse_canonical, parse_json

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5),
    max_leaves=30,
)


@given(json_values)
@settings(max_examples=300)
def test_canonical_round_trip(value):
    encoded = canonical_json(value)
    assert parse_json(encoded) == value
    assert canonical_json(parse_json(encoded)) == encoded


@given(st.dictionaries(st.text(), st.integers(), max_size=8))
def test_key_order_does_not_matter(d):
    reordered = dict(reversed(list(d.items())))
    assert canonical_json(d) == canonical_json(reordered)


def test_known_encoding():
    assert canonical_json({"b": 1, "a": [True, None, "é"]}) == '{"a":[true,null,"é"],"b":1}'.encode()


@pytest.mark.parametrize("bad", ['{"a":1.5}', '{"a":NaN}', '{"a":1,"a":2}', "[1,", "\xff", '{"a":1e5}'])
def test_rejects(bad):
    with pytest.raises(CanonicalJSONError) as err:
        parse_json(bad)
    assert err.value.code == "temMALFORMED"


def test_rejects_floats_on_encode():
    with pytest.raises(CanonicalJSONError):
        canonical_json({"x": 0.1})


def test_deep_nesting_is_refused_without_recursion_error():
    with pytest.raises(CanonicalJSONError):
        parse_json("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CanonicalJSONError):
        parse_json(b"x" * 100, max_bytes=10)


def test_strings_with_brackets_do_not_count_as_nesting():
    doc = json.dumps({"s": "[[[[" * 100 + '\\"{{{{' * 100})
    assert parse_json(doc)["s"].startswith("[[[[")


_STDLIB = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@given(json_values)
@settings(max_examples=400)
def test_fast_encoder_matches_the_standard_encoding(value):
    # canonical_json encodes with orjson and falls back to the standard library: both must
    # give the very same bytes, or nodes with and without the fast path would disagree.
    expected = _STDLIB.encode(value).encode("utf-8")
    assert canonical_json(value) == expected
    assert canonical_json(value, trusted=True) == expected


def test_fast_encoder_edge_cases():
    for value in [
        {"\u00e9": 1, "e": 2, "\uffff": 3, "\U0001f600": 4, "\x00": 5},
        ["\x00\x1f\x7f\u2028\u0085\"\\/"],
        2**63,
        -(2**63) - 1,
        2**64,
        {"a": [[[]]], "b": {}},
    ]:
        assert canonical_json(value) == _STDLIB.encode(value).encode("utf-8")
    with pytest.raises(CanonicalJSONError):
        canonical_json({1: "non-string key"})


@given(json_values)
@settings(max_examples=200)
def test_parse_canonical_round_trips_canonical_bytes(value):
    data = canonical_json(value)
    assert parse_canonical(data) == value


@pytest.mark.parametrize(
    "bad",
    [
        b'{"b":1,"a":2}',  # unsorted
        b'{"a":1,"a":2}',  # duplicate key
        b'{"a": 1}',  # whitespace
        b'{"a":1.5}',  # float
        b'{"a":"\\u0041"}',  # needless escape
        b"[" * 65 + b"]" * 65,  # too deep
        b"[" * 5000 + b"]" * 5000,  # far too deep for the decoder
        b'{"a":',  # truncated
        b"\xff",  # not UTF-8
    ],
)
def test_parse_canonical_refuses_anything_not_canonical(bad):
    with pytest.raises(CanonicalJSONError):
        parse_canonical(bad)


floats = st.floats(allow_nan=True, allow_infinity=True)


@given(st.recursive(  # a float somewhere inside any JSON value
    floats,
    lambda inner: st.builds(lambda a, b, first: [b, a] if first else [a, b],
                            json_values, inner, st.booleans())
    | st.builds(lambda key, a, b: {key: b, key + "x": a}, st.text(), json_values, inner),
    max_leaves=6,
))
@settings(max_examples=300)
def test_any_float_anywhere_is_refused(value):
    with pytest.raises(CanonicalJSONError):
        canonical_json(value)


@given(json_values)
@settings(max_examples=200)
def test_parse_relayed_round_trips_canonical_bytes_too(value):
    from tablechain.crypto import parse_relayed

    assert parse_relayed(canonical_json(value)) == value


def test_parse_relayed_leaves_only_the_depth_to_the_caller():
    from tablechain.crypto import parse_relayed

    deep = b"[" * 65 + b"]" * 65
    assert parse_relayed(deep) == eval("[" * 65 + "]" * 65)
    for bad in (b'{"a":1.5}', b'{"a":[1e5]}', b"1.5", b"[" * 5000 + b"]" * 5000):
        with pytest.raises(CanonicalJSONError):
            parse_relayed(bad)
    # integers beyond 64 bits decode exactly (orjson alone would make them floats)
    big = canonical_json({"n": 2**70, "m": [-(2**65)]})
    assert parse_relayed(big) == {"n": 2**70, "m": [-(2**65)]}
    assert parse_canonical(big) == {"n": 2**70, "m": [-(2**65)]}


def test_parse_relayed_takes_any_json_layout_but_no_float():
    from tablechain.crypto import parse_relayed

    assert parse_relayed(b'[ {"b": 1, "a": [2, -3]} ]') == [{"b": 1, "a": [2, -3]}]
    assert parse_relayed(b'{"n": 123456789012345678901234567890}') == {
        "n": 123456789012345678901234567890}
    assert parse_relayed(b'{"h": "00112233445566778899001122334455667788"}')["h"].startswith("0")
    for bad in (b'[ 1.5]', b'{"a":\n -2e3}', b" 0.5", b"[NaN]", b'{"a":', b"\xff"):
        with pytest.raises(CanonicalJSONError):
            parse_relayed(bad)
    deep = b"[" * 65 + b"]" * 65  # nesting is the caller's to check (too_deep)
    from tablechain.crypto import too_deep
    assert too_deep(parse_relayed(deep))


def test_too_deep_bounds():
    from tablechain.crypto import MAX_DEPTH, too_deep

    value: object = 1
    for _ in range(MAX_DEPTH):
        value = [value]
    assert not too_deep(value) and too_deep([value]) and too_deep({"a": [value]})
    assert not too_deep({"a": [1, {"b": "c"}]}) and not too_deep(5)


def test_untrusted_values_with_subclasses_or_tuples_take_the_careful_path():
    """The fast exact-type walk only ever says "plain"; anything else is decided as before."""
    from collections import OrderedDict

    class Text(str):
        pass

    assert canonical_json(OrderedDict([("b", 1), ("a", [True, None])])) == b'{"a":[true,null],"b":1}'
    assert canonical_json({"a": Text("x")}) == b'{"a":"x"}'
    assert canonical_json({"a": (1, 2)}) == b'{"a":[1,2]}'  # as before: a tuple is a list
    for bad in ({1: "x"}, {"a": [1.0]}, {"a": {"b": float("nan")}}):
        with pytest.raises(CanonicalJSONError):
            canonical_json(bad)
