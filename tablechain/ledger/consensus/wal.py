"""The signer's persisted record: what a validator must remember across a crash.

It holds the current height and round, the lock (Tendermint's lockedRound/lockedValue), the
valid value, and every vote and proposal the validator signed at this height. A restarted
validator reloads it and re-sends those signed messages instead of signing new ones, so it
never equivocates. It also keeps the bytes of the locked block (and of the valid block when
that differs), so a restarted validator can still re-propose the value it is locked on; the
lock is set once per height, so the block is written about once per height.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from tablechain.crypto import canonical_json, parse_json
from tablechain.crypto.canonical import CanonicalJSONError
from tablechain.ledger.consensus.errors import MalformedMessage
from tablechain.ledger.consensus.messages import Vote, check_message_shape

__all__ = ["STEP_PROPOSE", "STEP_PREVOTE", "STEP_PRECOMMIT", "SignerState"]

STEP_PROPOSE = 0
STEP_PREVOTE = 1
STEP_PRECOMMIT = 2


def _hex(value: bytes | None) -> str | None:
    return None if value is None else value.hex()


def _unhex(value: Any) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedMessage("signer state: hashes are hex strings")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise MalformedMessage("signer state: hash is not hex") from None


def _b64(value: bytes | None) -> str | None:
    return None if value is None else base64.b64encode(value).decode("ascii")


def _unb64(value: Any) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedMessage("signer state: blocks are base64 strings")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedMessage("signer state: block is not base64") from None


@dataclass(frozen=True, slots=True)
class SignerState:
    height: int
    round: int
    step: int
    locked_round: int
    locked_hash: bytes | None
    valid_round: int
    valid_hash: bytes | None
    votes: tuple[Vote, ...]
    proposed: tuple[tuple[int, bytes], ...]
    locked_block: bytes | None = None
    valid_block: bytes | None = None

    def to_bytes(self) -> bytes:
        """Canonical JSON encoding for the host's durable store."""
        return canonical_json(
            {
                "height": self.height,
                "round": self.round,
                "step": self.step,
                "locked_round": self.locked_round,
                "locked_hash": _hex(self.locked_hash),
                "valid_round": self.valid_round,
                "valid_hash": _hex(self.valid_hash),
                "votes": [
                    [v.kind, v.height, v.round, _hex(v.block_hash), _hex(v.state_root),
                     v.validator, v.signature.hex()]
                    for v in self.votes
                ],
                "proposed": [[r, h.hex()] for r, h in self.proposed],
                "locked_block": _b64(self.locked_block),
                "valid_block": _b64(self.valid_block),
            },
            trusted=True,  # built here from ints, strings and lists only
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> SignerState:
        try:
            raw = parse_json(data)
        except CanonicalJSONError as exc:
            raise MalformedMessage(f"signer state is not canonical JSON: {exc.message}") from None
        try:
            votes = []
            for item in raw["votes"]:
                kind, height, round_, bh, sr, vid, sig = item
                vote = Vote(kind, height, round_, _unhex(bh), _unhex(sr), vid, _unhex(sig) or b"")
                check_message_shape(vote)
                votes.append(vote)
            proposed = []
            for round_, block_hash in raw["proposed"]:
                bh = _unhex(block_hash)
                if type(round_) is not int or bh is None:
                    raise MalformedMessage("signer state: proposed entries are [round, hash]")
                proposed.append((round_, bh))
            state = cls(
                height=raw["height"],
                round=raw["round"],
                step=raw["step"],
                locked_round=raw["locked_round"],
                locked_hash=_unhex(raw["locked_hash"]),
                valid_round=raw["valid_round"],
                valid_hash=_unhex(raw["valid_hash"]),
                votes=tuple(votes),
                proposed=tuple(proposed),
                locked_block=_unb64(raw["locked_block"]),
                valid_block=_unb64(raw["valid_block"]),
            )
        except (KeyError, TypeError, ValueError):
            raise MalformedMessage("signer state record is malformed") from None
        ints = (state.height, state.round, state.step, state.locked_round, state.valid_round)
        if (
            not all(type(i) is int for i in ints)
            or state.height < 1
            or state.round < 0
            or state.step not in (0, 1, 2)
            or not -1 <= state.locked_round <= state.round
            or not -1 <= state.valid_round <= state.round
            or any(r < 0 for r, _ in state.proposed)
        ):
            raise MalformedMessage("signer state record has out-of-range numbers")
        return state
