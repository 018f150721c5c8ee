"""The platform: node assembly from a data directory, the JSON-RPC / WebSocket server, the
Python client and the command line.

Names are imported on first use so that importing the package (the CLI's entry point) stays
quick.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "Client", "ClientError", "Statements", "NodeSettings", "init_datadir", "load_settings",
    "open_node", "create_app", "run_node", "serve_in_thread", "BackgroundServer", "EventHub",
]

_HOMES = {
    "Client": "client", "ClientError": "errors", "Statements": "client",
    "NodeSettings": "config", "init_datadir": "config", "load_settings": "config",
    "open_node": "config", "create_app": "rpc", "run_node": "server",
    "serve_in_thread": "server", "BackgroundServer": "server", "EventHub": "subscriptions",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'tablechain.platform' has no attribute {name!r}")
    return getattr(importlib.import_module(f"tablechain.platform.{home}"), name)
