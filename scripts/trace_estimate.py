"""Trace one estimate through the plugin's modules, from the fixture call to the summary line.

    python scripts/trace_estimate.py            # the modules in order, and the re-entries
    python scripts/trace_estimate.py --calls    # also every call between two modules

A scratch project with one test and one check (a small int8 model made in code) runs in
process with the plugin, serially and with the cache off, first with ``--ethosu-update`` (to
make the baseline, untraced) and then once more, traced.  Every call into a function of
``pytest_ethosu`` is recorded while the session runs; calls within one module are folded
together.  A *re-entry* is a call into a module that the flow had already left for another
module of the plugin (consecutive calls from one module into another are one visit), made by the
plugin's own code (pytest's hook calls into the session's
hooks are counted apart: they are how pytest drives a plugin).  Re-entries that only read a
value (a method of a dataclass instance or class: its constructor, ``__hash__``, a property,
``to_json``/``from_json``) are counted apart from those into the flow's functions.  The worker's side (Vela itself)
runs in another process and is not traced.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from pytest_ethosu.modelgen import ModelBuilder

PACKAGE = "pytest_ethosu"


def model() -> bytes:
    m = ModelBuilder((1, 32, 32, 3), seed=1)
    x = m.conv2d(m.input, filters=16, kernel=3, stride=2, name="net/conv1")
    x = m.conv2d(x, filters=32, kernel=1, name="net/conv2")
    return m.build(m.fully_connected(m.reshape(x, (1, -1), name="flatten"), units=10, name="dense"))


def module_of(frame: FrameType | None) -> str | None:
    name = frame.f_globals.get("__name__", "") if frame is not None else ""
    if name == PACKAGE or name.startswith(PACKAGE + "."):
        return name[len(PACKAGE) + 1:] or "__init__"
    return None


class Tracer:
    """Records each call into a module of the plugin from outside that module."""

    def __init__(self) -> None:
        self.entered: list[str] = []  # modules, in the order first entered
        # (module, function, caller, re-entry, a method of a value: a dataclass instance or class)
        self.calls: list[tuple[str, str, str | None, bool, bool]] = []
        self._last: tuple[str | None, str] | None = None

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if event != "call":
            return
        module = module_of(frame)
        caller = module_of(frame.f_back)
        if module is None or caller == module:
            return
        on_stack = False
        outer = frame.f_back
        while outer is not None:
            if module_of(outer) == module:
                on_stack = True
                break
            outer = outer.f_back
        # the flow had left it and comes back (a loop of calls from one module into it is one visit)
        again = module in self.entered and not on_stack and self._last != (caller, module)
        self._last = (caller, module)
        if module not in self.entered:
            self.entered.append(module)
        owner = frame.f_locals.get("self", frame.f_locals.get("cls")) if frame.f_code.co_argcount else None
        value = owner is not None and dataclasses.is_dataclass(owner)
        self.calls.append((module, frame.f_code.co_name, caller, again, value))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", action="store_true", help="print every call between two modules")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        root = Path(work)
        (root / "pytest.ini").write_text("[pytest]\n")
        (root / "model.tflite").write_bytes(model())
        (root / "test_one.py").write_text(
            "def test_one(ethosu_perf):\n    ethosu_perf('model.tflite', accelerator='ethos-u55-128')\n")
        args = [str(root), "-p", "no:xdist", "-p", "no:cacheprovider", "--ethosu-no-cache", "-q",
                f"--rootdir={root}"]
        if pytest.main([*args, "--ethosu-update"]) != 0:
            return 1
        tracer = Tracer()
        sys.setprofile(tracer)
        try:
            status = pytest.main(args)
        finally:
            sys.setprofile(None)
    plugin = Counter(m for m, _, caller, again, value in tracer.calls if again and caller is not None and not value)
    values = Counter(m for m, _, caller, again, value in tracer.calls if again and caller is not None and value)
    hooks = Counter(m for m, _, caller, again, _v in tracer.calls if again and caller is None)
    if options.calls:
        for module, function, caller, again, value in tracer.calls:
            mark = ("value " if value else "again ") if again else "      "
            print(f"  {mark}{caller or 'pytest'} -> {module}.{function}")
    print("modules in the order the flow first enters them:\n  " + " > ".join(tracer.entered))
    print(f"re-entries from the plugin's own code into its functions: {sum(plugin.values())} "
          f"({', '.join(f'{m} {n}' for m, n in plugin.most_common()) or 'none'}), {len(plugin)} modules")
    print(f"re-entries from the plugin's own code that read a value (a method of a dataclass: its "
          f"constructor, a property, to_json/from_json): {sum(values.values())} "
          f"({', '.join(f'{m} {n}' for m, n in values.most_common()) or 'none'})")
    print(f"re-entries through pytest's hooks: {sum(hooks.values())} "
          f"({', '.join(f'{m} {n}' for m, n in hooks.most_common()) or 'none'})")
    print(f"{len(tracer.entered)} modules, {len(tracer.calls)} calls between modules")
    return int(status)


if __name__ == "__main__":
    sys.exit(main())
