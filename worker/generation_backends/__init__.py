"""Who writes the texts of samples and the gate: 'hf' (default), 'openai', 'vllm'.

Rollouts stay on 'hf' whatever the project says: PPO, RLOO and GRPO sample the policy after
every update, and a served model cannot see in-training LoRA weights without a weight-sync
protocol (an in-process vLLM could reload the adapter per update: not done yet).
"""

from __future__ import annotations

from worker.generation_backends.base import (
    KINDS,
    BackendConfig,
    BackendUnavailable,
    GenerationBackend,
    VersionRef,
    generate_samples,
)

__all__ = [
    "KINDS",
    "BackendConfig",
    "BackendUnavailable",
    "GenerationBackend",
    "VersionRef",
    "backend_for",
    "generate_samples",
    "load_config",
]


def load_config(project_id: int) -> BackendConfig:
    """The project's generation settings, read in a short transaction of its own."""
    from app.db import session_scope
    from app.models import Project

    with session_scope(readonly=True) as session:
        project = session.get(Project, project_id)
        if project is None:
            return BackendConfig()
        return BackendConfig(
            kind=project.generation_backend,
            base_url=project.generation_base_url,
            model=project.generation_model,
            api_key_env=project.generation_api_key_env,
        )


def backend_for(config: BackendConfig, version: VersionRef) -> GenerationBackend:
    """The backend sampling `version` as the project's settings say."""
    if config.kind == "openai":
        from worker.generation_backends.openai import openai_backend

        return openai_backend(config, version)
    if config.kind == "vllm":
        from worker.generation_backends.vllm import VLLMBackend

        return VLLMBackend(version)
    if config.kind != "hf":
        raise BackendUnavailable(f"Unknown generation backend {config.kind!r}")
    from worker.generation_backends.hf import HFBackend
    from worker.policies import PolicySpec, load_policy_for_generation

    model, tokenizer = load_policy_for_generation(
        PolicySpec(
            version_id=version.id,
            base_model=version.base_model,
            adapter_uri=version.adapter_uri,
            trust_remote_code=version.trust_remote_code,
            merged_adapter_uris=version.merged_adapter_uris,
        )
    )
    return HFBackend(model, tokenizer)
