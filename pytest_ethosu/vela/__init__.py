"""The boundary between the plugin and Vela.

Everything that knows Vela (its entry point, option names, CSV and console formats, bundled
configuration files and architecture data) lives in this package, in two parts:

- this module, safe to import in pytest's own process: the installed version, the bundled
  ``.ini`` files, the options the plugin owns, and the typed messages that cross the process
  boundary (``Job`` out, ``VelaRun`` back) in the plugin's own names;
- ``engine.py``, which runs only in the worker process (``worker.py``): it calls Vela, reads
  what Vela wrote, and answers a ``Job`` with a ``VelaRun``.  Vela's C++ core writes to file
  descriptor 1 and can crash its process, so pytest's process never imports it.

``tflite.py`` reads TFLite flatbuffers with Vela's generated schema classes (pure Python); the
worker uses it to check models and ``modelgen.py`` to write them.  ``tosa.py`` checks TOSA
flatbuffers (pure Python, no Vela) in the worker before Vela sees them.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import importlib.metadata
import importlib.util
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import TargetError

Number = int | float

DEFAULT_ACCELERATOR = "ethos-u55-256"  # Vela's own default for --accelerator-config
#: how Vela spells an accelerator config (``ethos-u65-256``): in a test id, the matrix's parameter
ACCELERATOR_ID = re.compile(r"ethos-u\d+-\d+")
DEFAULT_CONFIG = "Arm/vela.ini"  # Vela's bundled configuration file
LEGACY_FLAG = "--debug-force-legacy-core"

#: A layer's figures, in the order of Vela's per-layer report, by the plugin's names.
LAYER_NUMBERS = (
    "staging_usage",
    "cycles",
    "npu_cycles",
    "sram_access_cycles",
    "dram_access_cycles",
    "on_chip_flash_access_cycles",
    "off_chip_flash_access_cycles",
    "macs",
    "mac_utilization",
)
LAYER_TEXT = ("op", "npu_op", "placement", "name")


class Placement(str, enum.Enum):
    """Where Vela runs a layer (its per-layer report's "Target"); compares equal to its text."""

    NPU = "NPU"
    CPU = "CPU"

    def __str__(self) -> str:
        return self.value


PLACEMENTS = tuple(p.value for p in Placement)

#: Vela's headings of its per-layer report, for tables people compare with ``vela
#: --verbose-performance``: plugin field -> heading ("share" is the layer's percent of the cycles).
LAYER_HEADINGS = (("index", "#"), ("op", "Original Operator"), ("npu_op", "NNG Operator"), ("placement", "Target"),
                  ("staging_usage", "Staging Usage"), ("cycles", "Op Cycles"), ("share", "Network% (cycles)"),
                  ("npu_cycles", "NPU"), ("sram_access_cycles", "SRAM AC"), ("dram_access_cycles", "DRAM AC"),
                  ("on_chip_flash_access_cycles", "OnFlash AC"), ("off_chip_flash_access_cycles", "OffFlash AC"),
                  ("macs", "MAC Count"), ("mac_utilization", "Util% (MAC)"), ("name", "Name"))

#: The network totals a run reports: the plugin's name -> Vela's summary CSV column and the
#: factor that turns it into the plugin's unit (memory use: Vela writes KiB, the plugin bytes).
SUMMARY_COLUMNS: dict[str, tuple[str, int]] = {
    "total_cycles": ("cycles_total", 1),
    "npu_cycles": ("cycles_npu", 1),
    "sram_access_cycles": ("cycles_sram_access", 1),
    "dram_access_cycles": ("cycles_dram_access", 1),
    "on_chip_flash_access_cycles": ("cycles_on_chip_flash_access", 1),
    "off_chip_flash_access_cycles": ("cycles_off_chip_flash_access", 1),
    "macs": ("nn_macs", 1),
    "sram_used": ("sram_memory_used", 1024),
    "dram_used": ("dram_memory_used", 1024),
    "on_chip_flash_used": ("on_chip_flash_memory_used", 1024),
    "off_chip_flash_used": ("off_chip_flash_memory_used", 1024),
    "original_weights": ("total_original_weights", 1),
    "encoded_weights": ("total_npu_encoded_weights", 1),
    "sram_traffic": ("sram_total_bytes", 1),
    "dram_traffic": ("dram_total_bytes", 1),
    "on_chip_flash_traffic": ("on_chip_flash_total_bytes", 1),
    "off_chip_flash_traffic": ("off_chip_flash_total_bytes", 1),
    "inference_time": ("inference_time", 1),
}
#: The totals read from the files Vela writes rather than its summary: the size in bytes of the
#: optimised model (``<model>_vela.tflite``, what gets flashed).
FILE_TOTALS = ("optimised_model_size",)
TOTAL_NUMBERS = (*SUMMARY_COLUMNS, *FILE_TOTALS)

#: Model file formats Vela compiles, by the flatbuffer file identifier at bytes 4-8.
MODEL_FORMATS = {b"TFL3": "tflite", b"TOSA": "tosa"}
#: What each format is called in messages.
FORMAT_NAMES = {"tflite": "TensorFlow Lite", "tosa": "TOSA"}


@functools.cache
def vela_version() -> str:
    """The installed ethos-u-vela version, read without importing Vela (once per process)."""
    try:
        return importlib.metadata.version("ethos-u-vela")
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def version_tuple(version: str | None = None) -> tuple[int, ...]:
    numbers = re.findall(r"\d+", (version or vela_version()).split("+")[0])[:3]
    return tuple(int(n) for n in numbers) or (0,)


def bundled_config_dir() -> Path:
    """Vela's ``config_files`` directory, found without importing Vela."""
    spec = importlib.util.find_spec("ethosu")
    if spec is None or not spec.submodule_search_locations:
        raise TargetError("ethos-u-vela is not installed: pip install ethos-u-vela")
    return Path(next(iter(spec.submodule_search_locations))) / "config_files"


def default_config_file() -> Path:
    """The ``.ini`` Vela reads when it is given none."""
    return bundled_config_dir() / DEFAULT_CONFIG


def bundled_config_names() -> list[str]:
    directory = bundled_config_dir()
    return sorted(p.relative_to(directory).as_posix() for p in directory.glob("*/*.ini"))


def operator_key(name: str) -> str:
    """An operator name as both Vela cores (and TOSA) agree on it: ``CONV_2D`` (legacy, TFLite's
    spelling), ``Conv2D`` (regor) and ``conv2d`` are one operator."""
    return name.replace("_", "").lower()


def row_tensor_names(name: str) -> tuple[str, ...]:
    """The tensor names a per-layer row's name may stand for, most specific first: U85 names
    the parts of a decomposed operator ``<tensor>/<Op>``, and Vela names the int32 helper
    tensors of a decomposed softmax ``<tensor>_int32``."""
    base = name.split("/", 1)[0]
    return tuple(dict.fromkeys((name, base, base.removesuffix("_int32"))))


def is_generated_name(name: str) -> bool:
    """A row for an operator Vela made itself (``#12``), named after no tensor of the model."""
    return name.startswith("#")


def macs_per_cycle(accelerator: str) -> int:
    """MACs the accelerator can do per cycle: the number in its name (``ethos-u65-256``)."""
    tail = accelerator.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


REGOR_FLAG = "--debug-force-regor"

#: Options added after 4.0.0, the oldest supported release, with the release that added them.
#: No release 4.0.0 to 5.2.0 removed an option (see README, "How estimates depend on Vela").
ADDED_IN = {
    "--verbose-cycle-estimate": "4.1.0",
    "--cop-format": "4.2.0",
    "--separate-io-regions": "4.2.0",
    "--list-configs": "4.2.0",
    LEGACY_FLAG: "5.0.0",
    "--disable-ifm-reuse": "5.0.0",
    "--ignore-ops": "5.1.0",
    "--experimental-softmax-int16-neg-exp-range": "5.1.0",
}

#: Options that make Vela print something and exit without compiling.
PRINT_AND_EXIT = ("--list-config-files", "--list-configs", "--api-version")


@functools.cache
def vela_options() -> frozenset[str]:
    """The long options of the installed Vela's command line, read from its source without
    importing it (empty when it cannot be read)."""
    try:
        source = (bundled_config_dir().parent / "vela" / "vela.py").read_text(encoding="utf-8")
    except (OSError, TargetError, UnicodeDecodeError):
        return frozenset()
    found = re.findall(r'add_argument\(\s*(?:"-\w",\s*)?"(--[a-z0-9-]+)"', source)
    return frozenset([*found, "--help"])


def _unique_prefix(flag: str, options: frozenset[str] | set[str]) -> str | None:
    if flag in options:
        return flag
    matches = [o for o in options if o.startswith(flag)]
    return matches[0] if len(matches) == 1 else None


def vela_option(arg: str) -> str | None:
    """The option an argument stands for, as Vela's parser reads it: the full name, or a
    prefix that only one of this release's options starts with (argparse accepts those);
    else None (not an option, unknown, or ambiguous)."""
    flag = arg.split("=", 1)[0]
    if not flag.startswith("--") or flag == "--":
        return None
    options = vela_options() or frozenset(OWNED_OPTIONS) | {LEGACY_FLAG, REGOR_FLAG}
    return _unique_prefix(flag, options)


def expected_core(accelerator: str, vela_args: Sequence[str], version: str | None = None) -> str:
    """The core Vela will use, for the session header.  Results carry the core Vela actually
    ran, read from its output (``VelaRun.core``).

    Before 5.0 the Python (legacy) core is the default for Ethos-U55 and U65, and
    ``--debug-force-regor`` selects the C++ (regor) core; from 5.0 regor is the default, the
    legacy core is chosen with ``--debug-force-legacy-core`` (U55 and U65 only), and
    ``--debug-force-regor`` does nothing.  Ethos-U85 always uses regor."""
    flags = {vela_option(arg) or arg.split("=", 1)[0] for arg in vela_args}
    u85 = accelerator.startswith("ethos-u85")
    if version_tuple(version) < (5,):
        return "regor" if u85 or REGOR_FLAG in flags else "legacy"
    return "legacy" if LEGACY_FLAG in flags and not u85 else "regor"


#: Vela options that would contradict a setting the plugin owns, and what to use instead.
OWNED_OPTIONS = {
    "--accelerator-config": "the accelerator= setting (or --ethosu-accelerator)",
    "--system-config": "the system_config= setting (or --ethosu-system-config)",
    "--memory-mode": "the memory_mode= setting (or --ethosu-memory-mode)",
    "--config": "the vela_config= setting (or --ethosu-vela-config), so that the file is part of "
                "the estimate cache's key",
    "--output-dir": "nothing: the plugin gives Vela a private output directory and reads it",
    "--supported-ops-report": "the vela command itself: the report is written outside the plugin's "
                              "output directory",
    "--output-format": "nothing: the plugin reads Vela's TFLite output",
    "--enable-debug-db": "nothing: the plugin does not read the debug database",
    "--help": "nothing", "--version": "nothing",
}


#: Options whose value Vela looks up in an enum by name, so that a wrong one ends in a bare
#: ``KeyError: 'Speed'`` rather than argparse's message: their names, as every release 4.0.0 to
#: 5.2.0 spells them.
NAMED_VALUES = {"--optimise": ("Size", "Performance"), "--tensor-allocator": ("LinearAlloc", "Greedy", "HillClimb")}


def check_vela_args(args: Sequence[str], accelerator: str | None = None) -> None:
    """Refuse Vela options that conflict with the plugin's own settings, that this Vela
    release does not have (naming the release that added them), or that make Vela exit
    without compiling; abbreviations are read as Vela's parser reads them."""
    version = vela_version()
    for position, arg in enumerate(args):
        flag = arg.split("=", 1)[0]
        if flag in ("-h", "-V"):  # Vela's short forms of --help and --version
            raise TargetError(f"the Vela option {flag} cannot be passed in vela_args: it makes Vela print "
                              "and exit without compiling; run the vela command directly.")
        if not flag.startswith("--") or flag == "--":
            continue
        option = vela_option(arg)
        if option is None:  # not this release's: perhaps a later release's (or a typo: Vela says so)
            newer = _unique_prefix(flag, set(ADDED_IN))
            if newer is not None and version_tuple(ADDED_IN[newer]) > version_tuple(version) \
                    and _unique_prefix(flag, set(vela_options()) | {newer}) == newer:
                option = newer
        if option in OWNED_OPTIONS:
            raise TargetError(f"the Vela option {option} cannot be passed in vela_args: use "
                              f"{OWNED_OPTIONS[option]}")
        if option == LEGACY_FLAG and version_tuple(version) < (5,):
            raise TargetError(f"Vela {version} has no {LEGACY_FLAG} (added in 5.0.0): before 5.0 its "
                              "Python (legacy) core is already the default for Ethos-U55 and U65, and "
                              "Ethos-U85 always uses the C++ (regor) core. Drop the option.")
        if option == LEGACY_FLAG and accelerator is not None and accelerator.startswith("ethos-u85"):
            raise TargetError(f"{LEGACY_FLAG} only applies to Ethos-U55 and U65: Vela {version} always "
                              f"compiles for {accelerator} with its C++ (regor) core. Drop the option.")
        if option in ADDED_IN and version_tuple(ADDED_IN[option]) > version_tuple(version):
            raise TargetError(f"Vela {version} has no {option} (added in Vela {ADDED_IN[option]}): "
                              "drop the option or install a later ethos-u-vela.")
        if option in PRINT_AND_EXIT:
            raise TargetError(f"{option} makes Vela print information and exit without compiling: "
                              "run the vela command directly.")
        if option in NAMED_VALUES:
            value = arg.split("=", 1)[1] if "=" in arg else (args[position + 1] if position + 1 < len(args) else None)
            if value is not None and value not in NAMED_VALUES[option]:
                raise TargetError(f"Vela's {option} takes {' or '.join(NAMED_VALUES[option])} (the names are case "
                                  f"sensitive), not {value!r}")


def check_config_settings(config_names: Sequence[str], system_config: str | None,
                          memory_mode: str | None) -> None:
    """Vela refuses a configuration file given without both a system config and a memory mode
    (every release raises ``CliOptionError``): say so before running it."""
    missing = [name for name, value in (("system_config", system_config), ("memory_mode", memory_mode))
               if value is None]
    if config_names and missing:
        raise TargetError(f"vela_config {', '.join(config_names)} needs {' and '.join(missing)} as well: "
                          "Vela refuses a configuration file without both a system config and a memory "
                          "mode. Set them, or drop vela_config to use Vela's defaults.")


def model_format(head: bytes) -> str | None:
    """``tflite`` or ``tosa`` (the formats Vela compiles) from a file's first 8 bytes, else None."""
    return MODEL_FORMATS.get(head[4:8]) if len(head) >= 8 else None


def console_lines(log: str) -> list[str]:
    """Vela's console lines worth showing a person: no blank lines, no argparse usage block."""
    lines, in_usage = [], False
    for line in log.splitlines():
        if line.startswith("usage: "):
            in_usage = True
            continue
        if in_usage and line.startswith(" "):
            continue
        in_usage = False
        if line.strip():
            lines.append(line)
    return lines


# ---------------------------------------------------------------------------------------------
# What crosses the process boundary.


@dataclass(frozen=True)
class Job:
    """One compilation the parent asks of the worker."""

    model: str  # path of the model file
    accelerator: str
    system_config: str | None
    memory_mode: str | None
    config_files: tuple[str, ...]  # absolute paths; empty: Vela's bundled default
    vela_args: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "accelerator": self.accelerator, "system_config": self.system_config,
                "memory_mode": self.memory_mode, "config_files": list(self.config_files),
                "vela_args": list(self.vela_args)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Job:
        return cls(str(data["model"]), str(data["accelerator"]), data["system_config"], data["memory_mode"],
                   tuple(data["config_files"]), tuple(data["vela_args"]))


@dataclass(frozen=True)
class CpuReason:
    """Vela's stated reason for leaving one operator on the CPU."""

    op: str
    ofm: str
    reason: str


@dataclass(frozen=True)
class ModelFacts:
    """What the worker read from the input model before compiling it."""

    operators: tuple[str, ...]  # every operator, in order, by TFLite's names (CONV_2D)
    float_ops: int  # operators that compute in float
    convolutions: Mapping[str, Mapping[str, Any]]  # CONV_2D shapes by output tensor name
    #: every tensor name of the model, for reading Vela's rows in the worker (never sent to
    #: pytest's process, so not part of a run's JSON or its equality)
    names: frozenset[str] = field(default=frozenset(), compare=False, repr=False)


class InvalidRun(ValueError):
    """A stored ``VelaRun`` (from the cache) that is not one this plugin wrote."""


def _finite(value: Any, where: str) -> Number:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidRun(f"{where} is {value!r}, not a finite number")
    return value


@dataclass(frozen=True)
class Row:
    """One row of Vela's per-layer report, read and checked, in the plugin's names (the fields
    of ``LAYER_TEXT`` and ``LAYER_NUMBERS``).  Figures are as Vela wrote them."""

    op: str  # the input model's operator (``CONV_2D`` from the legacy core, ``Conv2D`` from regor)
    npu_op: str
    placement: Placement
    name: str  # the tensor the (fused) operator writes, or Vela's ``#N`` for one it made
    staging_usage: Number
    cycles: Number
    npu_cycles: Number
    sram_access_cycles: Number
    dram_access_cycles: Number
    on_chip_flash_access_cycles: Number
    off_chip_flash_access_cycles: Number
    macs: Number
    mac_utilization: Number

    @property
    def operator(self) -> str:
        """The operator as both cores agree on it (``operator_key``)."""
        return operator_key(self.op)

    @property
    def generated(self) -> bool:
        """A row for an operator Vela made itself, named after no tensor of the model."""
        return is_generated_name(self.name)

    @property
    def tensor_names(self) -> tuple[str, ...]:
        """The model's tensor names the row may stand for (``row_tensor_names``)."""
        return row_tensor_names(self.name)

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)} | {"placement": self.placement.value}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], where: str = "layer") -> Row:
        """A row from its ``to_json`` (or the CSV reader's fields); ``InvalidRun`` naming the
        field for anything else."""
        if not isinstance(raw, Mapping):
            raise InvalidRun(f"{where} is not a mapping")
        if set(raw) != set(LAYER_TEXT) | set(LAYER_NUMBERS):
            raise InvalidRun(f"{where} has fields {sorted(raw)}")
        for key in LAYER_TEXT:
            if not isinstance(raw[key], str):
                raise InvalidRun(f"{where} {key} is not text")
        if raw["placement"] not in PLACEMENTS:
            raise InvalidRun(f"{where} placement is {raw['placement'][:40]!r}, not one of {', '.join(PLACEMENTS)}")
        numbers = {key: _finite(raw[key], f"{where} {key}") for key in LAYER_NUMBERS}
        return cls(op=raw["op"], npu_op=raw["npu_op"], placement=Placement(raw["placement"]), name=raw["name"],
                   **numbers)


