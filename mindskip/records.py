"""What an evaluation or a profile record must hold for the report and the verdicts to
read it: one JSON Schema each, checked where the record is written and where it is read.

The schema names only what is read downstream (the scored rows, the planned method, the
realised routing, the route, the per-item log); a record may hold more (provenance, the
model's hash, the suite's settings). The planned method (``method.spec``) is optional
here, since a record of the command line has none; the report reads it with
:func:`mindskip.method.stored_method`, which refuses a record without it. A record that
lacks a read key fails at the write, or at the read with the file and the key named,
never as a blank cell later on.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .files import ResultFileError

_NUMBER = {"type": "number"}
_MAYBE_NUMBER = {"type": ["number", "null"]}
_PER_LAYER = {"type": "object", "additionalProperties": _NUMBER}
_ROUTING_STATS = {
    "type": ["object", "null"],
    "properties": {
        "skip_ratio": _MAYBE_NUMBER,
        "num_layers": {"type": ["integer", "null"]},
        "capacity_per_layer": _PER_LAYER,
        "decisions_per_layer": {"type": ["object", "null"], "additionalProperties": _NUMBER},
    },
}


def _rows(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    """A record's ``rows``: at least one, each an object holding ``required``."""
    item = {"type": "object", "required": required, "properties": properties}
    return {"type": "array", "minItems": 1, "items": item}


_METHOD = {  # a workflow job's holds the planned method (spec); the report needs it
    "type": "object",
    "properties": {
        "spec": {"type": "object", "required": ["name", "kind", "ratio"]},
        "requested_skip_ratio": _MAYBE_NUMBER,
    },
}

EVALUATION_RECORD: dict[str, Any] = {
    "type": "object",
    "required": ["rows", "method", "files"],
    "properties": {
        "rows": _rows(
            ["task", "metric", "value", "stderr", "n"],
            {
                "task": {"type": "string"},
                "label": {"type": "string"},
                "metric": {"type": "string"},
                "value": _NUMBER,
                "stderr": _MAYBE_NUMBER,
                "n": {"type": "integer", "minimum": 1},
                "n_available": {"type": ["integer", "null"]},
                "chance": _MAYBE_NUMBER,
                "num_fewshot": {"type": ["integer", "null"]},
                "leaf_tasks": {"type": ["array", "null"], "items": {"type": "string"}},
            },
        ),
        "method": _METHOD,
        "routing": {
            "type": ["object", "null"],
            "properties": {
                "realised": _ROUTING_STATS,
                "realised_per_task": {
                    "type": ["object", "null"],
                    "additionalProperties": _ROUTING_STATS,
                },
            },
        },
        "run": {
            "type": "object",
            "properties": {"route_on": {"type": ["string", "null"]}},
        },
        "files": {
            "type": "object",
            "required": ["items"],
            "properties": {"items": {"type": "string"}},
        },
    },
}


# What every profile row holds (profile.csv holds the same rows as profile.json's
# ``rows``): the regime, the variant, its skip ratio, how many timed repeats and whether it
# ran. Its speed against dense in the same process and the CI come with the repeats (a row
# without timings, or too few repeats for a CI, leaves them out); typed where present.
PROFILE_ROW_KEYS = (
    "method", "variant", "phase", "cache", "batch", "prompt_len", "new_tokens", "repeats",
    "skip_ratio", "status",
)  # fmt: skip
PROFILE_RECORD: dict[str, Any] = {
    "type": "object",
    "required": ["rows", "versions", "environment"],
    "properties": {
        "rows": _rows(
            list(PROFILE_ROW_KEYS),
            {
                "method": {"type": "string"},
                "variant": {"enum": ["dense", "mindskip", "ceiling"]},
                "phase": {"enum": ["prefill", "decode"]},
                "cache": {"type": "string"},
                "batch": {"type": "integer", "minimum": 1},
                "prompt_len": {"type": "integer", "minimum": 1},
                "new_tokens": {"type": "integer", "minimum": 0},
                "repeats": {"type": "integer", "minimum": 0},
                "skip_ratio": _MAYBE_NUMBER,
                "speedup": _MAYBE_NUMBER,
                "speedup_ci_low": _MAYBE_NUMBER,
                "speedup_ci_high": _MAYBE_NUMBER,
                "resolved": {"type": ["boolean", "null"]},
                "status": {"type": "string"},
            },
        ),
        "method": _METHOD,
        "versions": {"type": "object"},
        "environment": {"type": "object"},
    },
}


def check_evaluation(record: Mapping[str, Any], where: str | Path) -> Mapping[str, Any]:
    """``record`` if it holds what the report reads; else a :class:`ResultFileError`
    naming ``where`` and the first key that is missing or of the wrong type."""
    return _check(record, EVALUATION_RECORD, "an evaluation record", where)


def check_profile(record: Mapping[str, Any], where: str | Path) -> Mapping[str, Any]:
    """``record`` if it holds what the speed tables read (:data:`PROFILE_RECORD`); else a
    :class:`ResultFileError` naming ``where`` and the key."""
    return _check(record, PROFILE_RECORD, "a profile record", where)


def _check(
    record: Mapping[str, Any], schema: Mapping[str, Any], what: str, where: str | Path
) -> Mapping[str, Any]:
    import jsonschema

    try:
        jsonschema.validate(record, schema)
    except jsonschema.ValidationError as e:
        key = ".".join(str(p) for p in e.absolute_path) or "(top level)"
        raise ResultFileError(f"{where}: not {what} at {key}: {e.message}") from None
    return record
