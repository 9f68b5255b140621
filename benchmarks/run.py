"""pytest-ethosu benchmarks, run by hand (not part of the test suite):

    pip install -e ".[test]" && python benchmarks/run.py

Every comparison is measured side by side in one run and printed as a ratio:

1. one estimate: the plugin (cold cache, warm worker) vs calling Vela in-process on the same
   model and options;
2. a session of 20 estimates (10 models x 2 accelerators) vs the loop a user would script
   (one `vela` command per model and accelerator, then reading its CSVs), cold and warm cache;
3. the same session under -n 2 vs -n 0;
4. how a session's cost grows with 1, 10 and 100 estimates, against Vela's own time for the
   same models, with the pytest process's peak RSS;
5. what the advisor adds to the example session, cold and with a warm cache.

Models come from ../shared/models when it is there, the rest are made with modelgen.
"""

from __future__ import annotations

import contextlib
import csv
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).parent))
from models import mobilenet_v1, small_cnn

from pytest_ethosu.estimator import Estimator
from pytest_ethosu.target import resolve

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "models"
ACCELERATORS = ["ethos-u55-128", "ethos-u65-256"]
REPEATS = 3
# Plugins that this repository's test extras install but a user need not have: hypothesis's
# pytest plugin alone takes ~1.2 s to import here.  The empty-session row shows what remains.
NO_UNRELATED = ["-p", "no:hypothesispytest", "-p", "no:benchmark", "-p", "no:randomly"]


@contextlib.contextmanager
def quiet_fds() -> Iterator[None]:
    """Vela prints from native code: silence fds 1 and 2 around an in-process call."""
    sys.stdout.flush()
    saved = os.dup(1), os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def vela_in_process(model: Path, accelerator: str, out: Path) -> float:
    from ethosu.vela import vela

    start = time.perf_counter()
    with quiet_fds():
        vela.main([str(model), "--accelerator-config", accelerator, "--verbose-performance", "--output-dir", str(out)])
    return time.perf_counter() - start


def per_estimate(models: dict[str, Path], work: Path) -> list[list[str]]:
    est = Estimator(work, work, timeout=600)
    est.estimate(models["small_0"], resolve([{}], work))  # start the worker, import Vela
    vela_in_process(models["small_0"], "ethos-u55-128", work / "warm")  # same warm-up in-process
    rows: list[list[str]] = []
    for name in ("person_detect", "mobilenet_v1_224"):
        if name not in models:
            continue
        target = resolve([{"accelerator": "ethos-u55-128"}], work)
        plugin, direct = [], []
        for _ in range(REPEATS):
            est._memo.clear()  # cold: no memo, no disk cache
            start = time.perf_counter()
            est.estimate(models[name], target)
            plugin.append(time.perf_counter() - start)
            direct.append(vela_in_process(models[name], "ethos-u55-128", work / "direct"))
        p, d = statistics.median(plugin), statistics.median(direct)
        rows.append([f"1. one estimate: {name}", f"{p:.3f} s", f"{d:.3f} s (Vela in-process)", f"{p / d:.2f}x",
                     "<= 1.10x"])
    est.close()
    return rows


