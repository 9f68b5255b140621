"""pytest wiring: options, the marker, the fixtures, and the hooks around each test and session.

The work itself lives elsewhere: estimating in ``estimator.py`` (through ``worker.py`` and
``vela_adapter.py``), baselines in ``baseline.py``, comparing in ``compare.py``, messages and
tables in ``report.py``, and the per-session state in ``session.py``.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from . import baseline, report
from .errors import EthosuError
from .session import DRIFT_POLICIES, EthosuPerf, EthosuSession, item_state_key
from .target import DEFAULT_ACCELERATOR, SETTINGS
from .vela_adapter import core_for, vela_version

session_key = pytest.StashKey[EthosuSession]()
SUMMARY_MODES = ("none", "short", "full")


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from . import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ethosu", "Ethos-U performance estimates (pytest-ethosu)")
    for flag, ini, text in SETTINGS.values():
        group.addoption(flag, dest=flag.lstrip("-").replace("-", "_"), default=None, help=text)
        parser.addini(ini, text)
    group.addoption("--ethosu-accelerators", dest="ethosu_accelerators", default=None,
                    help="comma-separated accelerators: run each ethosu_perf test once per accelerator")
    parser.addini("ethosu_accelerators", "accelerators to run each ethosu_perf test on", type="args")
    group.addoption("--ethosu-update", action="store_true", default=False,
                    help="write new and changed baselines (and delete unused ones) instead of failing")
    group.addoption("--ethosu-strict", action="store_true", default=False,
                    help="fail on improvements and layer changes too, so baselines stay tight")
    group.addoption("--ethosu-baseline-dir", dest="ethosu_baseline_dir", default=None,
                    help="baseline directory, relative to the rootdir (default: baselines)")
    parser.addini("ethosu_baseline_dir", "baseline directory, relative to the rootdir")
    group.addoption("--ethosu-rtol", dest="ethosu_rtol", default=None,
                    help="default relative tolerance of every gated metric (default: 0.01)")
    parser.addini("ethosu_rtol", "default relative tolerance (default: 0.01)")
    parser.addini("ethosu_atol", "default absolute tolerance (default: 0)")
    group.addoption("--ethosu-timeout", dest="ethosu_timeout", default=None,
                    help="seconds one Vela compilation may take before it is stopped (default: 300)")
    parser.addini("ethosu_timeout", "seconds one Vela compilation may take (default: 300)")
    parser.addini("ethosu_drift", "when the Vela version, core or target options differ from the "
                  f"baseline's: {' | '.join(DRIFT_POLICIES)} (default: warn)")
    group.addoption("--ethosu-summary", dest="ethosu_summary", default="short", choices=SUMMARY_MODES,
                    help="end-of-session summary: none, short (default) or full")
    group.addoption("--ethosu-no-cache", action="store_true", default=False,
                    help="always run Vela; neither read nor write the estimate cache")
    group.addoption("--ethosu-cache-dir", dest="ethosu_cache_dir", default=None,
                    help="estimate cache directory, relative to the rootdir (default: in .pytest_cache)")
    parser.addini("ethosu_cache_dir", "estimate cache directory, relative to the rootdir")
    group.addoption("--ethosu-no-advice", action="store_true", default=False,
                    help="skip the advisor (channel padding, memory-bound layers, CPU fallback, hot spots)")
    parser.addini("ethosu_advice", "run the advisor on every estimate (default: true)", type="bool", default=True)
    group.addoption("--ethosu-json", dest="ethosu_json", default=None, metavar="PATH",
                    help="write every estimate of the session (all layers, comparisons) to a JSON file")
    group.addoption("--ethosu-markdown", dest="ethosu_markdown", default=None, metavar="PATH",
                    help="append the summary as Markdown to PATH (default: $GITHUB_STEP_SUMMARY if set)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "ethosu(accelerator=, system_config=, memory_mode=, vela_config=, vela_args=[], "
        "accelerators=[], rtol=, atol=, tolerances={}): settings of ethosu_perf estimates",
    )
    session = EthosuSession(config)
    config.stash[session_key] = session
    config.pluginmanager.register(session, "ethosu-session")


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(session_key, None)
    if session is not None:
        session.close()
        config.pluginmanager.unregister(session)
        del config.stash[session_key]


def pytest_report_header(config: pytest.Config) -> str:
    session = config.stash[session_key]
    settings = session.settings
    target = ", ".join(f"{k}={v}" for k, v in settings.items() if v) or "Vela's defaults"
    mode = " (updating baselines)" if session.update else ""
    args = shlex.split(settings["vela_args"] or "")
    core = core_for(settings["accelerator"] or DEFAULT_ACCELERATOR, args)
    return (f"ethosu: Vela {vela_version()} ({core} core), target {target}, baselines in "
            f"{session.relative(session.baseline_root)}{mode}")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "ethosu_perf" not in metafunc.fixturenames:
        return
    marker = next((m.kwargs["accelerators"] for m in metafunc.definition.iter_markers("ethosu")
                   if "accelerators" in m.kwargs), None)
    option = metafunc.config.getoption("ethosu_accelerators")
    accelerators = (marker or (option.split(",") if option else None)
                    or metafunc.config.getini("ethosu_accelerators"))
    if accelerators:
        names = [str(a).strip() for a in accelerators if str(a).strip()]
        metafunc.parametrize("ethosu_accelerator", names, ids=names, indirect=True)


@pytest.fixture
def ethosu_accelerator(request: pytest.FixtureRequest) -> str | None:
    """The accelerator this test instance runs on, when the test is parametrized over several."""
    return getattr(request, "param", None)


@pytest.fixture
def ethosu_perf(request: pytest.FixtureRequest, ethosu_accelerator: str | None) -> EthosuPerf:
    """Estimate models with Vela (``.estimate``) and check them against baselines (call it)."""
    return EthosuPerf(request.node, request.config.stash[session_key], ethosu_accelerator)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report_ = yield
    if call.when != "call":
        return report_
    session = item.config.stash[session_key]
    if call.excinfo is not None and isinstance(call.excinfo.value, EthosuError):
        error = call.excinfo.value
        report_.longrepr = f"{type(error).__name__}: {error}"
    errors = session.finish_item(item, report_.passed)
    if errors:
        report_.outcome = "failed"
        report_.longrepr = "\n".join(errors)
    report_.user_properties = list(item.user_properties)
    state = item.stash.get(item_state_key, None)
    own_message = call.excinfo is not None and isinstance(call.excinfo.value, EthosuError)
    if report_.failed and not own_message and state is not None and state.logs:
        report_.sections.append(("Captured Vela output", "\n".join(state.logs)))
    return report_


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    state = config.stash[session_key]
    state.estimator_counts()
    if hasattr(config, "workerinput"):  # xdist worker: hand everything to the controller
        config.workeroutput["ethosu"] = json.dumps(state.worker_output())  # type: ignore[attr-defined]
        return
    state.deleted = state.delete_unused() if state.update else []
    records = state.sorted_records()
    if not records:
        return
    json_path = config.getoption("ethosu_json")
    if json_path:
        document = report.json_report(records, vela_version())
        state.output_errors += _write(Path(json_path), json.dumps(document, indent=2, sort_keys=True) + "\n",
                                      append=False)
    markdown_path = config.getoption("ethosu_markdown") or os.environ.get("GITHUB_STEP_SUMMARY")
    if markdown_path:
        rows = summary_rows(config, records, width=10_000, verbose=1)
        state.output_errors += _write(Path(markdown_path), report.markdown(rows, records), append=True)


def _write(path: Path, text: str, append: bool) -> list[str]:
    """Write a session-level output file; a failure is reported in the summary, never raised."""
    try:
        if append:
            with open(path, "a", encoding="utf-8") as f:
                f.write(text)
        else:
            baseline.write_text_atomic(path, text)
    except OSError as exc:
        return [f"could not write {path}: {exc.strerror or exc}"]
    return []


def summary_rows(config: pytest.Config, records: list[dict[str, Any]], width: int,
                 verbose: int) -> list[dict[str, Any]]:
    """The summary's rows, after conftest hooks have changed them."""
    rows = []
    for record in records:
        row = report.summary_row(record, width, verbose)
        config.hook.pytest_ethosu_summary_row(config=config, record=record, row=row)
        rows.append(row)
    return rows


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    data = getattr(node, "workeroutput", {}).get("ethosu")
    if data:
        node.config.stash[session_key].merge(json.loads(data))


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return
    state = config.stash[session_key]
    mode = config.getoption("ethosu_summary")
    records = state.sorted_records()
    tr = terminalreporter
    for error in state.output_errors:
        tr.write_line(f"ethosu: {error}", red=True)
    if os.environ.get("GITHUB_ACTIONS") == "true":
        for line in report.github_annotations(records):
            tr.write_line(line)
    if not records and not state.counts and not state.deleted:
        return
    verbose = config.get_verbosity()
    width = tr._tw.fullwidth
    tr.write_sep("=", "ethosu performance summary")
    if mode != "none" and records:
        tr.write_line(report.render_rows(summary_rows(config, records, width, verbose)))
        regressed = [r for r in records if r["status"] == "regressed"]
        for record in regressed:
            tr.write_line("")
            tr.write_line(f"{record['test']} [{record['name']}] regressed; worst changes:")
            tr.write_line(report.render_rows(report.regression_rows(record)))
        count = report.TOP_LAYERS if mode == "short" and verbose <= 0 else 3 * report.TOP_LAYERS
        tr.write_line("")
        tr.write_line(f"layers that cost the most cycles (top {count}):")
        tr.write_line(report.top_layers_table(records, count, width))
        advice = report.advice_lines(records, full=mode == "full" or verbose > 0, width=width)
        if advice:
            tr.write_line("")
            tr.write_line("advice (--ethosu-no-advice turns it off):")
            for line in advice:
                tr.write_line(line)
    notes = sorted({note for r in records for note in r["drift"]})
    for note in notes:
        tr.write_line(f"note: {note}")
    improved = [r for r in records if r["status"] == "improved"]
    if improved and not state.update:
        tr.write_line(f"{len(improved)} estimate(s) improved beyond tolerance: tighten their "
                      "baselines with pytest --ethosu-update")
    missing = [r for r in records if r["status"] == "missing"]
    if missing:
        tr.write_line(f"{len(missing)} estimate(s) have no baseline: create them with "
                      "pytest --ethosu-update")
    if records:
        tr.write_line(f"ethosu: {len(records)} estimate(s); Vela ran {state.counts['vela_runs']} time(s), "
                      f"{state.counts['cache_hits']} answered from the cache")
    if state.update:
        counts = state.counts
        tr.write_line(f"ethosu baselines: {counts['created']} created, {counts['updated']} updated, "
                      f"{counts['unchanged']} unchanged, {counts['deleted']} deleted")
        for path in state.deleted:
            tr.write_line(f"  deleted unused {state.relative(path)}")
    else:
        unused = state.unused_baselines()
        if unused:
            tr.write_line(f"{len(unused)} unused baseline(s) (delete them with pytest --ethosu-update):")
            for path in unused:
                tr.write_line(f"  {state.relative(path)}")
