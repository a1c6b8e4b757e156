"""The policy trainers the round types name (`RoundTypeSpec.trainer`), one per type; the
worker imports this module (and torch with it) only when a policy stage runs.

Each gets a `PolicyJob` (the loaded base, the prompts, the round's typed config), builds its
algorithm's config from the round's validated settings (the one source of their defaults:
`app.rounds.types`), gathers its data and trains; it returns the summary recorded on the round,
with the saved adapter's directory under "adapter_dir".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from app.db import session_scope
from app.models import TrainingRound
from app.rounds import lineage, snapshots
from app.rounds.types.critic_free import CriticFreeSettings
from app.rounds.types.dpo import DPOConfig as DPORound
from app.rounds.types.reward_grpo import RewardGRPOConfig
from app.rounds.types.reward_ppo import RewardPPOConfig
from app.rounds.types.reward_rloo import RewardRLOOConfig
from app.rounds.types.sft import SFTConfig as SFTRound
from worker.jobs.rounds import PolicyJob, load_reward_model_dir, round_reward_model, scorer, sized
from worker.training.critic_free import CriticFreeConfig
from worker.training.dpo import DPOConfig, PreferencePair, train_dpo
from worker.training.grpo import GRPOConfig, train_grpo
from worker.training.judge_reward import JudgeReward, flat
from worker.training.loop import ADAPTER_NAME
from worker.training.outcomes import TrainingCancelled
from worker.training.ppo import PPOConfig, ScoreFn, SharedBaseReward, train_ppo
from worker.training.rloo import RLOOConfig, train_rloo
from worker.training.sft import Demonstration, SFTConfig, train_sft

MIN_EXAMPLES = 4
"""Demonstrations or preference pairs a policy trainer needs (`app.rounds.preconditions`)."""


# PPO against the round's reward model ------------------------------------------------------


def ppo_config(round_config: RewardPPOConfig, *, stop_strings: list[str] | None) -> PPOConfig:
    """The PPO trainer's config from the round's (sized, validated) settings."""
    ppo = round_config.ppo
    return PPOConfig(
        steps=sized(ppo.steps),
        batch_size=ppo.batch_size,
        mini_batch_size=ppo.mini_batch_size,
        ppo_epochs=ppo.ppo_epochs,
        lr=ppo.learning_rate,
        temperature=sized(ppo.temperature),
        max_new_tokens=sized(ppo.max_new_tokens),
        kl_coef=ppo.kl_coef,
        adaptive_kl=ppo.adaptive_kl,
        stop_strings=stop_strings,
        seed=sized(round_config.seed),
    )


def train_ppo_policy(job: PolicyJob) -> dict[str, Any]:
    assert isinstance(job.config, RewardPPOConfig)
    reward = _round_reward(job, "PPO", group_size=1)
    config = ppo_config(job.config, stop_strings=_stop_strings(job.start.project_id))
    result = _fit_adapter(job, train_ppo, job.prompts, reward.score, config)
    return {
        "ppo": result.final,
        "ppo_config": asdict(config),
        **reward.summary(),
        "adapter_dir": str(result.adapter_dir),
    }


@dataclass
class RoundReward:
    """What a policy trainer scores with: the round's reward model, or its judge
    (`reward_judge_id`, worker/training/judge_reward.py), and what the summary says of it."""

    score: ScoreFn | SharedBaseReward
    on_policy_base: bool = False
    judge: JudgeReward | None = None
    judge_lineage: dict[str, Any] | None = None

    def summary(self) -> dict[str, Any]:
        if self.judge is None:
            return {"reward_model_on_policy_base": self.on_policy_base}
        return {
            "reward_model_on_policy_base": False,
            "reward_judge": self.judge_lineage,
            "judge_groups_scored": self.judge.groups,
            "judge_malformed_groups": self.judge.malformed,
        }


def _round_reward(job: PolicyJob, algorithm: str, *, group_size: int) -> RoundReward:
    """The round's judge (rollouts scored in groups of `group_size`: a prompt's answers) or
    else its reward model as the policy trainer's reward."""
    judge_id = getattr(job.config, "reward_judge_id", None)
    if judge_id is not None:
        from worker.jobs.judge_reward import round_judge

        judge, judge_lineage = round_judge(judge_id, job.start.project_id)
        return RoundReward(flat(judge, group_size), judge=judge, judge_lineage=judge_lineage)
    rm_dir, on_policy_base = _reward_source(job, algorithm)
    if on_policy_base:
        return RoundReward(SharedBaseReward(rm_dir), on_policy_base=True)
    return RoundReward(scorer(*load_reward_model_dir(rm_dir)))


