"""Every option of the plugin, declared once.

``OPTIONS`` is the one table: each row gives the command-line flag, the ini key, the help, the
kind of value (which fixes its argparse type, its ini type and its validator), whether a
printed accept command repeats it, and whether the marker and the call take it as a keyword.
``pytest_addoption`` (``add_options``), the session's settings (``read``), the replayed
options, the two-word warning and the marker's keywords are all derived from it, so an option
added here is complete.

Where a value comes from: the command line, else the ini file, else the row's default.  Every
relative path, given on the command line or in the ini file, is taken from the rootdir, as the
baseline directory always was: a session started from a subdirectory writes its reports where a
session started at the top does.
"""

from __future__ import annotations

import argparse
import math
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest

from .gate import DRIFT_POLICIES
from .vela import DEFAULT_ACCELERATOR, DEFAULT_CONFIG

Kind = Literal["text", "file", "path", "switch", "off-switch", "number", "seconds", "names", "choice", "budget"]

SUMMARY_MODES = ("none", "short", "full")
DEFAULT_TIMEOUT = 300.0
MAX_TIMEOUT = 7 * 24 * 3600.0


def positive_seconds(text: str) -> float:
    """A number of seconds above zero, at most a week (the worker waits with ``select()``)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, not {text!r}")
    if value > MAX_TIMEOUT:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_TIMEOUT:.0f} seconds (a week), not {text!r}")
    return value


def tolerance(text: str) -> float:
    """A finite number >= 0."""
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


def repeated(names: list[str]) -> list[str]:
    """The names given more than once (an accelerator twice would be two tests, two baselines)."""
    return sorted({name for name in names if names.count(name) > 1})


@dataclass(frozen=True)
class Option:
    """One option: its flag, its ini key (``None`` where there is a reason for none), its kind."""

    name: str  # the name ``read`` takes (argparse's dest is ``ethosu_<name>``)
    flag: str
    ini: str | None
    help: str
    kind: Kind
    default: Any = None
    choices: tuple[str, ...] = ()
    replay: bool = False  # an accept command printed for a failure repeats it
    keyword: bool = False  # the marker and the call take it too, under ``name``
    metavar: str | None = None
    ini_help: str | None = None  # when the ini key reads differently from the flag

    @property
    def dest(self) -> str:
        return f"ethosu_{self.name}"

    @property
    def takes_path(self) -> bool:
        """Written as two words, pytest may take its value for a test path."""
        return self.kind in ("path", "file")

    def validator(self) -> Callable[[str], Any] | None:
        return {"number": tolerance, "seconds": positive_seconds}.get(self.kind)


OPTIONS: tuple[Option, ...] = (
    # what Vela compiles for: each can also be set by the marker and the call
    Option("accelerator", "--ethosu-accelerator", "ethosu_accelerator",
           f"Ethos-U accelerator, e.g. ethos-u65-256 (Vela's default: {DEFAULT_ACCELERATOR})",
           "text", replay=True, keyword=True),
    Option("system_config", "--ethosu-system-config", "ethosu_system_config",
           "Vela system config name, e.g. Ethos_U65_High_End (default: Vela's choice)",
           "text", replay=True, keyword=True),
    Option("memory_mode", "--ethosu-memory-mode", "ethosu_memory_mode",
           "Vela memory mode name, e.g. Dedicated_Sram (default: Vela's choice)",
           "text", replay=True, keyword=True),
    Option("vela_config", "--ethosu-vela-config", "ethosu_vela_config",
           f"Vela .ini file: a path (relative to the rootdir) or a bundled name such as {DEFAULT_CONFIG} "
           "(the default)", "file", replay=True, keyword=True, metavar="INI"),
    Option("vela_args", "--ethosu-vela-args", "ethosu_vela_args",
           "extra Vela options, shell-quoted; write it with '=': --ethosu-vela-args=--debug-force-legacy-core",
           "text", replay=True, keyword=True, metavar="ARGS"),
    Option("accelerators", "--ethosu-accelerators", "ethosu_accelerators",
           "comma-separated accelerators: run each ethosu_perf test that does not name its accelerator "
           "once per accelerator", "names", replay=True,
           ini_help="accelerators to run each ethosu_perf test on (a list, or names separated by commas or spaces)"),
    # the gate
    # no ini key: a project whose ini file said "update" would never fail
    Option("update", "--ethosu-update", None,
           "write new and changed baselines (and delete unused ones) instead of failing", "switch", default=False),
    Option("strict", "--ethosu-strict", "ethosu_strict",
           "fail on improvements and layer changes too, so baselines stay tight", "switch", default=False),
    Option("baseline_dir", "--ethosu-baseline-dir", "ethosu_baseline_dir",
           "baseline directory, relative to the rootdir (default: baselines)", "path",
           default="baselines", replay=True, metavar="DIR"),
    Option("rtol", "--ethosu-rtol", "ethosu_rtol",
           "default relative tolerance of every gated metric (default: 0.01)", "number", keyword=True),
    Option("atol", "--ethosu-atol", "ethosu_atol",
           "default absolute tolerance of every gated metric (default: 0)", "number", keyword=True),
    Option("budget", "--ethosu-budget", "ethosu_budget",
           "absolute limits every check must stay within, baseline or not: figure=limit, comma-separated, e.g. "
           "--ethosu-budget='sram_used=256KiB,off_chip_flash_used=1MiB,inference_time=5ms,cpu_ops=0'",
           "budget", replay=True, keyword=True, metavar="LIMITS",
           ini_help="absolute limits every check must stay within: one figure = limit per line (or a list), "
                    "e.g. sram_used = 256 KiB"),
    Option("drift", "--ethosu-drift", "ethosu_drift",
           "when the Vela version, core or target options differ from the baseline's: "
           "warn (default), fail or update", "choice", default="warn", choices=DRIFT_POLICIES),
    # running Vela
    Option("timeout", "--ethosu-timeout", "ethosu_timeout",
           "seconds one Vela compilation may take before it is stopped (default: 300)",
           "seconds", default=DEFAULT_TIMEOUT, metavar="SECONDS"),
    Option("cache", "--ethosu-no-cache", "ethosu_cache",
           "always run Vela; neither read nor write the estimate cache", "off-switch", default=True,
           ini_help="read and write the estimate cache (default: true)"),
    Option("cache_dir", "--ethosu-cache-dir", "ethosu_cache_dir",
           "estimate cache directory, relative to the rootdir (default: in .pytest_cache)", "path",
           metavar="DIR"),
    Option("advice", "--ethosu-no-advice", "ethosu_advice",
           "skip the advisor (channel padding, memory-bound layers, CPU fallback, hot spots)",
           "off-switch", default=True, ini_help="run the advisor on every estimate (default: true)"),
    # what the session writes
    Option("summary", "--ethosu-summary", "ethosu_summary",
           "end-of-session summary: none, short (default) or full", "choice", default="short",
           choices=SUMMARY_MODES),
    Option("layers", "--ethosu-layers", "ethosu_layers",
           "print every estimate's per-layer table (as vela --verbose-performance) in the summary",
           "switch", default=False),
    Option("json", "--ethosu-json", "ethosu_json",
           "write every estimate of the session (all layers, comparisons) to a JSON file, relative to the rootdir",
           "path", metavar="PATH"),
    Option("markdown", "--ethosu-markdown", "ethosu_markdown",
           "append the summary as Markdown to PATH, relative to the rootdir (default: $GITHUB_STEP_SUMMARY "
           "if set)", "path", metavar="PATH"),
    Option("html", "--ethosu-html", "ethosu_html",
           "write an HTML report with per-layer charts of every estimate to PATH, relative to the rootdir "
           "(needs pytest-ethosu[html])", "path", metavar="PATH"),
)

BY_NAME = {option.name: option for option in OPTIONS}
#: the settings of one estimate's target, as ``target.resolve`` takes them
TARGET_KEYS = tuple(o.name for o in OPTIONS if o.keyword and o.kind in ("text", "file"))
TOLERANCE_KEYS = ("rtol", "atol", "tolerances")
#: what ``@pytest.mark.ethosu(...)`` takes
MARKER_KEYS = (*TARGET_KEYS, *TOLERANCE_KEYS, "budget", "accelerators")
PATH_FLAGS = tuple(o.flag for o in OPTIONS if o.takes_path)
REPLAYED = tuple(o.flag for o in OPTIONS if o.replay)


def _ini_number_type() -> Any:
    """``str | float`` where pytest takes type expressions (9.2): a TOML number stays a number, and
    an ini file's text stays the text the user wrote, which the validator quotes.  Before 9.2:
    text only."""
    version = tuple(int(part) for part in pytest.__version__.split(".")[:2] if part.isdigit())
    return str | float if version >= (9, 2) else None


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("ethosu", "Ethos-U performance estimates (pytest-ethosu)")
    number = _ini_number_type()
    for option in OPTIONS:
        kwargs: dict[str, Any] = {"dest": option.dest, "help": option.help, "default": None}
        if option.kind == "switch":
            kwargs["action"] = "store_true"
        elif option.kind == "off-switch":
            kwargs["action"] = "store_false"
        else:
            kwargs["metavar"] = option.metavar or option.name.upper()
            if option.kind == "choice":
                kwargs["choices"] = option.choices
            elif option.validator() is not None:
                kwargs["type"] = option.validator()
        group.addoption(option.flag, **kwargs)
        if option.ini is None:
            continue
        ini_help = option.ini_help or option.help
        if option.kind in ("switch", "off-switch"):
            parser.addini(option.ini, ini_help, type="bool", default=None)
        elif option.kind == "names":
            parser.addini(option.ini, ini_help, type="args", default=None)
        elif option.kind == "budget":
            parser.addini(option.ini, ini_help, type="linelist", default=None)
        elif option.kind in ("number", "seconds") and number is not None:
            parser.addini(option.ini, ini_help, type=number, default=None)
        else:
            parser.addini(option.ini, ini_help, default=None)


def _from_ini(config: pytest.Config, option: Option) -> Any:
    assert option.ini is not None
    try:
        value = config.getini(option.ini)
    except (ValueError, TypeError, pytest.UsageError) as exc:
        hint = " (use true or false)" if option.kind in ("switch", "off-switch") else ""
        raise pytest.UsageError(f"ini key {option.ini}: {exc}{hint}") from None
    if value is None or value == "" or value == []:
        return None
    where = f"ini key {option.ini}"
    if option.kind in ("number", "seconds"):
        validator = option.validator()
        assert validator is not None
        try:
            return validator(value if isinstance(value, str) else repr(value))
        except argparse.ArgumentTypeError as exc:
            raise pytest.UsageError(f"{where}: {exc}") from None
    if option.kind == "choice" and value not in option.choices:
        raise pytest.UsageError(f"{where}: expected one of {', '.join(option.choices)}, not {value!r}")
    return value


def read(config: pytest.Config, name: str) -> Any:
    """An option's value: the command line's, else the ini file's, else the default.  Paths come
    back as ``Path`` objects resolved from the rootdir."""
    option = BY_NAME[name]
    value = config.getoption(option.dest, None)
    if value in (None, ""):
        value = _from_ini(config, option) if option.ini else None
    if value is None:
        value = option.default
    if option.kind == "path" and value is not None:
        path = Path(str(value)).expanduser()
        return path if path.is_absolute() else config.rootpath / path
    if option.kind == "names":
        names = split_names(value)
        twice = repeated(names)
        if twice:  # each would be a test of its own, with its own baseline ([name_0], [name_1])
            raise pytest.UsageError(f"{option.flag} / {option.ini}: {', '.join(twice)} given more than once")
        return names
    if option.kind == "budget":
        if value is None:
            return {}
        from . import budget  # reads the figures' table: loaded only for a session that sets a budget

        where = option.flag if given_on_command_line(config, name) else f"ini key {option.ini}"
        try:
            return budget.parse(value, where)
        except budget.BudgetError as exc:
            raise pytest.UsageError(str(exc)) from None
    if option.name == "vela_args" and isinstance(value, str):
        try:
            shlex.split(value)
        except ValueError as exc:
            raise pytest.UsageError(f"{option.flag} / {option.ini} {value!r}: {exc}") from None
    return value


def given_on_command_line(config: pytest.Config, name: str) -> bool:
    return config.getoption(BY_NAME[name].dest, None) is not None


#: pytest's own options that change the plugin's settings: the ini file, ini overrides, the rootdir
_PYTEST_REPLAYED = {"-c": "--config-file", "--config-file": "--config-file", "--rootdir": "--rootdir",
                    "-o": "--override-ini", "--override-ini": "--override-ini"}


def replayed_options(args: Sequence[str]) -> list[str]:
    """The options of a command line that shaped the estimates or say where baselines live,
    each as one ``--flag=value`` word: the plugin's ``replay`` rows, and pytest's ``-c``,
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


def two_word_paths(args: Sequence[str]) -> list[str]:
    """Path options given as two words (``--ethosu-json out.json``)."""
    args = list(args)
    return [f"{word} {args[i + 1]}" for i, word in enumerate(args[:-1]) if word in PATH_FLAGS]
