"""tablechain.ca."""
