"""The baseline file: where it lives, what it holds, and how it is read and written.

One JSON file per (test, estimate name)::

    baselines/<test file path without .py>/<rest of the node id>/<estimate name>.json

Every path component comes from ``safe_component``, which never lets a name escape the
directory and never maps two different names to one file, on a case-insensitive filesystem
too; the rest of the node id (``Class::test[param]``) is one component, so a class is never
taken for a directory of test files.  Baselines where pytest-ethosu 0.1 put them
(``legacy_path``) are read until ``--ethosu-update`` moves them.  The file is made for git: sorted
keys, 2-space indent, trailing newline, no timestamps, so an update that changes nothing
writes nothing and a real change is a small diff.  Writes go to a temporary file in the same
directory and are moved into place with ``os.replace``, so a reader never sees half a file.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BaselineError
from .files import write_atomic
from .result import FIGURES, TOTAL_METRICS, EstimateResult, Layer, Number
from .vela import LAYER_NUMBERS, LAYER_TEXT, PLACEMENTS

SCHEMA_VERSION = 1
SUFFIX = ".json"
OBTAINED_SUFFIX = ".obtained.json"  # what a failing check estimated, beside its baseline
GITIGNORE = "# made by pytest-ethosu: what failing checks estimated, for diffing\n*" + OBTAINED_SUFFIX + "\n"

_UNSAFE = re.compile(r"[^A-Za-z0-9._+=@\[\]-]")
_KEPT = re.compile(r"[a-z0-9._+=@\[\]-]+")  # no upper case: no two kept names fold into one
_KEPT_PATH = re.compile(r"[A-Za-z0-9._+=@\[\]-]+")  # test files' directories keep their case
# a kept name never ends like another role's component: a module directory is its file name
# without ".py", a baseline is "<name>.json", a failing check's estimate "<name>.obtained.json"
_ROLE_SUFFIXES = (".py", SUFFIX, ".obtained")
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10))}
_MAX_COMPONENT = 80


def safe_component(name: str, keep_case: bool = False) -> str:
    """A file name for ``name`` that every filesystem accepts, that cannot escape its directory,
    and that no other name maps to, on a case-insensitive filesystem too.

    Names made only of safe lower-case characters are kept as they are (``keep_case``: upper
    case too, for the directories of test files, which are paths on disk already).  Any other
    name keeps a readable sanitised form and gets ``~`` and a hash of the original; ``~`` is
    never part of a kept name, so a kept name can never equal a hashed one.
    """
    kept = (_KEPT_PATH if keep_case else _KEPT).fullmatch(name) is not None
    reserved = name.split(".")[0].upper() in _RESERVED
    if (kept and not name.startswith(".") and not name.endswith(".") and not reserved
            and len(name) <= _MAX_COMPONENT and not name.endswith(_ROLE_SUFFIXES)):
        return name
    clean = _UNSAFE.sub("_", name).strip(".")
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    # "~" is in no kept name, so no kept name equals a hashed one ("fast run" -> "fast_run~c237...")
    return f"{clean[:_MAX_COMPONENT - 11] or '_'}~{digest}"


def location(root: Path, file_part: str) -> Path:
    """The directory that holds the baselines of one test file (a node id's part before
    ``::``): its path under ``root`` without ``.py``."""
    path = Path(file_part)
    parts = path.with_suffix("").parts if path.suffix == ".py" else path.parts
    return root.joinpath(*(safe_component(p, keep_case=True) for p in parts))


def test_directory(root: Path, nodeid: str) -> Path:
    """The directory holding one test's baselines: the test file's location, then the whole
    rest of the node id (classes, function, parameters) as one component, so that a class
    can never be mistaken for a directory of test files."""
    file_part, _, test_part = nodeid.partition("::")
    return location(root, file_part) / safe_component(test_part or "_")


def baseline_path(root: Path, nodeid: str, name: str) -> Path:
    """The one file for (test, estimate name): distinct pairs never share a file."""
    return test_directory(root, nodeid) / (safe_component(name) + SUFFIX)


def check_place(path: Path, root: Path, relative: Callable[[Path], str]) -> None:
    """A baseline is read and written only inside ``root``: a link under it that leads
    elsewhere is refused, and a file where a directory of baselines belongs is named."""
    inside = root.resolve()
    places = [root]
    for part in path.relative_to(root).parts:
        places.append(places[-1] / part)
    for place in places:
        if place.is_symlink() and place != root:
            target = place.resolve()
            if target != inside and inside not in target.parents:
                raise BaselineError(f"{relative(place)} is a link to {target}, outside the baseline directory "
                                    f"{relative(root)}: pytest-ethosu reads and writes baselines only inside it. "
                                    "Replace the link with the directory or file it points to.")
        if place != path and place.exists() and not place.is_dir():
            raise BaselineError(f"{relative(place)} is a file where pytest-ethosu keeps a directory of baselines "
                                f"(for {relative(path)}). Move or delete it.")
        if place == path and place.exists() and not place.is_file():  # a FIFO would block the read
            raise BaselineError(f"baseline {relative(path)} is not a regular file. Move or delete it, then run "
                                "pytest --ethosu-update to write a new one.")
        if not place.exists():
            return


def _legacy_component(name: str) -> str:
    clean = _UNSAFE.sub("_", name).strip(".")
    reserved = clean.split(".")[0].upper() in _RESERVED
    if clean == name and clean and not reserved and len(clean) <= _MAX_COMPONENT:
        return clean
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{clean[:_MAX_COMPONENT - 11] or '_'}-{digest}"


def legacy_path(root: Path, nodeid: str, name: str) -> Path:
    """Where pytest-ethosu 0.1 kept this baseline: one directory per ``::`` part, upper case
    kept.  Read when the file is not at ``baseline_path`` yet; ``--ethosu-update`` moves it."""
    file_part, _, test_part = nodeid.partition("::")
    module = [_legacy_component(p) for p in Path(file_part).with_suffix("").parts]
    tests = [_legacy_component(p) for p in test_part.split("::") if p]
    return root.joinpath(*module, *tests) / (_legacy_component(name) + SUFFIX)


def legacy_for(root: Path, nodeid: str, name: str) -> Path | None:
    """The 0.1 baseline to read for (test, name) while its file is not at ``baseline_path``:
    only a file that says it is this test's, since the old layout let two tests share a path."""
    old = legacy_path(root, nodeid, name)
    if old == baseline_path(root, nodeid, name) or not old.is_file() or old.is_symlink():
        return None
    try:
        document = json.loads(old.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return old if isinstance(document, dict) and (document.get("test"), document.get("name")) == (nodeid, name) else None


def refuse_another_tests_legacy(root: Path, path: Path, stored: Baseline, nodeid: str, shown: str) -> None:
    """The 0.1 layout could put another test's baseline where this test's lives now
    (``test_a.py::TestB::test_c`` kept ``test_a/TestB/test_c/``, which is now
    ``test_a/TestB.py::test_c``'s).  Such a file is neither compared with nor overwritten."""
    test, name = stored.test, stored.name
    if test != nodeid and legacy_path(root, test, name) == path:
        raise BaselineError(f"baseline {shown} is {test}'s, kept there by pytest-ethosu 0.1, and this path is now "
                            f"{nodeid}'s. Run pytest --ethosu-update '{test}' first: it moves that file to its new "
                            "path, and this test then gets a file of its own.")


@dataclass(frozen=True)
class Identity:
    """What produced an estimate (the baseline's ``estimator``): a change here means the
    numbers may move on their own, and ``compare.drift`` says how."""

    vela_version: str
    core: str
    target: Mapping[str, Any]  # the keys the plugin knew when the baseline was written
    frameworks: Mapping[str, str] = field(default_factory=dict)  # a PyTorch model's lowering releases

    @classmethod
    def of(cls, result: EstimateResult) -> Identity:
        target = {k: copy.deepcopy(result.target[k]) for k in ("accelerator", "system_config", "memory_mode",
                                                                "core_clock", "config_files", "vela_args")}
        return cls(result.vela_version, result.core, target, dict(result.frameworks))

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"vela_version": self.vela_version, "core": self.core,
                                "target": copy.deepcopy(dict(self.target))}
        if self.frameworks:
            data["frameworks"] = dict(self.frameworks)
        return data


