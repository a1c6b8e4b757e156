"""Annotator reliability from rankings: a Crowd-BT fit (docs/training-notes.md §Annotator
reliability). Pure numpy, no database.

Model (Chen et al., WSDM 2013): annotator u follows the consensus order of a pair with
probability η_u and reverses it with 1 − η_u, so with the Bradley-Terry scale of
app.ratings.bradley_terry (Δ = ln10 · (β_a − β_b))

    P(u says a ≻ b) = η_u σ(Δ) + (1 − η_u) σ(−Δ).

Fitted by EM over every comparison that rates the samples, the annotator's own included (a
joint model): the E-step gives each comparison the probability r that it follows the true
order; the M-step sets η_u to the posterior mean of a Beta prior updated with the annotator's
Σ r, and β to a Bradley-Terry fit with soft outcomes (a beats b with weight r, b beats a with
1 − r). Ties carry half a win each way into β, as in every fit here; their likelihood does not
depend on η, so they never measure an annotator. Gold answers (a pair whose order is known)
feed η directly, as one agreement or one disagreement, and never touch β.

η is measured only on comparisons of shared tasks (ranked by at least one other annotator whose
comparisons rate the samples) and on gold: a task only one person ranked fits their order
whatever η is, so it says nothing about them (counted, it would make everyone look consistent).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.special
import scipy.stats

from app.models.annotator import FLAG_CHANCE, FLAG_REVERSED
from app.ratings.bradley_terry import LN10, Aggregated, aggregate


@dataclass(frozen=True)
class ReliabilityConfig:
    """Settings of the fit; the defaults are the product's."""

    prior_agree: float = 2.0
    """Beta prior pseudo-count of pairs ordered as the consensus."""
    prior_disagree: float = 1.0
    """Beta prior pseudo-count of reversed pairs. With prior_agree, a weak prior (three
    pseudo-pairs) leaning towards 'follows the consensus', as most annotators do; it also picks
    the side of the model's mirror symmetry (β → −β, η → 1 − η)."""
    level: float = 0.95
    """Probability mass of each annotator's interval."""
    weight_floor: float = 0.05
    """The least weight an annotator's comparisons keep: a reversed annotator counts almost
    nothing but is never dropped silently (they stay in the table, flagged)."""
    chance_band: tuple[float, float] = (0.35, 0.65)
    """An interval strictly inside this band (lower > 0.35 and upper < 0.65) flags 'chance'."""
    max_iter: int = 200
    tol: float = 1e-4
    """EM stops when no η moves by more than this (a hundredth of a percentage point; the
    intervals are a hundred times wider)."""
    bt_prior: float = 1.0
    """The Bradley-Terry prior of the sample strengths (one pseudo-draw per sample)."""

    def __post_init__(self) -> None:
        if self.prior_agree <= 0 or self.prior_disagree <= 0:
            raise ValueError("the Beta prior's pseudo-counts must be > 0")
        if not 0 < self.level < 1:
            raise ValueError("level must be in (0, 1)")
        if not 0 <= self.weight_floor <= 1:
            raise ValueError("weight_floor must be in [0, 1]")
        low, high = self.chance_band
        if not 0 <= low < 0.5 < high <= 1:
            raise ValueError("chance_band must surround 0.5")


@dataclass(frozen=True)
class GoldAnswers:
    """Answers on pairs of known order, one entry per pair, aligned (n,)."""

    user: np.ndarray  # (n,) int64
    ranking: np.ndarray  # (n,) int64, the ranking the pair came from
    task: np.ndarray  # (n,) int64
    correct: np.ndarray  # (n,) bool, ordered as the truth

    @classmethod
    def empty(cls) -> GoldAnswers:
        none = np.zeros(0, dtype=np.int64)
        return cls(none, none, none, np.zeros(0, dtype=bool))

    def __len__(self) -> int:
        return len(self.user)


def gold_truth(
    winner: int, loser: int, tie: bool, groups: Sequence[Sequence[int]] | None, bad: int | None
) -> bool | None:
    """Whether one answered pair of a gold task follows the truth; None when the truth says
    nothing about it (a tie in the answer, the pair tied or absent in the known ordering,
    neither sample the known-bad one). The known ordering wins over the known-bad sample."""
    if tie:
        return None
    if groups:
        level = {sid: i for i, group in enumerate(groups) for sid in group}
        if winner in level and loser in level and level[winner] != level[loser]:
            return bool(level[winner] < level[loser])
        return None
    if bad is not None and bad in (winner, loser):
        return loser == bad
    return None