ONE_PROCESS = {
    "train_procs": 1,
    "train_procs_reason": "scored by a judge: the policy trains in one process (the judge is "
    "loaded in the worker, not on torchrun's ranks), whatever RANKLOOP_TRAIN_PROCS says",
}
"""What a judge-scored round's summary says under RANKLOOP_TRAIN_PROCS > 1, so an admin sees
why the stage ran on one process."""


def _judged_in_process(job: PolicyJob) -> PolicyJob | None:
    """A round whose reward is a judge trains in this one process (the judge is loaded here,
    not on torchrun's ranks): the job with its base loaded, or None for a reward model."""
    if getattr(job.config, "reward_judge_id", None) is None:
        return None
    from app.config import get_settings

    if get_settings().train_fsdp:  # FSDP means the base does not fit one process's device
        raise ValueError(
            "a judge-scored round trains its policy in one process, which RANKLOOP_TRAIN_FSDP "
            "rules out (the base is sharded because it does not fit one device): score this "
            "round with a reward model, or unset RANKLOOP_TRAIN_FSDP"
        )
    from worker.policies import load_base

    model, tokenizer = load_base(
        job.source.base_model,
        job.source.reference_merged,
        trust_remote_code=job.source.trust_remote_code,
    )
    return replace(job, model=model, tokenizer=tokenizer)


def _reward_source(job: PolicyJob, algorithm: str) -> tuple[Path, bool]:
    """The round's reward model directory, and whether it shares the policy's base (as
    `_round_reward`, for the ranks to load themselves)."""
    found = round_reward_model(job.start.round_id)
    if found is None:
        raise ValueError(f"{algorithm} needs a reward model; this round trained none")
    rm_base, rm_dir = found
    # A reward model trained on the very weights the policy starts from (same base, nothing
    # merged) is loaded onto them as a second adapter: one base copy in memory instead of two.
    return rm_dir, rm_base == job.source.base_model and not job.source.reference_merged


def _distributed_policy(job: PolicyJob, key: str, config: Any) -> dict[str, Any]:
    """Train `key` (ppo, rloo, grpo) on RANKLOOP_TRAIN_PROCS processes under torchrun
    (worker/distributed/policy_entries.py); the same summary as the in-process trainer. A
    cancel stops every process (TrainingCancelled, as in one process); a failing rank fails
    the stage (DistributedStageFailed) and nothing is saved."""
    from app.config import get_settings
    from worker.distributed.entry import write_payload
    from worker.distributed.policy_entries import policy_payload

    rm_dir, on_policy_base = _reward_source(job, key.upper())
    payload_dir = job.out_dir.parent / "payload"
    write_payload(
        payload_dir,
        policy_payload(
            key,
            base_model=job.source.base_model,
            merged_adapter_uris=tuple(job.source.reference_merged),
            trust_remote_code=job.source.trust_remote_code,
            prompts=job.prompts,
            config=config,
            reward_dir=rm_dir,
            reward_on_policy_base=on_policy_base,
            init_adapter_dir=job.init_dir,
            out_dir=job.out_dir,
            fsdp=get_settings().train_fsdp,
        ),
    )
    result = _run_ranks(job, key, payload_dir)
    return {
        key: result["final"],
        f"{key}_config": asdict(config),
        "reward_model_on_policy_base": on_policy_base,
        "train_procs": get_settings().train_procs,
        "adapter_dir": str(job.out_dir / ADAPTER_NAME),
    }