@dataclass(frozen=True)
class Baseline:
    """One baseline: what a check compares with, and what ``--ethosu-update`` writes.  The
    estimate a check makes becomes one too (``Baseline.of``), so both sides of a comparison
    have one shape; JSON only at the file (``to_json``, ``load``)."""

    test: str  # node id
    name: str  # the check's name
    model: str  # the model as the test named it
    model_sha256: str
    estimator: Identity
    totals: Mapping[str, Number]  # by the names of ``result.FIGURES``; an older baseline may lack later ones
    layers: tuple[Layer, ...]
    schema: int = SCHEMA_VERSION
    #: a PyTorch model's parts (``result.EstimateResult.model_parts``); empty for a model file
    #: and in a baseline written before they were recorded
    model_parts: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, result: EstimateResult, nodeid: str, name: str) -> Baseline:
        return cls(nodeid, name, result.model, result.model_sha256, Identity.of(result), result.totals(),
                   result.layers, model_parts=dict(result.model_parts))

    def to_json(self) -> dict[str, Any]:
        model: dict[str, Any] = {"path": self.model, "sha256": self.model_sha256}
        if self.model_parts:
            model["parts"] = dict(self.model_parts)
        return {"schema": self.schema, "test": self.test, "name": self.name, "model": model,
                "estimator": self.estimator.to_json(), "totals": dict(self.totals),
                "layers": [layer.to_dict() for layer in self.layers]}


