"""A simulated judge for demos and benchmarks: ranks by a known preference, right on a set
share of pairs.

The judge's ranking is a Mallows sample around the true order (ties in the truth broken at
random): each pair's order is a consequence of one consistent ranking, not of independent coin
flips, and the dispersion φ is solved per task so that the expected share of truly ordered pairs
the judge gets right is exactly `agreement`. (Flipping each pair independently and aggregating
would denoise the flips and overshoot the agreement asked for.) The preference is scored with
app/simulation/preferences.py, the same functions simulated people rank by.

Reference: Mallows (1957), sampled by repeated insertion (Doignon et al. 2004).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate, combinations

from app.simulation.preferences import Preference, load_preference
from worker.judging.spec import JudgeInput, JudgeSpec, Verdict


def inversion_probabilities(k: int, phi: float) -> list[list[float]]:
    """P[a][b], a < b: the chance a Mallows(φ) ranking of reference order 0..k-1 puts b above a.

    Repeated insertion: item i goes to slot j of the i items placed so far with weight
    φ^(i-j) (slot i, the bottom, is the reference place). Later insertions never change the
    relative order of two placed items, so b lands above a iff its slot ≤ a's current slot.
    """
    weights = [[phi ** (i - j) for j in range(i + 1)] for i in range(k)]
    totals = [sum(w) for w in weights]
    result = [[0.0] * k for _ in range(k)]
    for a in range(k):
        # position distribution of a after its own insertion
        dist = [w / totals[a] for w in weights[a]] + [0.0] * (k - a - 1)
        for c in range(a + 1, k):
            above = list(accumulate(w / totals[c] for w in weights[c][:c]))  # c lands ≤ pos
            result[a][c] = sum(dist[pos] * above[pos] for pos in range(c))
            shifted = [0.0] * k
            for pos in range(c):
                shifted[pos + 1] += dist[pos] * above[pos]
                shifted[pos] += dist[pos] * (1 - above[pos])
            dist = shifted
    return result


@lru_cache(maxsize=4096)
def solve_phi(k: int, pairs: tuple[tuple[int, int], ...], agreement: float) -> float:
    """φ in [0, 1] such that the mean over `pairs` of P(not inverted) equals agreement ≥ 0.5.

    Cached: a benchmark's tasks share a few values of k and tie patterns."""
    if not pairs or agreement >= 1.0:
        return 0.0
    lo, hi = 0.0, 1.0  # agreement falls from 1 (φ=0) to 0.5 (φ=1)
    for _ in range(30):  # φ to within 1e-9
        mid = (lo + hi) / 2
        inv = inversion_probabilities(k, mid)
        mean = 1 - sum(inv[a][b] for a, b in pairs) / len(pairs)
        lo, hi = (mid, hi) if mean > agreement else (lo, mid)
    return (lo + hi) / 2


def mallows_sample(k: int, phi: float, rng: random.Random) -> list[int]:
    """Reference positions 0..k-1 in a Mallows(φ) order, best first."""
    order: list[int] = []
    for i in range(k):
        weights = [phi ** (i - j) for j in range(i + 1)]
        slot = rng.choices(range(i + 1), weights=weights)[0]
        order.insert(slot, i)
    return order


@dataclass(frozen=True)
class SimulatedJudge:
    """Options: preference (a spec load_preference reads), agreement (0..1), seed."""

    spec: JudgeSpec
    preference: Preference
    agreement: float
    seed: int

    @classmethod
    def from_spec(cls, spec: JudgeSpec) -> SimulatedJudge:
        options = spec.options
        if "preference" not in options:
            raise ValueError("a simulated judge needs options['preference'] (a preference spec)")
        agreement = float(options.get("agreement", 0.8))
        if not 0.0 <= agreement <= 1.0:
            raise ValueError(f"agreement must be within 0..1, got {agreement}")
        preference = load_preference(str(options["preference"]))
        return cls(spec, preference, agreement, int(options.get("seed", 0)))

    def judge(self, item: JudgeInput) -> Verdict:
        ids = [sample_id for sample_id, _ in item.samples]
        # Seeded by the sample set, not its order: shown reversed, the judge answers the same.
        rng = random.Random(f"{self.seed}:{sorted(ids)}")
        scores = {sample_id: self.preference(text) for sample_id, text in item.samples}
        tiebreak = {sample_id: rng.random() for sample_id in sorted(ids)}
        truth = sorted(ids, key=lambda i: (-scores[i], tiebreak[i]))  # ties broken at random
        agreement = self.agreement
        if agreement < 0.5:  # worse than chance: agree with the reversed truth instead
            truth, agreement = truth[::-1], 1.0 - agreement
        strict = tuple(
            (a, b)
            for a, b in combinations(range(len(truth)), 2)
            if scores[truth[a]] != scores[truth[b]]
        )
        phi = solve_phi(len(truth), strict, agreement)
        order = mallows_sample(len(truth), phi, rng)
        return Verdict([[truth[pos]] for pos in order], 1, {}, None)
