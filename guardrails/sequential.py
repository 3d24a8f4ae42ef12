"""Anytime-valid disparity detection: an e-detector per compared pair (``rates.method: sequential``).

Why: the window method tests a sliding window on a schedule and pays for repeated looks
with a Bonferroni split over the checks of one window length. This module instead keeps,
for every compared pair of groups, a statistic that may be looked at after every batch
without any split, and that forgets the past in a principled way, so a disparity that
starts late is caught about as fast as one present from the start.

**The test.** For an ordered pair (``g``, the group that may be disadvantaged; ``o``, the
group it is compared with) and the policy's impact-ratio bound ``b``, the null hypothesis
"no breach" is ``p_o >= b * p_g`` for an adverse outcome (``harm: high_rate``) and
``p_g >= b * p_o`` for a favourable one (``low_rate``); for a parity bound ``d`` it is
``p_g - p_o <= d`` (``p_o - p_g <= d``). Outcomes of the two groups are paired into
*units*: a unit closes as soon as both groups have at least one outcome since the last
unit (in a batch of several items, all of them), and its payoff is

    Z = b * mean_g - mean_o        (ratio, high_rate; low_rate swaps the roles: b * mean_o - mean_g)
    Z = mean_g - mean_o - d        (difference; low_rate: mean_o - mean_g - d)

Which outcomes form a unit depends only on which groups the items belong to, never on the
outcomes, so under the null ``E[Z | past] <= 0`` (the means are unbiased) and for any bet
``0 <= lam < 1 / max(-Z)`` the product of ``1 + lam * Z`` is a non-negative supermartingale:
a betting e-process (Waudby-Smith and Ramdas 2023; for fairness audits Chugg et al. 2023).
The bet is a fixed grid of ``lam`` values mixed with equal weights, each scaled by the
unit's size (the harmonic mean of its two counts: a unit of many outcomes varies less, so
a larger bet is growth-optimal; the counts depend on group membership only, so the bet is
still fixed before the unit's outcomes are seen) and capped at 0.95 of the largest safe
bet. No tuning, and no state beyond one number per bet.

**Change detection.** A Shiryaev-Roberts e-detector (Shin, Ramdas and Rinaldo 2022):
every ``start_every`` units of a pair a new e-process starts with wealth 1, and the
detector is the sum of all of them. Because every e-process of a pair shares the same
bets, the sum obeys ``M <- (M + [start]) * (1 + lam * Z)`` per bet: O(1) state per pair
and bet. When ``M`` reaches the threshold ``A`` the pair alarms and its ``M`` is reset to 0.

**The guarantee.** ``M - (wealth started so far)`` is a supermartingale under the null, and
a reset at an alarm removes at least ``A``; summing over the null detectors gives
``A * E[false alarms] <= E[wealth started]``. The first e-process of every detector starts
with the head start ``h``, the later ones with 1, every ``start_every`` units. A pair has
at most ``min(n_g, n_o)`` units, and over every ordered pair of ``k`` compared groups
``sum min(n_g, n_o) <= (k - 1) * n`` (``n``: outcomes recorded in the compared groups);
against a named reference ``<= n``. With ``c = k - 1`` (or 1), ``m`` tests per pair (ratio
and/or difference), ``D`` detectors in all, ``A = m * c * arl / start_every`` and
``h = (1 - confidence) * A / D``:

    E[false alarms among the first n outcomes] <= (1 - confidence) + n / arl

at every ``n`` and whatever the stopping rule, provided outcomes are independent given the
group and no true disparity breaches the bounds (a pair exactly at a bound is the worst
case). By Markov's inequality the same number bounds the probability of any false alarm
among the first ``n`` outcomes. The head start makes a disparity present from the start
(or since a reset) cost about ``log(D / (1 - confidence))`` nats of evidence, like a
fixed test at level ``(1 - confidence) / D``; a late one costs ``log A``. Multiple groups:
the ``c`` in ``A`` and the ``D`` in ``h`` split the budget over every compared pair, so
the guarantee covers all of them together.

**Where the state lives.** The detector is kept by the rate monitor's store, not by the
monitor: :class:`~fairgate.guardrails.local_store.LocalMonitorStore` holds a
:class:`SequentialDetector` per monitor (``window_scope: worker``), and
:class:`~fairgate.guardrails.redis_store.RedisWindowStore` holds the same numbers in Redis
and updates them in the script that records the batch (``window_scope: fleet``: one
detector per pair for every worker and replica, so the budget above is the fleet's, not
one per worker). Both take their constants from :meth:`SequentialDetector.wire` and lay
a pair's state out as :meth:`SequentialDetector.state` does, so the Lua update repeats the
arithmetic of :meth:`SequentialDetector.update` operation for operation.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "BET_FRACTIONS",
    "Alarm",
    "DetectorWire",
    "SequentialDetector",
    "SequentialSetup",
    "SequentialSpec",
    "batch_counts",
    "expected_false_alarm_bound",
    "merge_alarms",
]

# Bets as fractions of the largest safe bet (1 / max loss per unit). Halving steps cover
# drifts from large (few units to detect) to ones near the bound; a mixture over the grid
# costs at most log(4) = 1.4 nats against the best single bet in hindsight. Measured on
# 0.30 vs 0.20 (20 seeds): these four detect sooner than six from 0.8 down to 0.025
# (median 2,365 against 2,986 requests); the largest bets lose more in early noise than
# they win later.
BET_FRACTIONS: tuple[float, ...] = (0.5, 0.25, 0.125, 0.0625)
# Bump when the stored state's layout changes (what the Redis script packs per pair).
STATE_LAYOUT_VERSION = 1
# No bet goes beyond this fraction of the largest safe bet, so no unit can take more than
# 95% of the wealth.
MAX_FRACTION = 0.95

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True, kw_only=True)
class SequentialSpec:
    """What the detector tests: the policy's bounds, direction of harm and false-alarm budget."""

    harm: Literal["low_rate", "high_rate"]
    ratio_min: float | None
    difference_max: float | None
    arl: float
    start_every: int
    confidence: float = 0.95
    reference: str | None = None  # None: every ordered pair of compared groups

    def __post_init__(self) -> None:
        if self.ratio_min is None and self.difference_max is None:
            raise ValueError("a sequential test needs ratio_min or difference_max")
        if self.start_every < 1:
            raise ValueError(f"start_every {self.start_every} must be >= 1")
        if not self.arl >= self.start_every:
            raise ValueError(f"arl {self.arl} must be >= start_every {self.start_every}")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence {self.confidence} must be in (0, 1)")


