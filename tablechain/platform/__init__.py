"""tablechain.platform."""
