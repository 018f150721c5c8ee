"""The validator set from genesis: identities, keys, quorum sizes and proposer rotation."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from tablechain.crypto import PublicKey
from tablechain.ledger.consensus.errors import InvalidValidatorSet

__all__ = ["Validator", "ValidatorSet"]

MAX_VALIDATOR_ID = 128


@dataclass(frozen=True, slots=True)
class Validator:
    """One validator: a stable id (used to address messages) and its signing key."""

    validator_id: str
    public_key: PublicKey


@dataclass(frozen=True)
class ValidatorSet:
    """The validators of a chain in genesis order; the order fixes proposer rotation.

    ``quorum`` is the smallest count strictly above two thirds (2f+1 when n = 3f+1) and
    ``max_faulty`` the number f of faulty validators tolerated.
    """

    chain_id: str
    validators: tuple[Validator, ...]
    _by_id: dict[str, Validator] = field(init=False, repr=False, compare=False)
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.chain_id, str) or not self.chain_id:
            raise InvalidValidatorSet("a validator set needs a non-empty chain id")
        if not self.validators:
            raise InvalidValidatorSet("a validator set needs at least one validator")
        by_id: dict[str, Validator] = {}
        keys: set[tuple[str, bytes]] = set()
        for validator in self.validators:
            vid = validator.validator_id
            if not isinstance(vid, str) or not vid or len(vid) > MAX_VALIDATOR_ID:
                raise InvalidValidatorSet(
                    f"validator id must be a string of 1..{MAX_VALIDATOR_ID} characters"
                )
            if vid in by_id:
                raise InvalidValidatorSet(f"validator id {vid!r} appears twice")
            key = (validator.public_key.scheme, validator.public_key.to_bytes())
            if key in keys:
                raise InvalidValidatorSet(f"validator {vid!r} reuses another validator's key")
            keys.add(key)
            by_id[vid] = validator
        object.__setattr__(self, "_by_id", by_id)
        object.__setattr__(
            self, "_index", {v.validator_id: i for i, v in enumerate(self.validators)}
        )

    @classmethod
    def from_keys(cls, chain_id: str, keys: Iterable[tuple[str, PublicKey]]) -> ValidatorSet:
        """Build a set from ``(validator_id, public_key)`` pairs in genesis order."""
        return cls(chain_id, tuple(Validator(vid, key) for vid, key in keys))

    @property
    def size(self) -> int:
        return len(self.validators)

    @property
    def max_faulty(self) -> int:
        return (len(self.validators) - 1) // 3

    @property
    def quorum(self) -> int:
        return 2 * len(self.validators) // 3 + 1

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(v.validator_id for v in self.validators)

    def get(self, validator_id: str) -> Validator | None:
        return self._by_id.get(validator_id)

    def index_of(self, validator_id: str) -> int:
        """Genesis position of a validator (KeyError when unknown)."""
        return self._index[validator_id]

    def find_key(self, public_key: PublicKey) -> Validator | None:
        """The validator whose key is ``public_key``, if any."""
        for validator in self.validators:
            if validator.public_key == public_key:
                return validator
        return None

    def proposer(self, height: int, round_: int) -> str:
        """The id of the proposer of ``(height, round)``: round robin in genesis order."""
        return self.validators[(height + round_) % len(self.validators)].validator_id
