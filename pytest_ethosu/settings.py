"""The session's settings, parsed once from the command line and the ini file into typed values.

``plugin.py`` declares the options; ``Settings.from_config`` reads them.  A value that cannot
be used is a ``pytest.UsageError`` naming the option, before any test runs.  Per-estimate
settings (accelerator, system config, memory mode, Vela config and options) are only collected
here; ``target.resolve`` merges them with the marker's and the call's.
"""

from __future__ import annotations

import argparse
import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .gate import DRIFT_POLICIES
from .target import SETTINGS

SUMMARY_MODES = ("none", "short", "full")
DEFAULT_TIMEOUT = 300.0
MAX_TIMEOUT = 7 * 24 * 3600.0

#: Options that take a path: written as two words, pytest may take the path for a test path
#: while it looks for the rootdir, before it knows the plugin's options.
PATH_OPTIONS = ("--ethosu-json", "--ethosu-markdown", "--ethosu-baseline-dir", "--ethosu-cache-dir",
                "--ethosu-vela-config")

#: Command-line options that change an estimate or where its baseline lives: an accept command
#: printed for a failure repeats those the run was given.
REPLAYED = (*(flag for flag, _, _ in SETTINGS.values()), "--ethosu-baseline-dir", "--ethosu-accelerators")


def positive_seconds(text: str) -> float:
    """argparse type of ``--ethosu-timeout``: a number of seconds above zero, at most a week."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, not {text!r}")
    if value > MAX_TIMEOUT:  # the worker waits with select(), which takes no more than ~292 years
        raise argparse.ArgumentTypeError(f"expected at most {MAX_TIMEOUT:.0f} seconds (a week), not {text!r}")
    return value


def tolerance(text: str) -> float:
    """argparse type of ``--ethosu-rtol``: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, not {text!r}")
    return value


def split_names(values: Any) -> list[str]:
    """Accelerator lists as people write them: a TOML list, ``a,b``, ``a, b`` or ``a b``."""
    if values is None:
        return []
    items = [values] if isinstance(values, str) else list(values)
    return [name.strip() for item in items for name in str(item).replace(",", " ").split() if name.strip()]


def _ini_number(config: pytest.Config, ini: str, parse: Any) -> float | None:
    text = config.getini(ini)
    if text in (None, ""):
        return None
    try:
        value: float = parse(str(text))
    except argparse.ArgumentTypeError as exc:
        raise pytest.UsageError(f"ini key {ini}: {exc}") from None
    return value


def _ini_bool(config: pytest.Config, ini: str) -> bool:
    try:
        return bool(config.getini(ini))
    except ValueError as exc:
        raise pytest.UsageError(f"ini key {ini}: {exc} (use true or false)") from None


def option_value(config: pytest.Config, flag: str, ini: str) -> Any:
    value = config.getoption(flag.lstrip("-").replace("-", "_"), None)
    return value if value not in (None, "") else (config.getini(ini) or None)


#: pytest's own options that change the plugin's settings: the ini file, ini overrides, the rootdir
_PYTEST_REPLAYED = {"-c": "--config-file", "--config-file": "--config-file", "--rootdir": "--rootdir",
                    "-o": "--override-ini", "--override-ini": "--override-ini"}


def replayed_options(args: list[str]) -> list[str]:
    """The options of a command line that shaped the estimates or say where baselines live,
    each as one ``--flag=value`` word: the plugin's from ``REPLAYED``, and pytest's ``-c``,
    ``--rootdir`` and ``-o ethosu_...=...``."""
    kept: list[str] = []
    words = iter(args)
    for word in words:
        flag, eq, value = word.partition("=")
        short = word[:2] if word[:2] in ("-c", "-o") and len(word) > 2 and not word.startswith("--") else None
        if short:
            flag, eq, value = short, "=", word[2:]
        if flag in REPLAYED or flag in _PYTEST_REPLAYED:
            if not eq:
                value = next(words, "")
            long = _PYTEST_REPLAYED.get(flag, flag)
            if long == "--override-ini" and not value.startswith("ethosu_"):
                continue
            kept.append(f"{long}={value}")
    return kept


