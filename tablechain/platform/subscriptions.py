"""WebSocket subscriptions: a node's events delivered to asyncio connections.

The node calls its subscribers from the block-producer thread. ``EventHub`` holds one
subscription on the node, filters events there against an index of what each connection asked
for (under a lock), and hands matching events to the event loop with
``loop.call_soon_threadsafe``. Each connection has a bounded queue: a consumer too slow to keep
up is told so and disconnected rather than letting memory grow without bound. A connection's
commands are read only while at most half of its queue waits (``wait_for_room``), so a client
that sends commands without reading their responses is held back by TCP rather than buffered.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tablechain.ledger.node import Event, Node

__all__ = ["EventHub", "Subscriber", "OVERFLOW", "TOO_MANY_CONNECTIONS", "FINAL_STATUSES"]

OVERFLOW: dict[str, Any] = {"type": "error", "error": "slowConsumer",
                            "error_message": "events arrived faster than they were read; "
                                             "the connection is closed, resubscribe"}
TOO_MANY_CONNECTIONS: dict[str, Any] = {"type": "error", "error": "tooManyConnections",
                                        "error_message": "the node serves as many WebSocket "
                                                         "connections as it allows; retry later"}
FINAL_STATUSES = frozenset({"db_success", "db_error"})


class Subscriber:
    """One WebSocket connection's subscriptions and outgoing queue (used on the loop only)."""

    def __init__(self, hub: EventHub, queue_size: int) -> None:
        self.hub = hub
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.queue_size = queue_size
        self.transactions: set[str] = set()
        self.tables: set[tuple[str, str]] = set()
        self.overflowed = False
        self.closed = False
        self._sent: set[tuple[str, str]] = set()  # (tx hash, status) already delivered
        self._taken = asyncio.Event()  # set whenever the sender takes a message

    def deliver(self, event: dict[str, Any]) -> None:
        """Queue an event (on the loop); on overflow queue one notice and stop."""
        if self.closed or self.overflowed:
            return
        if event.get("type") == "singleTransaction":
            # Events of one transaction can reach us twice (the commit racing a subscription
            # to an already committed transaction): deliver each status once, and nothing
            # after the final one, which ends the subscription.
            tx_hash, status = str(event.get("transaction")), str(event.get("status"))
            if tx_hash not in self.transactions or (tx_hash, status) in self._sent:
                return
            if status in FINAL_STATUSES:
                self.hub.unsubscribe_transaction(self, tx_hash)
                self._sent = {k for k in self._sent if k[0] != tx_hash}
            else:
                self._sent.add((tx_hash, status))
        if self.queue.qsize() >= self.queue_size:
            self.overflowed = True
            self.queue.put_nowait(OVERFLOW)
            return
        self.queue.put_nowait(event)

    def reply(self, message: dict[str, Any]) -> None:
        """Queue a command's response (never dropped: at most one per command received, and
        commands are read only while ``wait_for_room`` allows)."""
        if not self.closed:
            self.queue.put_nowait(message)

    async def wait_for_room(self) -> None:
        """Return once at most half the queue waits to be sent. The next command is read only
        then: what one command adds (its response and a committed transaction's two events)
        then always fits, so commands alone never make a consumer slow, and a client that sends
        commands without reading the answers fills its TCP window instead of the node's memory.
        """
        while self.queue.qsize() >= max(1, self.queue_size // 2) and not self.closed:
            self._taken.clear()
            await self._taken.wait()

    async def next_message(self) -> dict[str, Any]:
        """The next message to send (for the connection's sender)."""
        message = await self.queue.get()
        self._taken.set()
        return message


class EventHub:
    """Routes a node's events to the WebSocket connections that subscribed to them."""

    def __init__(self, node: Node, loop: asyncio.AbstractEventLoop, queue_size: int = 1000,
                 max_subscriptions: int = 1000, max_connections: int = 1000) -> None:
        self.node = node
        self.loop = loop
        self.queue_size = queue_size
        self.max_subscriptions = max_subscriptions
        self.max_connections = max_connections
        self.connections = 0  # open ones (counted on the loop only)
        self._lock = threading.Lock()
        self._by_tx: dict[str, set[Subscriber]] = {}
        self._by_table: dict[tuple[str, str], set[Subscriber]] = {}
        self._unsubscribe: Callable[[], None] | None = None
        self._started = False

    def start(self) -> None:
        with self._lock:
            self._started = True
            self._listen()

    def stop(self) -> None:
        with self._lock:
            self._started = False
            self._listen()

    def _listen(self) -> None:
        """Listen to the node while anyone here subscribes to something (call under the lock):
        with no subscription the node need not make a block's thousands of events for us."""
        want = self._started and bool(self._by_tx or self._by_table)
        if want and self._unsubscribe is None:
            self._unsubscribe = self.node.subscribe(self._on_event)
        elif not want and self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def connect(self) -> Subscriber | None:
        """A new connection's subscriber; None when ``max_connections`` are open (the limit
        per connection would bound nothing if one client could open connections without end).
        """
        if self.connections >= self.max_connections:
            return None
        self.connections += 1
        return Subscriber(self, self.queue_size)

    def disconnect(self, sub: Subscriber) -> None:
        if sub.closed:
            return
        sub.closed = True
        self.connections -= 1
        with self._lock:
            for tx in sub.transactions:
                self._discard(self._by_tx, tx, sub)
            for table in sub.tables:
                self._discard(self._by_table, table, sub)
            self._listen()
        sub.transactions.clear()
        sub.tables.clear()

    @staticmethod
    def _discard(index: dict[Any, set[Subscriber]], key: Any, sub: Subscriber) -> None:
        subs = index.get(key)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del index[key]

    def _room(self, sub: Subscriber) -> bool:
        return len(sub.transactions) + len(sub.tables) < self.max_subscriptions

    def subscribe_transaction(self, sub: Subscriber, tx_hash: str) -> bool:
        """False when the connection already holds the maximum number of subscriptions."""
        if tx_hash in sub.transactions:
            return True
        if not self._room(sub):
            return False
        with self._lock:
            sub.transactions.add(tx_hash)
            self._by_tx.setdefault(tx_hash, set()).add(sub)
            self._listen()
        return True

    def subscribe_table(self, sub: Subscriber, owner: str, table: str) -> bool:
        key = (owner, table)
        if key in sub.tables:
            return True
        if not self._room(sub):
            return False
        with self._lock:
            sub.tables.add(key)
            self._by_table.setdefault(key, set()).add(sub)
            self._listen()
        return True

    def unsubscribe_transaction(self, sub: Subscriber, tx_hash: str) -> None:
        with self._lock:
            sub.transactions.discard(tx_hash)
            self._discard(self._by_tx, tx_hash, sub)
            self._listen()

    def unsubscribe_table(self, sub: Subscriber, owner: str, table: str) -> None:
        with self._lock:
            sub.tables.discard((owner, table))
            self._discard(self._by_table, (owner, table), sub)
            self._listen()

    def _on_event(self, event: Event) -> None:
        """Called on the block-producer thread: find the targets, hand over to the loop."""
        with self._lock:
            if event.kind == "singleTransaction":
                targets = list(self._by_tx.get(event.tx_hash, ()))
            else:
                targets = list(self._by_table.get((event.owner or "", event.table or ""), ()))
        if not targets:
            return
        # One hand-over per event, not per subscriber: each call_soon_threadsafe costs the
        # committing thread a lock and a wake-up write, which many subscribers to one table
        # multiplied into seconds per block.
        with contextlib.suppress(RuntimeError):  # the loop is closed: the server is stopping
            self.loop.call_soon_threadsafe(_deliver_to_all, targets, event.to_json())


def _deliver_to_all(targets: list[Subscriber], message: dict[str, Any]) -> None:
    for sub in targets:
        sub.deliver(message)
