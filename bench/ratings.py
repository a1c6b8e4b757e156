"""Bradley-Terry with bootstrap intervals: our pair-aggregated Newton fit vs Chatbot Arena's recipe.

The reference is the method Arena publishes (FastChat `rating_systems.py`): deduplicate the
battles into unique (a, b, outcome) rows, fit with scipy L-BFGS-B on the per-row logistic
loss with an analytic gradient (weights = counts / n, gtol 1e-6, 100 iterations at most),
and bootstrap by multinomial resampling of those rows, each round fitted from zero. Here it
runs with our L2 prior and centring, single process (Arena spreads bootstrap rounds over
CPUs; so could we). pandas is not installed, so the deduplication uses numpy.

    .venv/bin/python -m bench.ratings                         # 1M comparisons, 200 items
    .venv/bin/python -m bench.ratings --comparisons 20000 --items 30 --bootstrap 20
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

from app.ratings.bradley_terry import LN10, fit_ratings, prior_penalty, to_ratings


def simulate(
    n: int, n_items: int, tie_rate: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Comparisons among items with ids 1..n_items and true ratings spread ~200 points."""
    rng = np.random.default_rng(seed)
    beta = rng.normal(0.0, 0.5, n_items)
    a = rng.integers(0, n_items, n)
    b = (a + rng.integers(1, n_items, n)) % n_items
    a_wins = rng.random(n) < expit(LN10 * (beta[a] - beta[b]))
    ties = rng.random(n) < tie_rate
    winners = np.where(a_wins, a, b) + 1
    losers = np.where(a_wins, b, a) + 1
    return winners, losers, ties


def _row_loss_and_grad(
    beta: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    outcome: np.ndarray,
    weight: np.ndarray,
    prior_scaled: float,
) -> tuple[float, np.ndarray]:
    """Arena's `bt_loss_and_grad` plus the same prior as ours (scaled like the weights)."""
    logits = LN10 * (beta[a] - beta[b])
    probs = expit(logits)
    loss = -(
        (np.log(probs) * outcome + np.log(1.0 - probs) * (1.0 - outcome)) * weight
    ).sum() + prior_penalty(beta, prior_scaled)
    row_grad = -LN10 * (outcome - probs) * weight
    grad = np.zeros_like(beta)
    np.add.at(grad, a, row_grad)
    np.add.at(grad, b, -row_grad)
    grad += prior_scaled * LN10**2 / 4.0 * beta
    return float(loss), grad


def _row_fit(
    n_items: int,
    a: np.ndarray,
    b: np.ndarray,
    outcome: np.ndarray,
    weight: np.ndarray,
    prior_scaled: float,
) -> np.ndarray:
    result = minimize(
        _row_loss_and_grad,
        np.zeros(n_items),
        args=(a, b, outcome, weight, prior_scaled),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 100, "gtol": 1e-6},
    )
    return result.x - result.x.mean()


def reference(
    winners: np.ndarray,
    losers: np.ndarray,
    ties: np.ndarray,
    bootstrap: int,
    prior: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, float]]:
    """(ids, ratings, lower, upper, timings) the way Arena computes them."""
    timings: dict[str, float] = {}
    start = time.perf_counter()
    n = len(winners)
    ids, index = np.unique(np.concatenate([winners, losers]), return_inverse=True)
    battles = np.column_stack([index[:n], index[n:], ties.astype(np.int64)])
    rows, counts = np.unique(battles, axis=0, return_counts=True)
    a, b, outcome = rows[:, 0], rows[:, 1], np.where(rows[:, 2] == 1, 0.5, 1.0)
    pvals = counts / n
    timings["deduplicate"] = time.perf_counter() - start

    start = time.perf_counter()
    beta = _row_fit(len(ids), a, b, outcome, pvals, prior / n)
    timings["point fit"] = time.perf_counter() - start

    lower = upper = np.full(len(ids), np.nan)
    if bootstrap:
        start = time.perf_counter()
        draws = np.random.default_rng(seed).multinomial(n, pvals, size=bootstrap) / n
        samples = np.array([_row_fit(len(ids), a, b, outcome, w, prior / n) for w in draws])
        lower, upper = np.percentile(to_ratings(samples), [2.5, 97.5], axis=0)
        timings["bootstrap"] = time.perf_counter() - start
    return ids, to_ratings(beta), lower, upper, timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comparisons", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--bootstrap", type=int, default=100)
    parser.add_argument("--ties", type=float, default=0.15, help="share of tied comparisons")
    parser.add_argument("--prior", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    winners, losers, ties = simulate(args.comparisons, args.items, args.ties, args.seed)
    print(
        f"{args.comparisons:,} comparisons, {args.items} items, {ties.mean():.1%} ties, "
        f"{args.bootstrap} bootstrap rounds"
    )

    start = time.perf_counter()
    fit_ratings(winners, losers, ties, bootstrap=0, prior=args.prior)
    ours_point_s = time.perf_counter() - start
    start = time.perf_counter()
    ours = fit_ratings(
        winners, losers, ties, bootstrap=args.bootstrap, prior=args.prior, seed=args.seed
    )
    ours_s = time.perf_counter() - start

    start = time.perf_counter()
    ids, ref_ratings, ref_lower, ref_upper, timings = reference(
        winners, losers, ties, args.bootstrap, args.prior, args.seed
    )
    ref_s = time.perf_counter() - start

    assert np.array_equal(ids, ours.ids)
    print(
        f"ours (pair-aggregated Newton): {ours_s:8.2f} s   "
        f"(deduplicate + point fit alone {ours_point_s:.2f} s)"
    )
    parts = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in timings.items())
    print(f"reference (Arena, L-BFGS-B):   {ref_s:8.2f} s   ({parts})")
    print(f"speed-up: {ref_s / ours_s:.1f}x")
    print(f"max |rating difference|: {np.max(np.abs(ours.ratings - ref_ratings)):.4f} points")
    if args.bootstrap:
        assert ours.lower is not None
        assert ours.upper is not None
        width_ours = np.mean(ours.upper - ours.lower)
        width_ref = np.mean(ref_upper - ref_lower)
        print(
            f"mean 95% interval width: ours {width_ours:.2f}, reference {width_ref:.2f} points "
            "(different resamples, so only close, not equal)"
        )


if __name__ == "__main__":
    main()
