"""Output hardening: hostile names in every sink, the merge command's inputs and outputs, and
the Markdown summary on a full disk (issue 20, items 8, 12 and 18)."""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_ethosu.modelgen import ModelBuilder

HOSTILE = {
    "conv1": "conv\x1b[2J\x1b[H<script>alert(1)</script>|a|b",
    "dw1": "dw\x1b]0;pwned\x07title\x08\x08 ##[error]v1",
    "conv2": "c2 [x](http://e.vil) `tick`",
}
CHECK = "c\r\n::notice::forged check"


def hostile_model(filters: int) -> bytes:
    m = ModelBuilder((1, 32, 32, 3), seed=1)
    x = m.conv2d(m.input, filters=filters, kernel=3, stride=2, name=HOSTILE["conv1"])
    x = m.depthwise_conv2d(x, kernel=3, name=HOSTILE["dw1"])
    x = m.custom(x, "Evil\x1b[31m|<b>op", name="cpu\x1b[2Kop")
    x = m.conv2d(x, filters=32, kernel=1, name=HOSTILE["conv2"])
    return m.build(x)


RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")  # every control character but the line break


def markdown_cells(row: str) -> list[str]:
    """A GFM table row's cells, split as GitHub does (a backslash escapes the next character)."""
    return re.findall(r"(?:\\.|[^|\\])+", row.strip().strip("|")) if row.strip() != "||" else []


