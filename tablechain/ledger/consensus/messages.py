"""Consensus messages, their signing payloads, quorum certificates and a wire encoding.

Every message except ``BlockResponse`` is signed by its sender's validator key over canonical
JSON that names the chain and the message type, so a signature cannot be replayed on another
chain or as another kind of message. A ``BlockResponse`` needs no signature of its own: each block
in it carries the quorum certificate that proves it committed.
"""

from __future__ import annotations

import functools
import hashlib
import struct
from dataclasses import dataclass
from typing import Any

from tablechain.crypto import PrivateKey, canonical_json, parse_json
from tablechain.crypto.canonical import CanonicalJSONError
from tablechain.ledger.consensus.errors import InvalidQuorumCertificate, MalformedMessage
from tablechain.ledger.consensus.validators import MAX_VALIDATOR_ID, ValidatorSet

__all__ = [
    "PREVOTE",
    "PRECOMMIT",
    "Vote",
    "Proposal",
    "Status",
    "BlockRequest",
    "BlockResponse",
    "CommittedBlock",
    "QuorumCertificate",
    "Message",
    "SignedMessage",
    "vote_payload",
    "block_digest",
    "proposal_payload",
    "sign_vote",
    "sign_proposal",
    "sign_status",
    "sign_block_request",
    "verify_signature",
    "verify_qc",
    "check_message_shape",
    "encode_message",
    "decode_message",
]

PREVOTE = "prevote"
PRECOMMIT = "precommit"
VOTE_KINDS = (PREVOTE, PRECOMMIT)

MAX_HASH = 64
MAX_SIGNATURE = 256
MAX_ROUND = 2**31 - 1
MAX_HEIGHT = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Vote:
    """A prevote or precommit for ``(block_hash, state_root)``, or for nil (both None).

    The state root is the voter's own result of executing the block, so validators whose
    execution differs vote for different values and cannot form a quorum together.
    """

    kind: str
    height: int
    round: int
    block_hash: bytes | None
    state_root: bytes | None
    validator: str
    signature: bytes = b""

    @property
    def is_nil(self) -> bool:
        return self.block_hash is None

    @property
    def value(self) -> tuple[bytes, bytes] | None:
        """The voted value as a ``(block_hash, state_root)`` key, None for nil."""
        if self.block_hash is None or self.state_root is None:
            return None
        return (self.block_hash, self.state_root)

    def payload(self, chain_id: str) -> bytes:
        return vote_payload(
            chain_id, self.kind, self.height, self.round, self.block_hash, self.state_root
        )


@dataclass(frozen=True, slots=True)
class Proposal:
    """The proposer of ``(height, round)`` proposes ``block``; ``pol_round`` is Tendermint's
    valid round (-1 when the block is proposed fresh)."""

    height: int
    round: int
    block_hash: bytes
    block: bytes
    pol_round: int
    validator: str
    signature: bytes = b""

    def payload(self, chain_id: str) -> bytes:
        return proposal_payload(
            chain_id, self.height, self.round, self.block_hash, self.pol_round,
            block_digest(self.block),
        )


@dataclass(frozen=True, slots=True)
class Status:
    """"I am working on ``height`` in ``round``": sent when stalled, so that peers learn who is
    behind (a lagging node catches up, an ahead node answers with its own status)."""

    height: int
    round: int
    validator: str
    signature: bytes = b""

    def payload(self, chain_id: str) -> bytes:
        return canonical_json(
            {"chain": chain_id, "type": "status", "height": self.height, "round": self.round}
        )


@dataclass(frozen=True, slots=True)
class BlockRequest:
    """Ask a peer for committed blocks ``from_height..to_height`` with their certificates."""

    from_height: int
    to_height: int
    validator: str
    signature: bytes = b""

    def payload(self, chain_id: str) -> bytes:
        return canonical_json(
            {
                "chain": chain_id,
                "type": "block_request",
                "from": self.from_height,
                "to": self.to_height,
            }
        )


