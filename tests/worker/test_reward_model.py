"""Reward model on synthetic rankings whose rule is known: more "wonderful" is better."""

from __future__ import annotations

import dataclasses
import math
import statistics
from pathlib import Path

import pytest
import torch
from transformers import PreTrainedTokenizerBase

from bench.pairwise_reward_model import as_pairs, train_pairwise
from worker.training.models import ensure_pad_token, load_causal_lm, load_tokenizer
from worker.training.outcomes import TrainingCancelled
from worker.training.reward_model import (
    META_FILE,
    RankingExample,
    RewardModel,
    RewardModelConfig,
    RewardModelResult,
    _collate,
    _ranking_batch,
    _samples,
    encode_pair,
    encode_rankings,
    evaluate,
    load_reward_model,
    normalise,
    score,
    split_by_prompt,
    train_reward_model,
)
from worker.training.tiny_model import synthetic_rankings


def rankings(
    n_prompts: int, *, k: int = 4, seed: int = 0, noise: float = 0.1
) -> list[RankingExample]:
    return [
        RankingExample(p, r, g)
        for p, r, g in synthetic_rankings(n_prompts, k=k, seed=seed, noise=noise)
    ]


CONFIG = RewardModelConfig(lr=3e-3, epochs=2, batch_size=4, heldout_fraction=0.25, max_length=96)


@pytest.fixture(scope="module")
def examples() -> list[RankingExample]:
    return rankings(80)


@pytest.fixture(scope="module")
def trained(
    tiny_model_dir: Path, examples: list[RankingExample], tmp_path_factory: pytest.TempPathFactory
) -> RewardModelResult:
    out_dir = tmp_path_factory.mktemp("reward_model")
    return train_reward_model(str(tiny_model_dir), examples, CONFIG, out_dir=out_dir)


@pytest.fixture
def fresh(tiny_model_dir: Path) -> tuple[RewardModel, PreTrainedTokenizerBase]:
    """An untrained reward model (random head) for mechanics that need no training."""
    torch.manual_seed(0)
    tokenizer = load_tokenizer(str(tiny_model_dir))
    base = load_causal_lm(str(tiny_model_dir), device="cpu")
    ensure_pad_token(tokenizer, base)
    rm = RewardModel.create(base, RewardModelConfig(), base_model=str(tiny_model_dir))
    torch.nn.init.normal_(rm.head.weight, std=0.1)  # a new head scores all alike: randomise it
    return rm, tokenizer


# Training ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_kway_training_learns_the_marker_rule_on_heldout_prompts(
    trained: RewardModelResult,
) -> None:
    assert trained.heldout_accuracy is not None
    assert trained.heldout_accuracy >= 0.70
    assert [e["epoch"] for e in trained.epochs] == [1, 2]
    expected = {"loss", "heldout_accuracy", "heldout_margin", "reward_mean", "reward_std"}
    assert all(expected <= set(epoch) for epoch in trained.epochs)
    assert trained.epochs[-1]["heldout_margin"] > 0


@pytest.mark.slow
def test_trained_model_scores_more_markers_higher(trained: RewardModelResult) -> None:
    prompt = "Write a few words about the sea (note 999)."
    plain = "the quiet river and the green field in the morning light."
    marked = "the wonderful river and the wonderful field in the wonderful light."

    low, high = score(trained.model, trained.tokenizer, [prompt, prompt], [plain, marked])

    assert high > low


@pytest.mark.slow
def test_kway_scores_each_sample_once_per_epoch(
    trained: RewardModelResult, examples: list[RankingExample]
) -> None:
    train, _ = split_by_prompt(examples, heldout_fraction=CONFIG.heldout_fraction, seed=CONFIG.seed)
    samples = sum(len(e.responses) for e in train if e.n_pairs > 0)

    assert trained.train_forward_passes == CONFIG.epochs * samples
    assert trained.n_train + trained.n_heldout == len(examples)


@pytest.mark.slow
def test_rewards_are_normalised_on_the_reference_samples(
    trained: RewardModelResult, examples: list[RankingExample]
) -> None:
    prompts = [e.prompt for e in examples for _ in e.responses]
    responses = [r for e in examples for r in e.responses]

    rewards = score(trained.model, trained.tokenizer, prompts, responses, max_length=96)

    assert statistics.fmean(rewards) == pytest.approx(0.0, abs=1e-3)
    assert statistics.stdev(rewards) == pytest.approx(1.0, abs=1e-3)


