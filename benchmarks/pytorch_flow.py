"""What a PyTorch model costs, and what the cache saves (run by hand, not part of the suite):

    pip install -e ".[test,pytorch]" && python benchmarks/pytorch_flow.py

For the seed network (examples/pytorch, 284x284, 90 channels) and a small 3-convolution module,
on ethos-u65-256 / Ethos_U65_High_End / Dedicated_Sram, advice off:

1. export + program key: what every estimate pays, warm or cold (torch.export and hashing the
   serialised program);
2. quantise + lower: what ExecuTorch's flow costs on a miss (EthosUQuantizer, prepare/convert,
   to_edge_transform_and_lower up to TOSA);
3. Vela on the partitions, through the worker;
4. a fresh Estimator on a warm disk cache (a new session): lowering and Vela answered from it;
5. the same estimate again in the same Estimator (the session memo).

The first import of torch and ExecuTorch is measured separately: a session pays it once.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples" / "pytorch"))

started = time.perf_counter()
import torch  # noqa: E402

from pytest_ethosu import pytorch  # noqa: E402

pytorch.preload()
IMPORT_SECONDS = time.perf_counter() - started

from seed_net import calibration, example_inputs, network  # type: ignore[import-not-found]  # noqa: E402

from pytest_ethosu.cache import EstimateCache  # noqa: E402
from pytest_ethosu.estimator import Estimator  # noqa: E402
from pytest_ethosu.target import resolve  # noqa: E402

TARGET = {"accelerator": "ethos-u65-256", "system_config": "Ethos_U65_High_End", "memory_mode": "Dedicated_Sram"}


class Small(torch.nn.Module):  # type: ignore[misc, unused-ignore]  # Any without torch installed
    def __init__(self) -> None:
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = torch.nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.c3 = torch.nn.Conv2d(16, 16, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.c3(torch.relu(self.c2(torch.relu(self.c1(x))))))


def measure(name: str, make: object, inputs: tuple[torch.Tensor, ...], batches: list[tuple[torch.Tensor, ...]] | None,
            repeats: int) -> list[str]:
    target = resolve([TARGET], ROOT)
    export, lowering, vela_cold, warm_session, memo = [], [], [], [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as work:
            scratch, cache_dir = Path(work) / "scratch", Path(work) / "cache"
            scratch.mkdir()
            module = make()  # type: ignore[operator]
            started = time.perf_counter()
            program, _, _ = pytorch.load_program(module, inputs, ROOT)
            pytorch.program_digests(program)
            export.append(time.perf_counter() - started)

            cold = Estimator(ROOT, scratch, 600, cache=EstimateCache(cache_dir))
            started = time.perf_counter()
            cold.estimate_pytorch(module, inputs, batches, True, target)
            total = time.perf_counter() - started
            assert cold.lowerer is not None and cold.lowerer.runs == 1
            lowering.append(cold.lowerer.seconds)
            vela_cold.append(total - cold.lowerer.seconds - export[-1])
            started = time.perf_counter()
            cold.estimate_pytorch(module, inputs, batches, True, target)
            memo.append(time.perf_counter() - started)
            cold.close()

            warm = Estimator(ROOT, scratch, 600, cache=EstimateCache(cache_dir))
            started = time.perf_counter()
            warm.estimate_pytorch(module, inputs, batches, True, target)
            warm_session.append(time.perf_counter() - started)
            assert warm.lowerer is not None and warm.lowerer.runs == 0 and warm.vela_runs == 0
            warm.close()
    med = statistics.median
    return [name, f"{med(export):.2f}", f"{med(lowering):.2f}", f"{med(vela_cold):.2f}",
            f"{med(export) + med(lowering) + med(vela_cold):.2f}", f"{med(warm_session):.2f}", f"{med(memo):.2f}"]


def main() -> None:
    repeats = 3
    rows = [
        measure("small module (3 convs, 16x16)", Small, (torch.randn(1, 3, 16, 16),), None, repeats),
        measure("seed network, 90 ch (284x284, 8 calibration images)", lambda: network(90), example_inputs(),
                calibration(), repeats),
    ]
    print(f"first import of torch + ExecuTorch's Arm backend: {IMPORT_SECONDS:.1f} s (once per process)")
    print(f"median of {repeats} runs, seconds")
    print(tabulate(rows, headers=["model", "export + key", "quantise + lower", "Vela (worker start incl.)",
                                  "cold estimate", "warm cache, new session", "same session (memo)"],
                   tablefmt="github", disable_numparse=True))


if __name__ == "__main__":
    main()