def _run_ranks(job: PolicyJob, key: str, payload_dir: Path) -> dict[str, Any]:
    """Run `key`'s entry on the payload under torchrun, relaying each step to the job: its
    result. A cancel stops every process and reads as the in-process trainer's
    TrainingCancelled. A failed run's payload and logs are kept beside the round's adapter
    in the artifact store (rounds/<n>/<key>-failed-run); the policy stage's workdir is not."""
    from app.config import get_settings
    from worker.distributed.launch import run_distributed
    from worker.failures import RoundCancelled

    steps = [0]

    def relay(line: dict[str, Any]) -> None:
        if "step" in line:
            steps[0] = int(line["step"])
            job.progress(steps[0], int(line["total"]), dict(line.get("metrics") or {}))

    try:
        return run_distributed(
            key,
            payload_dir,
            procs=get_settings().train_procs,
            on_progress=relay,
            should_cancel=job.should_stop,
            keep_failed_as=f"projects/{job.start.project_id}/rounds/{job.start.number}/"
            f"{key}-failed-run",
        )
    except RoundCancelled:
        raise TrainingCancelled(
            f"{key.upper()} cancelled after {steps[0]} step(s)", steps_done=steps[0]
        ) from None


def train_ppo_policy_distributed(job: PolicyJob) -> dict[str, Any]:
    assert isinstance(job.config, RewardPPOConfig)
    if (loaded := _judged_in_process(job)) is not None:
        return {**train_ppo_policy(loaded), **ONE_PROCESS}
    config = ppo_config(job.config, stop_strings=_stop_strings(job.start.project_id))
    return _distributed_policy(job, "ppo", config)


def _stop_strings(project_id: int) -> list[str] | None:
    """The project's stop strings: rollouts end where annotators' samples do."""
    from app.models import Project

    with session_scope(readonly=True) as session:
        project = session.get(Project, project_id)
        assert project is not None
        return project.stop_strings


# RLOO and GRPO against the round's reward model (no value head) ----------------------------


def _critic_free_fields(settings: CriticFreeSettings, seed: int | None) -> dict[str, Any]:
    """The fields RLOO's and GRPO's configs share, from the round's sized settings."""
    return {
        "steps": sized(settings.steps),
        "batch_size": settings.batch_size,
        "group_size": sized(settings.group_size),
        "mini_batch_size": settings.mini_batch_size,
        "epochs": settings.epochs,
        "lr": settings.learning_rate,
        "clip_range": settings.clip_range,
        "kl_coef": settings.kl_coef,
        "kl_in": settings.kl_in,
        "temperature": sized(settings.temperature),
        "max_new_tokens": sized(settings.max_new_tokens),
        "seed": sized(seed),
    }


def rloo_config(round_config: RewardRLOOConfig, *, stop_strings: list[str] | None) -> RLOOConfig:
    return RLOOConfig(
        **_critic_free_fields(round_config.rloo, round_config.seed), stop_strings=stop_strings
    )


def grpo_config(round_config: RewardGRPOConfig, *, stop_strings: list[str] | None) -> GRPOConfig:
    return GRPOConfig(
        **_critic_free_fields(round_config.grpo, round_config.seed),
        dr_grpo=round_config.grpo.dr_grpo,
        stop_strings=stop_strings,
    )


def train_rloo_policy(job: PolicyJob) -> dict[str, Any]:
    assert isinstance(job.config, RewardRLOOConfig)
    config = rloo_config(job.config, stop_strings=_stop_strings(job.start.project_id))
    return _critic_free(job, "rloo", train_rloo, config)


