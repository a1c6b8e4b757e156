"""Composition roots: the `rankloop` command line and the in-process simulation loop.

They run work in the process that asks for it, so they import both the web app (app/) and the
worker (worker/); nothing under app/ imports worker/ (tests/app/test_import_contract.py).
"""
