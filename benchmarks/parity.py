"""The plugin's figures against the installed Vela's own command, on real models (by hand):

    python benchmarks/parity.py [MODEL.tflite ...] [--accelerators ethos-u55-128,ethos-u65-256] [--both-cores]

For each model and accelerator it estimates with the plugin and runs the environment's ``vela``
command with the same options, then prints one Markdown row: total cycles from each, whether
every per-layer row is the same and whether ``cpu_ops`` is Vela's "CPU operators" count.
Without models it uses person_detect and keyword_scrambled_8bit from ../shared/models.
Exits 1 when anything differs.

    python benchmarks/parity.py --history [MODEL.tflite ...] [--accelerators ...]

instead runs the same estimates (each model on each accelerator with both cores; regor only
on U85) in one worker, in two interleaved orders, and each in a fresh worker, and prints
whether any figure differs (``tests/history.py``).  Without models it takes every ``.tflite``
in ../shared/models.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))  # for tests.cli; the installed pytest_ethosu comes first

from pytest_ethosu.estimator import Estimator  # noqa: E402
from pytest_ethosu.target import resolve  # noqa: E402
from pytest_ethosu.vela import expected_core, vela_version, version_tuple  # noqa: E402
from tests.cli import differences, vela_cli  # noqa: E402

SHARED = ROOT.parent / "shared" / "models"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", type=Path)
    parser.add_argument("--accelerators", default="ethos-u55-128,ethos-u65-256")
    parser.add_argument("--both-cores", action="store_true", help="also the core that is not the default")
    parser.add_argument("--history", action="store_true", help="one worker against fresh workers, not the CLI")
    args = parser.parse_args(argv)
    if args.history:
        return history_check(args.models or sorted(SHARED.glob("*.tflite")), args.accelerators.split(","))
    models = args.models or [SHARED / "person_detect.tflite", SHARED / "keyword_scrambled_8bit.tflite"]
    other = ["--debug-force-regor"] if version_tuple() < (5,) else ["--debug-force-legacy-core"]
    failures = 0
    print("| Vela | model | accelerator | core | total cycles (plugin) | total cycles (vela CLI) "
          "| per-layer rows equal | cpu_ops = CPU operators |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        est = Estimator(Path(tmp), Path(tmp), timeout=600)
        try:
            for model in models:
                for accelerator in args.accelerators.split(","):
                    variants: list[list[str]] = [[]]
                    if args.both_cores and not accelerator.startswith("ethos-u85"):
                        variants.append(other)
                    for vela_args in variants:
                        target = resolve([{"accelerator": accelerator, "vela_args": vela_args}], Path(tmp))
                        result = est.estimate(model.resolve(), target)
                        cli = vela_cli(model.resolve(), target, Path(tmp) / "cli")
                        diffs = differences(result, cli)
                        failures += bool(diffs)
                        bad = len({d.split()[1] for d in diffs if d.startswith("layer ")})
                        core = expected_core(accelerator, vela_args)
                        print(f"| {vela_version()} | {model.stem} | {accelerator} | {core}"
                              f"{' (' + ' '.join(vela_args) + ')' if vela_args else ''} "
                              f"| {result.total_cycles:,} | {cli.total_cycles} "
                              f"| {len(cli.rows) - bad}/{len(cli.rows)}"
                              f"{'' if len(result.layers) == len(cli.rows) else ' (count differs)'} "
                              f"| {result.cpu_ops} = {cli.cpu_operators}"
                              f"{'' if result.cpu_ops == cli.cpu_operators else ' DIFFERS'} |")
                        for diff in diffs[:5]:
                            print(f"    {diff}", file=sys.stderr)
        finally:
            est.close()
    return 1 if failures else 0


def history_check(models: list[Path], accelerators: list[str]) -> int:
    import time

    from tests import history
    from tests.release import CORE_ARGS

    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        chosen = history.targets(Path(tmp), accelerators, CORE_ARGS)
        compared, found = history.differences([m.resolve() for m in models], chosen)
    print(f"Vela {vela_version()}: {len(models)} model(s) x {len(chosen)} target(s), {compared} estimates in one "
          f"worker against fresh workers: {len(found)} difference(s) ({time.monotonic() - started:.0f} s)")
    for line in found:
        print(f"    {line}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
