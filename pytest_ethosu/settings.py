"""The session's settings, read once from the command line and the ini file into typed values.

``options.py`` declares every option (flag, ini key, kind, default); ``Settings.from_config``
reads them through ``options.read``.  A value that cannot be used is a ``pytest.UsageError``
naming the option, before any test runs.  Per-estimate settings (accelerator, system config,
memory mode, Vela config and options) are only collected here; ``target.resolve`` merges them
with the marker's and the call's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .options import DEFAULT_TIMEOUT, TARGET_KEYS, given_on_command_line, read, replayed_options


def _html_report_path(config: pytest.Config) -> Path | None:
    """The HTML report's path.  It needs Jinja2, the ``html`` extra: without it this is a usage
    error, before any test runs."""
    path: Path | None = read(config, "html")
    if path is None:
        return None
    try:
        import jinja2  # noqa: F401
    except ImportError:
        from .html_report import INSTALL_HINT

        where = "--ethosu-html" if given_on_command_line(config, "html") else "ethosu_html"
        raise pytest.UsageError(f"{where}: the HTML report needs Jinja2, which is not installed: "
                                f"{INSTALL_HINT}") from None
    return path


@dataclass
class Settings:
    rootdir: Path
    update: bool = False
    strict: bool = False
    advise: bool = True
    summary: str = "short"
    drift_policy: str = "warn"
    baseline_root: Path = Path("baselines")
    timeout: float = DEFAULT_TIMEOUT
    rtol: float | None = None
    atol: float | None = None
    budget: dict[str, Any] = field(default_factory=dict)  # figure -> budget.Limit, from --ethosu-budget / ethosu_budget
    target: dict[str, Any] = field(default_factory=dict)  # options.TARGET_KEYS -> values
    accelerators: list[str] = field(default_factory=list)
    cache_dir: Path | None = None
    cache_owned: bool = False  # the default location, inside pytest's own cache
    json_path: Path | None = None
    markdown_path: Path | None = None
    html_path: Path | None = None
    replay: list[str] = field(default_factory=list)
    layers: bool = False  # print every estimate's per-layer table

    @classmethod
    def from_config(cls, config: pytest.Config) -> Settings:
        root = config.rootpath
        accelerators: list[str] = read(config, "accelerators")
        if given_on_command_line(config, "accelerators") and not accelerators:
            raise pytest.UsageError("--ethosu-accelerators names no accelerator; give e.g. "
                                    "--ethosu-accelerators=ethos-u55-128,ethos-u65-256")
        cache_dir, owned = None, False
        if read(config, "cache"):
            chosen: Path | None = read(config, "cache_dir")
            if chosen is not None:
                cache_dir = chosen.resolve()
            elif config.pluginmanager.has_plugin("cacheprovider"):
                # in pytest's cache directory, found as pytest finds it, created only when used
                base = Path(os.path.expanduser(str(config.getini("cache_dir"))))
                cache_dir, owned = (root / base).resolve() / "d" / "ethosu", True
        markdown: Path | None = read(config, "markdown")
        if markdown is None and os.environ.get("GITHUB_STEP_SUMMARY"):
            markdown = Path(os.environ["GITHUB_STEP_SUMMARY"])
        return cls(
            rootdir=root,
            update=bool(read(config, "update")),
            strict=bool(read(config, "strict")),
            advise=bool(read(config, "advice")),
            summary=str(read(config, "summary")),
            drift_policy=str(read(config, "drift")),
            baseline_root=read(config, "baseline_dir").resolve(),
            timeout=float(read(config, "timeout") or DEFAULT_TIMEOUT),
            rtol=read(config, "rtol"),
            atol=read(config, "atol"),
            budget=read(config, "budget") or {},
            target={name: read(config, name) for name in TARGET_KEYS},
            accelerators=accelerators,
            cache_dir=cache_dir,
            cache_owned=owned,
            json_path=read(config, "json"),
            markdown_path=markdown,
            html_path=_html_report_path(config),
            replay=replayed_options(list(config.invocation_params.args)),
            layers=bool(read(config, "layers")),
        )