def test_rewards_are_normalised_on_the_reference_samples_when_given(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """The round's behaviour: the reference policy's samples, not the annotated ones, set the
    scale (the CLI and the round both pass them through `train_project_reward_model`)."""
    examples = rankings(12)
    prompts = ["Say something about the sea.", "And about rivers."] * 3
    responses = ["wonderful waves", "salt", "a wonderful wonderful river", "mud", "rain", "x"]

    result = train_reward_model(
        str(tiny_model_dir),
        examples,
        RewardModelConfig(max_length=96),
        out_dir=tmp_path,
        reference=(prompts, responses),
    )

    rewards = score(result.model, result.tokenizer, prompts, responses, max_length=96)
    assert statistics.fmean(rewards) == pytest.approx(0.0, abs=1e-4)
    assert statistics.stdev(rewards) == pytest.approx(1.0, abs=1e-4)
    annotated = score(result.model, result.tokenizer, *_samples(examples), max_length=96)
    assert statistics.fmean(annotated) != pytest.approx(0.0, abs=1e-3)
    reloaded = load_reward_model(result.out_dir, device="cpu")
    assert (reloaded.reward_mean, reloaded.reward_std) == (result.reward_mean, result.reward_std)


@pytest.mark.slow
def test_saved_reward_model_reloads_with_the_same_scores(
    trained: RewardModelResult, examples: list[RankingExample]
) -> None:
    prompts = [e.prompt for e in examples[:5] for _ in e.responses]
    responses = [r for e in examples[:5] for r in e.responses]
    before = score(trained.model, trained.tokenizer, prompts, responses, batch_size=7)

    reloaded = load_reward_model(trained.out_dir, device="cpu")
    tokenizer = load_tokenizer(str(trained.out_dir))
    after = score(reloaded, tokenizer, prompts, responses, batch_size=7)

    assert after == pytest.approx(before, abs=1e-5)
    assert (reloaded.reward_mean, reloaded.reward_std) == (trained.reward_mean, trained.reward_std)
    assert (trained.out_dir / "head.safetensors").exists()
    assert (trained.out_dir / "adapter" / "reward" / "adapter_config.json").exists()


@pytest.mark.slow
def test_pairwise_scores_both_members_of_every_pair(tiny_model_dir: Path, tmp_path: Path) -> None:
    examples = rankings(12, k=4, seed=3)
    config = RewardModelConfig(epochs=1, heldout_fraction=0.25, max_length=96)
    train, _ = split_by_prompt(examples, heldout_fraction=0.25, seed=config.seed)

    pairwise = train_pairwise(str(tiny_model_dir), examples, config, out_dir=tmp_path / "pw")
    kway = train_reward_model(str(tiny_model_dir), examples, config, out_dir=tmp_path / "kw")

    assert pairwise.train_forward_passes == 2 * sum(e.n_pairs for e in train)
    assert kway.train_forward_passes == sum(len(e.responses) for e in train if e.n_pairs > 0)
    assert pairwise.train_forward_passes > kway.train_forward_passes


def test_should_stop_ends_training_after_the_current_step_and_saves_nothing(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    steps: list[int] = []
    answers = iter([False, True])  # polled before each step: stop after the first

    with pytest.raises(TrainingCancelled) as cancelled:
        train_reward_model(
            str(tiny_model_dir),
            rankings(12),
            RewardModelConfig(max_length=96),
            out_dir=tmp_path,
            progress=lambda step, total, metrics: steps.append(step),
            should_stop=lambda: next(answers),
        )

    assert steps == [1]
    assert cancelled.value.steps_done == 1
    assert not (tmp_path / META_FILE).exists()
    assert list(tmp_path.iterdir()) == []


def test_max_steps_ends_training_early_and_saves_the_model(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    steps: list[int] = []

    result = train_reward_model(
        str(tiny_model_dir),
        rankings(12),
        RewardModelConfig(max_length=96, epochs=2, max_steps=1),
        out_dir=tmp_path,
        progress=lambda step, total, metrics: steps.append(step),
    )

    assert steps == [1]
    assert result.stopped
    assert result.steps == 1
    assert (tmp_path / META_FILE).exists()


def test_target_accuracy_stops_at_the_first_evaluation_reaching_it(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    config = RewardModelConfig(
        max_length=96, epochs=3, eval_every=1, target_accuracy=0.6, heldout_fraction=0.3
    )

    result = train_reward_model(str(tiny_model_dir), rankings(20), config, out_dir=tmp_path)

    assert result.reached_target
    assert not result.stopped
    accuracies = [e["accuracy"] for e in result.evaluations]
    assert accuracies[-1] >= 0.6
    assert all(a < 0.6 for a in accuracies[:-1])
    assert result.steps == result.evaluations[-1]["step"] < 3 * 4  # 14 train rankings / 4


# Pairs, ties and the held-out split ---------------------------------------------------------


def test_tied_samples_form_only_cross_group_pairs(
    fresh: tuple[RewardModel, PreTrainedTokenizerBase],
) -> None:
    rm, tokenizer = fresh
    tied = RankingExample("p", ["a", "b", "c", "d"], [0, 0, 1, 2])  # a = b > c > d

    pairs = as_pairs([tied])
    metrics = evaluate(rm, tokenizer, [tied])

    assert tied.n_pairs == 5
    assert sorted((p.responses[0], p.responses[1]) for p in pairs) == [
        ("a", "c"),
        ("a", "d"),
        ("b", "c"),
        ("b", "d"),
        ("c", "d"),
    ]
    assert metrics["pairs"] == 5
    assert evaluate(rm, tokenizer, [RankingExample("p", ["a", "b"], [0, 0])])["pairs"] == 0


def test_heldout_split_never_shares_a_prompt() -> None:
    examples = rankings(10) + rankings(10)  # every prompt ranked twice

    train, heldout = split_by_prompt(examples, heldout_fraction=0.3, seed=1)

    assert {e.prompt for e in train}.isdisjoint({e.prompt for e in heldout})
    assert len({e.prompt for e in heldout}) == 3
    assert len(train) + len(heldout) == 20


def test_training_without_any_cross_group_pair_is_refused(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    ties = [RankingExample(f"p{i}", ["a", "b"], [0, 0]) for i in range(4)]

    with pytest.raises(ValueError, match="nothing to learn"):
        train_reward_model(str(tiny_model_dir), ties, RewardModelConfig(), out_dir=tmp_path)


# Scoring mechanics ----------------------------------------------------------------------------


def test_score_is_read_at_the_last_real_token_whatever_the_padding(
    fresh: tuple[RewardModel, PreTrainedTokenizerBase],
) -> None:
    rm, tokenizer = fresh
    short = encode_pair(tokenizer, "Hi", "ok", max_length=64)
    long = encode_pair(
        tokenizer, "Tell me a long story about the sea", "once upon a time", max_length=64
    )
    pad = tokenizer.pad_token_id
    width = len(long)

    def run(rows: list[list[int]], *, left: bool) -> torch.Tensor:
        ids = [[pad] * (width - len(r)) + r if left else r + [pad] * (width - len(r)) for r in rows]
        masks = [
            [0] * (width - len(r)) + [1] * len(r) if left else [1] * len(r) + [0] * (width - len(r))
            for r in rows
        ]
        with torch.no_grad():
            return rm(torch.tensor(ids), torch.tensor(masks))

    alone = rm(torch.tensor([short]), torch.ones(1, len(short), dtype=torch.long)).detach()

    assert run([short, long], left=False)[0] == pytest.approx(float(alone[0]), abs=1e-5)
    assert run([short, long], left=True)[0] == pytest.approx(float(alone[0]), abs=1e-5)


@pytest.mark.parametrize("pad_to_multiple_of", [1, 16])
def test_shared_prompt_forward_matches_full_sequences_in_scores_and_gradients(
    fresh: tuple[RewardModel, PreTrainedTokenizerBase], pad_to_multiple_of: int
) -> None:
    rm, tokenizer = fresh
    for name, p in rm.named_parameters():  # LoRA B starts at 0: give the adapter an effect
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    batch = encode_rankings(
        tokenizer,
        [
            RankingExample(
                "Tell me about the sea", ["it is wet", "waves and waves", "salt"], [0, 1, 2]
            ),
            RankingExample(  # longer prompt, K = 4, a tie: prompts are left-padded, K is ragged
                [{"role": "user", "content": "Hi there, how are you today?"}],
                ["fine", "not so good, thanks", "ok", "I am a bot"],
                [1, 0, 2, 2],
            ),
        ],
        max_length=96,
    )
    weights = torch.arange(7.0)

    def run(*, share_prompt: bool, multiple: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        rm.zero_grad()
        scores, groups, n_seq = _ranking_batch(
            rm,
            batch,
            tokenizer.pad_token_id,
            share_prompt=share_prompt,
            pad_to_multiple_of=multiple,
        )
        (scores[groups >= 0] * weights).sum().backward()
        assert n_seq == 7
        grads = [p.grad.flatten() for p in rm.parameters() if p.grad is not None]
        return scores.detach(), torch.cat(grads)

    full_scores, full_grads = run(share_prompt=False)  # no padding beyond the longest row
    for share_prompt in (True, False):  # padding to a multiple changes neither
        scores, grads = run(share_prompt=share_prompt, multiple=pad_to_multiple_of)
        assert torch.allclose(scores, full_scores, atol=1e-5)
        assert torch.allclose(grads, full_grads, atol=1e-4, rtol=1e-4)


def test_batches_are_padded_to_the_requested_multiple() -> None:
    ids, mask = _collate([[5, 6, 7], [8]], 0, torch.device("cpu"), multiple=8)
    assert ids.shape == mask.shape == (2, 8)
    assert mask.sum(-1).tolist() == [3, 1]
    assert _collate([[5] * 16], 0, torch.device("cpu"), multiple=8)[0].shape == (1, 16)


def test_encode_rankings_gives_the_ids_of_encode_pair(
    fresh: tuple[RewardModel, PreTrainedTokenizerBase],
) -> None:
    _, tokenizer = fresh
    example = RankingExample("Assistant ends here:", ["one", " two", ""], [0, 1, 2])

    (encoded,) = encode_rankings(tokenizer, [example], max_length=12)

    assert encoded.rows == [
        encode_pair(tokenizer, example.prompt, r, max_length=12) for r in example.responses
    ]
    assert encoded.groups == [0, 1, 2]


def test_score_returns_one_value_per_response_in_input_order(
    fresh: tuple[RewardModel, PreTrainedTokenizerBase],
) -> None:
    rm, tokenizer = fresh
    prompts = ["a", "a much longer prompt than the first one", "b"]
    responses = ["one", "two three four five six", "seven"]

    batched = score(rm, tokenizer, prompts, responses, batch_size=2)
    single = [score(rm, tokenizer, [p], [r])[0] for p, r in zip(prompts, responses, strict=True)]

    assert batched == pytest.approx(single, abs=1e-5)


def test_normalise_sets_mean_zero_and_unit_std(
    fresh: tuple[RewardModel, PreTrainedTokenizerBase],
) -> None:
    rm, tokenizer = fresh
    prompts = ["q"] * 6
    responses = ["a", "b c", "wonderful", "the sea", "rain", "a b c d"]

    normalise(rm, score(rm, tokenizer, prompts, responses, raw=True))
    rewards = score(rm, tokenizer, prompts, responses)

    assert statistics.fmean(rewards) == pytest.approx(0.0, abs=1e-4)
    assert statistics.stdev(rewards) == pytest.approx(1.0, abs=1e-4)


def test_long_inputs_keep_the_end_of_the_response(
    fresh: tuple[RewardModel, PreTrainedTokenizerBase],
) -> None:
    _, tokenizer = fresh
    full = encode_pair(tokenizer, "a " * 50, "the end", max_length=1000)

    cut = encode_pair(tokenizer, "a " * 50, "the end", max_length=10)

    # The prompt's start gives way, behind the "…" marker of every stage (worker.training.prompts)
    marker = tokenizer("…", add_special_tokens=False)["input_ids"]
    assert len(cut) == 10
    assert cut[: len(marker)] == marker
    assert cut[len(marker) :] == full[-(10 - len(marker)) :]


# Validation ------------------------------------------------------------------------------------


def test_ranking_example_rejects_mismatched_or_negative_groups() -> None:
    with pytest.raises(ValueError, match="same length"):
        RankingExample("p", ["a", "b"], [0])
    with pytest.raises(ValueError, match=">= 0"):
        RankingExample("p", ["a", "b"], [0, -1])
    with pytest.raises(ValueError, match="at least 2"):
        RankingExample("p", ["a"], [0])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("heldout_fraction", 1.0),
        ("batch_size", 0),
        ("lr", 0.0),
        ("target_accuracy", 1.5),
        ("pad_to_multiple_of", 0),
    ],
)
def test_config_rejects_invalid_values(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        RewardModelConfig(**{field: value})


# Early stopping and the accuracy interval ---------------------------------------------------


@pytest.mark.slow
def test_early_stopping_keeps_the_epoch_with_the_lowest_heldout_loss(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # A high learning rate on few rankings overfits within a few epochs.
    config = RewardModelConfig(
        lr=2e-2, epochs=8, patience=2, batch_size=4, heldout_fraction=0.3, max_length=96
    )

    result = train_reward_model(str(tiny_model_dir), rankings(24), config, out_dir=tmp_path)

    untrained = result.evaluations[0]
    assert untrained["epoch"] == 0.0
    assert untrained["loss"] == pytest.approx(math.log(2), abs=1e-6)  # a zero head: all alike
    losses = [untrained["loss"]] + [e["heldout_loss"] for e in result.epochs]
    best = min(range(len(losses)), key=losses.__getitem__)
    assert best > 0, "the tiny model learns the marker rule within a few epochs"
    assert result.best_epoch == best
    assert len(losses) - 1 <= best + config.patience  # stopped `patience` epochs after it
    assert result.heldout_accuracy == result.epochs[best - 1]["heldout_accuracy"]
    # The kept weights are the best epoch's: evaluating again gives that epoch's loss.
    _, heldout = split_by_prompt(rankings(24), heldout_fraction=0.3, seed=config.seed)
    again = evaluate(result.model, result.tokenizer, heldout, max_length=96)
    assert again["loss"] == pytest.approx(losses[best], abs=1e-4)
    low, high = result.heldout_accuracy_interval or (None, None)
    assert low is not None
    assert high is not None
    assert low <= result.heldout_accuracy <= high


@pytest.mark.slow
def test_a_learning_rate_whose_first_epoch_overshoots_is_tried_again_smaller(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    config = RewardModelConfig(
        lr=3.0, epochs=3, patience=1, batch_size=4, heldout_fraction=0.3, max_length=96
    )

    result = train_reward_model(str(tiny_model_dir), rankings(24), config, out_dir=tmp_path)

    trials = result.lr_trials
    assert trials[0]["lr"] == 3.0
    assert trials[0]["first_epoch_loss"] > trials[0]["untrained_loss"]  # it overshot
    assert [t["lr"] for t in trials] == pytest.approx(
        [3.0 / config.lr_backoff**i for i in range(len(trials))]
    )
    assert 2 <= len(trials) <= config.lr_retries + 1
    assert result.lr == pytest.approx(trials[-1]["lr"])
    assert result.epochs[0]["epoch"] == 1  # the kept run's curve starts again at epoch 1
    assert [e["epoch"] for e in result.evaluations].count(0.0) == 1


@pytest.mark.slow
def test_a_run_that_never_beats_the_untrained_model_keeps_a_model_that_ranks_nothing(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # Held-out rankings say the opposite of training ones: every epoch makes held-out worse.
    examples = rankings(24, noise=0.0)
    _, heldout = split_by_prompt(examples, heldout_fraction=0.3, seed=0)
    flipped = {id(e) for e in heldout}
    examples = [
        RankingExample(e.prompt, e.responses, [max(e.groups) - g for g in e.groups])
        if id(e) in flipped
        else e
        for e in examples
    ]
    config = RewardModelConfig(
        lr=3e-3, epochs=4, patience=2, batch_size=4, heldout_fraction=0.3, max_length=96
    )

    result = train_reward_model(str(tiny_model_dir), examples, config, out_dir=tmp_path)

    assert all(e["heldout_loss"] > math.log(2) for e in result.epochs)
    assert result.best_epoch == 0
    assert result.heldout_accuracy == pytest.approx(0.5)  # every pair a tie: half right
    scores = score(result.model, result.tokenizer, ["a", "b"], ["wonderful x", "plain y"])
    assert scores[0] == scores[1]


def test_accuracy_interval_resamples_rankings_and_brackets_the_accuracy() -> None:
    from worker.training.reward_model import accuracy_interval, ranking_accuracy_counts

    groups = torch.tensor([[0, 1, 2, 3]] * 6)  # (B, K): sample i is in group i
    right = torch.tensor([[3.0, 2.0, 1.0, 0.0]] * 6)  # every pair ordered as ranked
    wrong = right.flip(1)
    assert ranking_accuracy_counts(right, groups) == [(6.0, 6)] * 6
    assert accuracy_interval(ranking_accuracy_counts(right, groups)) == (1.0, 1.0)
    assert accuracy_interval(ranking_accuracy_counts(wrong, groups)) == (0.0, 0.0)
    # Half the rankings right, half wrong: the interval straddles 0.5 and is not a point.
    mixed = ranking_accuracy_counts(torch.cat([right[:3], wrong[:3]]), groups)
    low, high = accuracy_interval(mixed)
    assert low < 0.5 < high
    narrower = accuracy_interval(mixed, confidence=0.9)
    assert low <= narrower[0] <= narrower[1] <= high
    tied = ranking_accuracy_counts(torch.zeros((6, 4)), groups)
    assert tied == [(3.0, 6)] * 6  # a tied score is half right
    assert accuracy_interval(tied) == (0.5, 0.5)
    # Pooling two runs' rankings narrows the interval around the same accuracy.
    wide = accuracy_interval(mixed[:4] + [(4.0, 6)])
    pooled = accuracy_interval((mixed[:4] + [(4.0, 6)]) * 4)
    assert pooled[1] - pooled[0] < wide[1] - wide[0]


# Reliability weights ------------------------------------------------------------------------


def _raw_scores(result: RewardModelResult, examples: list[RankingExample]) -> torch.Tensor:
    return torch.tensor(score(result.model, result.tokenizer, *_samples(examples), raw=True))


@pytest.mark.slow
def test_a_weight_0_annotators_reversed_rankings_train_nothing(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # Every ranking again, reversed, as an adversarial annotator would give it.
    clean = rankings(16)
    reversed_ = [
        RankingExample(e.prompt, e.responses, [max(e.groups) - g for g in e.groups]) for e in clean
    ]
    weighted_out = [dataclasses.replace(e, weight=0.0) for e in reversed_]
    config = RewardModelConfig(
        lr=3e-3, epochs=2, patience=1, batch_size=4, heldout_fraction=0.3, max_length=96
    )

    alone = train_reward_model(str(tiny_model_dir), clean, config, out_dir=tmp_path / "a")
    with_zero = train_reward_model(
        str(tiny_model_dir), clean + weighted_out, config, out_dir=tmp_path / "b"
    )
    counted = train_reward_model(
        str(tiny_model_dir), clean + reversed_, config, out_dir=tmp_path / "c"
    )

    # Weight 0: the same training as without them (the held-out loss weighs them 0 too) ...
    assert with_zero.best_epoch == alone.best_epoch
    assert with_zero.train_forward_passes == alone.train_forward_passes
    torch.testing.assert_close(
        _raw_scores(with_zero, clean), _raw_scores(alone, clean), atol=1e-4, rtol=1e-4
    )
    assert with_zero.n_train_weight_zero == with_zero.n_train // 2
    # ... and held out, accuracy is measured against every label, the weighted one without them.
    assert with_zero.heldout_accuracy == pytest.approx(0.5)  # each pair and its reverse
    assert with_zero.heldout_weighted_accuracy == pytest.approx(alone.heldout_accuracy)
    assert alone.heldout_weighted_accuracy == pytest.approx(alone.heldout_accuracy)
    # Counted at weight 1 the reversed rankings cancel the lesson: the weights did the work.
    assert alone.heldout_accuracy is not None
    assert alone.heldout_accuracy >= 0.7
    spread = {
        name: float(_raw_scores(result, clean).std())
        for name, result in {"alone": alone, "counted": counted}.items()
    }
    assert spread["counted"] < 0.5 * spread["alone"]


def test_ranking_example_rejects_a_negative_or_non_finite_weight() -> None:
    for weight in (-0.1, math.nan, math.inf):
        with pytest.raises(ValueError, match="weight"):
            RankingExample("p", ["a", "b"], [0, 1], weight)


def test_weighted_accuracy_counts_each_rankings_pairs_by_its_weight() -> None:
    from worker.training.reward_model import weighted_accuracy

    counts = [(3.0, 3), (0.0, 1), (0.5, 1)]

    assert weighted_accuracy(counts, [1.0, 1.0, 1.0]) == pytest.approx(3.5 / 5)
    assert weighted_accuracy(counts, [1.0, 0.0, 2.0]) == pytest.approx((3 + 1) / (3 + 2))
    assert math.isnan(weighted_accuracy(counts, [0.0, 0.0, 0.0]))
