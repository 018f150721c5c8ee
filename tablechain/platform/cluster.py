"""Validators as Ray actors: the Ray transport, the validator actor and a local cluster.

Each validator of a cluster directory (``config.init_cluster``) runs in its own Ray actor, which
opens the validator's data directory (SQLite database, signer state, validator key), hosts a
``ValidatorNode`` and serves its JSON-RPC API on 127.0.0.1. An actor asks for the custom
resource ``validator-<id>`` (declared by the Ray node that holds that data directory), so when
Ray restarts a dead actor (``max_restarts``) it lands where its disk is; it reopens the directory
and catches up from its peers.

``RayTransport`` is the consensus ``Transport`` between actors: one outbound queue per peer and
channel, drained by a thread that sends everything queued in one fire-and-forget actor call, with
a bound on calls in flight. Consensus messages and gossiped transactions travel on separate
channels (and separate single-threaded concurrency groups at the receiver), so a burst of
gossip, whose signatures the receiver verifies before the call returns, never delays a vote, and
gossip gets back-pressure from the receiver. Peers are found by name in the cluster's Ray
namespace, so a restarted peer is reachable again.

Ray is imported only when a cluster is started (``import_ray`` first makes Ray bind loopback).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tablechain.errors import TablechainError
from tablechain.platform.config import (
    RPC_URL_FILE,
    SIGNER_STATE_FILE,
    ClusterLayout,
    datadir_lock,
    load_genesis,
    load_settings,
    read_key_file,
)
from tablechain.platform.errors import ConfigError, PlatformError

if TYPE_CHECKING:
    from tablechain.ledger.validator import ValidatorNode
    from tablechain.platform.server import BackgroundServer

__all__ = [
    "ClusterError",
    "ValidatorSpec",
    "RayTransport",
    "ValidatorActor",
    "RayCluster",
    "import_ray",
    "init_ray",
    "actor_name",
    "validator_resource",
    "cluster_status",
]

log = logging.getLogger(__name__)

RAY_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
CONCURRENCY_GROUPS = {"peer": 1, "gossip": 1, "client": 2}
COMMIT_LOG_SIZE = 1_000_000


class ClusterError(PlatformError):
    """A cluster could not be started, reached or inspected."""

    code = "tecCLUSTER"


def import_ray() -> Any:
    """Import Ray so that a local instance binds 127.0.0.1 (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``
    must be in the environment before Ray's first import)."""
    os.environ.setdefault(RAY_LOOPBACK_ENV, "0")
    import ray

    return ray


def actor_name(validator_id: str) -> str:
    return f"validator-{validator_id}"


def validator_resource(validator_id: str) -> str:
    """The custom resource a Ray node declares to say "this validator's disk is here"."""
    return f"validator-{validator_id}"


def init_ray(address: str | None = None, *, validators: Iterable[str] = (),
             num_cpus: int | None = None, namespace: str | None = None,
             log_to_driver: bool = False) -> Any:
    """Start a local Ray instance declaring one ``validator-<id>`` resource per validator, or
    connect to a running one (``address``, e.g. ``127.0.0.1:6380``); returns the ray module.

    A local instance binds loopback and runs no dashboard. Already connected: nothing happens.
    """
    ray = import_ray()
    if ray.is_initialized():
        return ray
    kwargs: dict[str, Any] = {"namespace": namespace, "log_to_driver": log_to_driver}
    if address is not None:
        try:
            ray.init(address=address, **kwargs)
        except ConnectionError as exc:  # nothing runs there: Ray's message, not a traceback
            raise ClusterError(f"cannot connect to a Ray cluster at {address}: {exc}") from None
        return ray
    from ray._private import ray_constants

    if ray_constants.ENABLE_RAY_CLUSTER:  # Ray was imported before the variable was set
        kwargs["_node_ip_address"] = "127.0.0.1"
    ray.init(num_cpus=num_cpus, include_dashboard=False,
             resources={validator_resource(v): 1 for v in validators}, **kwargs)
    return ray


# --- the transport ---------------------------------------------------------------------------


def _one(item: Any) -> int:
    return 1


def _gossip_weight(item: tuple[bytes, int]) -> int:
    """Gossip travels as ``(data, count)``: a canonical JSON array of signed transactions
    (bytes cross Ray far cheaper than the objects they encode) and how many it holds."""
    return item[1]


class _Link:
    """One channel to one peer: a queue drained by a thread into batched actor calls.

    ``weight`` counts an item (in messages, or in transactions for gossip) for the queue's
    limit and the counters."""

    def __init__(self, transport: RayTransport, peer: str, method: str, max_in_flight: int,
                 max_queued: int, weight: Callable[[Any], int] = _one) -> None:
        self.transport = transport
        self.peer = peer
        self.method = method
        self.max_in_flight = max_in_flight
        self.max_queued = max_queued
        self.weight = weight
        self.queued = 0
        self.items: list[Any] = []
        self.inflight: list[Any] = []
        self.cond = threading.Condition()
        self.closed = False
        self.calls = 0
        self.sent = 0
        self.dropped = 0
        self.failed_calls = 0
        self.thread = threading.Thread(target=self._run, name=f"link-{method}-{peer}",
                                       daemon=True)
        self.thread.start()

    def put(self, items: Sequence[Any]) -> None:
        with self.cond:
            self.items.extend(items)
            self.queued += sum(self.weight(i) for i in items)
            # The peer is far behind: drop the oldest (the protocol re-sends; a dropped
            # transaction reaches the peer in the block that carries it).
            while self.queued > self.max_queued and len(self.items) > 1:
                lost = self.weight(self.items.pop(0))
                self.queued -= lost
                self.dropped += lost
            self.cond.notify()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify()
        self.thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self.cond:
                if not self.items and not self.closed:
                    self.cond.wait(0.1 if self.inflight else 1.0)
                if self.closed:
                    return
                batch, self.items = self.items, []
                self.queued = 0
            try:
                self._reap(0.0)
                while len(self.inflight) >= self.max_in_flight and not self.closed:
                    self._reap(0.5)
                if batch:
                    self._send(batch)
            except Exception:  # never let the link die: log, drop the batch, go on
                log.exception("link %s to %s failed", self.method, self.peer)
                self.dropped += sum(self.weight(i) for i in batch)

    def _send(self, batch: list[Any]) -> None:
        handle = self.transport.handle(self.peer)
        if handle is None:
            self.dropped += sum(self.weight(i) for i in batch)
            return
        try:
            ref = getattr(handle, self.method).remote(self.transport.me, batch)
        except Exception as exc:  # a dead actor: look its name up again next time
            log.info("call %s on %s failed: %s", self.method, self.peer, exc)
            self.transport.forget(self.peer)
            self.dropped += sum(self.weight(i) for i in batch)
            return
        self.inflight.append(ref)
        self.calls += 1
        self.sent += sum(self.weight(i) for i in batch)

    def _reap(self, timeout: float) -> None:
        if not self.inflight:
            return
        ray = self.transport.ray
        ready, self.inflight = ray.wait(self.inflight, num_returns=len(self.inflight) if
                                        timeout == 0 else 1, timeout=timeout)
        for ref in ready:
            try:
                ray.get(ref, timeout=0)
            except Exception as exc:  # the peer died with the call in flight; it will catch up
                self.failed_calls += 1
                log.debug("%s on %s: %s", self.method, self.peer, exc)
                if isinstance(exc, ray.exceptions.ActorDiedError):
                    self.transport.forget(self.peer)


class RayTransport:
    """The ``Transport`` of a validator actor: fire-and-forget, batched calls to peer actors."""

    def __init__(self, me: str, peers: Sequence[str], namespace: str, *,
                 max_in_flight: int = 4, max_gossip_in_flight: int = 2,
                 max_queued: int = 20_000, max_gossip_queued: int = 200_000) -> None:
        self.ray = import_ray()
        self.me = me
        self.namespace = namespace
        self.peers = tuple(p for p in peers if p != me)
        self._handles: dict[str, Any] = {}
        self._next_lookup: dict[str, float] = {}
        self._lock = threading.Lock()
        self.gossiped_txs = 0
        self.consensus = {p: _Link(self, p, "deliver_batch", max_in_flight, max_queued)
                          for p in self.peers}
        self.gossip_links = {p: _Link(self, p, "deliver_gossip", max_gossip_in_flight,
                                      max_gossip_queued, _gossip_weight) for p in self.peers}

    def handle(self, peer: str) -> Any:
        """The peer's actor handle, looked up by name (None while it cannot be found)."""
        with self._lock:
            found = self._handles.get(peer)
            if found is not None:
                return found
            now = time.monotonic()
            if now < self._next_lookup.get(peer, 0.0):
                return None
            try:
                found = self.ray.get_actor(actor_name(peer), namespace=self.namespace)
            except ValueError:
                self._next_lookup[peer] = now + 0.5
                return None
            self._handles[peer] = found
            return found

    def forget(self, peer: str) -> None:
        with self._lock:
            self._handles.pop(peer, None)

    # --- Transport ---

    def broadcast(self, sender: str, message: Any) -> None:
        for link in self.consensus.values():
            link.put((message,))

    def send(self, sender: str, receiver: str, message: Any) -> None:
        link = self.consensus.get(receiver)
        if link is not None:
            link.put((message,))

    def gossip(self, sender: str, data: bytes, count: int) -> None:
        self.gossiped_txs += count
        for link in self.gossip_links.values():
            link.put(((data, count),))

    def stats(self) -> dict[str, Any]:
        """Counters: what this validator sent (gossip counts transactions it originated)."""

        def links(group: dict[str, _Link]) -> dict[str, dict[str, int]]:
            return {p: {"calls": x.calls, "sent": x.sent, "dropped": x.dropped,
                        "failed_calls": x.failed_calls, "queued": len(x.items)}
                    for p, x in group.items()}

        return {"gossiped_txs": self.gossiped_txs, "consensus": links(self.consensus),
                "gossip": links(self.gossip_links)}

    def close(self) -> None:
        for link in [*self.consensus.values(), *self.gossip_links.values()]:
            link.close()


# --- the validator actor ---------------------------------------------------------------------


@dataclass(frozen=True)
class ValidatorSpec:
    """What a validator actor needs to (re)open its validator: everything picklable."""

    validator_id: str
    datadir: str
    namespace: str
    peers: tuple[str, ...]
    consensus: Mapping[str, Any] = field(default_factory=dict)
    verify_workers: int = 1
    rpc_port: int | None = None  # None: node.json's


class ValidatorActor:
    """The body of a validator actor (Ray wraps it with ``validator_actor_class``).

    Opening holds the data directory's lock for the actor's life (the OS drops it when the
    process dies, so a restarted actor can take it again).
    """

    def __init__(self, spec: ValidatorSpec) -> None:
        from tablechain.ledger.consensus import ConsensusConfig
        from tablechain.ledger.node import NodeConfig
        from tablechain.ledger.validator import ValidatorNode
        from tablechain.platform.server import serve_in_thread

        logging.basicConfig(level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.spec = spec
        self._exit = contextlib.ExitStack()
        self._exit.enter_context(datadir_lock(spec.datadir))
        settings = load_settings(spec.datadir)
        if settings.extra.get("validator_id", spec.validator_id) != spec.validator_id:
            raise ConfigError(f"{spec.datadir} holds validator "
                              f"{settings.extra.get('validator_id')!r}, not {spec.validator_id!r}")
        genesis = load_genesis(settings)
        key = read_key_file(settings.key_path, settings.key_scheme)
        self.transport = RayTransport(spec.validator_id, spec.peers, spec.namespace)
        config = NodeConfig(max_block_txs=settings.max_block_txs,
                            max_block_wait_ms=settings.max_block_wait_ms,
                            mempool_size=settings.mempool_size,
                            mempool_per_account=settings.mempool_per_account,
                            verify_workers=spec.verify_workers)
        self.node: ValidatorNode = ValidatorNode(
            settings.resolved_db_url, genesis, key, spec.validator_id, self.transport, config,
            ConsensusConfig(**dict(spec.consensus)), settings.datadir / SIGNER_STATE_FILE)
        self._commits: OrderedDict[str, float] = OrderedDict()
        self.node.on_commit(self._on_commit)
        port = settings.rpc_port if spec.rpc_port is None else spec.rpc_port
        self.server: BackgroundServer = serve_in_thread(
            self.node, settings.rpc_host, port, max_body_bytes=settings.max_body_bytes)
        url_file = settings.datadir / RPC_URL_FILE
        tmp = url_file.with_suffix(".tmp")
        tmp.write_text(self.server.url + "\n", encoding="ascii")
        tmp.replace(url_file)
        self._url_file = url_file
        log.info("validator %s (pid %s) at height %s serving %s", spec.validator_id,
                 os.getpid(), self.node.ledger.height, self.server.url)

    def _on_commit(self, block: Any) -> None:
        now = time.monotonic()
        self._commits.update((tx.hash_hex, now) for tx in block.transactions)
        while len(self._commits) > COMMIT_LOG_SIZE:
            self._commits.popitem(last=False)

    # --- from peers ---

    def deliver_batch(self, sender: str, messages: list[Any]) -> None:
        for message in messages:
            self.node.deliver(message)

    def deliver_gossip(self, sender: str, batches: list[Any]) -> None:
        for batch in batches:  # (data, count) each, see _gossip_weight
            if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], bytes):
                self.node.deliver_transactions(batch[0])

    # --- from clients and the cluster manager ---

    def info(self) -> dict[str, Any]:
        return {"validator": self.spec.validator_id, "pid": os.getpid(),
                "rpc_url": self.server.url, "height": self.node.ledger.height}

    def status(self) -> dict[str, Any]:
        return {**self.node.status(), "pid": os.getpid(), "rpc_url": self.server.url,
                "state_root": self.node.ledger.head.state_root,
                "transport": self.transport.stats()}

    def submit_many(self, transactions: list[Any]) -> list[tuple[str | None, str | None]]:
        """Admit a batch; per transaction ``(hash, None)`` or ``(None, error code)``."""
        out: list[tuple[str | None, str | None]] = []
        for result in self.node.submit_many(transactions):
            if isinstance(result, TablechainError):
                out.append((None, result.code))
            else:
                out.append((result.hash_hex, None))
        return out

    def commit_times(self, hashes: list[str]) -> list[float | None]:
        """When (``time.monotonic()`` of this machine) each transaction committed here."""
        return [self._commits.get(h) for h in hashes]

    def block(self, height: int) -> dict[str, Any]:
        return self.node.ledger.block(height)

    def table_rows(self, owner: str, name: str) -> list[dict[str, Any]]:
        """Every row of a table, read as its owner, in the ledger's row order (``_tc_rowid``)."""
        from tablechain.ledger.query import MAX_LIMIT

        rows: list[dict[str, Any]] = []
        while True:
            page = self.node.ledger.read(
                owner, name, [[], {"$limit": {"index": len(rows), "total": MAX_LIMIT}}], owner)
            rows.extend(page)
            if len(page) < MAX_LIMIT:
                return rows

    def shutdown(self) -> None:
        """Stop serving and close the database (the actor stays until it is killed)."""
        self.server.stop()  # stops the node (manage_node) after draining its queue
        self.node.stop()
        self.transport.close()
        self._url_file.unlink(missing_ok=True)
        self._exit.close()