def two_word_paths(args: list[str]) -> list[str]:
    """Path options given as two words (``--ethosu-json out.json``)."""
    return [f"{word} {args[i + 1]}" for i, word in enumerate(args[:-1]) if word in PATH_OPTIONS]


def html_report_path(config: pytest.Config) -> Path | None:
    """``--ethosu-html`` (relative to the current directory, like ``--ethosu-json``) or the ini
    key ``ethosu_html`` (relative to the rootdir).  The report needs Jinja2, the ``html`` extra:
    without it this is a usage error, before any test runs."""
    option = config.getoption("ethosu_html", None)
    ini = config.getini("ethosu_html")
    if not option and not ini:
        return None
    path = Path(option) if option else config.rootpath / str(ini)
    try:
        import jinja2  # noqa: F401
    except ImportError:
        from .html_report import INSTALL_HINT

        raise pytest.UsageError(f"{'--ethosu-html' if option else 'ethosu_html'}: the HTML report needs "
                                f"Jinja2, which is not installed: {INSTALL_HINT}") from None
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
    target: dict[str, Any] = field(default_factory=dict)  # target.SETTINGS names -> values
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
        import os

        root = config.rootpath
        policy = str(config.getini("ethosu_drift") or "warn")
        if policy not in DRIFT_POLICIES:
            raise pytest.UsageError(f"ethosu_drift must be one of {', '.join(DRIFT_POLICIES)}, not {policy!r}")
        directory = option_value(config, "--ethosu-baseline-dir", "ethosu_baseline_dir") or "baselines"
        timeout = config.getoption("ethosu_timeout") or _ini_number(config, "ethosu_timeout", positive_seconds)
        rtol = config.getoption("ethosu_rtol")
        if rtol is None:
            rtol = _ini_number(config, "ethosu_rtol", tolerance)
        option = config.getoption("ethosu_accelerators")
        accelerators = split_names(option) if option is not None else split_names(config.getini("ethosu_accelerators"))
        if option is not None and not accelerators:
            raise pytest.UsageError("--ethosu-accelerators names no accelerator; give e.g. "
                                    "--ethosu-accelerators=ethos-u55-128,ethos-u65-256")
        cache_dir, owned = None, False
        if not config.getoption("ethosu_no_cache"):
            chosen = option_value(config, "--ethosu-cache-dir", "ethosu_cache_dir")
            if chosen:
                cache_dir = (root / str(chosen)).resolve()
            elif config.pluginmanager.has_plugin("cacheprovider"):
                # in pytest's cache directory, found as pytest finds it, created only when used
                base = Path(os.path.expanduser(str(config.getini("cache_dir"))))
                cache_dir, owned = (root / base).resolve() / "d" / "ethosu", True
        vela_args = option_value(config, "--ethosu-vela-args", "ethosu_vela_args")
        if isinstance(vela_args, str):
            try:
                shlex.split(vela_args)
            except ValueError as exc:
                raise pytest.UsageError(f"--ethosu-vela-args / ethosu_vela_args {vela_args!r}: {exc}") from None
        json_path = config.getoption("ethosu_json")
        markdown = config.getoption("ethosu_markdown") or os.environ.get("GITHUB_STEP_SUMMARY")
        html_path = html_report_path(config)
        return cls(
            rootdir=root,
            update=bool(config.getoption("ethosu_update")),
            strict=bool(config.getoption("ethosu_strict")),
            advise=not config.getoption("ethosu_no_advice") and _ini_bool(config, "ethosu_advice"),
            summary=str(config.getoption("ethosu_summary")),
            drift_policy=policy,
            baseline_root=(root / str(directory)).resolve(),
            timeout=float(timeout) if timeout else DEFAULT_TIMEOUT,
            rtol=rtol,
            atol=_ini_number(config, "ethosu_atol", tolerance),
            target={name: option_value(config, flag, ini) for name, (flag, ini, _) in SETTINGS.items()},
            accelerators=accelerators,
            cache_dir=cache_dir,
            cache_owned=owned,
            json_path=Path(json_path) if json_path else None,
            markdown_path=Path(markdown) if markdown else None,
            html_path=html_path,
            replay=replayed_options(list(config.invocation_params.args)),
            layers=bool(config.getoption("ethosu_layers")),
        )
