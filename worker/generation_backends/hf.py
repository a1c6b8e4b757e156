"""'hf': Hugging Face `generate` in the worker (the default), exactly today's path."""

from __future__ import annotations

from typing import Any

from worker.training.generation import (
    GeneratedSample,
    GenerationSettings,
    generate_batch,
    generation_budget,
)
from worker.training.prompts import Prompt


class HFBackend:
    """A loaded model and its tokenizer; `generate` is `generate_batch`."""

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model = model
        self.tokenizer = tokenizer

    def budget(self, settings: GenerationSettings) -> int | None:
        return generation_budget(self.model, self.tokenizer, settings)

    def generate(
        self, prompts: list[Prompt], settings: GenerationSettings, *, seed: int
    ) -> list[GeneratedSample]:
        return generate_batch(self.model, self.tokenizer, prompts, settings=settings, seed=seed)
