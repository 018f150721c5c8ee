"""tablechain.ledger."""