def train_grpo_policy(job: PolicyJob) -> dict[str, Any]:
    assert isinstance(job.config, RewardGRPOConfig)
    config = grpo_config(job.config, stop_strings=_stop_strings(job.start.project_id))
    return _critic_free(job, "grpo", train_grpo, config)


def train_rloo_policy_distributed(job: PolicyJob) -> dict[str, Any]:
    assert isinstance(job.config, RewardRLOOConfig)
    if (loaded := _judged_in_process(job)) is not None:
        return {**train_rloo_policy(loaded), **ONE_PROCESS}
    config = rloo_config(job.config, stop_strings=_stop_strings(job.start.project_id))
    return _distributed_policy(job, "rloo", config)


def train_grpo_policy_distributed(job: PolicyJob) -> dict[str, Any]:
    assert isinstance(job.config, RewardGRPOConfig)
    if (loaded := _judged_in_process(job)) is not None:
        return {**train_grpo_policy(loaded), **ONE_PROCESS}
    config = grpo_config(job.config, stop_strings=_stop_strings(job.start.project_id))
    return _distributed_policy(job, "grpo", config)


def _critic_free(
    job: PolicyJob, key: str, train: Callable[..., Any], config: CriticFreeConfig
) -> dict[str, Any]:
    reward = _round_reward(job, key.upper(), group_size=config.group_size)
    result = _fit_adapter(job, train, job.prompts, reward.score, config)
    return {
        key: result.final,
        f"{key}_config": asdict(config),
        **reward.summary(),
        "adapter_dir": str(result.adapter_dir),
    }


# SFT on demonstrations ---------------------------------------------------------------------


def sft_config(round_config: SFTRound) -> SFTConfig:
    return SFTConfig(
        epochs=round_config.epochs,
        lr=round_config.learning_rate,
        batch_size=round_config.batch_size,
        heldout_fraction=round_config.heldout_fraction,
        seed=sized(round_config.seed),
    )


def train_sft_policy(job: PolicyJob) -> dict[str, Any]:
    assert isinstance(job.config, SFTRound)
    result = _fit_adapter(job, train_sft, _demonstrations(job), sft_config(job.config))
    return {"sft": result.final, "adapter_dir": str(result.adapter_dir)}


def train_sft_policy_distributed(job: PolicyJob) -> dict[str, Any]:
    assert isinstance(job.config, SFTRound)
    final = _distributed_adapter(job, "sft", _demonstrations(job), sft_config(job.config))
    return {"sft": final, "adapter_dir": str(job.out_dir)}


def _demonstrations(job: PolicyJob) -> list[Demonstration]:
    with session_scope(readonly=True) as session:
        demos = [
            Demonstration(prompt, response)
            for prompt, response in lineage.demonstrations(session, project_id=job.start.project_id)
        ]
    if len(demos) < MIN_EXAMPLES:
        raise ValueError(
            f"SFT needs demonstrations: the project has {len(demos)} (at least {MIN_EXAMPLES} "
            "needed); import some on the project page"
        )
    return demos


# DPO on a comparison snapshot's pairs ------------------------------------------------------


def dpo_config(round_config: DPORound) -> DPOConfig:
    return DPOConfig(
        beta=round_config.beta,
        loss_type=round_config.loss,
        epochs=round_config.epochs,
        seed=sized(round_config.seed),
        lr=round_config.learning_rate,
        batch_size=round_config.batch_size,
        heldout_fraction=round_config.heldout_fraction,
    )


def train_dpo_policy(job: PolicyJob) -> dict[str, Any]:
    assert isinstance(job.config, DPORound)
    pairs, n_rows = _dpo_pairs(job, job.config)
    result = _fit_adapter(job, train_dpo, pairs, dpo_config(job.config))
    return {
        "dpo": result.final,
        "n_pairs": len(pairs),
        "identical_pairs_skipped": n_rows - len(pairs),
        "adapter_dir": str(result.adapter_dir),
    }


