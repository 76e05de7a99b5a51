"""Paired metrics of a method against a reference run on the same items.

Per item, from the per-item logs (:func:`mindskip.evaluate.items.read_items`):

- ``acc_diff``: score(method) - score(reference), the score being ``acc_norm``, ``acc``
  or ``exact_match`` (by default the first of these that the task's rows carry, which
  is the reported metric of every task in this pipeline);
- ``kl``: KL(reference || method) of the item's choice distribution. By default it is
  length-normalised as ``acc_norm`` is: ``p_i = softmax_i(ll_i / chars_i)`` over the
  choices (``normalise=False``: ``softmax_i(ll_i)``);
- ``gold_logprob``: log p_gold(method) - log p_gold(reference) under that distribution;
- ``flip``: 1 if the prediction changes (argmax of the same score's distribution, or
  the filtered response of a generation task); ``flip_gain``: wrong -> right,
  ``flip_loss``: right -> wrong (each a share of n).

Each metric is the mean of its per-item values, per task and pooled over tasks (item
weighted by default; ``weights="tasks"`` gives every task the same weight). The CI is a
two-sided percentile bootstrap (95% by default: each end a one-sided 2.5% test) that
resamples **clusters**, stratified by task: items that share a prompt (``prompt_hash``)
share one routing decision under ``route_on: prompt``, so they are drawn together; each
resample draws every task's clusters with replacement to that task's cluster count. An
item without a prompt hash is its own cluster. The draws are seeded with
``numpy.random.default_rng(seed)`` and depend only on the seed and the tasks' cluster
counts, so every metric, method and comparison computed on the same items shares one
resample. :data:`N_BOOT` (10,000) resamples by default. ``stderr`` is the analytic
cluster-robust stratified standard error of the (ratio) mean: per task
``sqrt(G/(G-1) sum_c (S_c - mean W_c)^2) / W`` (G clusters, S_c the cluster's sum, W_c its
item count), which is ``s_t / sqrt(n_t)`` when every item is its own cluster; pooled
``sqrt(sum_t W_t^2 se_t^2) / N`` (items) or ``sqrt(sum_t se_t^2) / T`` (tasks).
Multiple-choice metrics (``kl``, ``gold_logprob``) skip generation items, so their n can
be smaller than the accuracy's.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .rules import minimum_detectable_effect


class ItemMismatchError(ValueError):
    """Two runs did not score the same items (ids differ, or the same id holds a
    different document)."""


METRICS = ("acc_diff", "kl", "gold_logprob", "flip", "flip_gain", "flip_loss")
HIGHER_IS_BETTER = {
    "acc_diff": True,
    "kl": False,
    "gold_logprob": True,
    "flip": False,
    "flip_gain": True,
    "flip_loss": False,
}
SCORE_PREFERENCE = ("acc_norm", "acc", "exact_match")
FILTER_PREFERENCE = ("none", "strict-match")
POOLED = "pooled"
WEIGHTS = ("items", "tasks")
N_BOOT = 10_000  # bootstrap resamples: CI ends move by < 0.2 points between seeds
CI_METHOD = "cluster bootstrap (items sharing a prompt drawn together), stratified by task"
_CHUNK_CELLS = 1 << 21  # bootstrap draws generated per block (bounded memory)

Key = tuple[str, str, int]
Rows = Iterable[Mapping[str, Any]]


@dataclass(frozen=True)
class Estimate:
    """One metric on one task (or ``task="pooled"``): mean, stderr and bootstrap CI."""

    metric: str
    task: str
    value: float
    stderr: float
    ci_low: float
    ci_high: float
    n: int
    confidence: float
    n_boot: int
    seed: int

    def mde(self, alpha: float = 0.05, power: float = 0.8) -> float:
        """Smallest detectable effect at this n (:func:`minimum_detectable_effect`)."""
        return minimum_detectable_effect(self.stderr, alpha, power)

    def to_row(self) -> dict[str, Any]:
        return asdict(self) | {"mde": self.mde()}


@dataclass(frozen=True)
class PairedMetrics:
    """Metrics of ``method`` minus those of ``baseline``, each paired against ``reference``.

    With ``baseline == reference`` this is the method against the reference (dense);
    otherwise every value is a difference on the same items, e.g. ``kl`` is
    KL(ref || method) - KL(ref || baseline) and ``acc_diff`` is acc(method) -
    acc(baseline). ``scores`` maps each task to the score column used for it.
    """

    method: str
    baseline: str
    reference: str
    scores: tuple[tuple[str, str], ...]
    normalised: bool
    weights: str
    estimates: tuple[Estimate, ...]

    @property
    def label(self) -> str:
        if self.baseline == self.reference:
            return f"{self.method} vs {self.reference}"
        return f"{self.method} vs {self.baseline} (paired on {self.reference})"

    def get(self, metric: str, task: str = POOLED) -> Estimate:
        for e in self.estimates:
            if e.metric == metric and e.task == task:
                return e
        have = sorted({(e.metric, e.task) for e in self.estimates})
        raise KeyError(f"no estimate for metric {metric!r} on task {task!r} (have {have})")

    def to_rows(self) -> list[dict[str, Any]]:
        """Tidy long-format rows: one per task x metric, plus ``task="pooled"``."""
        scores = dict(self.scores)
        pooled_score = "+".join(sorted(set(scores.values())))
        head = {"method": self.method, "baseline": self.baseline, "reference": self.reference}
        return [
            head
            | {"score": scores.get(e.task, pooled_score), "normalised": self.normalised}
            | {"weights": self.weights}
            | e.to_row()
            for e in self.estimates
        ]


# ----------------------------------------------------------------------------- alignment
@dataclass(frozen=True, eq=False)
class ItemTable:
    """Rows of several runs on the same items, in one order (sorted by task, doc id)."""

    keys: tuple[Key, ...]
    tasks: tuple[str, ...]
    strata: np.ndarray
    runs: Mapping[str, tuple[Mapping[str, Any], ...]]
    clusters: np.ndarray | None = None  # one code per item: items sharing a prompt

    @property
    def n(self) -> int:
        return len(self.keys)


def _choose_filter(task: str, present: set[str], filters: Mapping[str, str] | None) -> str:
    if filters and task in filters:
        if filters[task] not in present:
            raise ItemMismatchError(f"task {task}: no rows with filter {filters[task]!r}")
        return filters[task]
    for f in FILTER_PREFERENCE:
        if f in present:
            return f
    return sorted(present)[0]


def _keyed_run(
    name: str, rows: Rows, tasks: set[str] | None, filters: Mapping[str, str] | None
) -> dict[Key, Mapping[str, Any]]:
    kept = [r for r in rows if tasks is None or r.get("task") in tasks]
    present: dict[str, set[str]] = {}
    for r in kept:
        present.setdefault(str(r.get("task", "")), set()).add(str(r.get("filter", "none")))
    chosen = {t: _choose_filter(t, fs, filters) for t, fs in present.items()}
    out: dict[Key, Mapping[str, Any]] = {}
    for r in kept:
        key = (str(r.get("task", "")), str(r.get("filter", "none")), int(r["doc_id"]))
        if key[1] != chosen[key[0]]:
            continue
        if key in out:
            raise ItemMismatchError(f"item {key} appears twice in run {name!r}")
        out[key] = r
    if POOLED in present:
        raise ValueError(f"a task may not be called {POOLED!r}")
    return out


def _check_same_document(key: Key, name: str, a: Mapping, ref: str, b: Mapping) -> None:
    def differ(field: str) -> bool:
        x, y = a.get(field), b.get(field)
        return x is not None and y is not None and x != y

    if len(a.get("loglikelihoods") or []) != len(b.get("loglikelihoods") or []):
        raise ItemMismatchError(
            f"item {key}: runs {name!r} and {ref!r} scored a different number of choices"
        )
    for field in ("doc_hash", "target", "choice_chars"):
        if differ(field):
            raise ItemMismatchError(
                f"item {key}: {field} differs between runs {name!r} and {ref!r} "
                f"({a[field]!r} vs {b[field]!r}): they scored different documents"
            )


def align_runs(
    runs: Mapping[str, Rows],
    *,
    tasks: Iterable[str] | None = None,
    filters: Mapping[str, str] | None = None,
) -> ItemTable:
    """Rows of every run keyed by (task, filter, doc id), checked to be the same items.

    One filter per task: ``filters[task]`` if given, else ``none``, else
    ``strict-match``, else the first in sorted order. Raises :class:`ItemMismatchError`
    when the runs hold different items, or the same id holds a different document
    (``doc_hash``, ``target``, ``choice_chars`` or the number of choices differ).
    """
    if not runs:
        raise ValueError("no runs to align")
    task_set = set(tasks) if tasks is not None else None
    keyed = {name: _keyed_run(name, rows, task_set, filters) for name, rows in runs.items()}
    first, ref = next(iter(keyed.items()))
    if not ref:
        raise ItemMismatchError(f"run {first!r} has no items (tasks={tasks!r})")
    for name, rows in keyed.items():
        if set(rows) != set(ref):
            only_a = sorted(set(rows) - set(ref), key=str)
            only_b = sorted(set(ref) - set(rows), key=str)
            raise ItemMismatchError(
                f"runs {name!r} and {first!r} scored different items: {len(only_a)} only in "
                f"{name!r} (e.g. {only_a[:3]}), {len(only_b)} only in {first!r} (e.g. "
                f"{only_b[:3]}); evaluate both with the same suite, limit and seed"
            )
        for key, row in rows.items():
            _check_same_document(key, name, row, first, ref[key])
    keys = tuple(sorted(ref, key=lambda k: (k[0], k[2], k[1])))
    task_names = tuple(sorted({k[0] for k in keys}))
    code = {t: i for i, t in enumerate(task_names)}
    strata = np.array([code[k[0]] for k in keys], dtype=np.int64)
    ordered = {name: tuple(rows[k] for k in keys) for name, rows in keyed.items()}
    return ItemTable(
        keys=keys, tasks=task_names, strata=strata, runs=ordered, clusters=_clusters(keys, ref)
    )


def _clusters(keys: Sequence[Key], rows: Mapping[Key, Mapping[str, Any]]) -> np.ndarray:
    """Items of one task with the same ``prompt_hash`` share a cluster (one routing
    decision under ``route_on: prompt``); an item without one is its own cluster."""
    code: dict[tuple, int] = {}
    out = np.empty(len(keys), dtype=np.int64)
    for i, k in enumerate(keys):
        h = rows[k].get("prompt_hash")
        out[i] = code.setdefault((k[0], h) if h else (k[0], None, k[2]), len(code))
    return out


def score_columns(table: ItemTable, score: str | Mapping[str, str] | None) -> dict[str, str]:
    """The score column of each task: ``score`` (one name or a mapping task -> name), else
    the first of ``acc_norm``, ``acc``, ``exact_match`` that every row of the task has."""
    out: dict[str, str] = {}
    for t in table.tasks:
        given = score if isinstance(score, str) else (score or {}).get(t)
        idx = [i for i, k in enumerate(table.keys) if k[0] == t]
        rows = [run[i] for run in table.runs.values() for i in idx]
        options = [given] if given else list(SCORE_PREFERENCE)
        found = [c for c in options if all(c in r for r in rows)]
        if not found:
            raise KeyError(f"task {t}: not every row has a score column among {options}")
        out[t] = found[0]
    return out


# ----------------------------------------------------------------------------- per item
@dataclass(frozen=True, eq=False)
class RunArrays:
    """One run's per-item arrays in table order (``logp`` NaN-padded, NaN for generation)."""

    correct: np.ndarray
    pred: np.ndarray
    logp: np.ndarray
    gold: np.ndarray


