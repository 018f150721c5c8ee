"""Running a node with its RPC server: in the foreground (``tablechain node start``) or on a
background thread (tests, embedding).

The listening socket is bound before the server starts, so port 0 picks a free port and the real
address is known at once; it is written to ``<datadir>/rpc.url`` while the node runs.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import uvicorn

from tablechain.platform.config import (
    RPC_URL_FILE,
    NodeSettings,
    datadir_lock,
    load_settings,
    open_node,
)
from tablechain.platform.errors import ConfigError
from tablechain.platform.rpc import create_app

if TYPE_CHECKING:
    from tablechain.ledger.node import Node

__all__ = ["bind_socket", "run_node", "BackgroundServer", "serve_in_thread", "WS_MAX_SIZE",
           "MAX_CONNECTIONS"]

log = logging.getLogger(__name__)
WS_MAX_SIZE = 1024 * 1024
# Open connections (HTTP and WebSocket) past which a new request is answered 503 at once: idle
# or slow clients (slow-loris) then cost a bounded number of sockets and tasks, not the node.
MAX_CONNECTIONS = 2048


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (0: a free port), or a ``ConfigError`` saying why not."""
    if not 0 <= port <= 65535:  # socket.bind raises OverflowError, not OSError, for these
        raise ConfigError(f"cannot listen on {host}:{port}: a port is 0 to 65535")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _uvicorn_config(app: Any, log_level: str,
                    max_connections: int = MAX_CONNECTIONS) -> uvicorn.Config:
    return uvicorn.Config(app, lifespan="on", log_level=log_level, ws_max_size=WS_MAX_SIZE,
                          timeout_graceful_shutdown=5, access_log=False,
                          limit_concurrency=max_connections)


def run_node(datadir: str | os.PathLike[str], host: str | None = None, port: int | None = None,
             log_level: str = "info", announce: Any = print) -> int:
    """Run the node of ``datadir`` and its RPC server until SIGINT or SIGTERM; exit code 0."""
    settings: NodeSettings = load_settings(datadir)
    host = host or settings.rpc_host
    port = settings.rpc_port if port is None else port
    url_file = settings.datadir / RPC_URL_FILE
    with datadir_lock(settings.datadir):
        sock = bind_socket(host, port)
        node = open_node(settings)
        try:
            app = create_app(node, max_body_bytes=settings.max_body_bytes)
            server = uvicorn.Server(_uvicorn_config(app, log_level))
            url = _url(sock)
            tmp = url_file.with_suffix(".tmp")
            try:
                tmp.write_text(url + "\n", encoding="ascii")
                tmp.replace(url_file)
            except OSError as exc:  # a directory this user cannot write (the lock file can)
                raise ConfigError(f"cannot write {url_file}: {exc.strerror}") from None
            announce(f"tablechain node {node.address} serving chain {node.genesis.chain_name} "
                     f"(height {node.ledger.height}) on {url}")
            # uvicorn re-raises the signal that stopped it once it has shut down; these
            # handlers absorb that so a requested stop ends with exit code 0.
            previous = {sig: signal.signal(sig, lambda *_: None)
                        for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                server.run(sockets=[sock])
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
        finally:
            node.stop()
            sock.close()
            url_file.unlink(missing_ok=True)
    announce("tablechain node stopped")
    return 0 if server.started else 1


@dataclass
class BackgroundServer:
    """A node's RPC server on a thread of this process."""

    url: str
    node: Node
    server: uvicorn.Server
    thread: threading.Thread
    sock: socket.socket

    @property
    def ws_url(self) -> str:
        return "ws" + self.url[len("http"):] + "/ws"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_in_thread(node: Node, host: str = "127.0.0.1", port: int = 0,
                    manage_node: bool = True, log_level: str = "warning",
                    max_body_bytes: int | None = None,
                    max_connections: int = MAX_CONNECTIONS) -> BackgroundServer:
    """Serve ``node`` on a background thread; returns once the server accepts connections."""
    kwargs = {} if max_body_bytes is None else {"max_body_bytes": max_body_bytes}
    app = create_app(node, manage_node=manage_node, **kwargs)
    sock = bind_socket(host, port)
    server = uvicorn.Server(_uvicorn_config(app, log_level, max_connections))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name="rpc-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise ConfigError("the RPC server did not start")
        time.sleep(0.01)
    return BackgroundServer(_url(sock), node, server, thread, sock)
