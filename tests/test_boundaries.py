"""The exact edges of the gate's rules, where a wrong comparison still looks right elsewhere.

Each test here is named in ``scripts/mutate.py`` for the mutation it exists to catch: a
tolerance measured from the new value instead of the baseline, ``>=`` for ``>``, ``max`` for
the sum ``atol + rtol * |baseline|``, a marker's per-metric tolerance beating the call's, and an
in-session memo that answers another target's estimate or counts the advisor's compiles as a test's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_ethosu.baseline import from_json
from pytest_ethosu.compare import Tolerance, Tolerances
from pytest_ethosu.estimator import Estimator
from pytest_ethosu.gate import Failure, Status, decide
from pytest_ethosu.result import TOTAL_METRICS
from pytest_ethosu.target import resolve
from tests.models import use


def document(cycles: float) -> dict[str, Any]:
    """A baseline document whose total and only layer take ``cycles`` (everything else 0)."""
    totals: dict[str, Any] = dict.fromkeys(TOTAL_METRICS, 0)
    totals.update(total_cycles=cycles, npu_cycles=cycles)
    layer = {"index": 0, "name": "l0", "op": "Conv2D", "npu_op": "Conv2D", "placement": "NPU", "cycles": cycles,
             "npu_cycles": cycles, "sram_access_cycles": 0, "dram_access_cycles": 0,
             "on_chip_flash_access_cycles": 0, "off_chip_flash_access_cycles": 0, "macs": 10,
             "mac_utilization": 1.0, "staging_usage": 0}
    return {"schema": 1, "test": "t.py::t", "name": "default", "model": {"path": "m", "sha256": "0" * 64},
            "estimator": {"vela_version": "5.2.0", "core": "regor", "target": {}},
            "totals": totals, "layers": [layer]}


def status(base: float, now: float, tolerances: Tolerances) -> tuple[Status, Failure | None]:
    verdict = decide(from_json(document(base), "base"), from_json(document(now), "now"), tolerances, update=False,
                     strict=False, drift_policy="warn")
    return verdict.status, verdict.failure


RTOL = Tolerances.merge([{"rtol": 0.01}])
BOTH = Tolerances.merge([{"rtol": 0.01, "atol": 5}])


@pytest.mark.parametrize("now, expected", [
    (10_100, (Status.OK, None)),  # +100 = 1% of the baseline: exactly at the limit passes
    (10_101, (Status.REGRESSED, Failure.REGRESSED)),  # +101 > 100; 1% of 10,101 would be 101.01
    (9_900, (Status.OK, None)),  # -100: at the limit, not an improvement (1% of 9,900 is 99)
    (9_899, (Status.IMPROVED, None)),
])
def test_rtol_is_measured_from_the_baseline(now: float, expected: tuple[Status, Failure | None]) -> None:
    assert status(10_000, now, RTOL) == expected


@pytest.mark.parametrize("now, expected", [
    (10_105, (Status.OK, None)),  # atol + rtol * |baseline| = 5 + 100: at the limit
    (10_106, (Status.REGRESSED, Failure.REGRESSED)),  # from the new value it would be 5 + 101.06
    (9_895, (Status.OK, None)),
    (9_894, (Status.IMPROVED, None)),
])
def test_atol_and_rtol_add_up_from_the_baseline(now: float, expected: tuple[Status, Failure | None]) -> None:
    assert BOTH.get("total_cycles") == Tolerance(0.01, 5.0)
    assert status(10_000, now, BOTH) == expected


def test_a_negative_baseline_uses_its_magnitude() -> None:
    assert Tolerance(0.01, 0).allowed(-10_000) == 100


def test_the_calls_per_metric_tolerance_beats_the_markers() -> None:
    """Most specific first: the call, the marker, the session; a per-metric setting of a more
    specific source wins, key by key, over the same metric's setting in a less specific one."""
    call = {"tolerances": {"total_cycles": {"rtol": 0.5}, "cycles": {"atol": 9}}}
    marker = {"tolerances": {"total_cycles": {"rtol": 0.3}, "cycles": {"rtol": 0.2, "atol": 1}}}
    merged = Tolerances.merge([call, marker, {"rtol": 0.01}])
    assert merged.get("total_cycles") == Tolerance(0.5, 0.0)
    assert merged.get("cycles") == Tolerance(0.2, 9.0)
    assert merged.get("npu_cycles") == Tolerance(0.01, 0.0)
    # and the other way round: a tight call is not loosened by the marker
    tight = Tolerances.merge([{"tolerances": {"total_cycles": {"rtol": 0.01}}},
                              {"tolerances": {"total_cycles": {"rtol": 10}}}])
    assert tight.get("total_cycles") == Tolerance(0.01, 0.0)


def test_call_per_metric_tolerance_beats_the_marker_in_a_session(make_repo: Callable[[str], pytest.Pytester]
                                                                 ) -> None:
    repo = make_repo("""
        import pytest

        @pytest.mark.ethosu(rtol=10, tolerances={"total_cycles": {"rtol": 0.01}})
        def test_loose_call(ethosu_perf):
            ethosu_perf("models/current.tflite", tolerances={"total_cycles": {"rtol": 10}})

        @pytest.mark.ethosu(rtol=10, tolerances={"total_cycles": {"rtol": 10}})
        def test_tight_call(ethosu_perf):
            ethosu_perf("models/current.tflite", tolerances={"total_cycles": {"rtol": 0.01}})
    """)
    repo.runpytest("--ethosu-update", "-p", "no:xdist").assert_outcomes(passed=2)
    use(repo, "wider.tflite")
    result = repo.runpytest("-p", "no:xdist", "-rf")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*_ test_tight_call _*",
                                 "CheckFailed: ethosu: * network total_cycles +*, over the tolerance rtol=0.01"])


@pytest.fixture(scope="module")
def estimating(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Estimator]:
    root = tmp_path_factory.mktemp("estimating")
    est = Estimator(root, root, timeout=300)
    yield est
    est.close()


@pytest.mark.parametrize("verified_first", [False, True])
def test_memo_answers_checks_and_verifications_alike(estimating: Estimator, model_dir: Path,
                                                     verified_first: bool) -> None:
    """The estimator makes no advice (the fixture's pass over the final result does), so a test's
    estimate and the advisor's verification of the same bytes on the same target share one
    compile, counted for whoever asked first; another target is never answered from the memo."""
    settings: dict[str, Any] = {"vela_args": ["--optimise", "Size"]} if verified_first else {}
    target = resolve([{**settings, "accelerator": "ethos-u55-128"}], estimating.rootdir)
    data = (model_dir / "base.tflite").read_bytes()
    runs, verifications = estimating.vela_runs, estimating.advisor_runs
    first = estimating.verify(data, target) if verified_first else estimating.estimate(data, target)
    second = estimating.estimate(data, target) if verified_first else estimating.verify(data, target)
    assert (first.source, second.source) == ("vela", "memo") and first == second and not first.findings
    assert (estimating.vela_runs - runs, estimating.advisor_runs - verifications) == ((0, 1) if verified_first
                                                                                      else (1, 0))
    other = resolve([{**settings, "accelerator": "ethos-u65-256"}], estimating.rootdir)
    assert estimating.estimate(data, other).source == "vela"
