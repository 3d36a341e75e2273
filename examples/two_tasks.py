"""Two tasks on one MiniLM backbone: one named GraLoRA adapter each, switched at will.

Task "sentiment": negative / neutral / positive (the main job's task).
Task "strength": is the rating strong (|mean| >= 1.5, 56 % of entries) or mild? Both read the
same VADER lexicon entries. One backbone carries both adapters; each task
has its own head. Training a task activates its adapter (only active
adapters train); evaluating with the other task's adapter shows they are
really distinct. Both adapters then travel in one adapter file, reload onto
a fresh backbone, and give the same features.

    KERAS_BACKEND=jax python examples/two_tasks.py --examples 1024
"""

import argparse
import os
import time
import types

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras
import keras_hub
import numpy as np
import sentiment_task

import keras_gralora

TASKS = {"sentiment": 3, "strength": 2}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--r", type=int, default=8)
    parser.add_argument("--k", type=int, default=2)
    parser.add_argument("--examples", type=int, default=1024, help="training examples per task (default 1024)")
    parser.add_argument("--test-examples", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=None, help="train steps per epoch (default: all)")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--out", default="runs/two_tasks")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    preset = sentiment_task.minilm_preset()
    (train_x, train_y, train_r), (test_x, test_y, test_r) = sentiment_task.load_lexicon(
        args.examples, args.test_examples, with_ratings=True
    )
    labels = {"sentiment": (train_y, test_y), "strength": (strength_of(train_r), strength_of(test_r))}
    keras.utils.set_random_seed(0)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor.from_preset(preset, sequence_length=16)
    backbone = keras_hub.models.BertBackbone.from_preset(preset)
    tasks = {
        name: keras_hub.models.BertTextClassifier(backbone, num_classes=n, preprocessor=preprocessor)
        for name, n in TASKS.items()
    }
    for name in TASKS:  # the first adapter becomes active; the second waits
        backbone.enable_gralora(r=args.r, k=args.k, target_layer_names="all", adapter_name=name)

    accuracy = {}
    for name, task in tasks.items():
        keras_gralora.set_active_adapters(backbone, name)
        sentiment_task.compile_for_training(task, args.learning_rate)  # compile after switching: new variables train
        start = time.perf_counter()
        task.fit(train_x, labels[name][0], batch_size=32, epochs=args.epochs, steps_per_epoch=args.steps, verbose=0)
        print(f"trained adapter {name!r} with its head in {time.perf_counter() - start:.0f} s")
    for name, task in tasks.items():
        for adapter in TASKS:
            keras_gralora.set_active_adapters(backbone, adapter)
            accuracy[name, adapter] = task.evaluate(test_x, labels[name][1], verbose=0, return_dict=True)["accuracy"]
        print(
            f"task {name!r}: held-out accuracy {accuracy[name, name]:.4f} with its adapter, "
            f"{accuracy[name, next(a for a in TASKS if a != name)]:.4f} with the other task's"
        )

    path = os.path.join(args.out, "two_tasks.gralora.weights.h5")
    backbone.save_gralora_weights(path)
    fresh = keras_hub.models.BertBackbone.from_preset(preset)
    fresh.load_gralora_weights(path)
    features = preprocessor(test_x[:16])
    for name in TASKS:
        keras_gralora.set_active_adapters(backbone, name)
        keras_gralora.set_active_adapters(fresh, name)
        difference = np.abs(
            keras.ops.convert_to_numpy(fresh(features)["pooled_output"])
            - keras.ops.convert_to_numpy(backbone(features)["pooled_output"])
        ).max()
        if difference > 1e-4:
            raise SystemExit(f"adapter {name!r} reloaded from {path} differs by {difference:.2e}")
    print(
        f"both adapters in one file: {path} ({os.path.getsize(path) / 2**20:.2f} MiB); "
        f"reloaded onto a fresh backbone: {keras_gralora.adapter_names(fresh)}, same features"
    )
    return types.SimpleNamespace(
        accuracy=accuracy,
        backbone=backbone,
        tasks=tasks,
        preprocessor=preprocessor,
        test_x=test_x,
        path=path,
        preset=preset,
        r=args.r,
        k=args.k,
    )


def strength_of(ratings):
    return (np.abs(ratings) >= 1.5).astype("int32")


if __name__ == "__main__":
    main()
