"""tablechain: a permissioned blockchain database and privacy-computing platform."""

__all__ = ["__version__"]

__version__ = "0.1.0"
