"""Write the small TOSA files the test suite uses (tests/data/*.tosa), with ExecuTorch.

The suite's TOSA tests run without PyTorch installed, so the files are committed.  Re-make
them with the pinned stack (``pip install -e ".[pytorch]"``)::

    python scripts/make_tosa_models.py

Each file is one TOSA partition of a small quantised network, lowered for the Ethos-U55/U65
TOSA profile (``TOSA-1.0+INT+int16+int4+u55``) by ExecuTorch's own TOSA partitioner, which
stops at TOSA and runs no Vela.  ``tiny.tosa`` has two convolutions; ``tiny_wide.tosa`` is the
same network with its first convolution 24 channels wide instead of 8.
"""

from __future__ import annotations

from pathlib import Path

import torch
from executorch.backends.arm.quantizer import TOSAQuantizer, get_symmetric_quantization_config
from executorch.backends.arm.tosa.compile_spec import TosaCompileSpec
from executorch.backends.arm.tosa.partitioner import TOSAPartitioner
from executorch.exir import to_edge_transform_and_lower
from executorch.exir.lowered_backend_module import get_lowered_submodules
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

PROFILE = "TOSA-1.0+INT+int16+int4+u55"
OUT = Path(__file__).resolve().parent.parent / "tests" / "data"


class Tiny(torch.nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, width, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(width, 16, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv2(torch.relu(self.conv1(x))))


def tosa(width: int) -> bytes:
    torch.manual_seed(0)
    module, example = Tiny(width).eval(), (torch.randn(1, 3, 16, 16),)
    spec = TosaCompileSpec(PROFILE)
    quantizer = TOSAQuantizer(spec)
    quantizer.set_global(get_symmetric_quantization_config())
    graph = prepare_pt2e(torch.export.export(module, example).module(check_guards=False), quantizer)
    graph(*example)
    program = torch.export.export(convert_pt2e(graph), example)
    edge = to_edge_transform_and_lower(program, partitioner=[TOSAPartitioner(spec)])
    (_, lowered, _), = get_lowered_submodules(edge.exported_program().graph_module)
    return bytes(lowered.processed_bytes)


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for name, width in (("tiny.tosa", 8), ("tiny_wide.tosa", 24)):
        (OUT / name).write_bytes(tosa(width))
        print(OUT / name, (OUT / name).stat().st_size, "bytes")
