"""The one held-out split of a training set: train / validation / calibration / check.

Every rule that reads training records takes its part from :func:`split_records`, for
every data source, so no record is both trained on and used to rank, calibrate or check:

- ``calibration``: the last ``calibration`` records (rankings and thresholds are fitted on
  them);
- ``check``: the ``calibration`` records before those (a calibrated skip ratio is checked
  on them, never fitted);
- ``validation``: ``validation`` records drawn (seeded) from the rest;
- ``train``: what is left, in a seeded order, cut to ``max_samples``.

Tail first, then the seeded validation draw: the same records land in the same part
whatever ``max_samples`` is, so runs that differ only in sample size train on nested sets
and validate on the same records.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

Record = dict[str, Any]


@dataclass(frozen=True)
class RecordSplit:
    train: list[Record]
    validation: list[Record]
    calibration: list[Record]
    check: list[Record]

    def sizes(self) -> dict[str, int]:
        return {k: len(getattr(self, k)) for k in ("train", "validation", "calibration", "check")}


def split_records(
    records: Sequence[Record],
    *,
    calibration: int,
    validation: int,
    seed: int = 0,
    max_samples: int | None = None,
) -> RecordSplit:
    """Split ``records`` (see the module docstring). Raises when too few records are left
    to train on, naming the counts."""
    if calibration < 0 or validation < 0:
        raise ValueError("calibration and validation counts must be >= 0")
    n = len(records)
    pool_end = n - 2 * calibration
    if pool_end - validation < 1:
        raise ValueError(
            f"{n} records cannot give 2 x {calibration} held-out (calibration and check) and "
            f"{validation} validation records and still leave one to train on"
        )
    cal = list(records[pool_end + calibration :])
    check = list(records[pool_end : pool_end + calibration])
    pool = list(records[:pool_end])
    order = list(range(len(pool)))
    random.Random(seed).shuffle(order)
    val = [pool[i] for i in order[:validation]]
    train = [pool[i] for i in order[validation:]]
    if max_samples is not None:
        train = train[:max_samples]
    return RecordSplit(train=train, validation=val, calibration=cal, check=check)
