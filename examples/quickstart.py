"""Adapt a frozen Keras model to a new task with GraLoRA, merge it, save it.

A small self-contained run on synthetic data: a frozen two-layer "pretrained"
network must learn a shifted task; only the GraLoRA adapters train. Runs on
whatever KERAS_BACKEND says (jax, torch or tensorflow).

    KERAS_BACKEND=torch python examples/quickstart.py --r 8 --k 2 --epochs 20
"""

import argparse
import os
import tempfile

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras
import numpy as np

from keras_gralora import GraLoRADense


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--r", type=int, default=8, help="GraLoRA rank (default 8)")
    parser.add_argument("--k", type=int, default=2, help="blocks per side (default 2)")
    parser.add_argument("--hybrid-r", type=int, default=0, help="extra plain-LoRA rank (default 0)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--examples", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def build_model(width, adapter):
    inputs = keras.Input((width,))
    x = GraLoRADense(width, activation="gelu", name="hidden", **adapter)(inputs)
    outputs = GraLoRADense(width, name="head", **adapter)(x)
    return keras.Model(inputs, outputs)


def make_task(base, width, examples, rng):
    """Targets from the base network with a shifted first kernel."""
    teacher = keras.models.clone_model(base)
    teacher.set_weights(base.get_weights())
    kernel = teacher.get_layer("hidden").kernel
    shift = rng.standard_normal((width, 16)) @ rng.standard_normal((16, width)) / width
    kernel.assign(keras.ops.convert_to_numpy(kernel) + shift.astype("float32"))
    x = rng.standard_normal((examples, width)).astype("float32")
    return x, keras.ops.convert_to_numpy(teacher(x))


def main():
    args = parse_args()
    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    width = 64
    model = build_model(width, dict(r=args.r, k=args.k, hybrid_r=args.hybrid_r))
    x, y = make_task(model, width, args.examples, rng)
    split = args.examples * 3 // 4
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    print(f"backend={keras.backend.backend()}  trainable={trainable:,} of {model.count_params():,} parameters")

    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="mse")
    before = model.evaluate(x[split:], y[split:], verbose=0)
    model.fit(x[:split], y[:split], epochs=args.epochs, batch_size=64, verbose=2)
    after = model.evaluate(x[split:], y[split:], verbose=0)
    print(f"held-out MSE: before {before:.5f}  after {after:.5f}  ({before / after:.1f}x lower)")

    for layer in model.layers[1:]:
        layer.merge(safe=True)
    model.compile(loss="mse")  # fresh compiled functions see the merged kernels
    merged = model.evaluate(x[split:], y[split:], verbose=0)
    print(f"held-out MSE after merging: {merged:.5f}")

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "quickstart.keras")
        model.save(path)
        reloaded = keras.models.load_model(path)
        reloaded.compile(loss="mse")
        print(f"held-out MSE after .keras round trip: {reloaded.evaluate(x[split:], y[split:], verbose=0):.5f}")
    if not after < before:
        raise SystemExit("training did not lower the held-out loss")


if __name__ == "__main__":
    main()