def dumps(document: Mapping[str, Any]) -> str:
    """The file's text.  Lone surrogates (names from non-UTF-8 file names) become JSON
    ``\\udcXX`` escapes, which read back as the same string."""
    text = json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


_FIX = ("Fix or delete the file, then run pytest --ethosu-update to write a new one "
        "(check the diff before committing it).")


def load(path: Path) -> Baseline:
    """Read and validate a baseline; every problem names the file and the way out."""
    fix = _FIX
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BaselineError(f"cannot read baseline {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise BaselineError(f"baseline {path} is not UTF-8 text. {fix}") from None
    try:
        document = json.loads(text, object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        raise BaselineError(f"baseline {path} has the key {exc.args[0]!r} twice in one object; which one "
                            f"counts is not defined. {fix}") from None
    except json.JSONDecodeError as exc:
        raise BaselineError(f"baseline {path} is not valid JSON (line {exc.lineno}, column "
                            f"{exc.colno}: {exc.msg}). {fix}") from None
    except (ValueError, RecursionError) as exc:  # a number of more digits than Python reads, deep nesting
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc).split(";")[0]
        raise BaselineError(f"baseline {path} is not a JSON file this plugin reads ({reason}). {fix}") from None
    return from_json(document, path)


def from_json(document: Any, path: Path | str) -> Baseline:
    """A baseline from its file's JSON, checked field by field; ``BaselineError`` naming
    ``path`` and the field for anything else."""
    fix = _FIX
    if not isinstance(document, dict):
        raise BaselineError(f"baseline {path} is not a pytest-ethosu baseline (no schema version). {fix}")
    schema = document.get("schema")
    if isinstance(schema, bool) or not isinstance(schema, int):
        raise BaselineError(f"baseline {path} is not a pytest-ethosu baseline (no schema version). {fix}")
    if schema > SCHEMA_VERSION:
        raise BaselineError(f"baseline {path} has schema {schema}, newer than this pytest-ethosu "
                            f"understands ({SCHEMA_VERSION}). Upgrade pytest-ethosu.")
    if schema < 1:
        raise BaselineError(f"baseline {path} has unknown schema {schema}. {fix}")
    missing = [key for key in ("test", "name", "estimator", "totals", "layers", "model") if key not in document]
    if missing or not isinstance(document["layers"], list) or not isinstance(document["totals"], dict):
        raise BaselineError(f"baseline {path} lacks {', '.join(missing) or 'a valid layer list'}. {fix}")
    for key in ("test", "name"):
        if not isinstance(document[key], str):
            raise BaselineError(f"baseline {path}: {key} is {document[key]!r}, not text. {fix}")
    for key, fields in _OBJECTS.items():
        _check_object(path, key, document[key], fields, fix)
    _check_object(path, "estimator.target", document["estimator"]["target"], _TARGET, fix, required=False)
    frameworks = document["estimator"].get("frameworks", {})
    _check_object(path, "estimator.frameworks", frameworks,
                  {name: _TEXT for name in frameworks} if isinstance(frameworks, dict) else {}, fix)
    unknown = [k for k in document["totals"] if k not in TOTAL_METRICS]
    if unknown:
        raise BaselineError(f"baseline {path} has unknown totals {unknown}. {fix}")
    for key in TOTAL_METRICS:
        if key not in document["totals"]:
            if key not in FIRST_TOTALS:  # a figure added later: compared from the next --ethosu-update on
                continue
            raise BaselineError(f"baseline {path} lacks totals.{key}. {fix}")
        _check_number(path, f"totals.{key}", document["totals"][key], fix, whole=key in _COUNTS)
    for i, layer in enumerate(document["layers"]):
        if not isinstance(layer, dict):
            raise BaselineError(f"baseline {path}: layers[{i}] is not an object. {fix}")
        for key in LAYER_TEXT:
            if not isinstance(layer.get(key), str):
                raise BaselineError(f"baseline {path}: layers[{i}].{key} is {layer.get(key)!r}, not text. {fix}")
        if layer["placement"] not in PLACEMENTS:
            raise BaselineError(f"baseline {path}: layers[{i}].placement is {layer['placement']!r}, not one of "
                                f"{', '.join(PLACEMENTS)}. {fix}")
        for key in (*LAYER_NUMBERS, "index"):
            if key not in layer:
                raise BaselineError(f"baseline {path} lacks layers[{i}].{key}. {fix}")
            _check_number(path, f"layers[{i}].{key}", layer[key], fix, whole=key in _COUNTS)
        for key, (types, shown) in _LAYER_ORIGIN.items():
            if key in layer and (isinstance(layer[key], bool) or not isinstance(layer[key], types)):
                raise BaselineError(f"baseline {path}: layers[{i}].{key} is {layer[key]!r}, not {shown}. {fix}")
    estimator, model = document["estimator"], document["model"]
    layers = tuple(Layer(index=int(layer["index"]), **{key: layer[key] for key in (*LAYER_TEXT, *LAYER_NUMBERS)},
                         **{key: layer[key] for key in _LAYER_ORIGIN if key in layer}) for layer in document["layers"])
    parts = model.get("parts", {})
    if not isinstance(parts, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in parts.items()):
        raise BaselineError(f"baseline {path}: model.parts is {parts!r}, not an object of text. {fix}")
    return Baseline(document["test"], document["name"], model["path"], model["sha256"],
                    Identity(estimator["vela_version"], estimator["core"], estimator["target"],
                             estimator.get("frameworks", {})),
                    document["totals"], layers, schema, model_parts=parts)


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise _DuplicateKey(key)
        document[key] = value
    return document


def _check_number(path: Path | str, where: str, value: Any, fix: str, whole: bool = False) -> None:
    """Every figure Vela reports is a count or a share: finite, never negative; counts are whole."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise BaselineError(f"baseline {path}: {where} is {value!r}, not a finite number of zero or more. {fix}")
    if whole and value != int(value):
        raise BaselineError(f"baseline {path}: {where} is {value!r}, not a whole number. {fix}")


#: what a value must be, by its key: the type(s) and how a message names them
_Kind = tuple[tuple[type, ...], str]
_TEXT: _Kind = ((str,), "text")
_OBJECT: _Kind = ((dict,), "an object")
_OBJECTS: dict[str, dict[str, _Kind]] = {
    "estimator": {"vela_version": _TEXT, "core": _TEXT, "target": _OBJECT},
    "model": {"path": _TEXT, "sha256": _TEXT},
}
_OPTIONAL_TEXT: _Kind = ((str, type(None)), "text or null")
_TEXT_LIST: _Kind = ((list,), "a list of text")
_TARGET: dict[str, _Kind] = {
    "accelerator": _TEXT, "system_config": _OPTIONAL_TEXT, "memory_mode": _OPTIONAL_TEXT,
    "core_clock": ((int, float, type(None)), "a number or null"), "config_files": _TEXT_LIST,
    "vela_args": _TEXT_LIST,
}
_COUNTS = {"index", *(f.name for f in FIGURES if f.whole)}
#: where a PyTorch model's layer came from (``result.Layer``), absent for a model file's
_LAYER_ORIGIN: dict[str, _Kind] = {"module": _TEXT, "source": _TEXT, "partition": ((int, type(None)), "a number or null")}
#: the totals every baseline has held since pytest-ethosu 0.1; a later figure may be absent
FIRST_TOTALS = frozenset({"total_cycles", "npu_cycles", "sram_access_cycles", "dram_access_cycles",
                          "on_chip_flash_access_cycles", "off_chip_flash_access_cycles", "macs", "sram_used",
                          "dram_used", "cpu_ops", "npu_ops"})


def _check_object(path: Path | str, key: str, value: Any, fields: dict[str, _Kind], fix: str,
                  required: bool = True) -> None:
    """``value`` is an object whose ``fields`` have their kinds; all of them, when ``required``
    (a target keeps only the keys the plugin knew when the baseline was written)."""
    if not isinstance(value, dict):
        raise BaselineError(f"baseline {path}: {key} is {value!r}, not an object. {fix}")
    for name, (types, shown) in fields.items():
        if name not in value:
            if required:
                raise BaselineError(f"baseline {path} lacks {key}.{name}. {fix}")
            continue
        item = value[name]
        wrong = isinstance(item, bool) or not isinstance(item, types)
        if not wrong and isinstance(item, list):
            wrong = not all(isinstance(entry, str) for entry in item)
        if not wrong and isinstance(item, float):
            wrong = not math.isfinite(item) or item <= 0
        if wrong:
            raise BaselineError(f"baseline {path}: {key}.{name} is {item!r}, not {shown}. {fix}")


def write(path: Path, document: Baseline) -> bool:
    """Write atomically; return False (and touch nothing) when the content is unchanged."""
    text = dumps(document.to_json())
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    write_atomic(path, text)
    return True


def obtained_path(path: Path) -> Path:
    return path.with_name(path.name.removesuffix(SUFFIX) + OBTAINED_SUFFIX)


def write_obtained(path: Path, document: Baseline, root: Path) -> Path:
    """Write what a failing check estimated beside its baseline, for ``diff``; the baseline
    directory gets a ``.gitignore`` for these files the first time."""
    ignore = root / ".gitignore"
    if not ignore.exists():
        write_atomic(ignore, GITIGNORE)
    obtained = obtained_path(path)
    write_atomic(obtained, dumps(document.to_json()))
    return obtained


def remove_obtained(path: Path) -> None:
    obtained = obtained_path(path)
    if obtained.is_file() and not obtained.is_symlink():
        obtained.unlink()


def is_baseline(path: Path) -> bool:
    """A regular file (not a link) that reads as a baseline of this plugin."""
    if path.is_symlink() or not path.is_file() or path.name.endswith(OBTAINED_SUFFIX):
        return False
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return (isinstance(document, dict) and isinstance(document.get("schema"), int)
            and {"test", "name", "estimator", "totals", "layers", "model"} <= set(document))


def find_baselines(root: Path) -> Iterator[Path]:
    """Every baseline file under ``root``, without following links out of it."""
    for directory, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            path = Path(directory) / name
            if name.endswith(SUFFIX) and not name.endswith(OBTAINED_SUFFIX) and is_baseline(path):
                yield path


def remove(path: Path, root: Path) -> None:
    """Delete a baseline and the directories under ``root`` that it leaves empty.  Only a
    regular file inside ``root`` that reads as a baseline is ever deleted."""
    resolved_root = root.resolve()
    if not is_baseline(path) or resolved_root not in path.resolve().parents:
        raise BaselineError(f"refusing to delete {path}: not a baseline file inside {root}")
    path.unlink()
    parent = path.parent
    while parent != root and root in parent.parents and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent
