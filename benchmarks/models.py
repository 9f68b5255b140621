"""Models for the benchmarks, made with pytest_ethosu.modelgen (no TensorFlow)."""

from __future__ import annotations

from pytest_ethosu.modelgen import ModelBuilder

# MobileNet v1 body: (stride, output channels) of each depthwise-separable block
MOBILENET_BLOCKS = [(1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512), (1, 512), (1, 512),
                    (1, 512), (1, 512), (1, 512), (2, 1024), (1, 1024)]


def mobilenet_v1(size: int = 224, alpha: float = 1.0, classes: int = 1000, seed: int = 0) -> bytes:
    """A MobileNet v1 of the given input size and width multiplier (int8, random weights)."""
    m = ModelBuilder((1, size, size, 3), seed=seed)
    x = m.conv2d(m.input, filters=int(32 * alpha), kernel=3, stride=2, activation="relu6", name="conv0")
    for i, (stride, channels) in enumerate(MOBILENET_BLOCKS):
        x = m.depthwise_conv2d(x, kernel=3, stride=stride, activation="relu6", name=f"block{i}/dw")
        x = m.conv2d(x, filters=int(channels * alpha), kernel=1, activation="relu6", name=f"block{i}/pw")
    x = m.avg_pool(x, size=x.shape[1], name="pool")
    x = m.reshape(x, (1, -1), name="flatten")
    x = m.fully_connected(x, units=classes, name="logits")
    return m.build(x)


def small_cnn(seed: int, size: int = 64, filters: int = 16) -> bytes:
    """A small convolutional network; the seed changes the weights, so every seed is a new model."""
    m = ModelBuilder((1, size, size, 3), seed=seed)
    x = m.conv2d(m.input, filters=filters, kernel=3, stride=2, name="conv1")
    x = m.depthwise_conv2d(x, kernel=3, name="dw1")
    x = m.conv2d(x, filters=2 * filters, kernel=1, name="pw1")
    x = m.depthwise_conv2d(x, kernel=3, stride=2, name="dw2")
    x = m.conv2d(x, filters=4 * filters, kernel=1, name="pw2")
    x = m.max_pool(x, 2, name="pool")
    x = m.reshape(x, (1, -1), name="flatten")
    x = m.fully_connected(x, units=10, name="dense")
    return m.build(x)
