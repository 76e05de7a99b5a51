"""The experiment config's schema: the one place its keys and defaults are written.

``workflow/rules/common.smk`` validates every config against it before any job starts;
:func:`validated` does the same in Python (tests, notebooks), filling the defaults exactly
as the workflow does (Snakemake's ``validate``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")


def validated(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` checked against the schema, with every default filled in.

    Raises ``snakemake.exceptions.WorkflowError`` naming the offending key."""
    from snakemake.utils import validate

    out = copy.deepcopy(dict(config))
    validate(out, str(SCHEMA_PATH), set_default=True)
    return out


def schema_defaults(section: str) -> dict[str, Any]:
    """``{key: default}`` of one top-level object section (e.g. ``"recipe"``)."""
    import yaml

    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    node = schema["properties"][section]
    if node.get("type") == "array":
        node = node["items"]
    return {k: v["default"] for k, v in node.get("properties", {}).items() if "default" in v}