def gold_answers(
    rows: Iterable[tuple[int, int, int, int, int, bool, list[list[int]] | None, int | None]],
) -> GoldAnswers:
    """GoldAnswers from (user, ranking, task, winner, loser, tie, gold groups, gold bad sample)
    rows, keeping the pairs the truth decides."""
    kept = [
        (user, ranking, task, correct)
        for user, ranking, task, winner, loser, tie, groups, bad in rows
        if (correct := gold_truth(winner, loser, tie, groups, bad)) is not None
    ]
    if not kept:
        return GoldAnswers.empty()
    columns = list(zip(*kept, strict=True))
    user, ranking, task = (np.asarray(c, dtype=np.int64) for c in columns[:3])
    return GoldAnswers(user, ranking, task, np.asarray(columns[3], dtype=bool))


@dataclass(frozen=True)
class AnnotatorFit:
    """One annotator's reliability, what it rests on, and what follows from it."""

    user_id: int
    reliability: float
    """Posterior mean of η: the probability of ordering a pair as the consensus does."""
    lower: float
    upper: float
    comparisons: int
    """Pairs that measured η: non-tied pairs of shared tasks, plus gold pairs."""
    agreements: float
    """Of those, the expected number ordered as the consensus (Σ r, gold counted exactly)."""
    shared_tasks: int
    """Tasks also ranked by someone whose comparisons rate the samples, plus gold tasks."""
    gold_answered: int
    """Gold pairs answered (not tied) whose order the truth decides."""
    gold_correct: int
    weight: float
    """What each comparison of this annotator counts for when the project weights by
    reliability: 1 below min_tasks shared tasks."""
    flag: str | None
    evidence: str | None


@dataclass(frozen=True)
class ReliabilityFit:
    annotators: list[AnnotatorFit]
    """One per annotator with a comparison or a gold answer, by user id."""
    ids: np.ndarray  # (K,) sample ids
    beta: np.ndarray  # (K,) their consensus strengths (log10 odds, mean 0)
    iterations: int

    def weights(self) -> dict[int, float]:
        return {a.user_id: a.weight for a in self.annotators}

    def by_user(self) -> dict[int, AnnotatorFit]:
        return {a.user_id: a for a in self.annotators}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return scipy.special.expit(x)  # type: ignore[no-any-return]