def test_hostile_names_reach_no_sink_raw(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeini("[pytest]\n")
    (pytester.path / "models").mkdir()
    model = pytester.path / "models" / "h.tflite"
    model.write_bytes(hostile_model(16))
    pytester.makepyfile(test_h=f"""
        def test_h(ethosu_perf):
            ethosu_perf("models/h.tflite", name={CHECK!r})
    """)
    pytester.runpytest("-p", "no:xdist", "--ethosu-update").assert_outcomes(passed=1)
    model.write_bytes(hostile_model(48))  # wider: it regresses, with the failure's layer table
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    result = pytester.runpytest("-p", "no:xdist", "-v", "--ethosu-markdown=summary.md", "--ethosu-layers",
                                "--ethosu-json=r.json")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert not RAW.search(out), RAW.findall(out)
    commands = [line for line in out.splitlines() if line.lstrip().startswith("::") or "##[" in line]
    assert len(commands) == 1 and commands[0].startswith("::error file=test_h.py,line=")
    assert "%0D%0A::notice::forged check" in commands[0]
    assert "conv\\x1b[2J" in out and "dw\\x1b]0;pwned\\x07" in out  # shown, escaped
    markdown = (pytester.path / "summary.md").read_text()
    assert not RAW.search(markdown) and "<script" not in markdown and "](" not in markdown
    tables = [block.splitlines() for block in markdown.split("\n\n") if block.startswith("|")]
    assert [len(table) for table in tables] == [3, 3]  # the summary and the footprint: a header, a rule, one row
    assert all(len({len(markdown_cells(row)) for row in table}) == 1 for table in tables)
    entry = json.loads((pytester.path / "r.json").read_text())["estimates"][0]
    assert entry["name"] == CHECK and entry["layers"][0]["name"] == HOSTILE["conv1"]  # data keeps the real names


# -- merge ------------------------------------------------------------------------------------

@pytest.fixture
def shard(project: pytest.Pytester) -> Path:
    project.makepyfile(test_a="def test_a(ethosu_perf):\n    ethosu_perf('models/base.tflite')\n")
    project.runpytest("-p", "no:xdist", "--ethosu-update", "--ethosu-json=shard1.json").assert_outcomes(passed=1)
    return project.path / "shard1.json"


def merge_cli(cwd: Path, *args: str, fsize: int | None = None) -> subprocess.CompletedProcess[str]:
    def limit() -> None:  # a full disk, without root: writes past fsize bytes fail with EFBIG
        if fsize is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    return subprocess.run([sys.executable, "-m", "pytest_ethosu", "merge", *args], cwd=cwd, capture_output=True,
                          text=True, preexec_fn=limit, env={**os.environ, "COLUMNS": "120"})


BROKEN: dict[str, tuple[Callable[[dict[str, Any]], object], str]] = {
    "missing layers": (lambda e: e.pop("layers"), "layers is missing"),
    "string total": (lambda e: e["totals"].update(total_cycles="12"), "totals.total_cycles is \"12\""),
    "empty entry": (lambda e: e.clear(), "test is missing"),
    "placement": (lambda e: e["layers"][0].update(placement="GPU"), "layers[0].placement is 'GPU', not one of NPU, CPU"),
    "estimator": (lambda e: e["estimator"].pop("core"), "estimator.core is missing"),
    "later figure": (lambda e: e["totals"].update(off_chip_flash_used="big"), "totals.off_chip_flash_used is \"big\""),
    "negative later figure": (lambda e: e["totals"].update(sram_traffic=-5), "totals.sram_traffic is -5, not a number of"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_merge_refuses_a_malformed_entry_before_writing(shard: Path, case: str) -> None:
    document = json.loads(shard.read_text())
    BROKEN[case][0](document["estimates"][0])
    bad = shard.with_name("bad.json")
    bad.write_text(json.dumps(document))
    old = shard.with_name("merged.json")
    old.write_text("previous\n")
    done = merge_cli(shard.parent, "shard1.json", "bad.json", "-o", "merged.json", "--markdown", "s.md")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "bad.json: estimate 0" in done.stderr and BROKEN[case][1] in done.stderr
    assert len(done.stderr.splitlines()) == 1
    assert old.read_text() == "previous\n" and not shard.with_name("s.md").exists()


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_merge_refuses_nan_and_infinity(shard: Path, constant: str) -> None:
    text = re.sub(r'"inference_ms": [0-9.e-]+', f'"inference_ms": {constant}', shard.read_text(), count=1)
    shard.with_name("nan.json").write_text(text)
    done = merge_cli(shard.parent, "nan.json", "-o", "merged.json")
    assert done.returncode == 2 and "Traceback" not in done.stderr and "nan.json" in done.stderr, done.stderr
    assert not shard.with_name("merged.json").exists()


def test_merge_refuses_an_output_that_is_an_input(shard: Path) -> None:
    shard.with_name("shard2.json").write_text(shard.read_text().replace("test_a.py::test_a", "test_b.py::test_b"))
    (shard.parent / "sub").mkdir()
    (shard.parent / "sub" / "link.json").symlink_to(shard.with_name("shard2.json"))
    before = shard.with_name("shard2.json").read_bytes()
    for output in (["-o", "shard2.json"], ["-o", "./sub/../shard2.json"], ["-o", "sub/link.json"],
                   ["--html", "shard1.json"], ["--markdown", "sub/link.json"]):
        done = merge_cli(shard.parent, "shard1.json", "shard2.json", *output)
        assert done.returncode == 2 and "is the input" in done.stderr and "Traceback" not in done.stderr, output
    assert shard.with_name("shard2.json").read_bytes() == before
    assert merge_cli(shard.parent, "shard1.json", "shard2.json", "-o", "merged.json").returncode == 0


def test_merge_on_a_full_disk_keeps_the_old_output(shard: Path) -> None:
    assert merge_cli(shard.parent, "shard1.json", "-o", "merged.json", "--markdown", "s.md").returncode == 0
    merged, notes = shard.with_name("merged.json"), shard.with_name("s.md")
    old_json, old_md = merged.read_bytes(), notes.read_bytes()
    done = merge_cli(shard.parent, "shard1.json", "-o", "merged.json", "--markdown", "s.md", fsize=len(old_md) + 50)
    assert done.returncode == 2 and "could not write merged.json" in done.stderr and "could not write s.md" in done.stderr
    assert "Traceback" not in done.stderr
    assert merged.read_bytes() == old_json and json.loads(old_json)  # intact, not truncated
    assert notes.read_bytes() == old_md  # the append was cut back: nothing half-appended
    assert not [p for p in shard.parent.iterdir() if p.name.endswith(".tmp")]


# -- the Markdown summary on a full disk --------------------------------------------------------

def test_step_summary_append_is_all_or_nothing(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    project.makepyfile(test_a="def test_a(ethosu_perf):\n    ethosu_perf('models/base.tflite')\n")
    project.runpytest("-p", "no:xdist", "--ethosu-update").assert_outcomes(passed=1)
    summary = project.path / "step_summary.md"
    earlier = "# earlier step\n" + "x" * 4000 + "\n"
    summary.write_text(earlier)
    project.makeconftest("""
        import os, resource, signal
        import pytest

        @pytest.hookimpl(tryfirst=True)
        def pytest_sessionfinish(session):  # the disk fills up before the plugin writes its reports
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            size = os.path.getsize(os.environ["GITHUB_STEP_SUMMARY"])
            resource.setrlimit(resource.RLIMIT_FSIZE, (size + 100, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    """)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = project.runpytest_subprocess("-p", "no:xdist")
    result.assert_outcomes(passed=1)
    assert summary.read_text() == earlier  # not half-appended
    result.stdout.fnmatch_lines([f"ethosu: could not write {summary}: File too large"])
