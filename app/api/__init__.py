"""REST API under /api/v1: bearer tokens, one error shape, cursor pagination."""
