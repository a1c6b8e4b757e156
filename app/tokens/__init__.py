"""API tokens: issued by admins, shown once, stored as SHA-256 digests, revocable."""
