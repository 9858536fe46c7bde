"""FROSTR: k-of-n threshold identities that sign ordinary BIP-340 Nostr events."""
