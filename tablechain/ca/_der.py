"""A minimal, strict DER encoder and decoder (X.690) for what certificates need.

``asn1crypto`` is not among the project's dependencies, and ``cryptography`` cannot build a
certificate around an SM2 key, so the few structures the CA writes (TBSCertificate,
TBSCertList, SubjectPublicKeyInfo, PKCS#8) are encoded here. The decoder accepts DER only:
definite, minimally encoded lengths, low tag numbers; anything else raises :class:`DerError`.
Decoding is lazy (one level per :meth:`DerNode.children` call), so nesting cannot recurse.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

from tablechain.errors import TablechainError

__all__ = [
    "DerError",
    "DerNode",
    "decode",
    "tlv",
    "sequence",
    "set_of",
    "integer",
    "oid",
    "null",
    "boolean",
    "bit_string",
    "octet_string",
    "explicit",
    "time",
    "parse_oid",
    "parse_integer",
]

SEQUENCE = 0x30
SET = 0x31
INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
NULL = 0x05
OID = 0x06
BOOLEAN = 0x01
UTC_TIME = 0x17
GENERALIZED_TIME = 0x18

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


class DerError(TablechainError):
    """Bytes that are not the DER this module accepts."""

    code = "caMALFORMED_DER"


# --- encoding --------------------------------------------------------------------------------


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, body: bytes) -> bytes:
    """One tag-length-value with a single-byte tag."""
    return bytes([tag]) + _length(len(body)) + body


def sequence(*items: bytes) -> bytes:
    return tlv(SEQUENCE, b"".join(items))


def set_of(*items: bytes) -> bytes:
    """A DER SET OF: the encodings sorted, as X.690 11.6 requires."""
    return tlv(SET, b"".join(sorted(items)))


def integer(value: int) -> bytes:
    if value >= 0:
        body = value.to_bytes(value.bit_length() // 8 + 1, "big")
    else:
        body = value.to_bytes((value + 1).bit_length() // 8 + 1, "big", signed=True)
    return tlv(INTEGER, body)


def oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    if len(parts) < 2 or parts[0] > 2 or (parts[0] < 2 and parts[1] > 39):
        raise DerError(f"not an object identifier: {dotted}")
    arcs = [parts[0] * 40 + parts[1], *parts[2:]]
    body = bytearray()
    for arc in arcs:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body.extend(reversed(chunk))
    return tlv(OID, bytes(body))


def null() -> bytes:
    return b"\x05\x00"


def boolean(value: bool) -> bytes:
    return tlv(BOOLEAN, b"\xff" if value else b"\x00")


def bit_string(data: bytes, unused_bits: int = 0) -> bytes:
    return tlv(BIT_STRING, bytes([unused_bits]) + data)


def octet_string(data: bytes) -> bytes:
    return tlv(OCTET_STRING, data)


def explicit(number: int, inner: bytes) -> bytes:
    """A constructed context-specific tag [number] wrapping ``inner``."""
    if not 0 <= number < 31:
        raise DerError("only low context tag numbers are supported")
    return tlv(0xA0 | number, inner)


def time(seconds: int) -> bytes:
    """RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050 on."""
    when = _EPOCH + _dt.timedelta(seconds=seconds)
    if 1950 <= when.year < 2050:
        return tlv(UTC_TIME, when.strftime("%y%m%d%H%M%SZ").encode())
    if not 0 < when.year <= 9999:
        raise DerError(f"time out of range: {seconds}")
    return tlv(GENERALIZED_TIME, f"{when.year:04d}{when.strftime('%m%d%H%M%S')}Z".encode())


# --- decoding --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DerNode:
    """One decoded element: its tag, its content octets and its full encoding."""

    tag: int
    content: bytes
    raw: bytes

    @property
    def constructed(self) -> bool:
        return bool(self.tag & 0x20)

    def children(self) -> list[DerNode]:
        if not self.constructed:
            raise DerError(f"tag 0x{self.tag:02x} is not constructed")
        return _decode_all(self.content)


def _read(data: bytes, pos: int) -> tuple[DerNode, int]:
    start = pos
    if pos + 2 > len(data):
        raise DerError("truncated DER element")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise DerError("high tag numbers are not supported")
    first = data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0:
            raise DerError("indefinite length is not DER")
        if count > 4 or pos + count > len(data):
            raise DerError("bad DER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        if length < 0x80 or data[pos] == 0:
            raise DerError("length not minimally encoded")
        pos += count
    end = pos + length
    if end > len(data):
        raise DerError("DER element runs past the end of its input")
    return DerNode(tag, data[pos:end], data[start:end]), end


def _decode_all(data: bytes) -> list[DerNode]:
    out: list[DerNode] = []
    pos = 0
    while pos < len(data):
        node, pos = _read(data, pos)
        out.append(node)
    return out


def decode(data: bytes) -> DerNode:
    """Exactly one DER element filling ``data``."""
    if not isinstance(data, (bytes, bytearray)):
        raise DerError("DER input must be bytes")
    node, end = _read(bytes(data), 0)
    if end != len(data):
        raise DerError("trailing bytes after the DER element")
    return node


def parse_oid(node: DerNode) -> str:
    if node.tag != OID or not node.content or node.content[-1] & 0x80:
        raise DerError("expected an OBJECT IDENTIFIER")
    arcs: list[int] = []
    value = 0
    for i, byte in enumerate(node.content):
        if value == 0 and byte == 0x80 and (i == 0 or not node.content[i - 1] & 0x80):
            raise DerError("OBJECT IDENTIFIER arc not minimally encoded")
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = arcs[0]
    head = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    return ".".join(str(a) for a in head + arcs[1:])


def parse_integer(node: DerNode) -> int:
    if node.tag != INTEGER or not node.content:
        raise DerError("expected an INTEGER")
    c = node.content
    if len(c) > 1 and ((c[0] == 0 and not c[1] & 0x80) or (c[0] == 0xFF and c[1] & 0x80)):
        raise DerError("INTEGER not minimally encoded")
    return int.from_bytes(c, "big", signed=True)