def fit_reliability(
    user: np.ndarray,
    ranking: np.ndarray,
    task: np.ndarray,
    winner: np.ndarray,
    loser: np.ndarray,
    tie: np.ndarray,
    *,
    rates: np.ndarray | None = None,
    gold: GoldAnswers | None = None,
    min_tasks: int = 10,
    config: ReliabilityConfig | None = None,
) -> ReliabilityFit:
    """Crowd-BT fit of every annotator's η jointly with the samples' consensus strengths.

    Columns are one entry per comparison (n,). `rates` marks the comparisons that rate the
    samples (default all); the others (an excluded annotator's) are only measured against the
    consensus. Annotators with fewer than `min_tasks` shared tasks get weight 1 and no flag.
    """
    config = config or ReliabilityConfig()
    gold = gold if gold is not None else GoldAnswers.empty()
    user, ranking, task, winner, loser = (
        np.asarray(c, dtype=np.int64).ravel() for c in (user, ranking, task, winner, loser)
    )
    tie = np.asarray(tie, dtype=bool).ravel()
    rates = np.ones(len(user), bool) if rates is None else np.asarray(rates, bool).ravel()
    if not len(user) == len(ranking) == len(task) == len(winner) == len(loser) == len(tie):
        raise ValueError("the comparison columns must have the same length")
    if len(rates) != len(user):
        raise ValueError("rates must have one entry per comparison")

    users = np.unique(np.concatenate([user, gold.user]))
    u_index = np.searchsorted(users, user)  # (n,)
    g_index = np.searchsorted(users, gold.user)  # (g,)
    n_users = len(users)

    # Which comparisons measure η: not tied, on a task someone else rates
    shared = _shared(user, task, rates)  # (n,)
    measures = shared & ~tie

    # The pairs of samples the rating comparisons cover, each with one latent true order
    agg = aggregate(winner[rates], loser[rates], tie[rates])
    n_pairs = len(agg.pair_a)
    pair, win_is_a, known = _pair_index(agg, winner, loser)  # (n,) each
    votes = rates & ~tie & known  # comparisons that vote on their pair's order
    unknown = np.flatnonzero(~known)
    sign = np.where(win_is_a, 1.0, -1.0)  # (n,) +1: says a ≻ b

    a0, b0 = config.prior_agree, config.prior_disagree
    gold_agree = np.bincount(g_index, gold.correct.astype(np.float64), n_users)
    gold_n = np.bincount(g_index, minlength=n_users).astype(np.float64)
    measured_n = np.bincount(u_index[measures], minlength=n_users) + gold_n

    def e_step(beta: np.ndarray, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(q, r): P(a ≻ b is the true order) per pair (E,), and per comparison (n,) the
        probability that it states the true order."""
        prior_logit = LN10 * (beta[agg.pair_a] - beta[agg.pair_b])  # (E,)
        logit_eta = np.log(eta) - np.log1p(-eta)  # (U,)
        evidence = np.bincount(pair[votes], sign[votes] * logit_eta[u_index[votes]], n_pairs)
        q = _sigmoid(prior_logit + evidence)  # (E,)
        if not n_pairs:  # nothing rates the samples: nobody can be measured
            return q, np.full(len(user), 0.5)
        q_winner = np.where(win_is_a, q[pair], 1.0 - q[pair])  # (n,)
        # Outside the rated pairs (an excluded annotator's own samples): the strengths alone
        q_winner[unknown] = _sigmoid(
            LN10
            * (_lookup(agg.ids, beta, winner[unknown]) - _lookup(agg.ids, beta, loser[unknown]))
        )
        return q, q_winner

    def m_step_eta(r: np.ndarray) -> np.ndarray:
        agree = np.bincount(u_index[measures], r[measures], n_users) + gold_agree
        return (a0 + agree) / (a0 + b0 + measured_n)

    def m_step_beta(q: np.ndarray, beta: np.ndarray) -> np.ndarray:
        """Bradley-Terry with one soft outcome per pair (its true order is one draw): a few
        majorise-minimise steps, enough for a generalised EM (each lowers the objective)."""
        return _mm_steps(agg, q, np.ones(n_pairs), beta, config.bt_prior, MM_STEPS)

    # Start from the plain fit of all comparisons: with η = 0.5, r is agreement with it
    games = agg.pair_wins_a + agg.pair_wins_b
    beta = _mm_steps(agg, agg.pair_wins_a, games, np.zeros(agg.n_items), config.bt_prior, 50)
    eta = np.full(n_users, 0.5)
    iterations = 0
    for iterations in range(1, config.max_iter + 1):  # noqa: B007 (reported)
        q, r = e_step(beta, eta)
        new_eta = m_step_eta(r)
        beta = m_step_beta(q, beta)
        moved = float(np.max(np.abs(new_eta - eta))) if n_users else 0.0
        eta = new_eta
        if moved < config.tol:
            break

    _, r = e_step(beta, eta)
    annotators = _summarise(
        users=users,
        u_index=u_index[measures],
        cluster=ranking[measures],
        agree=r[measures],
        others=_agreement_with_others(pair, sign, votes)[measures],
        gold=gold,
        g_index=g_index,
        shared_tasks=_shared_task_counts(users, user[shared], task[shared], gold),
        min_tasks=min_tasks,
        config=config,
    )
    return ReliabilityFit(annotators, agg.ids, beta, iterations)


MM_STEPS = 5
"""Majorise-minimise steps of the strengths per EM iteration."""


def _mm_steps(
    agg: Aggregated,
    wins_a: np.ndarray,
    games: np.ndarray,
    beta: np.ndarray,
    prior: float,
    steps: int,
) -> np.ndarray:
    """Lower the Bradley-Terry objective of agg's pairs (`games` each, a winning `wins_a`)
    from `beta` by Jacobi steps on a fixed quadratic bound: the logistic curvature is at most
    ln10²/4 a game, and a graph Laplacian L is at most 2·diag(L), so the step
    −g / (ln10²/2 · games per item + ridge) never raises the objective. O(pairs) a step, no
    linear solve: a generalised EM needs only a descent step, not app.ratings.bradley_terry's
    Newton solve."""
    k, pa, pb = agg.n_items, agg.pair_a, agg.pair_b
    if not k:
        return beta
    ridge = prior * LN10**2 / 4.0  # curvature of bradley_terry.prior_penalty
    per_item = np.bincount(pa, games, k) + np.bincount(pb, games, k)
    bound = LN10**2 / 2.0 * per_item + ridge  # (K,)
    for _ in range(steps):
        p = _sigmoid(LN10 * (beta[pa] - beta[pb]))  # (E,)
        resid = games * p - wins_a  # (E,) expected minus observed wins of a
        grad = LN10 * (np.bincount(pa, resid, k) - np.bincount(pb, resid, k)) + ridge * beta
        beta = beta - grad / bound
    return beta - beta.mean()


def _agreement_with_others(pair: np.ndarray, sign: np.ndarray, votes: np.ndarray) -> np.ndarray:
    """(n,) per comparison, the share of other annotators' votes on its pair that order it the
    same way (NaN where nobody else voted on the pair; one annotator's votes on a pair from
    two tasks count as others', which is rare).

    Independent of the EM's consensus: with weak preferences and two or three annotators per
    task, Crowd-BT can settle where a few honest annotators look reversed (the model's mirror
    symmetry, locally). A 'reversed' verdict must show here too (or on gold) before it is
    flagged: under that model, agreeing with others below chance means the annotator is
    reversed whatever the others' reliabilities, as long as most follow the consensus."""
    n = len(pair)
    if not n or not votes.any():
        return np.full(n, np.nan)
    n_pairs = int(pair.max()) + 1
    ones = votes.astype(np.float64)
    for_a = np.bincount(pair, ones * (sign > 0), n_pairs)  # (E,) votes saying a ≻ b
    total = np.bincount(pair, ones, n_pairs)  # (E,)
    same = np.where(sign > 0, for_a[pair], total[pair] - for_a[pair]) - ones  # (n,) minus own
    others = total[pair] - ones
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(others > 0, same / others, np.nan)


def _shared(user: np.ndarray, task: np.ndarray, rates: np.ndarray) -> np.ndarray:
    """(n,) True where the comparison's task is also ranked by another annotator whose
    comparisons rate the samples."""
    if not len(user):
        return np.zeros(0, bool)
    raters = np.unique(np.stack([task[rates], user[rates]]), axis=1)  # (2, T) task, user
    if not raters.shape[1]:  # nobody's comparisons rate the samples (all excluded)
        return np.zeros(len(user), bool)
    tasks, per_task = np.unique(raters[0], return_counts=True)
    i = np.searchsorted(tasks, task)
    found = (i < len(tasks)) & (tasks[np.minimum(i, len(tasks) - 1)] == task)
    n_raters = np.where(found, per_task[np.minimum(i, max(len(tasks) - 1, 0))], 0)
    # Is this comparison's annotator one of the task's raters?
    own = np.zeros(len(user), bool)
    if raters.shape[1]:
        code = raters[0] * (int(user.max()) + 1) + raters[1]
        mine = task * (int(user.max()) + 1) + user
        j = np.searchsorted(code, mine)
        own = (j < len(code)) & (code[np.minimum(j, len(code) - 1)] == mine)
    return (n_raters - own.astype(np.int64)) >= 1


def _shared_task_counts(
    users: np.ndarray, user: np.ndarray, task: np.ndarray, gold: GoldAnswers
) -> np.ndarray:
    """(U,) distinct shared tasks plus distinct gold tasks per annotator."""
    both = np.concatenate([np.stack([user, task]), np.stack([gold.user, gold.task])], axis=1)
    if not both.shape[1]:
        return np.zeros(len(users), np.int64)
    distinct = np.unique(both, axis=1)
    return np.bincount(np.searchsorted(users, distinct[0]), minlength=len(users))


def _pair_index(
    agg: Aggregated, w: np.ndarray, lo: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per comparison: its pair's index in agg (0 when absent), whether the winner is the
    pair's a, and whether agg has the pair at all."""
    k, n_pairs = agg.n_items, len(agg.pair_a)
    if not n_pairs:
        zero = np.zeros(len(w), np.int64)
        return zero, np.ones(len(w), bool), np.zeros(len(w), bool)
    iw = np.minimum(np.searchsorted(agg.ids, w), k - 1)
    il = np.minimum(np.searchsorted(agg.ids, lo), k - 1)
    a, b = np.minimum(iw, il), np.maximum(iw, il)
    codes = agg.pair_a * k + agg.pair_b
    index = np.minimum(np.searchsorted(codes, a * k + b), n_pairs - 1)
    known = (agg.ids[iw] == w) & (agg.ids[il] == lo) & (codes[index] == a * k + b)
    return np.where(known, index, 0), iw == a, known


def _lookup(ids: np.ndarray, values: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """values at keys' positions in sorted ids; 0 for keys absent (samples nobody rates)."""
    if not len(ids):
        return np.zeros(len(keys))
    i = np.minimum(np.searchsorted(ids, keys), len(ids) - 1)
    return np.where(ids[i] == keys, values[i], 0.0)


def _summarise(
    *,
    users: np.ndarray,
    u_index: np.ndarray,
    cluster: np.ndarray,
    agree: np.ndarray,
    others: np.ndarray,
    gold: GoldAnswers,
    g_index: np.ndarray,
    shared_tasks: np.ndarray,
    min_tasks: int,
    config: ReliabilityConfig,
) -> list[AnnotatorFit]:
    """Posterior, interval, weight and flag per annotator.

    The interval is the Beta posterior on effective counts: the counts divided by a design
    effect, the cluster-robust variance of the agreement rate (rankings as clusters: a
    reversed ranking reverses all its pairs at once) over the variance of independent pairs.
    """
    n_users = len(users)
    all_user = np.concatenate([u_index, g_index])
    all_cluster = np.concatenate([cluster, gold.ranking])
    all_agree = np.concatenate([agree, gold.correct.astype(np.float64)])
    a0, b0 = config.prior_agree, config.prior_disagree
    tail = (1.0 - config.level) / 2.0
    gold_n = np.bincount(g_index, minlength=n_users)
    gold_ok = np.bincount(g_index, gold.correct.astype(np.int64), n_users)

    order = np.argsort(all_user, kind="stable")  # each annotator's entries in one slice
    bounds = np.searchsorted(all_user[order], np.arange(n_users + 1))
    estimates: list[tuple[float, float, float, int, float]] = []
    below_with_others = np.zeros(n_users, bool)  # agrees with others' votes below chance
    leans_with_others = np.ones(n_users, bool)  # agrees with others at least half the time
    for u in range(len(users)):
        mine = np.flatnonzero((u_index == u) & ~np.isnan(others))
        if len(mine):
            leans_with_others[u] = float(others[mine].mean()) >= 0.5
            _, upper = _beta_interval(
                float(others[mine].sum()),
                len(mine),
                _design_effect(cluster[mine], others[mine]),
                config,
            )
            below_with_others[u] = upper < 0.5
    gold_below = np.zeros(n_users, bool)  # wrong on gold more often than right
    for u in range(n_users):
        if gold_n[u] >= MIN_GOLD_PAIRS:
            _, upper = _beta_interval(float(gold_ok[u]), int(gold_n[u]), 1.0, config)
            gold_below[u] = upper < 0.5
    for u in range(n_users):
        mine = order[bounds[u] : bounds[u + 1]]
        n = len(mine)
        agreed = float(all_agree[mine].sum())
        deff = _design_effect(all_cluster[mine], all_agree[mine])
        post_a, post_b = a0 + agreed / deff, b0 + (n - agreed) / deff
        mean = post_a / (post_a + post_b)
        lower, upper = scipy.stats.beta.ppf([tail, 1.0 - tail], post_a, post_b)
        estimates.append((mean, min(float(lower), mean), max(float(upper), mean), n, agreed))

    qualified = shared_tasks >= min_tasks
    # Weights relative to the most reliable qualified annotator, who counts 1 like a newcomer
    best = max((estimates[u][0] for u in range(n_users) if qualified[u]), default=1.0)
    scale = 2.0 * best - 1.0 if best > 0.5 else 1.0
    out: list[AnnotatorFit] = []
    for u in range(n_users):
        mean, lower, upper, n, agreed = estimates[u]
        weight, flag, evidence = 1.0, None, None
        if qualified[u]:
            # The benefit of the doubt: weigh by the interval's upper end, so only an
            # annotator reliably less reliable than the best loses weight; with a handful of
            # shared tasks the point estimate is noise, and down-weighting on it throws honest
            # rankings away (most where labels are weak and every η is uncertain)
            weight = float(np.clip((2.0 * upper - 1.0) / scale, config.weight_floor, 1.0))
            flag = _flag(lower, upper, config)
            if gold_below[u]:
                flag = FLAG_REVERSED
            elif flag == FLAG_REVERSED and not below_with_others[u]:
                flag = None  # only the EM says so: not enough to accuse anyone
            if mean < 0.5 and leans_with_others[u] and not gold_below[u] and flag is None:
                # The EM says worse than chance, the raw votes say otherwise: do not
                # down-weight on the EM's word (see _agreement_with_others)
                weight = 1.0
            if flag is not None:
                evidence = _evidence(
                    (mean, lower, upper, config.level),
                    n,
                    int(shared_tasks[u]),
                    (int(gold_ok[u]), int(gold_n[u])),
                )
        out.append(
            AnnotatorFit(
                user_id=int(users[u]),
                reliability=mean,
                lower=lower,
                upper=upper,
                comparisons=n,
                agreements=agreed,
                shared_tasks=int(shared_tasks[u]),
                gold_answered=int(gold_n[u]),
                gold_correct=int(gold_ok[u]),
                weight=weight,
                flag=flag,
                evidence=evidence,
            )
        )
    return out


MIN_GOLD_PAIRS = 10
"""Gold pairs an annotator must have answered before gold alone can flag them reversed."""


def _beta_interval(
    agreed: float, n: int, deff: float, config: ReliabilityConfig
) -> tuple[float, float]:
    """The `config.level` interval of an agreement rate, on counts shrunk by the design
    effect, under the fit's Beta prior."""
    tail = (1.0 - config.level) / 2.0
    a = config.prior_agree + agreed / deff
    b = config.prior_disagree + (n - agreed) / deff
    lower, upper = scipy.stats.beta.ppf([tail, 1.0 - tail], a, b)
    return float(lower), float(upper)


def _design_effect(cluster: np.ndarray, agree: np.ndarray) -> float:
    """Cluster-robust over independent variance of the mean agreement, in [1, largest cluster]."""
    n = len(agree)
    if n < 2:
        return 1.0
    _, index, sizes = np.unique(cluster, return_inverse=True, return_counts=True)
    m = len(sizes)
    p = float(agree.mean())
    iid = p * (1.0 - p) / n
    if m < 2 or iid <= 1e-12:
        return 1.0
    residual = np.bincount(index.ravel(), agree - p, m)  # (m,) Σ (a − p) per cluster
    robust = m / (m - 1) * float(np.sum(residual**2)) / n**2
    return float(np.clip(robust / iid, 1.0, sizes.max()))


def _flag(lower: float, upper: float, config: ReliabilityConfig) -> str | None:
    if upper < 0.5:
        return FLAG_REVERSED
    low, high = config.chance_band
    if lower > low and upper < high:
        return FLAG_CHANCE
    return None


def _evidence(
    estimate: tuple[float, float, float, float], pairs: int, tasks: int, gold: tuple[int, int]
) -> str:
    """The sentence an admin reads beside a flag."""
    mean, lower, upper, level = estimate
    right, answered = gold
    on_gold = f"gold {right}/{answered} pairs right" if answered else "no gold answers"
    return (
        f"agrees with the consensus on {mean:.0%} of {pairs} pairs ({level:.0%} interval "
        f"{lower * 100:.0f}–{upper * 100:.0f}%) over {tasks} shared tasks; {on_gold}"
    )


__all__ = [
    "AnnotatorFit",
    "GoldAnswers",
    "ReliabilityConfig",
    "ReliabilityFit",
    "fit_reliability",
    "gold_answers",
    "gold_truth",
]
