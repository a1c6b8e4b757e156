"""The web app as served (`rankloop serve`, `rankloop demo`, the simulated loop): app.main's
app, given the worker's model loader for merged policy downloads (app/export/policies.py)."""

from __future__ import annotations

from fastapi import FastAPI

from app import main
from app.export import policies
from worker.policies import load_base


def create_app() -> FastAPI:
    policies.use_base_loader(load_base)
    return main.create_app()
