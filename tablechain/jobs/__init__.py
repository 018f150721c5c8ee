"""tablechain.jobs."""