def _gold_indices(target: Any, k: int, key: Key) -> list[int]:
    gold = target if isinstance(target, list) else [target]
    if not gold or not all(isinstance(g, int) and not isinstance(g, bool) for g in gold):
        raise ValueError(f"item {key}: target {target!r} is not a choice index")
    if not all(0 <= g < k for g in gold):
        raise ValueError(f"item {key}: target {target!r} is outside {k} choices")
    return gold


def _log_softmax(x: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        top = np.nanmax(x, axis=1, keepdims=True)
        lse = top + np.log(np.nansum(np.exp(x - top), axis=1, keepdims=True))
    return x - lse


def run_arrays(table: ItemTable, name: str, scores: Mapping[str, str], normalise: bool = True):
    """Per-item correctness, prediction, choice log-probabilities and gold log-probability."""
    rows, keys = table.runs[name], table.keys
    width = max([len(r.get("loglikelihoods") or []) for r in rows] + [1])
    ll = np.full((table.n, width), np.nan)
    chars = np.ones((table.n, width))
    gold_mask = np.zeros((table.n, width), dtype=bool)
    correct = np.empty(table.n)
    pred = np.empty(table.n, dtype=object)
    for i, (r, key) in enumerate(zip(rows, keys, strict=True)):
        col = scores[key[0]]
        correct[i] = float(r[col])
        lls = r.get("loglikelihoods")
        if not lls:
            pred[i] = "r" + json.dumps(r.get("response"), sort_keys=True)
            continue
        ll[i, : len(lls)] = lls
        c = r.get("choice_chars")
        if c is not None:
            chars[i, : len(lls)] = np.maximum(np.asarray(c, dtype=float), 1.0)
        elif normalise or col == "acc_norm":
            raise ValueError(f"item {key} of run {name!r} has no choice_chars to normalise by")
        gold_mask[i, _gold_indices(r.get("target"), len(lls), key)] = True
    mc = ~np.isnan(ll[:, 0])
    norm_x = ll / chars
    x = norm_x if normalise else ll
    logp = np.full_like(ll, np.nan)
    logp[mc] = _log_softmax(x[mc])
    gold = np.full(table.n, np.nan)
    gold[mc] = np.logaddexp.reduce(np.where(gold_mask[mc], logp[mc], -np.inf), axis=1)
    use_norm = np.array([scores[k[0]] == "acc_norm" for k in keys])
    choice = np.where(use_norm[:, None], norm_x, ll)
    arg = np.where(np.isnan(choice), -np.inf, choice).argmax(axis=1)
    for i in np.flatnonzero(mc):
        pred[i] = f"c{arg[i]}"
    return RunArrays(correct=correct, pred=pred, logp=logp, gold=gold)


def item_metrics(method: RunArrays, reference: RunArrays) -> np.ndarray:
    """Per-item values of :data:`METRICS` (columns in that order) of method vs reference."""
    p_ref = np.exp(reference.logp)
    with np.errstate(invalid="ignore"):
        kl = np.nansum(np.where(np.isnan(p_ref), 0.0, p_ref * (reference.logp - method.logp)), 1)
    kl[np.isnan(reference.gold)] = np.nan
    cols = {
        "acc_diff": method.correct - reference.correct,
        "kl": kl,
        "gold_logprob": method.gold - reference.gold,
        "flip": (method.pred != reference.pred).astype(float),
        "flip_gain": (method.correct > reference.correct).astype(float),
        "flip_loss": (method.correct < reference.correct).astype(float),
    }
    return np.column_stack([cols[m] for m in METRICS])


# ----------------------------------------------------------------------------- bootstrap
def _stratum_counts(rng: np.random.Generator, n_t: int, n_boot: int) -> Iterator[np.ndarray]:
    """Blocks of resample counts (rows: resamples, columns: the stratum's items)."""
    block = max(1, _CHUNK_CELLS // n_t)
    for start in range(0, n_boot, block):
        c = min(block, n_boot - start)
        idx = rng.integers(0, n_t, size=(c, n_t)) + (np.arange(c) * n_t)[:, None]
        yield np.bincount(idx.ravel(), minlength=c * n_t).reshape(c, n_t).astype(np.float64)


def stratified_counts(strata: Sequence[int] | np.ndarray, n_boot: int, seed: int = 0):
    """``(n_boot, n)`` counts: how often each item is drawn in each resample; strata in
    sorted order, each resampled with replacement to its own size. These are the draws
    :func:`summarise` uses (for small n: tests, plots)."""
    strata = np.asarray(strata)
    rng = np.random.default_rng(seed)
    out = np.zeros((n_boot, len(strata)))
    for s in np.unique(strata):
        cols = np.flatnonzero(strata == s)
        out[:, cols] = np.vstack(list(_stratum_counts(rng, len(cols), n_boot)))
    return out


def _cluster_sums(
    v: np.ndarray, w: np.ndarray, clusters: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster sums of values and of defined-value counts (clusters in first-seen
    order; with one item per cluster, the items themselves in order)."""
    _, first, inv = np.unique(clusters, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # cluster code -> rank of first appearance
    idx = order[inv]
    sv, sw = np.zeros((len(first), v.shape[1])), np.zeros((len(first), v.shape[1]))
    np.add.at(sv, idx, v)
    np.add.at(sw, idx, w)
    return sv, sw


@dataclass(frozen=True, eq=False)
class Summary:
    """Arrays of shape (tasks + 1, columns); the last row is pooled."""

    value: np.ndarray
    stderr: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    n: np.ndarray


def _quantiles(boot: np.ndarray, q: list[float]) -> tuple[np.ndarray, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanquantile(boot, q, axis=0)
    return lo, hi


def summarise(
    values: np.ndarray,
    strata: np.ndarray,
    n_boot: int = N_BOOT,
    seed: int = 0,
    confidence: float = 0.95,
    weights: str = "items",
    clusters: np.ndarray | None = None,
) -> Summary:
    """Means, stratified stderr and stratified percentile bootstrap CI of each column of
    ``values`` (items x columns; NaN = not defined for that item), per stratum (``strata``:
    one label per item, taken in sorted order) and pooled (the last row).

    ``clusters`` (one label per item, None: every item its own) are the units drawn:
    each stratum's clusters are drawn with replacement to their own count (with one item
    per cluster this is :func:`stratified_counts` ``(strata, n_boot, seed)``), so a
    pooled mean keeps the task mix fixed and items that share a decision move together.
    ``weights="items"`` pools as the mean over all items, ``"tasks"`` as the mean of the
    task means; the stderr (cluster-robust) follows the same weights."""
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS}, got {weights!r}")
    values = np.asarray(values, dtype=np.float64)
    _, strata = np.unique(np.asarray(strata), return_inverse=True)  # 0..T-1, sorted labels
    if clusters is None:
        clusters = np.arange(len(strata))
    _, clusters = np.unique(np.asarray(clusters), return_inverse=True)
    valid = np.isfinite(values)
    v0, w = np.where(valid, values, 0.0), valid.astype(np.float64)
    n_strata, k = int(strata.max()) + 1, values.shape[1]
    shape = (n_strata + 1, k)
    value, se, lo, hi = (np.full(shape, np.nan) for _ in range(4))
    count = np.zeros(shape, dtype=np.int64)
    var_sum = np.zeros(k)
    boot = {x: np.zeros((n_boot, k)) for x in ("sum", "cnt", "means", "tasks")}
    rng = np.random.default_rng(seed)
    q = [(1.0 - confidence) / 2.0, 1.0 - (1.0 - confidence) / 2.0]
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for t in range(n_strata):
            vt, wt = _cluster_sums(v0[strata == t], w[strata == t], clusters[strata == t])
            m = wt.sum(axis=0)
            mean = vt.sum(axis=0) / m
            # clusters that hold at least one defined value, per column
            g = (wt > 0).sum(axis=0)
            resid = np.where(wt > 0, vt - mean * wt, 0.0)
            var_t = np.where(g > 1, g / np.maximum(g - 1, 1) * (resid**2).sum(axis=0), np.nan)
            var_t = var_t / np.maximum(m, 1) ** 2
            value[t], count[t] = mean, m
            se[t] = np.sqrt(var_t)
            var_sum += np.where(g > 1, var_t, 0.0) * (m**2 if weights == "items" else 1.0)
            if n_boot <= 0:
                continue
            bs, bc = np.empty((n_boot, k)), np.empty((n_boot, k))
            pos = 0
            for c in _stratum_counts(rng, len(vt), n_boot):
                bs[pos : pos + len(c)], bc[pos : pos + len(c)] = c @ vt, c @ wt
                pos += len(c)
            bm = bs / bc
            lo[t], hi[t] = _quantiles(bm, q)
            boot["sum"] += bs
            boot["cnt"] += bc
            boot["means"] += np.where(bc > 0, bm, 0.0)
            boot["tasks"] += bc > 0
        total = count[:n_strata].sum(axis=0)
        tasks_with = (count[:n_strata] > 0).sum(axis=0)
        count[n_strata] = total
        if weights == "items":
            value[n_strata] = np.nansum(value[:n_strata] * count[:n_strata], axis=0) / total
            se[n_strata] = np.sqrt(var_sum) / total
            pooled = boot["sum"] / boot["cnt"]
        else:
            value[n_strata] = np.nanmean(value[:n_strata], axis=0)
            se[n_strata] = np.sqrt(var_sum) / tasks_with
            pooled = boot["means"] / boot["tasks"]
        if n_boot > 0:
            lo[n_strata], hi[n_strata] = _quantiles(pooled, q)
    return Summary(value=value, stderr=se, ci_low=lo, ci_high=hi, n=count)