@functools.cache
def validator_actor_class() -> Any:
    """``ValidatorActor`` as a Ray actor class, each method in its concurrency group."""
    ray = import_ray()

    class RayValidator(ValidatorActor):
        @ray.method(concurrency_group="peer", max_task_retries=0)  # type: ignore[misc]
        def deliver_batch(self, sender: str, messages: list[Any]) -> None:
            super().deliver_batch(sender, messages)

        @ray.method(concurrency_group="gossip", max_task_retries=0)  # type: ignore[misc]
        def deliver_gossip(self, sender: str, batches: list[Any]) -> None:
            super().deliver_gossip(sender, batches)

        @ray.method(concurrency_group="client")  # type: ignore[misc]
        def info(self) -> dict[str, Any]:
            return super().info()

        @ray.method(concurrency_group="client")  # type: ignore[misc]
        def status(self) -> dict[str, Any]:
            return super().status()

        @ray.method(concurrency_group="client")  # type: ignore[misc]
        def submit_many(self, transactions: list[Any]) -> list[tuple[str | None, str | None]]:
            return super().submit_many(transactions)

        @ray.method(concurrency_group="client")  # type: ignore[misc]
        def commit_times(self, hashes: list[str]) -> list[float | None]:
            return super().commit_times(hashes)

        @ray.method(concurrency_group="client")  # type: ignore[misc]
        def block(self, height: int) -> dict[str, Any]:
            return super().block(height)

        @ray.method(concurrency_group="client")  # type: ignore[misc]
        def table_rows(self, owner: str, name: str) -> list[dict[str, Any]]:
            return super().table_rows(owner, name)

        @ray.method(concurrency_group="client", max_task_retries=0)  # type: ignore[misc]
        def shutdown(self) -> None:
            super().shutdown()

    RayValidator.__name__ = RayValidator.__qualname__ = "ValidatorActor"
    return ray.remote(concurrency_groups=CONCURRENCY_GROUPS)(RayValidator)


