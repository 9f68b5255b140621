"""Small int8 models for the tests, made in code (no TensorFlow, no network).

Each is a variation of one network, so tests can change a model the way users do: make a
layer wider, add a layer, rename layers, or push an operator to the CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_ethosu.modelgen import ModelBuilder


def network(filters: int = 16, extra_layer: bool = False, cpu_op: bool = False,
            prefix: str = "net", dtype: str = "int8") -> bytes:
    m = ModelBuilder((1, 32, 32, 3), seed=1, dtype=dtype)
    x = m.conv2d(m.input, filters=filters, kernel=3, stride=2, name=f"{prefix}/conv1")
    x = m.depthwise_conv2d(x, kernel=3, name=f"{prefix}/dw1")
    if cpu_op:
        x = m.custom(x, "UserCpuOp", name=f"{prefix}/custom")
    if extra_layer:
        x = m.conv2d(x, filters=filters, kernel=1, name=f"{prefix}/extra")
    x = m.conv2d(x, filters=32, kernel=1, name=f"{prefix}/conv2")
    x = m.max_pool(x, 2, name=f"{prefix}/pool")
    x = m.reshape(x, (1, -1), name=f"{prefix}/flatten")
    x = m.fully_connected(x, units=10, name=f"{prefix}/dense")
    return m.build(x)


#: The seed article's target, as the suite's tests name it.
U65: dict[str, object] = {"accelerator": "ethos-u65-256", "system_config": "Ethos_U65_High_End",
                          "memory_mode": "Dedicated_Sram", "vela_config": "Arm/vela.ini"}


VARIANTS: dict[str, Callable[[], bytes]] = {
    "base.tflite": lambda: network(),
    "wider.tflite": lambda: network(filters=48),
    "extra.tflite": lambda: network(extra_layer=True),
    "renamed.tflite": lambda: network(prefix="reexport"),
    "cpu.tflite": lambda: network(cpu_op=True),
    "float.tflite": lambda: network(dtype="float32"),
}


def write_models(directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, make in VARIANTS.items():
        path = directory / name
        path.write_bytes(make())
        paths[name] = path
    return paths


def use(project: pytest.Pytester, variant: str) -> None:
    """Make ``models/current.tflite`` in a test project a copy of one variant."""
    models = project.path / "models"
    (models / "current.tflite").write_bytes((models / variant).read_bytes())