def train_dpo_policy_distributed(job: PolicyJob) -> dict[str, Any]:
    assert isinstance(job.config, DPORound)
    pairs, n_rows = _dpo_pairs(job, job.config)
    return {
        "dpo": _distributed_adapter(job, "dpo", pairs, dpo_config(job.config)),
        "n_pairs": len(pairs),
        "identical_pairs_skipped": n_rows - len(pairs),
        "adapter_dir": str(job.out_dir),
    }


def _dpo_pairs(job: PolicyJob, config: DPORound) -> tuple[list[PreferencePair], int]:
    """The pairs of a new comparison snapshot recorded on the round, and how many rows it
    had (identical texts ranked apart are skipped)."""
    start = job.start
    with session_scope() as session:
        snapshot = snapshots.create_snapshot(
            session,
            project_id=start.project_id,
            name=f"round {start.number} dpo",
            judge_weight=config.judge_weight,
            judge_only=config.judge_only,
        )
        training_round = session.get(TrainingRound, start.round_id)
        assert training_round is not None
        training_round.snapshot_id = snapshot.id
        rows = snapshots.weighted_preference_pairs(session, snapshot.id)
        # Two samples with the same text (a duplicate generation) ranked apart state no
        # preference a policy could learn: DPO skips them; the snapshot keeps them on record.
        # Each pair weighs its annotator's reliability weight, frozen in the snapshot.
        pairs = [
            PreferencePair(prompt, chosen, rejected, weight)
            for prompt, chosen, rejected, weight in rows
            if chosen != rejected
        ]
    if len(pairs) < MIN_EXAMPLES:
        raise ValueError(
            f"DPO needs preference pairs: the snapshot has {len(pairs)} (at least "
            f"{MIN_EXAMPLES} needed)"
        )
    return pairs, len(rows)


def _distributed_adapter(job: PolicyJob, key: str, examples: list[Any], config: Any) -> Any:
    """Train `key` (sft, dpo) on RANKLOOP_TRAIN_PROCS processes under torchrun
    (worker/distributed/training_entries.py), saving into job.out_dir: the final figures. A
    cancel stops every process (TrainingCancelled); a failing rank fails the stage."""
    from app.config import get_settings
    from worker.distributed.entry import write_payload
    from worker.distributed.training_entries import adapter_payload

    payload_dir = job.out_dir.parent / "payload"
    write_payload(
        payload_dir,
        adapter_payload(
            key,
            base_model=job.source.base_model,
            merged_adapter_uris=tuple(job.source.reference_merged),
            trust_remote_code=job.source.trust_remote_code,
            examples=examples,
            config=config,
            init_adapter_dir=job.init_dir,
            out_dir=job.out_dir,
            fsdp=get_settings().train_fsdp,
        ),
    )
    result = _run_ranks(job, key, payload_dir)
    return result["final"]


def _fit_adapter(job: PolicyJob, train: Callable[..., Any], *data: Any) -> Any:
    """`train(model, tokenizer, *data, ...)` (PPO's, SFT's, DPO's: the examples, the config) on
    the job's base, from its starting adapter, saving where the policy stage collects it."""
    return train(
        job.model,
        job.tokenizer,
        *data,
        out_dir=job.out_dir,
        init_adapter_dir=job.init_dir,
        progress=job.progress,
        should_stop=job.should_stop,
    )


DISTRIBUTED_TRAINERS: dict[str, Callable[[PolicyJob], dict[str, Any]]] = {
    "train_ppo_policy": train_ppo_policy_distributed,
    "train_rloo_policy": train_rloo_policy_distributed,
    "train_grpo_policy": train_grpo_policy_distributed,
    "train_sft_policy": train_sft_policy_distributed,
    "train_dpo_policy": train_dpo_policy_distributed,
}
"""The multi-process forms the policy stage runs instead when RANKLOOP_TRAIN_PROCS > 1
(`rounds.distributed_trainer`), by the in-process trainer's name."""
