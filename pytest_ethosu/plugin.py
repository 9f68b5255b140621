"""pytest wiring: the options, the marker, the fixtures, and the session plugin's registration.

The work lives elsewhere: the ``ethosu_perf`` object in ``fixture.py``, the session's state and
hooks in ``session.py``, estimating in ``estimator.py`` (through ``worker.py`` and the ``vela``
package), baselines in ``baseline.py``, the decision in ``gate.py`` (comparing in
``compare.py``), messages, tables and reports in ``report.py``.
"""

from __future__ import annotations

import pytest

from .fixture import MARKER_KEYS, EthosuPerf
from .session import EthosuSession
from .settings import SUMMARY_MODES, positive_seconds, split_names, tolerance
from .target import SETTINGS

session_key = pytest.StashKey[EthosuSession]()

def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from . import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ethosu", "Ethos-U performance estimates (pytest-ethosu)")
    for flag, ini, text in SETTINGS.values():
        group.addoption(flag, dest=flag.lstrip("-").replace("-", "_"), default=None, help=text)
        parser.addini(ini, text)
    group.addoption("--ethosu-accelerators", dest="ethosu_accelerators", default=None,
                    help="comma-separated accelerators: run each ethosu_perf test that does not name "
                         "its accelerator once per accelerator")
    parser.addini("ethosu_accelerators", "accelerators to run each ethosu_perf test on (a list, or "
                  "names separated by commas or spaces)", type="args")
    group.addoption("--ethosu-update", action="store_true", default=False,
                    help="write new and changed baselines (and delete unused ones) instead of failing")
    group.addoption("--ethosu-strict", action="store_true", default=False,
                    help="fail on improvements and layer changes too, so baselines stay tight")
    group.addoption("--ethosu-baseline-dir", dest="ethosu_baseline_dir", default=None, metavar="DIR",
                    help="baseline directory, relative to the rootdir (default: baselines)")
    parser.addini("ethosu_baseline_dir", "baseline directory, relative to the rootdir")
    group.addoption("--ethosu-rtol", dest="ethosu_rtol", default=None, type=tolerance,
                    help="default relative tolerance of every gated metric (default: 0.01)")
    parser.addini("ethosu_rtol", "default relative tolerance (default: 0.01)")
    parser.addini("ethosu_atol", "default absolute tolerance (default: 0)")
    group.addoption("--ethosu-timeout", dest="ethosu_timeout", default=None, type=positive_seconds,
                    help="seconds one Vela compilation may take before it is stopped (default: 300)")
    parser.addini("ethosu_timeout", "seconds one Vela compilation may take (default: 300)")
    parser.addini("ethosu_drift", "when the Vela version, core or target options differ from the "
                  "baseline's: warn | fail | update (default: warn)")
    group.addoption("--ethosu-layers", action="store_true", default=False,
                    help="print every estimate's per-layer table (as vela --verbose-performance) in the summary")
    group.addoption("--ethosu-summary", dest="ethosu_summary", default="short", choices=SUMMARY_MODES,
                    help="end-of-session summary: none, short (default) or full")
    group.addoption("--ethosu-no-cache", action="store_true", default=False,
                    help="always run Vela; neither read nor write the estimate cache")
    group.addoption("--ethosu-cache-dir", dest="ethosu_cache_dir", default=None, metavar="DIR",
                    help="estimate cache directory, relative to the rootdir (default: in .pytest_cache)")
    parser.addini("ethosu_cache_dir", "estimate cache directory, relative to the rootdir")
    group.addoption("--ethosu-no-advice", action="store_true", default=False,
                    help="skip the advisor (channel padding, memory-bound layers, CPU fallback, hot spots)")
    parser.addini("ethosu_advice", "run the advisor on every estimate (default: true)", type="bool", default=True)
    group.addoption("--ethosu-json", dest="ethosu_json", default=None, metavar="PATH",
                    help="write every estimate of the session (all layers, comparisons) to a JSON file")
    group.addoption("--ethosu-markdown", dest="ethosu_markdown", default=None, metavar="PATH",
                    help="append the summary as Markdown to PATH (default: $GITHUB_STEP_SUMMARY if set)")
    group.addoption("--ethosu-html", dest="ethosu_html", default=None, metavar="PATH",
                    help="write an HTML report with per-layer charts of every estimate to PATH "
                         "(needs pytest-ethosu[html])")
    parser.addini("ethosu_html", "write the HTML report to this file, relative to the rootdir")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"ethosu({', '.join(k + '=' for k in MARKER_KEYS)}): settings of ethosu_perf estimates")
    session = EthosuSession(config)
    config.stash[session_key] = session
    config.pluginmanager.register(session, "ethosu-session")


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(session_key, None)
    if session is not None:
        session.close()
        config.pluginmanager.unregister(session)
        del config.stash[session_key]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One test per accelerator of the marker's ``accelerators=``, or of
    ``--ethosu-accelerators`` / ``ethosu_accelerators`` for tests whose marker does not fix an
    ``accelerator=`` (those keep their ids and baselines)."""
    if "ethosu_perf" not in metafunc.fixturenames:
        return
    markers = list(metafunc.definition.iter_markers("ethosu"))
    marker = next((m.kwargs["accelerators"] for m in markers if "accelerators" in m.kwargs), None)
    if marker is not None:
        names = split_names(marker)
    elif any("accelerator" in m.kwargs for m in markers):
        names = []
    else:
        names = metafunc.config.stash[session_key].settings.accelerators
    if names:
        metafunc.parametrize("ethosu_accelerator", names, ids=names, indirect=True)


@pytest.fixture
def ethosu_accelerator(request: pytest.FixtureRequest) -> str | None:
    """The accelerator this test instance runs on, when the test is parametrized over several."""
    return getattr(request, "param", None)


@pytest.fixture
def ethosu_perf(request: pytest.FixtureRequest, ethosu_accelerator: str | None) -> EthosuPerf:
    """Estimate models with Vela (``.estimate``) and check them against baselines (call it)."""
    return EthosuPerf(request.node, request.config.stash[session_key], ethosu_accelerator)