def make_project(root: Path, models: dict[str, Path], names: list[str], accelerators: list[str]) -> Path:
    project = root / "project"
    shutil.rmtree(project, ignore_errors=True)
    (project / "models").mkdir(parents=True)
    for name in names:
        shutil.copy(models[name], project / "models" / f"{name}.tflite")
    (project / "pytest.ini").write_text("[pytest]\n")
    (project / "conftest.py").write_text(
        "import resource\n\n"
        "def pytest_unconfigure(config):\n"
        "    if not hasattr(config, 'workerinput'):\n"
        "        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "        open('rss.txt', 'w').write(str(kib))\n")
    (project / "test_models.py").write_text(
        "import pytest\n\n"
        f"@pytest.mark.parametrize('accelerator', {accelerators!r})\n"
        f"@pytest.mark.parametrize('model', {names!r})\n"
        "def test_model(ethosu_perf, model, accelerator):\n"
        "    ethosu_perf.estimate(f'models/{model}.tflite', accelerator=accelerator)\n")
    return project


def pytest_session(project: Path, *args: str) -> tuple[float, int]:
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", *NO_UNRELATED, *args], cwd=project,
                         capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if run.returncode != 0:
        raise SystemExit(f"benchmark session failed:\n{run.stdout[-3000:]}")
    return elapsed, int((project / "rss.txt").read_text())


def scripted_loop(models: list[Path], accelerators: list[str], out: Path) -> float:
    """What a user would write: one vela command per model and accelerator, then read the CSVs."""
    start = time.perf_counter()
    for model in models:
        for accelerator in accelerators:
            subprocess.run(["vela", str(model), "--accelerator-config", accelerator, "--verbose-performance",
                            "--output-dir", str(out)], check=True, capture_output=True)
            with open(out / f"{model.stem}_per-layer.csv", newline="") as f:
                list(csv.reader(f))
            summary = next(out.glob(f"{model.stem}_summary_*.csv"))
            with open(summary, newline="") as f:
                list(csv.reader(f))
    return time.perf_counter() - start


def session_benchmarks(models: dict[str, Path], work: Path) -> list[list[str]]:
    names = [n for n in models if n != "small_0"][:10]
    project = make_project(work, models, names, [])
    (project / "test_models.py").write_text("def test_nothing():\n    pass\n")
    empty, _ = pytest_session(project, "-p", "no:xdist")
    project = make_project(work, models, names, ACCELERATORS)
    script = scripted_loop([models[n] for n in names], ACCELERATORS, work / "script")
    cold, _ = pytest_session(project, "-p", "no:xdist", "--cache-clear")
    warm, _ = pytest_session(project, "-p", "no:xdist")
    parallel, _ = pytest_session(project, "-n", "2", "--cache-clear")
    serial, _ = pytest_session(project, "-p", "no:xdist", "--cache-clear")
    heavy_models = {f"mobilenet_{i}": work / "heavy" / f"mobilenet_{i}.tflite" for i in range(10)}
    for i, path in enumerate(heavy_models.values()):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(mobilenet_v1(160 + 16 * (i % 5), 0.75 + 0.25 * (i % 2), seed=i))
    heavy = make_project(work, heavy_models, list(heavy_models), ACCELERATORS)
    heavy_parallel, _ = pytest_session(heavy, "-n", "2", "--cache-clear")
    heavy_serial, _ = pytest_session(heavy, "-p", "no:xdist", "--cache-clear")
    n = len(names) * len(ACCELERATORS)
    return [
        ["0. empty pytest session (fixed cost)", f"{empty:.2f} s", "", "", "pytest start-up, no estimate"],
        [f"2. session of {n}, cold cache", f"{cold:.2f} s", f"{script:.2f} s (vela loop)", f"{script / cold:.1f}x faster",
         ">= 3x"],
        [f"2. session of {n}, warm cache", f"{warm:.2f} s", f"{script:.2f} s (vela loop)", f"{script / warm:.1f}x faster",
         ">= 10x"],
        [f"3. session of {n}, -n 2 vs -n 0 (cold)", f"{parallel:.2f} s", f"{serial:.2f} s (-n 0)",
         f"{serial / parallel:.2f}x faster", ">= 1.6x"],
        ["3. 10 MobileNets x 2, -n 2 vs -n 0 (cold)", f"{heavy_parallel:.2f} s", f"{heavy_serial:.2f} s (-n 0)",
         f"{heavy_serial / heavy_parallel:.2f}x faster", ">= 1.6x"],
    ]


def scaling(work: Path) -> list[list[str]]:
    rows: list[list[str]] = []
    models = {}
    for i in range(100):
        path = work / "scale" / f"net_{i:03d}.tflite"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(small_cnn(seed=1000 + i))
        models[f"net_{i:03d}"] = path
    vela_in_process(models["net_000"], "ethos-u55-128", work / "warm")
    measured = {}
    for n in (1, 10, 100):
        names = list(models)[:n]
        project = make_project(work, models, names, ["ethos-u55-128"])
        elapsed, rss = pytest_session(project, "-p", "no:xdist", "--cache-clear")
        vela_time = sum(vela_in_process(models[m], "ethos-u55-128", work / "direct") for m in names)
        measured[n] = (elapsed, vela_time)
        rows.append([f"4. session of {n} estimate(s)", f"{elapsed:.2f} s", f"{vela_time:.2f} s (Vela in-process)",
                     f"+{(elapsed - vela_time) / n * 1000:.0f} ms/estimate", f"peak RSS {rss / 1024:.0f} MiB"])
    plugin_slope = (measured[100][0] - measured[10][0]) / 90
    vela_slope = (measured[100][1] - measured[10][1]) / 90
    rows.append(["4. marginal cost of one more estimate", f"{plugin_slope * 1000:.0f} ms",
                 f"{vela_slope * 1000:.0f} ms (Vela in-process)", f"{plugin_slope / vela_slope:.2f}x",
                 "from the 10 and 100 sessions"])
    return rows


def advisor_cost() -> list[list[str]]:
    """The example session with and without the advisor, cold and warm cache (median of 3)."""
    example = HERE.parent / "examples"

    def timed(*args: str) -> float:
        runs = []
        for _ in range(REPEATS):
            start = time.perf_counter()
            # with the advisor off, the example's assertion on its advice fails: that run only times
            subprocess.run([sys.executable, "-m", "pytest", "-q", *NO_UNRELATED, "-p", "no:xdist", *args],
                           cwd=example, check="--ethosu-no-advice" not in args, capture_output=True)
            runs.append(time.perf_counter() - start)
        return statistics.median(runs)

    cold_on, cold_off = timed("--cache-clear"), timed("--cache-clear", "--ethosu-no-advice")
    timed()  # fill the cache, verification estimates included
    warm_on, warm_off = timed(), timed("--ethosu-no-advice")
    return [["5. example session, advisor on vs off, cold", f"{cold_on:.2f} s", f"{cold_off:.2f} s (off)",
             f"{100 * (cold_on / cold_off - 1):+.0f}%", "<= +20% (with the cache)"],
            ["5. example session, advisor on vs off, warm", f"{warm_on:.2f} s", f"{warm_off:.2f} s (off)",
             f"{100 * (warm_on / warm_off - 1):+.0f}%", "<= +20%"]]


def collect_models(work: Path) -> dict[str, Path]:
    models: dict[str, Path] = {}
    for name in ("person_detect", "micro_speech_quantized", "keyword_scrambled_8bit"):
        if (SHARED / f"{name}.tflite").is_file():
            models[name] = SHARED / f"{name}.tflite"
    generated = {"small_0": small_cnn(0), "mobilenet_v1_224": mobilenet_v1(224, 1.0),
                 "mobilenet_v1_128_050": mobilenet_v1(128, 0.5)}
    generated.update({f"cnn_{i}": small_cnn(i, size=64 + 32 * (i % 3), filters=16 * (1 + i % 2))
                      for i in range(1, 11 - len(models))})
    for name, data in generated.items():
        path = work / "models" / f"{name}.tflite"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        models[name] = path
    return models


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="ethosu-bench-") as tmp:
        work = Path(tmp)
        models = collect_models(work)
        rows = per_estimate(models, work) + session_benchmarks(models, work) + scaling(work) + advisor_cost()
        rows.sort(key=lambda row: str(row[0])[:2])  # by comparison number, stable within one
    from ethosu.vela import __version__ as vela_version

    print(f"pytest-ethosu benchmarks: Python {platform.python_version()}, ethos-u-vela {vela_version}, "
          f"{os.cpu_count()} CPUs, {platform.machine()}")
    print(tabulate(rows, headers=["comparison", "plugin", "baseline", "ratio", "target / note"],
                   tablefmt="github"))


if __name__ == "__main__":
    main()
