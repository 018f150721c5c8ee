"""Single-validator mode for development: the same machine with n = 1, run in-process.

With one validator the quorum is 1, so a proposal is prevoted, precommitted and committed in
the same ``step`` that created it: ``notify_transactions()`` commits at once. Timers run on a
virtual clock that the caller advances (the idle poll re-asks the application, which lets a
block-cutting policy wait for a batch).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

from tablechain.crypto import PrivateKey
from tablechain.ledger.consensus.bft import ConsensusConfig, ConsensusMachine
from tablechain.ledger.consensus.errors import ConsensusError
from tablechain.ledger.consensus.events import (
    Committed,
    Event,
    Persist,
    ScheduleTimer,
    Start,
    StateDivergence,
    Timer,
    TimerFired,
    TransactionsAvailable,
)
from tablechain.ledger.consensus.interface import ConsensusApplication
from tablechain.ledger.consensus.validators import Validator, ValidatorSet
from tablechain.ledger.consensus.wal import SignerState

__all__ = ["SingleValidatorRunner", "single_validator_set"]


def single_validator_set(
    chain_id: str, private_key: PrivateKey, validator_id: str = "validator-0"
) -> ValidatorSet:
    return ValidatorSet(chain_id, (Validator(validator_id, private_key.public_key),))


class SingleValidatorRunner:
    """Drives a one-validator ``ConsensusMachine`` in-process on a virtual millisecond clock.

    ``persist`` receives each ``SignerState`` to store (optional); ``on_commit`` each decision.
    """

    def __init__(
        self,
        chain_id: str,
        private_key: PrivateKey,
        app: ConsensusApplication,
        config: ConsensusConfig | None = None,
        persisted: SignerState | None = None,
        persist: Callable[[SignerState], None] | None = None,
        on_commit: Callable[[Committed], None] | None = None,
    ) -> None:
        validators = single_validator_set(chain_id, private_key)
        self.machine = ConsensusMachine(validators, private_key, app, config, persisted)
        self.now_ms = 0
        self.committed: list[Committed] = []
        self._persist = persist
        self._on_commit = on_commit
        self._timers: list[tuple[int, int, Timer]] = []
        self._seq = 0
        self._feed(Start())

    def notify_transactions(self) -> list[Committed]:
        """Tell the machine the mempool has transactions; returns what it committed."""
        return self._feed(TransactionsAvailable())

    def advance(self, ms: int) -> list[Committed]:
        """Move the virtual clock forward, firing due timers; returns what was committed."""
        if ms < 0:
            raise ConsensusError("cannot move the clock backwards")
        target = self.now_ms + ms
        done: list[Committed] = []
        while self._timers and self._timers[0][0] <= target:
            at, _, timer = heapq.heappop(self._timers)
            self.now_ms = at
            done += self._feed(TimerFired(timer))
        self.now_ms = target
        return done

    def _feed(self, event: Event) -> list[Committed]:
        done = []
        for out in self.machine.step(event):
            if isinstance(out, Persist):
                if self._persist is not None:
                    self._persist(out.state)
            elif isinstance(out, ScheduleTimer):
                self._seq += 1
                heapq.heappush(self._timers, (self.now_ms + out.delay_ms, self._seq, out.timer))
            elif isinstance(out, Committed):
                done.append(out)
                self.committed.append(out)
                if self._on_commit is not None:
                    self._on_commit(out)
            elif isinstance(out, StateDivergence):
                raise ConsensusError(f"state diverged at height {out.height}")
            # Broadcast / SendTo: there are no peers.
        return done
