"""Annotation: the task queue with leases, the ranking page, submitting rankings."""
