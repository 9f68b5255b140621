"""The gate's rules, tolerances and the file writer, without a session (fast and exact)."""

from __future__ import annotations

import errno
import math
import os
import time
from pathlib import Path
from typing import Any

import pytest

from pytest_ethosu import baseline, files
from pytest_ethosu.compare import Tolerances
from pytest_ethosu.errors import BaselineError
from pytest_ethosu.gate import Failure, Status, Verdict, after_test, decide
from pytest_ethosu.result import TOTAL_METRICS


def layer(index: int, cycles: float, dram: float = 0, placement: str = "NPU") -> dict[str, Any]:
    return {"index": index, "name": f"l{index}", "op": "Conv2D", "npu_op": "Conv2D", "placement": placement,
            "cycles": cycles, "npu_cycles": cycles, "sram_access_cycles": 0, "dram_access_cycles": dram,
            "on_chip_flash_access_cycles": 0, "off_chip_flash_access_cycles": 0, "macs": 10,
            "mac_utilization": 1.0, "staging_usage": 0}


def document(cycles: float = 1000, dram: float = 100, cpu_ops: int = 0, vela: str = "5.2.0") -> dict[str, Any]:
    totals: dict[str, Any] = dict.fromkeys(TOTAL_METRICS, 0)
    totals.update(total_cycles=cycles, npu_cycles=cycles, dram_access_cycles=dram, cpu_ops=cpu_ops)
    return {"schema": 1, "test": "t.py::t", "name": "default", "model": {"path": "m", "sha256": "0" * 64},
            "estimator": {"vela_version": vela, "core": "regor", "target": {}},
            "totals": totals, "layers": [layer(0, cycles, dram)]}


DEFAULT = Tolerances.merge([])


def verdict(stored: dict[str, Any] | None, now: dict[str, Any], tol: Tolerances = DEFAULT, **mode: Any) -> Verdict:
    options = {"update": False, "strict": False, "drift_policy": "warn", **mode}
    return decide(None if stored is None else baseline.from_json(stored, "stored"), baseline.from_json(now, "now"),
                  tol, **options)


def test_missing_baseline_fails_or_is_written_under_update() -> None:
    assert verdict(None, document()) == Verdict(Status.MISSING, None, write=False, failure=Failure.MISSING)
    assert verdict(None, document(), update=True) == Verdict(Status.PENDING, None, write=True)


@pytest.mark.parametrize("cycles, strict, status, failure", [
    (1000, False, Status.OK, None),
    (1009, False, Status.OK, None),  # within rtol=0.01
    (1011, False, Status.REGRESSED, Failure.REGRESSED),
    (900, False, Status.IMPROVED, None),  # improvements pass...
    (900, True, Status.IMPROVED, Failure.REGRESSED),  # ...unless strict
])
def test_regressions_fail_and_improvements_pass(cycles: float, strict: bool, status: Status,
                                                failure: Failure | None) -> None:
    result = verdict(document(), document(cycles=cycles), strict=strict)
    assert (result.status, result.failure, result.write) == (status, failure, False)


def test_cpu_fallback_fails_whatever_the_tolerance() -> None:
    loose = Tolerances.merge([{"rtol": 100.0}])
    result = verdict(document(), document(cycles=500, cpu_ops=1), loose)
    assert result.failure is Failure.REGRESSED and result.status is Status.REGRESSED


@pytest.mark.parametrize("policy, status, write, failure", [
    ("warn", Status.DRIFT, False, None),
    ("fail", Status.OK, False, Failure.DRIFT),
    ("update", Status.PENDING, True, None),
])
def test_drift_policies(policy: str, status: Status, write: bool, failure: Failure | None) -> None:
    result = verdict(document(vela="5.1.0"), document(), drift_policy=policy)
    assert (result.status, result.write, result.failure) == (status, write, failure)
    assert result.comparison is not None and "Vela 5.1.0, now 5.2.0" in result.comparison.drift[0]


def test_update_writes_only_after_a_passing_test() -> None:
    pending = verdict(document(), document(cycles=2000), update=True)
    assert pending.write and pending.failure is None
    assert after_test(pending, passed=False, existed=True, changed=None) is Status.UNWRITTEN
    assert after_test(pending, passed=True, existed=True, changed=None) is Status.UNWRITTEN  # write failed
    assert after_test(pending, passed=True, existed=True, changed=True) is Status.UPDATED
    assert after_test(pending, passed=True, existed=False, changed=True) is Status.CREATED
    assert after_test(pending, passed=True, existed=True, changed=False) is Status.UNCHANGED
    checked = verdict(document(), document())
    assert after_test(checked, passed=False, existed=True, changed=None) is Status.OK


