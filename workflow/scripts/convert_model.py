"""Shim: convert an embedded model (mindskip.data.assets.convert_embedded)."""

from pathlib import Path

from mindskip.data.assets import convert_embedded
from mindskip.data.models import embedded_model
from mindskip.provenance import log_to_file

sm = snakemake  # noqa: F821
log_to_file(sm.log[0])
convert_embedded(embedded_model(sm.params.source), Path(sm.output.provenance).parent)