@dataclass(frozen=True, slots=True)
class QuorumCertificate:
    """The precommits of a quorum for ``(height, round, block_hash, state_root)``.

    ``signatures`` holds ``(validator_id, signature)`` pairs in genesis order.
    """

    height: int
    round: int
    block_hash: bytes
    state_root: bytes
    signatures: tuple[tuple[str, bytes], ...]

    def signers(self) -> tuple[str, ...]:
        return tuple(vid for vid, _ in self.signatures)

    def to_dict(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "round": self.round,
            "block_hash": self.block_hash.hex(),
            "state_root": self.state_root.hex(),
            "signatures": [[vid, sig.hex()] for vid, sig in self.signatures],
        }

    @classmethod
    def from_dict(cls, data: Any) -> QuorumCertificate:
        """Parse the form ``to_dict`` produces; raises MalformedMessage on any other shape."""
        if not isinstance(data, dict) or set(data) != {
            "height",
            "round",
            "block_hash",
            "state_root",
            "signatures",
        }:
            raise MalformedMessage("a quorum certificate has exactly the fields height, round, "
                                   "block_hash, state_root, signatures")
        sigs = data["signatures"]
        if not isinstance(sigs, list):
            raise MalformedMessage("quorum certificate signatures must be a list")
        pairs: list[tuple[str, bytes]] = []
        for item in sigs:
            if not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], str):
                raise MalformedMessage("each signature is a [validator_id, hex] pair")
            pairs.append((item[0], _unhex(item[1], "signature")))
        qc = cls(
            height=data["height"],
            round=data["round"],
            block_hash=_unhex(data["block_hash"], "block_hash"),
            state_root=_unhex(data["state_root"], "state_root"),
            signatures=tuple(pairs),
        )
        _check_qc_shape(qc)
        return qc

    def to_bytes(self) -> bytes:
        """Canonical JSON, for storing the certificate next to its block."""
        return canonical_json(self.to_dict())

    @classmethod
    def from_bytes(cls, data: bytes) -> QuorumCertificate:
        try:
            return cls.from_dict(parse_json(data))
        except CanonicalJSONError as exc:
            raise MalformedMessage(
                f"quorum certificate is not canonical JSON: {exc.message}"
            ) from None


@dataclass(frozen=True, slots=True)
class CommittedBlock:
    """A committed block with the certificate that proves it."""

    height: int
    block: bytes
    qc: QuorumCertificate


@dataclass(frozen=True, slots=True)
class BlockResponse:
    """Committed blocks in ascending height order (possibly none: "I have nothing newer")."""

    validator: str
    blocks: tuple[CommittedBlock, ...]


Message = Vote | Proposal | Status | BlockRequest | BlockResponse
SignedMessage = Vote | Proposal | Status | BlockRequest


# --- signing ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _json_string(text: str) -> str:
    return canonical_json(text).decode("utf-8")


def _json_hex(value: bytes | None) -> str:
    return "null" if value is None else '"' + value.hex() + '"'


def _json_int(value: int) -> str:
    if type(value) is not int:
        raise MalformedMessage("heights and rounds must be integers")
    return str(value)


def vote_payload(
    chain_id: str,
    kind: str,
    height: int,
    round_: int,
    block_hash: bytes | None,
    state_root: bytes | None,
) -> bytes:
    """The bytes a validator signs for a vote (and that a certificate's signatures cover):
    canonical JSON of {chain, type, height, round, block_hash, state_root}, hashes as hex.

    Built directly in key order because every vote is hashed and verified; it equals
    ``canonical_json`` of that object (a test checks it).
    """
    return (
        '{"block_hash":' + _json_hex(block_hash)
        + ',"chain":' + _json_string(chain_id)
        + ',"height":' + _json_int(height)
        + ',"round":' + _json_int(round_)
        + ',"state_root":' + _json_hex(state_root)
        + ',"type":' + _json_string(kind) + "}"
    ).encode("utf-8")


def block_digest(block: bytes) -> bytes:
    """SHA-256 of a proposed block's bytes, as its proposer signs it."""
    return hashlib.sha256(block).digest()


def proposal_payload(
    chain_id: str, height: int, round_: int, block_hash: bytes, pol_round: int,
    digest: bytes,
) -> bytes:
    """The bytes a proposer signs: canonical JSON of {chain, type: "proposal", height, round,
    block_hash, block_digest, pol_round}.

    ``block_digest`` (SHA-256 of the block's bytes) binds the very bytes sent: the header hash
    binds the transactions only through a Merkle root that execution alone checks, so without
    it anyone relaying a proposal could pair the real signature with other transactions, and a
    validator holding that copy would vote nil for the round (one faulty relay per round could
    stall the chain)."""
    return (
        '{"block_digest":' + _json_hex(digest)
        + ',"block_hash":' + _json_hex(block_hash)
        + ',"chain":' + _json_string(chain_id)
        + ',"height":' + _json_int(height)
        + ',"pol_round":' + _json_int(pol_round)
        + ',"round":' + _json_int(round_)
        + ',"type":"proposal"}'
    ).encode("utf-8")


