"""The README's main job: the example session on the seed's two models, run as a user runs it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.release import VERSION

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_example_session_passes_with_the_seed_figures(tmp_path: Path) -> None:
    project = tmp_path / "examples"
    shutil.copytree(EXAMPLES, project, ignore=shutil.ignore_patterns(".pytest_cache", "__pycache__"))
    before = {p: p.read_bytes() for p in sorted((project / "baselines").rglob("*.json"))}
    made_with = {json.loads(b)["estimator"]["vela_version"] for b in before.values()}
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-s"],
                         cwd=project, capture_output=True, text=True, timeout=600)
    out = run.stdout
    if made_with != {VERSION}:
        # The committed baselines hold another release's figures, and estimates change between
        # releases (README, "How estimates depend on Vela"): the gate must say so and fail.
        assert run.returncode == 1, out[-3000:] + run.stderr[-3000:]
        assert f"baseline made with Vela {made_with.pop()}, now {VERSION} (total cycles " in out
        assert {p: p.read_bytes() for p in sorted((project / "baselines").rglob("*.json"))} == before
        return
    assert run.returncode == 0, out[-3000:] + run.stderr[-3000:]
    assert "third convolution: 90ch 1060650 cycles at 90.9% utilisation, 96ch 1060650 cycles at 97.0%" in out
    assert "-> 96 channels: same cycles, +6.7% MACs (MAC utilisation 90.9% -> 97.0%)" in out
    assert "1 passed" in out and "REGRESSED" not in out and "MISSING" not in out
    assert {p: p.read_bytes() for p in sorted((project / "baselines").rglob("*.json"))} == before