def test_flash_growth_fails_on_the_flash_figure() -> None:
    """The flash the model takes is gated like SRAM: weights that grow past the tolerance fail."""
    before = document()
    grown = document()
    before["totals"]["off_chip_flash_used"], grown["totals"]["off_chip_flash_used"] = 200_000, 400_000
    result = verdict(before, grown)
    assert result.failure is Failure.REGRESSED and result.comparison is not None
    assert [(c.metric, c.baseline, c.now) for c in result.comparison.regressions] == [
        ("off_chip_flash_used", 200_000, 400_000)]


def test_faster_with_more_sram_access_passes_unless_access_is_named() -> None:
    """30.8% fewer cycles while SRAM access cycles triple (work moved between memory areas):
    faster, so it passes; named in tolerances= it fails, and the headline says that inference
    got faster."""
    from pytest_ethosu.report import headline

    before, after = document(cycles=316_000), document(cycles=218_655)
    before["totals"]["sram_access_cycles"], after["totals"]["sram_access_cycles"] = 3_408, 10_213
    before["layers"][0]["sram_access_cycles"], after["layers"][0]["sram_access_cycles"] = 3_408, 10_213
    assert verdict(before, after).failure is None
    named = Tolerances.merge([{"tolerances": {"sram_access_cycles": {"rtol": 0.1}}}])
    result = verdict(before, after, named)
    assert result.failure is Failure.REGRESSED and result.comparison is not None
    assert {(c.layer, c.metric) for c in result.comparison.regressions} == {(None, "sram_access_cycles"),
                                                                           (0, "sram_access_cycles")}
    assert headline(result.comparison) == ("network sram_access_cycles +199.7% (3,408 -> 10,213), over the tolerance "
                                           "rtol=0.1; total cycles -30.8% (316,000 -> 218,655)")


def test_recorded_figures_are_gated_when_a_tolerance_names_them() -> None:
    """Weights and the bytes moved per memory area are recorded, not gated by default: more
    traffic in the same cycles passes, until ``tolerances`` names the figure."""
    before, more = document(), document()
    before["totals"]["sram_traffic"], more["totals"]["sram_traffic"] = 100_000, 150_000
    assert verdict(before, more).failure is None
    named = Tolerances.merge([{"tolerances": {"sram_traffic": {"rtol": 0.1}}}])
    result = verdict(before, more, named)
    assert result.failure is Failure.REGRESSED and result.comparison is not None
    assert [(c.metric, c.baseline, c.now, c.tolerance) for c in result.comparison.regressions] == [
        ("sram_traffic", 100_000, 150_000, "rtol=0.1")]
    with pytest.raises(ValueError, match="unknown metric 'cpu_ops'"):  # its own rule: any rise fails
        Tolerances.merge([{"tolerances": {"cpu_ops": {"rtol": 1}}}])


def test_a_baseline_from_before_a_figure_existed_compares_on_what_it_has(tmp_path: Path) -> None:
    """A baseline written before the flash figures were recorded still loads, passes on the
    figures it holds whatever the new ones are, and still fails on those it holds; a figure
    every baseline has always held stays required."""
    import json

    old = document()
    for name in ("on_chip_flash_used", "off_chip_flash_used"):
        del old["totals"][name]
    path = tmp_path / "default.json"
    path.write_text(json.dumps(old))
    stored = baseline.load(path)
    assert "off_chip_flash_used" not in stored.totals
    now = document()
    now["totals"]["off_chip_flash_used"] = 10**9
    checked = decide(stored, baseline.from_json(now, "now"), DEFAULT, update=False, strict=True, drift_policy="warn")
    assert checked.status is Status.OK and checked.failure is None and checked.comparison is not None
    assert {c.metric for c in checked.comparison.changes if c.layer is None} >= {"total_cycles", "sram_used"}
    assert "off_chip_flash_used" not in {c.metric for c in checked.comparison.changes}
    slower = decide(stored, baseline.from_json(document(cycles=2000), "now"), DEFAULT, update=False, strict=False,
                    drift_policy="warn")
    assert slower.failure is Failure.REGRESSED
    del old["totals"]["sram_used"]
    path.write_text(json.dumps(old))
    with pytest.raises(BaselineError, match="lacks totals.sram_used"):
        baseline.load(path)