def sign_vote(
    key: PrivateKey,
    chain_id: str,
    validator: str,
    kind: str,
    height: int,
    round_: int,
    value: tuple[bytes, bytes] | None,
) -> Vote:
    block_hash, state_root = (None, None) if value is None else value
    vote = Vote(kind, height, round_, block_hash, state_root, validator)
    return Vote(kind, height, round_, block_hash, state_root, validator,
                key.sign(vote.payload(chain_id)))


def sign_proposal(
    key: PrivateKey,
    chain_id: str,
    validator: str,
    height: int,
    round_: int,
    block_hash: bytes,
    block: bytes,
    pol_round: int,
) -> Proposal:
    sig = key.sign(
        proposal_payload(chain_id, height, round_, block_hash, pol_round, block_digest(block))
    )
    return Proposal(height, round_, block_hash, block, pol_round, validator, sig)


def sign_status(key: PrivateKey, chain_id: str, validator: str, height: int, round_: int) -> Status:
    unsigned = Status(height, round_, validator)
    return Status(height, round_, validator, key.sign(unsigned.payload(chain_id)))


def sign_block_request(
    key: PrivateKey, chain_id: str, validator: str, from_height: int, to_height: int
) -> BlockRequest:
    unsigned = BlockRequest(from_height, to_height, validator)
    return BlockRequest(from_height, to_height, validator, key.sign(unsigned.payload(chain_id)))


def verify_signature(message: SignedMessage, validators: ValidatorSet) -> bool:
    """True when ``message`` is signed by the validator it names, and that is a validator."""
    validator = validators.get(message.validator)
    if validator is None:
        return False
    return validator.public_key.verify(message.payload(validators.chain_id), message.signature)


def verify_qc(qc: QuorumCertificate, validators: ValidatorSet) -> None:
    """Check that ``qc`` proves a commit under ``validators``; raise InvalidQuorumCertificate.

    A quorum of distinct validators of the set must have signed the precommit for exactly
    ``(qc.height, qc.round, qc.block_hash, qc.state_root)``.
    """
    try:
        _check_qc_shape(qc)
    except MalformedMessage as exc:
        raise InvalidQuorumCertificate(f"malformed certificate: {exc.message}") from None
    seen: set[str] = set()
    payload = vote_payload(
        validators.chain_id, PRECOMMIT, qc.height, qc.round, qc.block_hash, qc.state_root
    )
    for vid, sig in qc.signatures:
        if vid in seen:
            raise InvalidQuorumCertificate(f"validator {vid!r} signs the certificate twice")
        seen.add(vid)
        validator = validators.get(vid)
        if validator is None:
            raise InvalidQuorumCertificate(f"{vid!r} is not a validator of {validators.chain_id}")
        if not validator.public_key.verify(payload, sig):
            raise InvalidQuorumCertificate(
                f"the signature of {vid!r} on height {qc.height} is not valid"
            )
    if len(seen) < validators.quorum:
        raise InvalidQuorumCertificate(
            f"certificate for height {qc.height} has {len(seen)} signatures, "
            f"a quorum is {validators.quorum}"
        )


# --- shape checks ----------------------------------------------------------------------------


def _is_int(value: object, low: int, high: int) -> bool:
    return type(value) is int and low <= value <= high


def _is_hash(value: object) -> bool:
    return type(value) is bytes and 1 <= len(value) <= MAX_HASH


def _is_id(value: object) -> bool:
    return type(value) is str and 1 <= len(value) <= MAX_VALIDATOR_ID


def _is_sig(value: object) -> bool:
    return type(value) is bytes and len(value) <= MAX_SIGNATURE


def _check_qc_shape(qc: object) -> None:
    if type(qc) is not QuorumCertificate:
        raise MalformedMessage("not a QuorumCertificate")
    if not (_is_int(qc.height, 1, MAX_HEIGHT) and _is_int(qc.round, 0, MAX_ROUND)):
        raise MalformedMessage("certificate height must be >= 1 and round >= 0")
    if not (_is_hash(qc.block_hash) and _is_hash(qc.state_root)):
        raise MalformedMessage("certificate block hash and state root must be 1..64 bytes")
    if type(qc.signatures) is not tuple or len(qc.signatures) > 1024:
        raise MalformedMessage("certificate signatures must be a tuple of at most 1024 pairs")
    for pair in qc.signatures:
        if type(pair) is not tuple or len(pair) != 2 or not _is_id(pair[0]) or not _is_sig(pair[1]):
            raise MalformedMessage("certificate signatures are (validator_id, signature) pairs")


