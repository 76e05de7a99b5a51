"""Baselines and skip-ratio control, all through the same MindSkip wrapper.

- :mod:`.ranking`: static-drop rankings ("What Matters in Transformers?");
- :mod:`.calibration`: thresholds that hit a requested skip ratio (one function per mode);
- :mod:`.random`: per-sequence random skipping from a hash of the tokens;
- :mod:`.skip`: batching and the realised skip ratio, shared by the others.

The methods built from these (static drop, random, calibrated routers) are typed specs in
:mod:`mindskip.methods`, applied by :func:`mindskip.methods.prepare_method`.
"""

from .calibration import (
    CALIBRATION_MODES,
    calibrate_global,
    calibrate_per_layer,
    calibrate_thresholds,
    calibration_record,
    one_batch,
)
from .random import HashedSkip, sequence_uniform
from .ranking import (
    LAYER0_NOTE,
    RANKING_FORMAT,
    drop_layers,
    layer_similarities,
    load_ranking,
    rank_importance,
    ranking_record,
    save_ranking,
)
from .skip import (
    Batch,
    as_batches,
    max_skip_ratio,
    measure_skip_ratio,
    pad_batches,
    rates_from_stats,
    realised_skip_ratio,
    sequence_skip_ratios,
    skip_summary,
)

__all__ = [
    "Batch",
    "CALIBRATION_MODES",
    "HashedSkip",
    "LAYER0_NOTE",
    "RANKING_FORMAT",
    "as_batches",
    "calibrate_global",
    "calibrate_per_layer",
    "calibrate_thresholds",
    "calibration_record",
    "drop_layers",
    "layer_similarities",
    "load_ranking",
    "max_skip_ratio",
    "measure_skip_ratio",
    "one_batch",
    "pad_batches",
    "rank_importance",
    "ranking_record",
    "rates_from_stats",
    "realised_skip_ratio",
    "save_ranking",
    "sequence_skip_ratios",
    "sequence_uniform",
    "skip_summary",
]