def test_per_metric_tolerance_overrides_the_default() -> None:
    tol = Tolerances.merge([{"tolerances": {"dram_access_cycles": {"rtol": 0.05}}}])
    assert tol.get("dram_access_cycles").rtol == 0.05 and tol.get("total_cycles").rtol == 0.01
    # +4% DRAM access: within its own 5%, though over 1%
    assert verdict(document(), document(dram=104), tol).failure is None
    named = Tolerances.merge([{"tolerances": {"dram_access_cycles": {"rtol": 0.01}}}])
    assert verdict(document(), document(dram=104), named).failure is Failure.REGRESSED
    assert verdict(document(), document(dram=106), tol).failure is Failure.REGRESSED
    # where the cycles go is gated only when named: more DRAM access in the same total passes
    assert verdict(document(), document(dram=200)).failure is None


def test_call_beats_marker_beats_session() -> None:
    call, marker, session = {"rtol": 0.5}, {"rtol": 0.2, "atol": 3.0}, {"rtol": 0.1, "atol": 1.0}
    tol = Tolerances.merge([call, marker, session])
    assert (tol.default.rtol, tol.default.atol) == (0.5, 3.0)
    tol = Tolerances.merge([{"rtol": None}, marker, session])
    assert (tol.default.rtol, tol.default.atol) == (0.2, 3.0)
    nested = Tolerances.merge([{"tolerances": {"cycles": {"atol": 7}}}, {"tolerances": {"cycles": {"rtol": 0.3}}}])
    assert (nested.get("cycles").rtol, nested.get("cycles").atol) == (0.3, 7.0)


@pytest.mark.parametrize("source, message", [
    ({"rtol": math.nan}, "rtol must be a finite number >= 0, not nan"),
    ({"rtol": -1}, "rtol must be a finite number >= 0, not -1"),
    ({"atol": "abc"}, "atol must be a finite number >= 0, not 'abc'"),
    ({"rtol": math.inf}, "rtol must be a finite number >= 0"),
    ({"tolerances": {"cycles": 0.05}}, "tolerances['cycles'] must be a dict with 'rtol' and/or 'atol'"),
    ({"tolerances": {"cycles": {"rtoll": 0.05}}}, "tolerances['cycles'] must be a dict with 'rtol'"),
    ({"tolerances": {"cycle": {"rtol": 0.05}}}, "unknown metric 'cycle' in tolerances"),
    ({"tolerances": ["cycles"]}, "tolerances must map metric names"),
])
def test_bad_tolerances_are_refused_by_name(source: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")):
        Tolerances.merge([source])


def test_write_replaces_the_file_and_never_writes_in_place(tmp_path: Path) -> None:
    path = tmp_path / "b" / "default.json"
    baseline.write(path, baseline.from_json(document(), path))
    before, inode = path.read_bytes(), path.stat().st_ino
    baseline.write(path, baseline.from_json(document(cycles=2000), path))
    assert path.stat().st_ino != inode  # a new file moved into place: readers see old or new, whole
    assert baseline.load(path).totals["total_cycles"] == 2000
    assert before != path.read_bytes()


def test_failed_write_keeps_the_old_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "default.json"
    baseline.write(path, baseline.from_json(document(), path))
    before = path.read_bytes()

    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("pytest_ethosu.files.os.fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        baseline.write(path, baseline.from_json(document(cycles=2000), path))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["default.json"]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_honour_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    old = os.umask(umask)
    try:
        files.write_atomic(tmp_path / "f.json", "{}")
    finally:
        os.umask(old)
    assert (tmp_path / "f.json").stat().st_mode & 0o777 == mode


def test_stale_temp_files_are_cleaned_on_the_next_write(tmp_path: Path) -> None:
    stale = tmp_path / f"{files.TMP_PREFIX}abc{files.TMP_SUFFIX}"
    fresh = tmp_path / f"{files.TMP_PREFIX}new{files.TMP_SUFFIX}"  # another process may be writing it
    stale.write_text("half")
    fresh.write_text("half")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    files.write_atomic(tmp_path / "x.json", "{}")
    assert not stale.exists() and fresh.exists()


def test_names_that_are_not_utf8_round_trip(tmp_path: Path) -> None:
    doc = document()
    doc["name"] = "bad\udcff"
    doc["layers"][0]["name"] = "\ud800x"
    path = tmp_path / baseline.safe_component("bad\udcff")
    assert baseline.write(path, baseline.from_json(doc, path))
    assert baseline.load(path).to_json() == doc
    assert not baseline.write(path, baseline.load(path))  # unchanged: not rewritten


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["totals"].update(total_cycles=float("nan")), "totals.total_cycles is nan, not a finite number"),
    (lambda d: d["totals"].update(cpu_ops=float("inf")), "totals.cpu_ops is inf"),
    (lambda d: d["totals"].update(total_cycles="12"), "totals.total_cycles is '12'"),
    (lambda d: d["totals"].pop("total_cycles"), "lacks totals.total_cycles"),
    (lambda d: d["layers"][0].update(cycles=None), r"layers\[0\].cycles is None"),
    (lambda d: d["layers"][0].update(name=3), r"layers\[0\].name is 3, not text"),
])
def test_bad_numbers_in_a_baseline_name_the_file_and_field(tmp_path: Path, edit: Any, message: str) -> None:
    import json

    doc = document()
    edit(doc)
    path = tmp_path / "default.json"
    path.write_text(json.dumps(doc, allow_nan=True))
    with pytest.raises(BaselineError, match=f"baseline {path}.*{message}"):
        baseline.load(path)


