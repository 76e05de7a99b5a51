"""Shim: which runs the claims compare, as the plan chose them (mindskip.roles)."""

from mindskip.provenance import log_to_file
from mindskip.roles import Roles, write_roles

sm = snakemake  # noqa: F821
log_to_file(sm.log[0])
write_roles(Roles.from_dict(sm.params.roles), sm.output[0])