def check_message_shape(message: object, max_block_bytes: int = 2**31) -> None:
    """Raise MalformedMessage unless ``message`` is a consensus message with sane field types.

    Messages from peers may be built by anyone; the state machine drops malformed ones.
    """
    if type(message) is Vote:
        if message.kind not in VOTE_KINDS:
            raise MalformedMessage(f"unknown vote kind {message.kind!r}")
        ok = (
            _is_int(message.height, 1, MAX_HEIGHT)
            and _is_int(message.round, 0, MAX_ROUND)
            and _is_id(message.validator)
            and _is_sig(message.signature)
        )
        nil = message.block_hash is None and message.state_root is None
        if not ok or not (nil or (_is_hash(message.block_hash) and _is_hash(message.state_root))):
            raise MalformedMessage("vote fields out of range")
    elif type(message) is Proposal:
        if not (
            _is_int(message.height, 1, MAX_HEIGHT)
            and _is_int(message.round, 0, MAX_ROUND)
            and _is_hash(message.block_hash)
            and type(message.block) is bytes
            and len(message.block) <= max_block_bytes
            and _is_int(message.pol_round, -1, MAX_ROUND)
            and message.pol_round < message.round
            and _is_id(message.validator)
            and _is_sig(message.signature)
        ):
            raise MalformedMessage("proposal fields out of range")
    elif type(message) is Status:
        if not (
            _is_int(message.height, 1, MAX_HEIGHT)
            and _is_int(message.round, 0, MAX_ROUND)
            and _is_id(message.validator)
            and _is_sig(message.signature)
        ):
            raise MalformedMessage("status fields out of range")
    elif type(message) is BlockRequest:
        if not (
            _is_int(message.from_height, 1, MAX_HEIGHT)
            and _is_int(message.to_height, message.from_height, MAX_HEIGHT)
            and _is_id(message.validator)
            and _is_sig(message.signature)
        ):
            raise MalformedMessage("block request fields out of range")
    elif type(message) is BlockResponse:
        if not _is_id(message.validator) or type(message.blocks) is not tuple:
            raise MalformedMessage("block response fields out of range")
        for item in message.blocks:
            if (
                type(item) is not CommittedBlock
                or not _is_int(item.height, 1, MAX_HEIGHT)
                or type(item.block) is not bytes
                or len(item.block) > max_block_bytes
            ):
                raise MalformedMessage("block response holds a malformed block")
            _check_qc_shape(item.qc)
    else:
        raise MalformedMessage(f"not a consensus message: {type(message).__name__}")


# --- wire encoding ---------------------------------------------------------------------------
#
# MAGIC | u32 header length | canonical JSON header | blobs. Block bytes travel as raw blobs
# (the header records their lengths) so large blocks are not hex-inflated.

_MAGIC = b"TCC1"


def _hex(value: bytes | None) -> str | None:
    return None if value is None else value.hex()


def _unhex(value: Any, name: str) -> bytes:
    if not isinstance(value, str):
        raise MalformedMessage(f"{name} must be a hex string")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise MalformedMessage(f"{name} is not hex") from None


def _unhex_opt(value: Any, name: str) -> bytes | None:
    return None if value is None else _unhex(value, name)


def encode_message(message: Message) -> bytes:
    """Encode a consensus message for a byte transport (inverse of ``decode_message``)."""
    check_message_shape(message)
    blobs: list[bytes] = []
    header: dict[str, Any]
    if isinstance(message, Vote):
        header = {
            "type": message.kind,
            "height": message.height,
            "round": message.round,
            "block_hash": _hex(message.block_hash),
            "state_root": _hex(message.state_root),
            "validator": message.validator,
            "signature": message.signature.hex(),
        }
    elif isinstance(message, Proposal):
        blobs.append(message.block)
        header = {
            "type": "proposal",
            "height": message.height,
            "round": message.round,
            "block_hash": message.block_hash.hex(),
            "pol_round": message.pol_round,
            "validator": message.validator,
            "signature": message.signature.hex(),
        }
    elif isinstance(message, Status):
        header = {
            "type": "status",
            "height": message.height,
            "round": message.round,
            "validator": message.validator,
            "signature": message.signature.hex(),
        }
    elif isinstance(message, BlockRequest):
        header = {
            "type": "block_request",
            "from": message.from_height,
            "to": message.to_height,
            "validator": message.validator,
            "signature": message.signature.hex(),
        }
    else:
        blocks = []
        for item in message.blocks:
            blobs.append(item.block)
            blocks.append({"height": item.height, "qc": item.qc.to_dict()})
        header = {"type": "block_response", "validator": message.validator, "blocks": blocks}
    header["blobs"] = [len(b) for b in blobs]
    head = canonical_json(header)
    return b"".join([_MAGIC, struct.pack(">I", len(head)), head, *blobs])