@dataclass(frozen=True, slots=True, kw_only=True)
class SequentialSetup:
    """One monitor's detector: the compared groups (their order fixes the pair indices) and the spec.

    A store keeps one detector per monitor and setup; :attr:`tag` names it in a shared store,
    so a policy that changes the groups or the test never reads another setup's numbers.
    """

    groups: tuple[str, ...]
    spec: SequentialSpec

    @property
    def tag(self) -> str:
        """A digest of the groups, the spec, the bet grid and the state's layout version.

        Keys carry it, so a change to any of them starts fresh state instead of reading
        blobs written under another layout (which the Redis script could not unpack).
        """
        layout = [STATE_LAYOUT_VERSION, list(self.groups), asdict(self.spec), list(BET_FRACTIONS), MAX_FRACTION]
        text = json.dumps(layout, sort_keys=True, separators=(",", ":"))
        return "s" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]

    def detector(self) -> SequentialDetector:
        return SequentialDetector(groups=self.groups, spec=self.spec)


@dataclass(frozen=True, slots=True, kw_only=True)
class DetectorWire:
    """Everything a store outside Python (the Redis script) needs to repeat :meth:`SequentialDetector.update`.

    ``columns`` are (coef_a, coef_b, coef_0, worst_loss, direction, test) per detector column:
    the payoff of a unit is ``mean_a * coef_a + mean_b * coef_b + coef_0`` and its bets are
    ``min(fraction * size, max_fraction) / worst_loss``; direction 0 accuses the pair's first
    group, 1 its second. ``reference`` is the index of the named reference (pairs ``(i, ref)``)
    or None (pairs ``(i, j)``, ``i < j``).
    """

    groups: tuple[str, ...]
    reference: int | None
    threshold: float
    head_start: float
    start_every: int
    max_fraction: float
    fractions: tuple[float, ...]
    weights: tuple[float, ...]
    columns: tuple[tuple[float, float, float, float, int, str], ...]


