"""Make the example models with TensorFlow's converter, as the seed article does.

    pip install tensorflow-cpu && python make_models.py      # run from examples/

The network: a 284x284x3 input, four 3x3 convolutions with 32, 64, N and 32 filters (the
last three with stride 2, ReLU), then Flatten and Dense(10, softmax).  N is 90 or 96.  Each
is int8-quantised with a representative data set of 50 random images, with int8 input and
output, and written to models/model_<N>ch.tflite.  Seeds are fixed, so a rerun with the same
TensorFlow version writes the same files.  TensorFlow is needed only to regenerate them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf


def define_model(channels: int) -> tf.keras.Model:
    return tf.keras.Sequential([
        tf.keras.Input(shape=(284, 284, 3)),
        tf.keras.layers.Conv2D(32, (3, 3), activation="relu"),
        tf.keras.layers.Conv2D(64, (3, 3), activation="relu", strides=2),
        tf.keras.layers.Conv2D(channels, (3, 3), activation="relu", strides=2),
        tf.keras.layers.Conv2D(32, (3, 3), activation="relu", strides=2),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(10, activation="softmax"),
    ])


def quantise(model: tf.keras.Model, seed: int) -> bytes:
    rng = np.random.default_rng(seed)

    def representative_dataset():
        for _ in range(50):
            yield [rng.random((1, 284, 284, 3), dtype=np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


if __name__ == "__main__":
    out = Path(__file__).parent / "models"
    out.mkdir(exist_ok=True)
    for channels in (90, 96):
        tf.keras.utils.set_random_seed(channels)
        data = quantise(define_model(channels), seed=channels)
        (out / f"model_{channels}ch.tflite").write_bytes(data)
        print(f"wrote models/model_{channels}ch.tflite ({len(data)} bytes)")