@dataclass(frozen=True)
class VelaRun:
    """Vela's answer for one ``Job``, in the plugin's names.

    ``layers`` are Vela's per-layer rows, in order; ``totals`` are keyed by ``TOTAL_NUMBERS``.  ``core`` is the core that
    ran, as read from Vela's output.  ``compiled_operators`` are the operators of the model
    Vela wrote; every one but the NPU's custom operator runs on the CPU.
    """

    core: str
    layers: tuple[Row, ...]
    totals: Mapping[str, Number]
    system_config: str
    memory_mode: str
    core_clock: float
    compiled_operators: tuple[str, ...]
    npu_operator: str  # the compiled model's operator that stands for NPU work
    cpu_reasons: tuple[CpuReason, ...]
    depth_granularity: int | None  # output depth computed at a time; None when Vela has no data
    facts: ModelFacts = field(default_factory=lambda: ModelFacts((), 0, {}))
    #: False when Vela's rows repeat cycles: regor in 4.3 to 4.5 gives a fused activation its
    #: own row with the cycles of the operator it is fused into, so the rows add up to more
    #: than the network's total (which counts them once).
    rows_add_up: bool = True

    @property
    def precompiled(self) -> tuple[str, ...]:
        """NPU operators the input already held: a model Vela compiled before, passed through."""
        return tuple(op for op in self.facts.operators if op == self.npu_operator)

    @property
    def cpu_operators(self) -> tuple[str, ...]:
        """What the compiled model runs outside the NPU: every operator that is not Vela's NPU
        operator, plus the NPU operators the input already had (for the CPU-side driver)."""
        return tuple(op for op in self.compiled_operators if op != self.npu_operator) + self.precompiled

    def to_json(self) -> dict[str, Any]:
        return {
            "core": self.core, "layers": [layer.to_json() for layer in self.layers], "totals": dict(self.totals),
            "system_config": self.system_config, "memory_mode": self.memory_mode,
            "core_clock": self.core_clock, "compiled_operators": list(self.compiled_operators),
            "npu_operator": self.npu_operator, "rows_add_up": self.rows_add_up,
            "cpu_reasons": [vars(r) for r in self.cpu_reasons], "depth_granularity": self.depth_granularity,
            "facts": {"operators": list(self.facts.operators), "float_ops": self.facts.float_ops,
                      "convolutions": {k: dict(v) for k, v in self.facts.convolutions.items()}},
        }

    @classmethod
    def from_json(cls, data: Any) -> VelaRun:
        """Rebuild a run, checking every field: types, finite numbers, and that the layers'
        cycles add up to the network's (where Vela's rows do).  Raises ``InvalidRun``."""
        try:
            layers = [Row.from_json(raw, f"layer {i}") for i, raw in enumerate(data["layers"])]
            totals = {key: _finite(data["totals"][key], key) for key in TOTAL_NUMBERS}
            if set(data["totals"]) != set(totals):
                raise InvalidRun("unexpected totals")
            rows_add_up = data.get("rows_add_up", True)
            if not isinstance(rows_add_up, bool):
                raise InvalidRun("rows_add_up is not true or false")
            if layers and rows_add_up and not math.isclose(sum(float(la.cycles) for la in layers), float(totals["total_cycles"]),
                                           rel_tol=1e-6, abs_tol=1.0):
                raise InvalidRun("the layers' cycles do not add up to the total")
            facts = data["facts"]
            reasons = tuple(CpuReason(str(r["op"]), str(r["ofm"]), str(r["reason"])) for r in data["cpu_reasons"])
            granularity = data["depth_granularity"]
            if granularity is not None and (not isinstance(granularity, int) or granularity <= 0):
                raise InvalidRun("bad depth granularity")
            run = cls(
                core=str(data["core"]), layers=tuple(layers), totals=totals,
                system_config=str(data["system_config"]), memory_mode=str(data["memory_mode"]),
                core_clock=float(_finite(data["core_clock"], "core_clock")),
                compiled_operators=tuple(str(o) for o in data["compiled_operators"]),
                npu_operator=str(data["npu_operator"]), cpu_reasons=reasons, depth_granularity=granularity,
                facts=ModelFacts(tuple(str(o) for o in facts["operators"]), int(facts["float_ops"]),
                                 {str(k): dict(v) for k, v in facts["convolutions"].items()}),
                rows_add_up=rows_add_up,
            )
        except InvalidRun:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidRun(f"malformed run ({type(exc).__name__}: {exc})") from None
        if run.core not in ("regor", "legacy"):
            raise InvalidRun(f"unknown core {run.core!r}")
        return run