@dataclass(frozen=True, slots=True)
class Alarm:
    """A pair's detector reached the threshold: ``group`` is disadvantaged against ``other``."""

    group: str
    other: str
    test: str  # "impact_ratio" | "parity_difference"
    evidence: float  # detector / threshold at the alarm (>= 1)


class SequentialDetector:
    """One Shiryaev-Roberts e-detector per (compared pair, direction, test); module docstring.

    State: four pending counts and a unit counter per unordered pair, and one wealth per
    (direction, test, bet): with 24 compared groups, 276 pairs x 2 x 6 numbers. Each
    :meth:`update` is a few vectorised operations over the pairs, whatever their number.
    Not thread-safe: its owner (a :class:`LocalMonitorStore`, under its lock) serialises calls.
    """

    def __init__(self, *, groups: Sequence[str], spec: SequentialSpec) -> None:
        self.spec = spec
        self._groups = tuple(groups)
        index = {g: i for i, g in enumerate(self._groups)}
        k = len(self._groups)
        self._reference: int | None = None
        if spec.reference is not None and spec.reference in index:
            ref = self._reference = index[spec.reference]
            pairs = [(i, ref) for i in range(k) if i != ref]
            directions = 1  # only "a is disadvantaged against the reference"
            spread = 1
        else:
            pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
            directions = 2
            spread = max(1, k - 1)
        self._ia = np.array([a for a, _ in pairs], dtype=np.intp)
        self._ib = np.array([b for _, b in pairs], dtype=np.intp)
        tests: list[tuple[str, float]] = []
        if spec.ratio_min is not None:
            tests.append(("impact_ratio", spec.ratio_min))
        if spec.difference_max is not None:
            tests.append(("parity_difference", spec.difference_max))
        self._tests = tuple(tests)
        # Detector columns: direction-major, then test. Direction 0: a disadvantaged vs b.
        self._columns = [(d, t) for d in range(directions) for t in range(len(tests))]
        worst_losses = []
        # payoff = coef_a * mean_a + coef_b * mean_b + coef_0, one column per (direction, test)
        coef_a, coef_b, coef_0 = [], [], []
        high = spec.harm == "high_rate"
        for d, t in self._columns:
            name, bound = tests[t]
            worst_losses.append(1.0 if name == "impact_ratio" else 1.0 + bound)
            if name == "impact_ratio":  # high: b * mine - theirs; low: b * theirs - mine
                mine, theirs, const = (bound, -1.0, 0.0) if high else (-1.0, bound, 0.0)
            else:  # high: mine - theirs - d; low: theirs - mine - d
                mine, theirs, const = (1.0, -1.0, -bound) if high else (-1.0, 1.0, -bound)
            a, b = (mine, theirs) if d == 0 else (theirs, mine)
            coef_a.append(a)
            coef_b.append(b)
            coef_0.append(const)
        self._coef_a: FloatArray = np.array(coef_a)
        self._coef_b: FloatArray = np.array(coef_b)
        self._coef_0: FloatArray = np.array(coef_0)
        self._fractions: FloatArray = np.array(BET_FRACTIONS)
        self._worst_loss: FloatArray = np.array(worst_losses)  # (J,): 1 / the largest safe bet
        self._weights: FloatArray = np.full(len(BET_FRACTIONS), 1.0 / len(BET_FRACTIONS))
        ordered = len(pairs) * directions
        self.threshold = len(tests) * spread * spec.arl / spec.start_every
        # The first e-process of every detector starts with this wealth instead of 1: together
        # they spend (1 - confidence) of false alarms up front (module docstring), so a
        # disparity present from the start is judged like a fixed test at that level.
        self.head_start = (1.0 - spec.confidence) * self.threshold / max(1, len(tests) * ordered)
        u, j = len(pairs), len(self._columns)
        self._wealth: FloatArray = np.zeros((u, j, len(BET_FRACTIONS)))
        self._units = np.zeros(u, dtype=np.int64)
        self._pending: FloatArray = np.zeros((4, u))  # n_a, x_a, n_b, x_b since the last unit
        # Which group each column accuses, and against whom.
        self._accused = np.array(
            [[self._ia[p] if d == 0 else self._ib[p] for d, _ in self._columns] for p in range(u)], dtype=np.intp
        ).reshape(u, j)
        self._against = np.array(
            [[self._ib[p] if d == 0 else self._ia[p] for d, _ in self._columns] for p in range(u)], dtype=np.intp
        ).reshape(u, j)
        self._index = index
        self._position = {(a, b): p for p, (a, b) in enumerate(pairs)}

    @property
    def groups(self) -> tuple[str, ...]:
        return self._groups

    @property
    def pair_indices(self) -> list[tuple[int, int]]:
        """The compared pairs as (a, b) group indices, in state order."""
        return list(self._position)

    @property
    def state_width(self) -> int:
        """Numbers per pair in :meth:`state`: 4 pending, the units, then wealth per (column, bet)."""
        return 5 + int(self._wealth.shape[1]) * int(self._wealth.shape[2])

    def wire(self) -> DetectorWire:
        """This detector's constants, for a store that updates the state elsewhere (Redis)."""
        columns = tuple(
            (float(self._coef_a[c]), float(self._coef_b[c]), float(self._coef_0[c]), float(self._worst_loss[c]), d,
             self._tests[t][0])
            for c, (d, t) in enumerate(self._columns)
        )
        return DetectorWire(
            groups=self._groups,
            reference=self._reference,
            threshold=float(self.threshold),
            head_start=float(self.head_start),
            start_every=self.spec.start_every,
            max_fraction=MAX_FRACTION,
            fractions=tuple(float(f) for f in self._fractions),
            weights=tuple(float(w) for w in self._weights),
            columns=columns,
        )

    def state(self) -> dict[tuple[int, int], list[float]]:
        """Per pair ``(a, b)`` of group indices that has any state: n_a, x_a, n_b, x_b, units,
        then the wealth of each column's bets (column-major). Pairs never touched are left out."""
        found: dict[tuple[int, int], list[float]] = {}
        for (a, b), p in self._position.items():
            if self._units[p] or self._pending[:, p].any() or self._wealth[p].any():
                found[(a, b)] = [*self._pending[:, p].tolist(), float(self._units[p]), *self._wealth[p].ravel().tolist()]
        return found

    def set_state(self, rows: Mapping[tuple[int, int], Sequence[float]]) -> None:
        """Replace the whole state by ``rows`` (the layout of :meth:`state`; missing pairs are zero).

        Raises ValueError naming the pair when a row does not fit this detector (another setup's numbers).
        """
        self.reset()
        width = self.state_width
        for (a, b), row in rows.items():
            p = self._position.get((a, b))
            if p is None or len(row) != width:
                raise ValueError(
                    f"state of pair {(a, b)} ({len(row)} numbers) does not fit a detector of {len(self._groups)} "
                    f"groups and {width} numbers per pair; the store holds another setup's state, reset it"
                )
            self._pending[:, p] = row[:4]
            self._units[p] = int(row[4])
            self._wealth[p] = np.asarray(row[5:], dtype=np.float64).reshape(self._wealth.shape[1:])

    @property
    def pairs(self) -> int:
        """Ordered comparisons tested (pairs x directions), before multiplying by tests."""
        return int(self._ia.size) * (len(self._columns) // max(1, len(self._tests)))

    def update(self, counts: Mapping[str, tuple[int, int]]) -> list[Alarm]:
        """Add one batch: ``{group: (outcomes, positives)}``; the alarms it raised (detectors reset)."""
        if not self._ia.size:
            return []
        k = len(self._groups)
        n = np.zeros(k)
        x = np.zeros(k)
        seen = False
        for group, (total, positives) in counts.items():
            i = self._index.get(group)
            if i is None or total <= 0:
                continue
            n[i] += total
            x[i] += positives
            seen = True
        if not seen:
            return []
        pending = self._pending
        pending[0] += n[self._ia]
        pending[1] += x[self._ia]
        pending[2] += n[self._ib]
        pending[3] += x[self._ib]
        ready = np.flatnonzero((pending[0] > 0) & (pending[2] > 0))
        if not ready.size:
            return []
        mean_a = pending[1, ready] / pending[0, ready]
        mean_b = pending[3, ready] / pending[2, ready]
        # A unit of many outcomes has a payoff of smaller variance, so it is safe (and
        # growth-optimal) to bet more on it: scale by the harmonic mean of its two counts.
        # The counts come from group membership, never outcomes, so the bet stays predictable.
        size = 2.0 / (1.0 / pending[0, ready] + 1.0 / pending[2, ready])
        pending[:, ready] = 0.0
        payoff = mean_a[:, None] * self._coef_a + mean_b[:, None] * self._coef_b + self._coef_0  # (R, J)
        bets = np.minimum(self._fractions[None, :] * size[:, None], MAX_FRACTION)  # (R, K)
        lam = bets[:, None, :] / self._worst_loss[None, :, None]  # (R, J, K)
        wealth = self._wealth[ready]
        units = self._units[ready]
        starts = np.where(units == 0, self.head_start, (units % self.spec.start_every == 0).astype(np.float64))
        wealth += starts[:, None, None]
        wealth *= 1.0 + lam * payoff[:, :, None]
        self._units[ready] += 1
        detector = wealth @ self._weights  # (R, J)
        alarms: list[Alarm] = []
        rows, columns = np.nonzero(detector >= self.threshold)
        for r, c in zip(rows.tolist(), columns.tolist(), strict=True):
            p = int(ready[r])
            alarms.append(
                Alarm(
                    group=self._groups[int(self._accused[p, c])],
                    other=self._groups[int(self._against[p, c])],
                    test=self._tests[self._columns[c][1]][0],
                    evidence=float(detector[r, c] / self.threshold),
                )
            )
            wealth[r, c, :] = 0.0
        self._wealth[ready] = wealth
        return alarms

    def evidence(self) -> dict[str, tuple[float, str | None]]:
        """Per group: the largest detector / threshold over its comparisons, and against whom.

        0 for a group not yet compared (no unit closed); alerts are raised at 1.
        """
        found: dict[str, tuple[float, str | None]] = {g: (0.0, None) for g in self._groups}
        if not self._ia.size:
            return found
        detector = (self._wealth @ self._weights) / self.threshold  # (U, J)
        flat = detector.ravel()
        accused = self._accused.ravel()
        against = self._against.ravel()
        best = np.full(len(self._groups), -1.0)
        np.maximum.at(best, accused, flat)
        for i, group in enumerate(self._groups):
            if best[i] <= 0.0:
                continue
            hits = np.flatnonzero((accused == i) & (flat == best[i]))
            other = self._groups[int(against[hits[0]])] if hits.size else None
            found[group] = (float(best[i]), other)
        return found

    def reset(self, groups: Iterable[str] | None = None) -> None:
        """Forget the evidence of every pair involving ``groups`` (all pairs when None)."""
        if groups is None:
            self._wealth[:] = 0.0
            self._units[:] = 0
            self._pending[:] = 0.0
            return
        chosen = [self._index[g] for g in groups if g in self._index]
        if not chosen:
            return
        hit = np.isin(self._ia, chosen) | np.isin(self._ib, chosen)
        self._wealth[hit] = 0.0
        self._units[hit] = 0
        self._pending[:, hit] = 0.0


def batch_counts(events: Mapping[str, Sequence[int]]) -> dict[str, tuple[int, int]]:
    """A batch's 0/1 outcomes per group as the detector's input: ``{group: (outcomes, positives)}``."""
    return {g: (len(v), sum(1 for x in v if x)) for g, v in events.items() if v}


def merge_alarms(pending: dict[str, Alarm], alarms: Iterable[Alarm]) -> None:
    """Add ``alarms`` to ``pending`` (by group), keeping each group's strongest."""
    for alarm in alarms:
        known = pending.get(alarm.group)
        if known is None or alarm.evidence > known.evidence:
            pending[alarm.group] = alarm


def expected_false_alarm_bound(*, n: int, spec: SequentialSpec) -> float:
    """The guarantee's right-hand side: expected false alarms among the first ``n`` outcomes."""
    return (1.0 - spec.confidence) + n / spec.arl
