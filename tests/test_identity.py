"""An estimate is keyed by the bytes Vela compiles and the .ini content Vela reads.

The model file and the Vela ``.ini`` are read once per estimate in pytest's process; what was
hashed is what the worker checks and Vela compiles.  A file replaced in between, or an ``.ini``
rewritten during a session, cannot pair one content's digest with another content's figures,
in the results, the baselines or the disk cache.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_ethosu.estimator import Estimator
from pytest_ethosu.target import resolve
from pytest_ethosu.vela import default_config_file
from tests.cli import vela_cli

# An autouse fixture of the inner session that opens the window between hashing and compiling:
# right after the plugin has read and hashed models/current.tflite, the file is replaced by
# models/replacement.bin (once).  Vela itself is not touched.
RACE_CONFTEST = """
import pytest
import pytest_ethosu.estimator as estimator_module

@pytest.fixture(autouse=True)
def swap_after_hashing(monkeypatch):
    load = estimator_module.load_model
    swapped = []

    def racing_load(model, rootdir, scratch):
        loaded = load(model, rootdir, scratch)
        if not swapped and str(model).endswith("current.tflite"):
            swapped.append(model)
            (rootdir / "models" / "current.tflite").write_bytes((rootdir / "models" / "replacement.bin").read_bytes())
        return loaded

    monkeypatch.setattr(estimator_module, "load_model", racing_load)
    yield
    assert swapped, "the window was never opened"
"""


def _baselines(root: Path) -> list[dict[str, object]]:
    documents = [json.loads(p.read_text()) for p in sorted((root / "baselines").rglob("*.json"))]
    return [d for d in documents if isinstance(d, dict) and "model" in d]


@pytest.fixture(scope="module")
def figures(estimator: Estimator, model_dir: Path) -> dict[str, tuple[str, int]]:
    """(sha256, total cycles) of the base and wider models on Vela's default target."""
    found = {}
    for name in ("base", "wider"):
        result = estimator.estimate(model_dir / f"{name}.tflite", resolve([{}], estimator.rootdir))
        found[name] = (result.model_sha256, int(result.total_cycles))
    assert found["base"][1] != found["wider"][1]
    return found


def _race(project: pytest.Pytester, *args: str, replacement: bytes | None = None) -> pytest.RunResult:
    """A session in which models/current.tflite (base) becomes ``replacement`` (default: the
    wider model) right after it is hashed."""
    models = project.path / "models"
    (models / "current.tflite").write_bytes((models / "base.tflite").read_bytes())
    (models / "replacement.bin").write_bytes(replacement or (models / "wider.tflite").read_bytes())
    project.makeconftest(RACE_CONFTEST)
    project.makepyfile(test_race="""
        import json
        from pathlib import Path

        def test_current(ethosu_perf):
            result = ethosu_perf("models/current.tflite")
            assert Path("models/current.tflite").read_bytes() == Path("models/replacement.bin").read_bytes()
            Path("seen.json").write_text(json.dumps([result.model_sha256, result.total_cycles]))
    """)
    result = project.runpytest("-p", "no:xdist", *args)
    (project.path / "conftest.py").unlink()
    return result


def test_a_model_replaced_after_hashing_is_compiled_as_hashed(project: pytest.Pytester,
                                                               figures: dict[str, tuple[str, int]]) -> None:
    base = figures["base"]
    _race(project, "--ethosu-update").assert_outcomes(passed=1)
    assert tuple(json.loads((project.path / "seen.json").read_text())) == base  # base's digest, base's cycles
    [document] = _baselines(project.path)
    assert document["model"]["sha256"] == base[0]  # type: ignore[index]
    assert document["totals"]["total_cycles"] == base[1]  # type: ignore[index]


def test_the_structure_check_reads_the_bytes_that_were_hashed(project: pytest.Pytester,
                                                               figures: dict[str, tuple[str, int]]) -> None:
    """The worker checks the model's structure before Vela reads it: it checks the same copy."""
    result = _race(project, "--ethosu-update", replacement=b"TFL3" * 3)  # no longer a readable model
    result.assert_outcomes(passed=1)
    assert tuple(json.loads((project.path / "seen.json").read_text())) == figures["base"]