def test_generated_names_do_not_depend_on_the_workers_history(tmp_path: Path) -> None:
    """Vela numbers the operators it creates from a process-wide counter (``#1110`` after other
    estimates, ``#380`` in a fresh process); ranked within the model they read the same."""
    from pytest_ethosu.vela.engine import REGOR_COLUMNS, read_per_layer_csv

    def csv(*names: str) -> Path:
        path = tmp_path / f"{names[1]}.csv"
        header = ",".join(column for column, _ in REGOR_COLUMNS)
        rows = [f"Conv2D,Conv2D,NPU,0,0,10,1,10,0,0,0,0,5,1,1,{name}" for name in names]
        path.write_text("\n".join([header, *rows]) + "\n")
        return path

    late = read_per_layer_csv(csv("conv", "pad#1110", "conv#1112_split", "x#1110"))
    early = read_per_layer_csv(csv("conv", "pad#380", "conv#382_split", "x#380"))
    assert late == early
    assert late[0] == "regor"
    assert [row["name"] for row in late[1]] == ["conv", "pad#1", "conv#2_split", "x#1"]


@pytest.mark.parametrize("args, owned", [
    (["--accelerator-config", "ethos-u85-256"], "--accelerator-config"),
    (["--accel=ethos-u85-256"], "--accelerator-config"),  # argparse would take the abbreviation
    (["--config", "my.ini"], "--config"),
    (["--output-dir", "x"], "--output-dir"),
    (["--supported-ops-report"], "--supported-ops-report"),
    (["--system-config=X"], "--system-config"),
    (["--memory-mode", "Y"], "--memory-mode"),
])
def test_vela_args_that_contradict_the_plugin_are_refused(args: list[str], owned: str) -> None:
    from pytest_ethosu.errors import TargetError
    from pytest_ethosu.vela import check_vela_args

    with pytest.raises(TargetError, match=f"the Vela option {owned} cannot be passed in vela_args: use "):
        check_vela_args(args)
    check_vela_args(["--optimise", "Size", "--arena-cache-size=1024"])  # Vela's own options pass


@pytest.mark.parametrize("args", [["--optimise", "Speed"], ["--optimise=speed"], ["--optim", "Perf"],
                                  ["--tensor-allocator=Linear"]])
def test_a_value_vela_looks_up_by_name_is_checked(args: list[str]) -> None:
    """Vela reads --optimise and --tensor-allocator with an enum lookup: a wrong name is a bare
    KeyError inside Vela, so the plugin names the valid ones first."""
    from pytest_ethosu.errors import TargetError
    from pytest_ethosu.vela import check_vela_args

    with pytest.raises(TargetError, match=r"^Vela's --(optimise takes Size or Performance|tensor-allocator takes "
                                          r"LinearAlloc or Greedy or HillClimb) \(the names are case sensitive\), "
                                          r"not '\w+'$"):
        check_vela_args(args)
    check_vela_args(["--optimise", "Performance", "--tensor-allocator=HillClimb", "--optimise=Size"])


def test_drift_note_names_the_versions_and_how_far_total_cycles_moved() -> None:
    result = verdict(document(cycles=125_094, vela="5.1.0"), document(cycles=125_147))
    assert result.comparison is not None
    assert result.comparison.drift == ("baseline made with Vela 5.1.0, now 5.2.0 (total cycles 125,094 -> "
                                       "125,147, +0.04%); estimates change between Vela releases",)
    legacy = verdict(document(cycles=123_202.24999999993, vela="4.0.0"), document(cycles=125_147))
    assert legacy.comparison is not None
    assert "(total cycles 123,202.2 -> 125,147, +1.58%)" in legacy.comparison.drift[0]


def test_huge_and_short_options_are_refused_cleanly() -> None:
    from pytest_ethosu.errors import TargetError
    from pytest_ethosu.vela import check_vela_args

    with pytest.raises(ValueError, match="atol must be a finite number >= 0"):
        Tolerances.merge([{"atol": 10**400}])
    for flag in ("-h", "-V"):
        with pytest.raises(TargetError, match=f"the Vela option {flag} cannot be passed"):
            check_vela_args([flag])
