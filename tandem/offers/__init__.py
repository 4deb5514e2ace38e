"""Offer: the next best offer for each shared client, gated by solvency (docs/privacy.md, README)."""
