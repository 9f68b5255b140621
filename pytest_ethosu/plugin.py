"""pytest wiring: the options (declared in ``options.py``), the marker, the fixtures, and the session plugin's registration.

The work lives elsewhere: the ``ethosu_perf`` object in ``fixture.py``, the session's state and
hooks in ``session.py``, estimating in ``estimator.py`` (through ``worker.py`` and the ``vela``
package), baselines in ``baseline.py``, the decision in ``gate.py`` (comparing in
``compare.py``), messages, tables and reports in ``report.py``.
"""

from __future__ import annotations

import pytest

from .fixture import EthosuPerf
from .options import MARKER_KEYS, add_options, repeated, split_names
from .session import EthosuSession

session_key = pytest.StashKey[EthosuSession]()

def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from . import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"ethosu({', '.join(k + '=' for k in MARKER_KEYS)}): settings of ethosu_perf estimates")
    session = EthosuSession(config)
    config.stash[session_key] = session
    config.pluginmanager.register(session, "ethosu-session")
    if session.settings.advise and not config.pluginmanager.has_plugin("ethosu-advisor"):
        from . import advisor  # the built-in advice rules, on the plugin's own hook (-p no:ethosu-advisor: off)

        config.pluginmanager.register(advisor, "ethosu-advisor")


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
        twice = repeated(names)
        if twice:
            raise pytest.UsageError(f"{metafunc.definition.nodeid}: @pytest.mark.ethosu(accelerators=...) names "
                                    f"{', '.join(twice)} more than once")
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