def test_the_cache_never_serves_one_files_cycles_for_anothers_digest(
        project: pytest.Pytester, figures: dict[str, tuple[str, int]]) -> None:
    base, wider = figures["base"], figures["wider"]
    _race(project, "--ethosu-update").assert_outcomes(passed=1)
    # the next session, no window: each content gets its own cycles, base's from the cache
    project.makepyfile(test_race=f"""
        from pathlib import Path

        def test_current(ethosu_perf):
            for name, expected in (("wider", {(*wider, "vela")!r}), ("base", {(*base, "cache")!r})):
                Path("models/current.tflite").write_bytes(Path(f"models/{{name}}.tflite").read_bytes())
                result = ethosu_perf.estimate("models/current.tflite")
                assert (result.model_sha256, result.total_cycles, result.source) == expected, name
    """)
    project.runpytest("-p", "no:xdist").assert_outcomes(passed=1)


def test_a_model_swapped_between_estimates_gives_each_its_own_figures(
        project: pytest.Pytester, figures: dict[str, tuple[str, int]]) -> None:
    project.makepyfile(test_swap=f"""
        from pathlib import Path

        def use(name):
            Path("models/current.tflite").write_bytes(Path("models", name).read_bytes())

        def test_swap(ethosu_perf):
            seen = []
            for name in ("base.tflite", "wider.tflite", "base.tflite", "wider.tflite"):
                use(name)
                result = ethosu_perf.estimate("models/current.tflite")
                seen.append((result.model_sha256, result.total_cycles))
            assert seen == {[figures["base"], figures["wider"]] * 2!r}
    """)
    project.runpytest("-p", "no:xdist").assert_outcomes(passed=1)


def _board(scale: str) -> str:
    """Vela's bundled .ini with the U65 High End DRAM clocked at ``scale`` of the core clock."""
    text = default_config_file().read_text(encoding="utf-8")
    assert "Dram_clock_scale=0.234375" in text
    return text.replace("Dram_clock_scale=0.234375", f"Dram_clock_scale={scale}", 1)


BOARD_SCALES = ("0.234375", "0.05", "0.01")
BOARD_TARGET = {"accelerator": "ethos-u65-256", "vela_config": "configs/board.ini",
                "system_config": "Ethos_U65_High_End", "memory_mode": "Dedicated_Sram"}


def test_an_ini_rewritten_in_a_session_gives_the_cli_figure_for_each_content(
        project: pytest.Pytester, tmp_path: Path) -> None:
    contents = [_board(scale) for scale in BOARD_SCALES]
    expected = []
    for i, content in enumerate(contents):  # a fresh vela process per content, as a user would run it
        (tmp_path / f"cli{i}").mkdir()
        ini = tmp_path / f"cli{i}" / "board.ini"
        ini.write_text(content, encoding="utf-8")
        target = resolve([{**BOARD_TARGET, "vela_config": str(ini)}], tmp_path)
        expected.append(int(vela_cli(project.path / "models" / "base.tflite", target, tmp_path / f"out{i}").total_cycles))
    assert len(set(expected)) == 3, expected

    (project.path / "contents.json").write_text(json.dumps(contents))
    (project.path / "configs").mkdir()
    project.makepyfile(test_board=f"""
        import json
        from pathlib import Path

        def test_three_boards(ethosu_perf):
            seen = []
            for content in json.loads(Path("contents.json").read_text()):
                Path("configs/board.ini").write_text(content, encoding="utf-8")  # same size, same second
                result = ethosu_perf.estimate("models/base.tflite", **{BOARD_TARGET!r})
                seen.append((result.total_cycles, result.source))
            Path("seen.json").write_text(json.dumps(seen))
    """)
    for session, source in ((1, "vela"), (2, "cache")):
        project.runpytest("-p", "no:xdist").assert_outcomes(passed=1)
        seen = json.loads((project.path / "seen.json").read_text())
        assert seen == [[cycles, source] for cycles in expected], f"session {session}"


def test_errors_about_a_user_ini_name_the_users_file(project: pytest.Pytester) -> None:
    """The worker reads a private copy of the .ini; its messages still name the user's file."""
    (project.path / "configs").mkdir()
    (project.path / "configs" / "board.ini").write_text(_board("0.05"), encoding="utf-8")
    project.makepyfile(test_board=f"""
        def test_unknown_system_config(ethosu_perf):
            ethosu_perf.estimate("models/base.tflite", **{{**{BOARD_TARGET!r}, "system_config": "No_Such_Board"}})
    """)
    result = project.runpytest("-p", "no:xdist")
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert "unknown system config 'No_Such_Board'" in output
    assert str(project.path / "configs" / "board.ini") in output
    assert "pytest-ethosu-" not in output  # the session's scratch directory is never shown
