"""Write the example models (run from examples/: python make_models.py).

Two versions of the seed article's network, made with pytest_ethosu.modelgen (no TensorFlow):
a 284x284x3 input, four 3x3 convolutions with 32, 64, N and 32 filters (the last three with
stride 2, ReLU), then flatten and a 10-unit fully connected layer.  N is 90 or 96.
"""

from __future__ import annotations

from pathlib import Path

from pytest_ethosu.modelgen import ModelBuilder


def seed_network(channels: int) -> bytes:
    m = ModelBuilder((1, 284, 284, 3), seed=channels)
    x = m.conv2d(m.input, filters=32, kernel=3, stride=1, padding="valid", name="conv2d")
    x = m.conv2d(x, filters=64, kernel=3, stride=2, padding="valid", name="conv2d_1")
    x = m.conv2d(x, filters=channels, kernel=3, stride=2, padding="valid", name="conv2d_2")
    x = m.conv2d(x, filters=32, kernel=3, stride=2, padding="valid", name="conv2d_3")
    x = m.reshape(x, (1, -1), name="flatten")
    x = m.fully_connected(x, units=10, name="dense")
    return m.build(x)


if __name__ == "__main__":
    here = Path(__file__).parent / "models"
    here.mkdir(exist_ok=True)
    for n in (90, 96):
        (here / f"model_{n}ch.tflite").write_bytes(seed_network(n))
        print(f"wrote models/model_{n}ch.tflite")
