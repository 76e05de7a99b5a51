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


def check_section(section: str, values: Mapping[str, Any], *, where: str) -> None:
    """Check ``values`` (some keys of one section, no defaults filled) against that
    section's schema; raises ``ValueError`` naming ``where`` and the key."""
    import jsonschema
    import yaml

    node = dict(yaml.safe_load(SCHEMA_PATH.read_text())["properties"][section])
    node.pop("default", None)
    try:
        jsonschema.validate(dict(values), node)
    except jsonschema.ValidationError as e:
        key = ".".join(str(p) for p in e.absolute_path)
        raise ValueError(f"{where}{'.' + key if key else ''}: {e.message}") from None


def dataset_generation_defaults() -> dict[str, Any]:
    """Defaults of a self-generated ``datasets`` entry (Snakemake's ``validate`` does not
    fill defaults inside ``oneOf``)."""
    import yaml

    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    options = schema["properties"]["datasets"]["additionalProperties"]["oneOf"]
    node = next(o for o in options if o.get("type") == "object")
    return {k: v["default"] for k, v in node["properties"].items() if "default" in v}
