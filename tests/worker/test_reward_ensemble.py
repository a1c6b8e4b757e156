"""The bootstrap ensemble of reward heads: fitted on a trained tiny reward model's features it
orders samples as the trained head does, its heads differ, and it is stored and read back."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from worker.training.reward_ensemble import (
    ENSEMBLE_FILE,
    EnsembleConfig,
    RewardEnsemble,
    ensemble_scores,
    features,
    fit_heads,
    fit_reward_ensemble,
    load_ensemble,
    ranking_pairs,
    save_ensemble,
)
from worker.training.reward_model import (
    RankingExample,
    RewardModelConfig,
    RewardModelResult,
    score,
    train_reward_model,
)
from worker.training.tiny_model import synthetic_rankings

CONFIG = RewardModelConfig(lr=3e-3, epochs=2, batch_size=4, heldout_fraction=0.25, max_length=96)


@pytest.fixture(scope="module")
def examples() -> list[RankingExample]:
    return [RankingExample(p, r, g) for p, r, g in synthetic_rankings(40, k=4, seed=3, noise=0.1)]


@pytest.fixture(scope="module")
def trained(
    tiny_model_dir: Path, examples: list[RankingExample], tmp_path_factory: pytest.TempPathFactory
) -> RewardModelResult:
    out_dir = tmp_path_factory.mktemp("reward_model")
    return train_reward_model(str(tiny_model_dir), examples, CONFIG, out_dir=out_dir)


def _pairs_agreeing(a: torch.Tensor, b: torch.Tensor) -> float:
    """Share of sample pairs that two score vectors (N,) order the same way."""
    da = a.unsqueeze(0) - a.unsqueeze(1)  # (N, N)
    db = b.unsqueeze(0) - b.unsqueeze(1)  # (N, N)
    upper = torch.triu(torch.ones_like(da, dtype=torch.bool), diagonal=1)
    return float(((da * db) > 0)[upper].float().mean())


def test_the_features_are_what_the_trained_head_reads(trained: RewardModelResult) -> None:
    prompts = ["Say something.", "Say something."]
    responses = ["a wonderful answer", "a plain answer"]
    feats = features(trained.model, trained.tokenizer, prompts, responses, max_length=96)
    head = trained.model.head
    from_features = (feats @ head.weight.detach().cpu().T + head.bias.detach().cpu()).squeeze(-1)
    raw = score(trained.model, trained.tokenizer, prompts, responses, max_length=96, raw=True)
    assert torch.allclose(from_features, torch.tensor(raw), atol=1e-4)


@pytest.mark.slow
def test_the_ensembles_mean_orders_samples_as_the_trained_head(
    trained: RewardModelResult, examples: list[RankingExample]
) -> None:
    ensemble = fit_reward_ensemble(
        trained.model, trained.tokenizer, examples, EnsembleConfig(n_heads=5, max_length=96)
    )
    prompts = [e.prompt for e in examples for _ in e.responses]
    responses = [r for e in examples for r in e.responses]
    heads = ensemble_scores(
        trained.model, trained.tokenizer, ensemble, prompts, responses, max_length=96
    )  # (E, N)
    trained_scores = torch.tensor(
        score(trained.model, trained.tokenizer, prompts, responses, max_length=96)
    )
    mean = torch.tensor(heads.mean(axis=0))
    assert _pairs_agreeing(mean, trained_scores) > 0.75
    assert heads.shape == (5, len(responses))
    assert float(heads.std(axis=0).mean()) > 0  # resamples differ: the spread is the signal


def test_saved_with_a_run_and_read_back(
    trained: RewardModelResult, examples: list[RankingExample], tmp_path: Path
) -> None:
    ensemble = save_ensemble(trained, examples, tmp_path, config=CONFIG)
    assert ensemble is not None
    assert (tmp_path / ENSEMBLE_FILE).exists()
    loaded = load_ensemble(tmp_path)
    assert loaded is not None
    assert torch.equal(loaded.weight, ensemble.weight)
    assert load_ensemble(tmp_path / "elsewhere") is None


def test_bootstrap_heads_recover_a_known_direction() -> None:
    # Synthetic features: the better sample is the one with more of feature 0.
    generator = torch.Generator().manual_seed(0)
    feats = torch.randn((60 * 3, 4), generator=generator)  # 60 rankings of 3 samples
    groups = []
    for r in range(60):
        values = feats[r * 3 : r * 3 + 3, 0]
        order = torch.argsort(values, descending=True)
        g = [0, 0, 0]
        for place, i in enumerate(order.tolist()):
            g[i] = place
        groups.append(g)
    ensemble = fit_heads(feats, groups, EnsembleConfig(n_heads=4, seed=1))
    assert ensemble.weight.shape == (4, 4)
    assert bool((ensemble.weight[:, 0] > ensemble.weight[:, 1:].abs().max(dim=1).values).all())
    again = fit_heads(feats, groups, EnsembleConfig(n_heads=4, seed=1))
    assert torch.equal(again.weight, ensemble.weight)  # the same seed, the same heads
    other = fit_heads(feats, groups, EnsembleConfig(n_heads=4, seed=2))
    assert not torch.equal(other.weight, ensemble.weight)


def test_rankings_of_weight_zero_do_not_move_the_heads() -> None:
    """The heads weigh rankings as the reward model's loss does: reversed copies of every
    ranking at weight 0 leave each head as the clean rankings alone make it."""
    generator = torch.Generator().manual_seed(3)
    clean_feats = torch.randn((40 * 3, 4), generator=generator)  # 40 rankings of 3 samples
    groups = []
    for r in range(40):
        order = torch.argsort(clean_feats[r * 3 : r * 3 + 3, 0], descending=True).tolist()
        groups.append([order.index(i) for i in range(3)])
    reversed_groups = [[2 - place for place in g] for g in groups]
    feats = torch.cat([clean_feats, clean_feats])
    config = EnsembleConfig(n_heads=3, seed=4)

    weighted = fit_heads(feats, groups + reversed_groups, config, [1.0] * 40 + [0.0] * 40)
    unweighted = fit_heads(feats, groups + reversed_groups, config)

    assert bool((weighted.weight[:, 0] > 0.5).all())  # the clean direction, every head
    assert bool((unweighted.weight[:, 0].abs() < weighted.weight[:, 0] / 2).all())


def test_pairs_come_from_different_groups_only() -> None:
    winners, losers, owners = ranking_pairs([[0, 1, 1], [1, 0]])
    assert list(zip(winners.tolist(), losers.tolist(), owners.tolist(), strict=True)) == [
        (0, 1, 0),
        (0, 2, 0),
        (4, 3, 1),
    ]


def test_an_ensemble_needs_two_heads() -> None:
    with pytest.raises(ValueError, match="n_heads"):
        EnsembleConfig(n_heads=1)
    assert RewardEnsemble(torch.zeros((2, 3)), torch.zeros(3), torch.ones(3)).n_heads == 2
