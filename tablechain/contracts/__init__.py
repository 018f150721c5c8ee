"""tablechain.contracts."""
