"""scripts/install.sh picks how to get torch: the GPU image's own CUDA torch (a venv with
system site packages) when there is an NVIDIA GPU and the python imports a working CUDA
torch, else today's isolated venv; an environment variable forces either. Checked through
its --plan mode, with a fake nvidia-smi and a fake python (nothing is installed)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def plan(tmp_path: Path, gpu: bool, cuda_torch: bool | None, force: str | None = None) -> str:
    bin_ = tmp_path / "bin"
    bin_.mkdir(exist_ok=True)
    smi = bin_ / "nvidia-smi"
    smi.write_text("#!/bin/sh\nexit 0\n" if gpu else "#!/bin/sh\nexit 9\n")
    py = bin_ / "python-with-torch"
    if cuda_torch is None:  # no torch at all
        py.write_text("#!/bin/sh\necho 'No module named torch' >&2\nexit 1\n")
    else:
        code = 0 if cuda_torch else 1  # the CUDA check fails, a plain import works
        py.write_text(
            "#!/bin/sh\necho '2.11.0+cu130 cuda 13.0'\n"
            f'case "$2" in *is_available*) exit {code};; esac\nexit 0\n'
        )
    for f in (smi, py):
        f.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}", "PYTHON": str(py)}
    env.pop("MINDSKIP_SYSTEM_TORCH", None)
    if force is not None:
        env["MINDSKIP_SYSTEM_TORCH"] = force
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "install.sh"), "--plan"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    return f"rc={proc.returncode} {proc.stdout.strip()} {proc.stderr.strip()}"


@pytest.mark.parametrize(
    ("gpu", "cuda_torch", "force", "want"),
    [
        (True, True, None, "rc=0 [install] plan: torch mode system (NVIDIA GPU found"),
        (True, False, None, "rc=0 [install] plan: torch mode isolated (NVIDIA GPU found, but"),
        (False, True, None, "rc=0 [install] plan: torch mode isolated (no NVIDIA GPU"),
        (True, True, "0", "rc=0 [install] plan: torch mode isolated (forced by"),
        (False, False, "1", "rc=0 [install] plan: torch mode system (forced by"),
        (False, None, "1", "rc=1 [install] MINDSKIP_SYSTEM_TORCH=1 but"),
        (True, True, "maybe", "rc=1 [install] MINDSKIP_SYSTEM_TORCH must be auto, 1 or 0"),
    ],
)
def test_install_plan_chooses_the_torch(tmp_path, gpu, cuda_torch, force, want):
    got = plan(tmp_path, gpu, cuda_torch, force)
    assert got.startswith(want) or (want.startswith("rc=1") and want[5:] in got), got
    if "system" in want and want.startswith("rc=0"):
        assert "system torch 2.11.0+cu130" in got  # it says which torch it reuses
