"""The project's generation backend settings: who writes samples and gate texts.

'hf' generates in the worker (the default); 'openai' sends completions to a server the team
runs (vLLM, TGI, SGLang), which needs its URL; 'vllm' runs vLLM inside a CUDA worker. The
server's key is never stored: the project names the worker's environment variable that
holds it, so a form or an export can never leak it.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from app.errors import InvalidInput

BACKENDS = {
    "hf": "Hugging Face generate in the worker (any device)",
    "openai": "An OpenAI-compatible completions server (vLLM, TGI, SGLang)",
    "vllm": "vLLM in the worker's process (CUDA workers with rankloop[vllm])",
}
"""The `generation_backend` setting's choices."""
TEXT_SETTINGS = {
    "generation_base_url": 500,
    "generation_model": 200,
    "generation_api_key_env": 128,
}
"""Optional text settings (blank clears them) and their longest values."""
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def clean_text(key: str, value: Any) -> str | None:
    """One of TEXT_SETTINGS from form text: blank is None, else checked."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise _error(key, "must be text")
    text = value.strip()
    if not text:
        return None
    if len(text) > TEXT_SETTINGS[key]:
        raise _error(key, f"must be at most {TEXT_SETTINGS[key]} characters")
    if key == "generation_base_url":
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise _error(key, "must be an http(s) URL, e.g. http://vllm:8000/v1")
        if parts.username or parts.password:
            raise _error(key, "must not hold credentials: name the key's variable instead")
    if key == "generation_api_key_env" and not _ENV_NAME.fullmatch(text):
        raise _error(
            key,
            "must be the NAME of an environment variable on the workers (letters, digits, "
            "underscores), e.g. VLLM_API_KEY, never the key itself",
        )
    return text


def check_backend(backend: str | None, base_url: str | None) -> None:
    """'openai' cannot run without a server to call."""
    if backend == "openai" and not base_url:
        raise _error(
            "generation_base_url",
            "is needed for the 'openai' backend: the server's root, e.g. http://vllm:8000/v1",
        )


def _error(key: str, message: str) -> InvalidInput:
    label = {
        "generation_base_url": "Generation server URL",
        "generation_model": "Generation model",
        "generation_api_key_env": "Generation key variable",
    }[key]
    return InvalidInput(f"{label} {message}", details={"field": key})
