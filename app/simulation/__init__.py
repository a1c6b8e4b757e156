"""Simulated annotators: scripted people who rank through the same HTTP endpoints as the browser."""
