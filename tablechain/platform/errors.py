"""Errors of the platform layer (configuration, RPC, client), each with a stable code."""

from __future__ import annotations

from tablechain.errors import TablechainError

__all__ = ["PlatformError", "ConfigError", "RpcParamsError", "ClientError", "DataDirLocked"]


class PlatformError(TablechainError):
    code = "tecPLATFORM"


class ConfigError(PlatformError):
    """A data directory, node.json, genesis.json or key file is missing or malformed."""

    code = "tecBAD_CONFIG"


class DataDirLocked(ConfigError):
    """Another node process already runs on this data directory."""

    code = "tecDATADIR_LOCKED"


class RpcParamsError(PlatformError):
    """A JSON-RPC request's params have the wrong shape."""

    code = "invalidParams"


class ClientError(PlatformError):
    """An error the client got from the node (its code is the node's) or from the transport."""

    code = "tecCLIENT"
