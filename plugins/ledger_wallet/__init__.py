"""The ledger wallet: a NIP-47 wallet service backed by a SQLite ledger (hooks below)."""
