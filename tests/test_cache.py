"""The estimate cache: hits equal fresh results, and anything that can change Vela's answer misses."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_ethosu.cache import FORMAT, EstimateCache
from pytest_ethosu.estimator import Estimator
from pytest_ethosu.target import resolve
from pytest_ethosu.vela import default_config_file
from tests.advising import Advising


@pytest.fixture
def estimators(tmp_path: Path) -> Iterator[tuple[Estimator, Estimator]]:
    """Two estimators (two 'sessions') sharing one cache directory."""
    made = [Estimator(tmp_path, tmp_path, 120, cache=EstimateCache(tmp_path / "cache")) for _ in range(2)]
    yield made[0], made[1]
    for est in made:
        est.close()


def test_hit_equals_fresh_result_and_starts_no_worker(estimators: tuple[Estimator, Estimator],
                                                      model_dir: Path) -> None:
    first, second = estimators
    target = resolve([{"accelerator": "ethos-u65-256"}], first.rootdir)
    fresh = first.estimate(model_dir / "cpu.tflite", target)
    cached = second.estimate(model_dir / "cpu.tflite", target)
    assert cached == fresh and cached.to_dict() == fresh.to_dict()
    assert second.cache is not None and second.cache.hits == 1 and second.vela_runs == 0
    assert second.worker.starts == 0  # nothing to compile, no Vela process


def test_every_input_of_vela_is_part_of_the_key(estimators: tuple[Estimator, Estimator], model_dir: Path,
                                                tmp_path: Path) -> None:
    est = estimators[0]
    root = est.rootdir
    bundled = default_config_file().read_text()
    (tmp_path / "board.ini").write_text(bundled)
    u65: dict[str, object] = {"accelerator": "ethos-u65-256", "vela_config": "board.ini",
           "system_config": "Ethos_U65_High_End",
           "memory_mode": "Dedicated_Sram"}
    requests: list[tuple[Path, dict[str, object]]] = [
        (model_dir / "base.tflite", {}),
        (model_dir / "wider.tflite", {}),                                  # model bytes
        (model_dir / "base.tflite", {"accelerator": "ethos-u55-64"}),      # accelerator
        (model_dir / "base.tflite", {"vela_args": ["--optimise", "Size"]}),  # Vela options
        (model_dir / "base.tflite", u65),                                  # system config and .ini
        (model_dir / "base.tflite", {**u65, "memory_mode": "Shared_Sram"}),  # memory mode
    ]
    for model, settings in requests:
        est.estimate(model, resolve([settings], root))
    assert est.vela_runs == len(requests)
    # the same .ini name with different contents is a different answer
    (tmp_path / "board.ini").write_text(bundled.replace("axi0_port=Sram", "axi0_port=Dram", 1))
    other = Estimator(root, tmp_path, 120, cache=EstimateCache(tmp_path / "cache"))
    try:
        other.estimate(model_dir / "base.tflite", resolve([u65], root))
        assert other.vela_runs == 1
        other.estimate(model_dir / "wider.tflite", resolve([{}], root))  # unchanged: a hit
        assert other.vela_runs == 1
    finally:
        other.close()


def test_corrupt_entry_is_ignored_and_replaced(estimators: tuple[Estimator, Estimator], model_dir: Path) -> None:
    first, second = estimators
    target = resolve([{}], first.rootdir)
    fresh = first.estimate(model_dir / "base.tflite", target)
    assert first.cache is not None
    entries = list(first.cache.directory.rglob("*.json"))
    assert len(entries) == 1
    entries[0].write_text('{"format": 1, "key": "tru')
    assert second.estimate(model_dir / "base.tflite", target) == fresh
    assert second.vela_runs == 1
    assert entries[0].read_text().startswith(f'{{"format":{FORMAT},')  # rewritten whole


def test_session_json_report_identical_from_cache(project: pytest.Pytester) -> None:
    project.makepyfile(test_c="""
        import pytest

        @pytest.mark.parametrize("model", ["base", "cpu"])
        def test_c(ethosu_perf, model):
            ethosu_perf(f"models/{model}.tflite", accelerator="ethos-u55-128")
    """)
    cold = project.runpytest("-p", "no:xdist", "--ethosu-update")
    cold.stdout.fnmatch_lines(["ethosu: 2 estimate(s); Vela ran 2 time(s), 0 answered from the cache"])
    fresh = project.runpytest("-p", "no:xdist", "--ethosu-no-cache", "--ethosu-json=fresh.json")
    fresh.stdout.fnmatch_lines(["ethosu: 2 estimate(s); Vela ran 2 time(s), 0 answered from the cache"])
    warm = project.runpytest("-p", "no:xdist", "--ethosu-json=warm.json")
    warm.assert_outcomes(passed=2)
    warm.stdout.fnmatch_lines(["ethosu: 2 estimate(s); Vela ran 0 time(s), 2 answered from the cache"])
    assert (project.path / "warm.json").read_bytes() == (project.path / "fresh.json").read_bytes()
    cleared = project.runpytest("-p", "no:xdist", "--cache-clear")
    cleared.stdout.fnmatch_lines(["ethosu: 2 estimate(s); Vela ran 2 time(s), 0 answered from the cache"])
    mine = project.runpytest("-p", "no:xdist", "--ethosu-cache-dir=perf-cache")
    mine.stdout.fnmatch_lines(["*Vela ran 2 time(s), 0 answered*"])
    assert list((project.path / "perf-cache").rglob("*.json"))
    again = project.runpytest("-p", "no:xdist", "--ethosu-cache-dir=perf-cache", "--cache-clear")
    again.stdout.fnmatch_lines(["*Vela ran 2 time(s), 0 answered*"])


def test_findings_come_from_the_cache(tmp_path: Path, model_dir: Path) -> None:
    """A warm session neither recompiles nor re-verifies: the advice is made again over the
    cached estimate, and its verification models are answered from the cache too."""
    made = [Advising(Estimator(tmp_path, tmp_path, 120, cache=EstimateCache(tmp_path / "cache")))
            for _ in range(2)]
    try:
        target = resolve([{"accelerator": "ethos-u65-256"}], tmp_path)
        fresh = made[0].estimate(model_dir / "cpu.tflite", target)
        assert fresh.findings and made[0].vela_runs >= 1
        cached = made[1].estimate(model_dir / "cpu.tflite", target)
        assert cached.findings == fresh.findings and cached == fresh
        assert made[1].vela_runs == 0 and made[1].worker.starts == 0
    finally:
        for est in made:
            est.close()


def test_session_without_estimates_starts_no_worker(project: pytest.Pytester) -> None:
    project.makeconftest("""
        from pytest_ethosu.plugin import session_key

        def pytest_sessionfinish(session):
            state = session.config.stash[session_key]
            print("ESTIMATOR", state._estimator is not None)
    """)
    project.makepyfile(test_plain="def test_plain(ethosu_perf):\n    assert ethosu_perf is not None\n")
    result = project.runpytest("-p", "no:xdist", "-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*ESTIMATOR False*"])


def test_tampered_entries_are_ignored_counted_and_replaced(estimators: tuple[Estimator, Estimator],
                                                           model_dir: Path) -> None:
    """A valid-JSON entry with numbers that do not add up, or of the wrong shape, is a miss."""
    import json

    first, second = estimators
    target = resolve([{}], first.rootdir)
    fresh = first.estimate(model_dir / "base.tflite", target)
    assert first.cache is not None and second.cache is not None
    entry_path = next(first.cache.directory.rglob("??/*.json"))
    entry = json.loads(entry_path.read_text())
    tampers: list[Callable[[Any], None]] = [
        lambda e: e["run"]["totals"].update(total_cycles=1),
        lambda e: e["run"]["totals"].update(sram_used=e["run"]["totals"]["sram_used"] * 10),  # adds up, still caught
        lambda e: e["run"].update(compiled_operators=[*e["run"]["compiled_operators"], "CUSTOM"]),
        lambda e: e.update(findings=[{}]),
        lambda e: e["run"]["layers"][0].update(cycles=float("nan")),
        lambda e: e.update(run={}),
        lambda e: e["run"].update(layers="x"),
    ]
    for tamper in tampers:
        bad = json.loads(json.dumps(entry))
        tamper(bad)
        entry_path.write_text(json.dumps(bad))
        again = Estimator(first.rootdir, first.scratch, 120, cache=EstimateCache(first.cache.directory))
        try:
            assert again.estimate(model_dir / "base.tflite", target).total_cycles == fresh.total_cycles
            assert again.vela_runs == 1 and again.cache is not None and again.cache.invalid == 1
        finally:
            again.close()
    entry_path.write_text("[1, 2]")
    assert second.estimate(model_dir / "base.tflite", target) == fresh
    assert second.cache.invalid == 1 and second.vela_runs == 1
    assert json.loads(entry_path.read_text())["run"]["totals"]["total_cycles"] == fresh.total_cycles


def test_key_covers_the_plugin_and_vela_versions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pytest_ethosu.cache as cache_module

    target = resolve([{}], tmp_path)
    key = EstimateCache(tmp_path / "c").key("0" * 64, target, "1" * 64)
    assert EstimateCache(tmp_path / "c").key("0" * 64, target, "1" * 64) == key
    monkeypatch.setattr(cache_module, "plugin_version", lambda: "9.9.9")
    assert EstimateCache(tmp_path / "c").key("0" * 64, target, "1" * 64) != key
    monkeypatch.undo()
    monkeypatch.setattr(cache_module, "vela_version", lambda: "0.0.1")
    assert EstimateCache(tmp_path / "c").key("0" * 64, target, "1" * 64) != key
    monkeypatch.undo()
    monkeypatch.setattr(cache_module, "FORMAT", FORMAT + 1)
    assert EstimateCache(tmp_path / "c").key("0" * 64, target, "1" * 64) != key
    monkeypatch.undo()
    monkeypatch.setattr(cache_module, "code_digest", lambda package: "0" * 64)
    assert EstimateCache(tmp_path / "c").key("0" * 64, target, "1" * 64) != key


def test_the_key_covers_the_plugins_code(tmp_path: Path) -> None:
    """A changed advice rule or parser at the same version number never reads an older entry."""
    import shutil

    import pytest_ethosu.cache as cache_module

    package = Path(cache_module.__file__).resolve().parent
    copy = Path(shutil.copytree(package, tmp_path / "pkg", ignore=shutil.ignore_patterns("__pycache__")))
    before = cache_module.code_digest(copy)
    assert before == cache_module.code_digest(package)
    for name in ("advisor.py", "vela/engine.py"):
        original = (copy / name).read_text()
        (copy / name).write_text(original + "# one rule changed\n")
        assert cache_module.code_digest(copy) != before, name
        (copy / name).write_text(original)
    assert cache_module.code_digest(copy) == before


def test_unwritable_cache_warns_once_and_the_session_goes_on(project: pytest.Pytester) -> None:
    (project.path / "cachefile").write_text("a file, not a directory")
    project.makepyfile(test_c="""
        def test_a(ethosu_perf):
            assert ethosu_perf.estimate("models/base.tflite").total_cycles > 0

        def test_b(ethosu_perf):
            assert ethosu_perf.estimate("models/wider.tflite").total_cycles > 0
    """)
    result = project.runpytest("-p", "no:xdist", "--ethosu-cache-dir=cachefile", "-W", "always")
    result.assert_outcomes(passed=2)
    assert result.stdout.str().count("the estimate cache in") == 1
    result.stdout.fnmatch_lines(["*EthosuWarning: the estimate cache in */cachefile cannot be written*"])
    assert (project.path / "cachefile").read_text() == "a file, not a directory"


def test_cache_clear_only_removes_a_directory_the_plugin_made(project: pytest.Pytester) -> None:
    project.makepyfile(test_c="""
        def test_a(ethosu_perf):
            ethosu_perf.estimate("models/base.tflite")
    """)
    shared = project.path / "shared"
    shared.mkdir()
    (shared / "keep.txt").write_text("someone else's")
    result = project.runpytest("-p", "no:xdist", "--ethosu-cache-dir=shared", "--cache-clear", "-W", "always")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*EthosuWarning: the estimate cache in */shared cannot be written*"])
    result.stdout.fnmatch_lines(["*--cache-clear left shared alone: it is not a pytest-ethosu cache*"])
    assert (shared / "keep.txt").read_text() == "someone else's"
    # the project root itself is never taken for a cache
    project.runpytest("-p", "no:xdist", "--ethosu-cache-dir=.", "--cache-clear").assert_outcomes(passed=1)
    assert (project.path / "test_c.py").exists() and (shared / "keep.txt").exists()
    # a directory the plugin made marks itself, is ignored by git, and is cleared
    project.runpytest("-p", "no:xdist", "--ethosu-cache-dir=mine").assert_outcomes(passed=1)
    assert (project.path / "mine" / "CACHEDIR.TAG").read_text().startswith("Signature: 8a477f597d28d172789f06886806bc55")
    assert (project.path / "mine" / ".gitignore").read_text().endswith("*\n")
    cleared = project.runpytest("-p", "no:xdist", "--ethosu-cache-dir=mine", "--cache-clear")
    cleared.stdout.fnmatch_lines(["*Vela ran 1 time(s), 0 answered from the cache"])


def test_read_only_project_runs_without_cache(project: pytest.Pytester) -> None:
    """Nothing is created at start-up: a cache that cannot be made costs one warning."""
    (project.path / ".pytest_cache").write_text("not a directory")
    project.makepyfile(test_c="""
        def test_a(ethosu_perf):
            ethosu_perf.estimate("models/base.tflite")
    """)
    collect = project.runpytest("-p", "no:xdist", "--co")
    assert collect.ret == 0 and "INTERNALERROR" not in collect.stdout.str()
    result = project.runpytest("-p", "no:xdist", "-W", "always")
    result.assert_outcomes(passed=1)
    assert "INTERNALERROR" not in result.stdout.str()
