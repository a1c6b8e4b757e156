"""Celery app, thin tasks, and the plain sampling/training code they call."""
