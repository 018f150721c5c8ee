"""tablechain.mpc."""
