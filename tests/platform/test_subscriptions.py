"""EventHub: events from the producer thread reach the loop; slow consumers are cut off."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from tablechain.ledger.node import Event
from tablechain.platform.subscriptions import OVERFLOW, EventHub

TX = "ab" * 32
OWNER = "0x" + "11" * 20


class FakeNode:
    def __init__(self) -> None:
        self.callbacks: list[Callable[[Event], None]] = []

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        self.callbacks.append(callback)
        return lambda: self.callbacks.remove(callback)

    def emit_from_thread(self, events: list[Event]) -> None:
        def run() -> None:
            for event in events:
                for cb in list(self.callbacks):
                    cb(event)

        thread = threading.Thread(target=run)
        thread.start()
        thread.join()


def _drain(queue: asyncio.Queue[Any]) -> list[Any]:
    out = []
    while not queue.empty():
        out.append(queue.get_nowait())
    return out


def test_events_cross_threads_to_matching_subscribers_only() -> None:
    async def scenario() -> None:
        node = FakeNode()
        hub = EventHub(node, asyncio.get_running_loop())  # type: ignore[arg-type]
        hub.start()
        a, b = hub.connect(), hub.connect()
        assert node.callbacks == []  # nothing to route yet: the node makes no events for us
        assert hub.subscribe_transaction(a, TX)
        assert hub.subscribe_table(b, OWNER, "t")
        assert len(node.callbacks) == 1
        node.emit_from_thread([
            Event("singleTransaction", "validate_success", TX, 3, "tesSUCCESS"),
            Event("singleTransaction", "validate_success", "cd" * 32, 3, "tesSUCCESS"),
            Event("singleTransaction", "db_success", TX, 3, "tesSUCCESS"),
            Event("table", "db_success", TX, 3, "tesSUCCESS", "", OWNER, "t"),
            Event("table", "db_success", TX, 3, "tesSUCCESS", "", OWNER, "other"),
        ])
        await asyncio.sleep(0.05)
        got_a, got_b = _drain(a.queue), _drain(b.queue)
        assert [(m["transaction"], m["status"]) for m in got_a] == [
            (TX, "validate_success"), (TX, "db_success")]
        assert [(m["tablename"], m["type"]) for m in got_b] == [("t", "table")]
        # the final status ended the transaction subscription; duplicates are not re-sent
        assert TX not in a.transactions
        a.deliver({"type": "singleTransaction", "transaction": TX, "status": "db_success"})
        assert a.queue.empty()
        hub.disconnect(b)
        node.emit_from_thread([Event("table", "db_success", TX, 4, "tesSUCCESS", "", OWNER,
                                     "t")])
        await asyncio.sleep(0.05)
        assert b.queue.empty()
        assert node.callbacks == []  # a's ended with its final status, b's with b
        assert hub.subscribe_table(a, OWNER, "t")
        assert len(node.callbacks) == 1
        hub.stop()
        assert node.callbacks == []

    asyncio.run(scenario())


def test_a_slow_consumer_gets_one_notice_then_nothing() -> None:
    async def scenario() -> None:
        node = FakeNode()
        hub = EventHub(node, asyncio.get_running_loop(), queue_size=3)  # type: ignore[arg-type]
        hub.start()
        sub = hub.connect()
        hub.subscribe_table(sub, OWNER, "t")
        events = [Event("table", "db_success", f"{i:064x}", i, "tesSUCCESS", "", OWNER, "t")
                  for i in range(10)]
        node.emit_from_thread(events)
        await asyncio.sleep(0.05)
        got = _drain(sub.queue)
        assert len(got) == 4 and got[-1] is OVERFLOW
        assert [m["ledger_index"] for m in got[:3]] == [0, 1, 2]
        assert sub.overflowed

    asyncio.run(scenario())


def test_duplicate_events_of_a_transaction_are_delivered_once() -> None:
    async def scenario() -> None:
        hub = EventHub(FakeNode(), asyncio.get_running_loop())  # type: ignore[arg-type]
        sub = hub.connect()
        hub.subscribe_transaction(sub, TX)
        event = {"type": "singleTransaction", "transaction": TX, "status": "validate_success"}
        sub.deliver(event)
        sub.deliver(dict(event))
        assert sub.queue.qsize() == 1

    asyncio.run(scenario())


def test_an_event_crosses_to_the_loop_once_for_all_its_subscribers() -> None:
    # Each hand-over to the loop costs the committing thread a lock and a wake-up write: many
    # subscribers to one table must not multiply them.
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        handovers = 0
        real = loop.call_soon_threadsafe

        def counting(callback: Any, *args: Any) -> Any:
            nonlocal handovers
            handovers += 1
            return real(callback, *args)

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
        node = FakeNode()
        hub = EventHub(node, loop)  # type: ignore[arg-type]
        hub.start()
        subs = [sub for _ in range(50) if (sub := hub.connect()) is not None]
        for sub in subs:
            hub.subscribe_table(sub, OWNER, "t")
        node.emit_from_thread([Event("table", "db_success", TX, 1, "tesSUCCESS", "", OWNER, "t")])
        await asyncio.sleep(0.05)
        assert handovers == 1
        assert len(subs) == 50
        assert all(_drain(sub.queue)[0]["transaction"] == TX for sub in subs)

    asyncio.run(scenario())
