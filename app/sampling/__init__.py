"""Sampling: jobs that have a policy version write samples and ranking tasks."""