# --- a cluster, from the driver --------------------------------------------------------------


class RayCluster:
    """The validator actors of a cluster directory, on the Ray instance this process uses.

    ``start`` creates (or, after ``up --detach``, finds) one named actor per validator;
    ``kill`` SIGKILLs a validator's process (Ray restarts it); ``shutdown`` ends them all.
    """

    def __init__(self, layout: ClusterLayout, *, max_restarts: int = 100,
                 detached: bool = False, verify_workers: int = 1,
                 consensus: Mapping[str, Any] | None = None) -> None:
        self.layout = layout
        self.max_restarts = max_restarts
        self.detached = detached
        self.verify_workers = verify_workers
        self.consensus = dict(layout.consensus if consensus is None else consensus)
        self.ray = import_ray()
        self.handles: dict[str, Any] = {}

    @property
    def ids(self) -> tuple[str, ...]:
        return self.layout.ids

    def spec(self, validator_id: str) -> ValidatorSpec:
        member = self.layout.member(validator_id)
        return ValidatorSpec(validator_id, str(member.datadir), self.layout.namespace, self.ids,
                             self.consensus, self.verify_workers)

    def start(self, validators: Iterable[str] | None = None,
              timeout: float = 120.0) -> dict[str, str]:
        """Start the validators (all by default); wait until each serves RPC; their URLs."""
        ids = list(self.ids if validators is None else validators)
        for vid in ids:
            self.start_validator(vid, wait=False)
        return {vid: self.wait_ready(vid, timeout)["rpc_url"] for vid in ids}

    def start_validator(self, validator_id: str, wait: bool = True,
                        timeout: float = 120.0) -> Any:
        cls = validator_actor_class()
        options: dict[str, Any] = {
            "name": actor_name(validator_id), "namespace": self.layout.namespace,
            "get_if_exists": True, "num_cpus": 0,
            "resources": {validator_resource(validator_id): 1},
            "max_restarts": self.max_restarts, "max_task_retries": -1,
        }
        if self.detached:
            options["lifetime"] = "detached"
        handle = cls.options(**options).remote(self.spec(validator_id))
        self.handles[validator_id] = handle
        if wait:
            self.wait_ready(validator_id, timeout)
        return handle

    def handle(self, validator_id: str) -> Any:
        found = self.handles.get(validator_id)
        if found is None:
            try:
                found = self.ray.get_actor(actor_name(validator_id),
                                           namespace=self.layout.namespace)
            except ValueError:
                raise ClusterError(f"validator {validator_id} is not running") from None
            self.handles[validator_id] = found
        return found

    def wait_ready(self, validator_id: str, timeout: float = 120.0) -> dict[str, Any]:
        """The validator's ``info()`` once it answers (Ray queues calls while it restarts)."""
        ray = self.ray
        deadline = time.monotonic() + timeout
        while True:
            ref = self.handle(validator_id).info.remote()
            try:
                return ray.get(ref, timeout=max(0.1, deadline - time.monotonic()))  # type: ignore[no-any-return]
            except ray.exceptions.GetTimeoutError:
                ray.cancel(ref)
                raise ClusterError(f"validator {validator_id} did not start in {timeout:.0f} s; "
                                   "see the Ray worker logs") from None
            except ray.exceptions.RayActorError as exc:
                if time.monotonic() > deadline or isinstance(exc, ray.exceptions.ActorDiedError) \
                        and "creation task" in str(exc):
                    raise ClusterError(f"validator {validator_id} failed: {exc}") from None
                time.sleep(0.2)

    def call(self, validator_id: str, method: str, *args: Any, timeout: float = 60.0) -> Any:
        """Call an actor method and wait for its result."""
        ref = getattr(self.handle(validator_id), method).remote(*args)
        return self.ray.get(ref, timeout=timeout)

    def endpoints(self) -> dict[str, str]:
        return {vid: self.call(vid, "info")["rpc_url"] for vid in self.ids}

    def status(self) -> dict[str, dict[str, Any]]:
        return {vid: self.call(vid, "status") for vid in self.ids}

    def pid(self, validator_id: str) -> int:
        return int(self.call(validator_id, "info")["pid"])

    def kill(self, validator_id: str, sig: int = signal.SIGKILL) -> int:
        """Send ``sig`` to the validator's worker process (Ray restarts it); its old pid."""
        pid = self.pid(validator_id)
        os.kill(pid, sig)
        return pid

    def wait_restarted(self, validator_id: str, old_pid: int,
                       timeout: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.wait_ready(validator_id, max(1.0, deadline - time.monotonic()))
            if info["pid"] != old_pid:
                return info
            time.sleep(0.2)
        raise ClusterError(f"validator {validator_id} was not restarted in {timeout:.0f} s")

    def wait_height(self, height: int, validators: Iterable[str] | None = None,
                    timeout: float = 120.0) -> dict[str, int]:
        """Wait until every named validator has committed ``height``; their heights."""
        ids = list(self.ids if validators is None else validators)
        deadline = time.monotonic() + timeout
        heights: dict[str, int] = {}
        while True:
            for vid in ids:
                try:
                    heights[vid] = int(self.call(vid, "info", timeout=10)["height"])
                except Exception:  # restarting: keep waiting
                    heights[vid] = -1
            if all(h >= height for h in heights.values()):
                return heights
            if time.monotonic() > deadline:
                raise ClusterError(f"heights {heights} did not reach {height} in "
                                   f"{timeout:.0f} s")
            time.sleep(0.1)

    def stop_validator(self, validator_id: str) -> None:
        """Stop a validator cleanly and end its actor (no restart)."""
        handle = self.handle(validator_id)
        with contextlib.suppress(Exception):
            self.ray.get(handle.shutdown.remote(), timeout=30)
        self.ray.kill(handle, no_restart=True)
        self.handles.pop(validator_id, None)

    def shutdown(self) -> None:
        """Stop every validator this cluster can reach."""
        for vid in self.ids:
            with contextlib.suppress(ClusterError):
                self.stop_validator(vid)


# --- status over RPC (no Ray needed) ---------------------------------------------------------


def cluster_status(urls: Mapping[str, str], timeout: float = 5.0) -> list[dict[str, Any]]:
    """Each validator's view (over its RPC ``server_info``): height, round, step, proposer,
    mempool, and how many blocks it is behind the highest; ``error`` for one that is down."""
    from tablechain.platform.client import Client

    rows: list[dict[str, Any]] = []
    for vid, url in urls.items():
        row: dict[str, Any] = {"validator": vid, "url": url}
        try:
            with Client(url, timeout=timeout) as client:
                info = client.server_info()
        except TablechainError as exc:
            row["error"] = exc.message
            rows.append(row)
            continue
        cons = info.get("consensus") or {}
        row.update(height=info.get("ledger_index"), round=cons.get("round"),
                   step=cons.get("step"), proposer=cons.get("proposer"),
                   mempool=info.get("mempool"), halted=cons.get("halted"))
        rows.append(row)
    top = max((r["height"] for r in rows if isinstance(r.get("height"), int)), default=0)
    for r in rows:
        r["behind"] = top - r["height"] if isinstance(r.get("height"), int) else None
    return rows


def cluster_urls(layout: ClusterLayout) -> dict[str, str]:
    """The RPC URL each validator wrote to its data directory (empty when it is down)."""
    out = {}
    for m in layout.members:
        try:
            out[m.validator_id] = (m.datadir / RPC_URL_FILE).read_text(encoding="ascii").strip()
        except OSError:
            out[m.validator_id] = ""
    return out


def require_urls(layout: ClusterLayout) -> dict[str, str]:
    urls = cluster_urls(layout)
    if not any(urls.values()):
        raise ClusterError(f"no validator of {layout.root} is running (no rpc.url files)")
    return urls


__all__ += ["cluster_urls", "require_urls"]
