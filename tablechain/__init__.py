"""tablechain: a permissioned blockchain database and privacy-computing platform."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tablechain.platform.client import Client

__all__ = ["__version__", "Client"]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Imported on first use so that `import tablechain` stays light (no httpx, no ledger).
    if name == "Client":
        from tablechain.platform.client import Client

        return Client
    raise AttributeError(f"module 'tablechain' has no attribute {name!r}")