def _fields(header: dict[str, Any], names: set[str]) -> None:
    if set(header) != names:
        raise MalformedMessage(
            f"{header.get('type')} message needs fields {sorted(names)}, got {sorted(header)}"
        )


def decode_message(data: bytes, max_bytes: int = 2**31) -> Message:
    """Decode and shape-check a message from a peer; raises MalformedMessage on bad input."""
    if not isinstance(data, bytes) or len(data) < 8 or data[:4] != _MAGIC:
        raise MalformedMessage("not a tablechain consensus message")
    if len(data) > max_bytes:
        raise MalformedMessage(f"message of {len(data)} bytes exceeds {max_bytes}")
    (head_len,) = struct.unpack(">I", data[4:8])
    if 8 + head_len > len(data):
        raise MalformedMessage("truncated message header")
    try:
        header = parse_json(data[8 : 8 + head_len])
    except CanonicalJSONError as exc:
        raise MalformedMessage(f"bad message header: {exc.message}") from None
    if not isinstance(header, dict) or not isinstance(header.get("blobs"), list):
        raise MalformedMessage("message header must be an object with blobs")
    lengths = header["blobs"]
    if not all(type(n) is int and n >= 0 for n in lengths):
        raise MalformedMessage("blob lengths must be non-negative integers")
    if 8 + head_len + sum(lengths) != len(data):
        raise MalformedMessage("blob lengths do not match the message size")
    blobs: list[bytes] = []
    pos = 8 + head_len
    for n in lengths:
        blobs.append(data[pos : pos + n])
        pos += n
    kind = header.get("type")
    message: Message
    try:
        if kind in VOTE_KINDS:
            _fields(header, {"type", "height", "round", "block_hash", "state_root", "validator",
                             "signature", "blobs"})
            message = Vote(kind, header["height"], header["round"],
                           _unhex_opt(header["block_hash"], "block_hash"),
                           _unhex_opt(header["state_root"], "state_root"),
                           header["validator"], _unhex(header["signature"], "signature"))
        elif kind == "proposal":
            _fields(header, {"type", "height", "round", "block_hash", "pol_round", "validator",
                             "signature", "blobs"})
            if len(blobs) != 1:
                raise MalformedMessage("a proposal carries exactly one block")
            message = Proposal(header["height"], header["round"],
                               _unhex(header["block_hash"], "block_hash"), blobs[0],
                               header["pol_round"], header["validator"],
                               _unhex(header["signature"], "signature"))
        elif kind == "status":
            _fields(header, {"type", "height", "round", "validator", "signature", "blobs"})
            message = Status(header["height"], header["round"], header["validator"],
                             _unhex(header["signature"], "signature"))
        elif kind == "block_request":
            _fields(header, {"type", "from", "to", "validator", "signature", "blobs"})
            message = BlockRequest(header["from"], header["to"], header["validator"],
                                   _unhex(header["signature"], "signature"))
        elif kind == "block_response":
            _fields(header, {"type", "validator", "blocks", "blobs"})
            items = header["blocks"]
            if not isinstance(items, list) or len(items) != len(blobs):
                raise MalformedMessage("block response needs one blob per block")
            blocks = []
            for item, blob in zip(items, blobs, strict=True):
                if not isinstance(item, dict) or set(item) != {"height", "qc"}:
                    raise MalformedMessage("each block entry has height and qc")
                blocks.append(CommittedBlock(item["height"], blob,
                                             QuorumCertificate.from_dict(item["qc"])))
            message = BlockResponse(header["validator"], tuple(blocks))
        else:
            raise MalformedMessage(f"unknown message type {kind!r}")
    except (KeyError, TypeError):
        raise MalformedMessage(f"malformed {kind} message") from None
    check_message_shape(message)
    return message
