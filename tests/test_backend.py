"""The backend seam: `compiled` is exact, caches per shape, and compiles where it pays."""

import keras
import numpy as np
import pytest
from helpers import run_python, tiny_gemma, to_numpy
from keras import ops

from keras_gralora import backend
from keras_gralora.backend import compiled, keep_tokens_sharded, lays_out_variables

COMPILING_BACKENDS = ("jax", "tensorflow")  # eager dispatch costs there; torch runs eagerly


def make_counted():
    traces = []

    @compiled(static_argnames=("scale", "shape"))
    def scaled_reshape(x, extra=None, *, scale, shape):
        traces.append(shape)
        y = ops.reshape(x * scale, shape)
        return y if extra is None else y + extra

    return scaled_reshape, traces


def test_compiled_matches_eager_with_static_and_missing_arguments():
    fn, _ = make_counted()
    x = np.arange(6, dtype="float32")
    np.testing.assert_array_equal(to_numpy(fn(x, scale=2.0, shape=(2, 3))), 2 * x.reshape(2, 3))
    np.testing.assert_array_equal(to_numpy(fn(x, scale=3.0, shape=(3, 2))), 3 * x.reshape(3, 2))
    extra = np.ones((2, 3), "float32")
    np.testing.assert_array_equal(to_numpy(fn(x, extra, scale=1.0, shape=(2, 3))), x.reshape(2, 3) + 1)


def test_compiled_traces_once_per_shape_on_compiling_backends():
    fn, traces = make_counted()
    for value in (1.0, 2.0, 3.0):
        fn(np.full((4,), value, "float32"), scale=2.0, shape=(2, 2))
    compiles = keras.backend.backend() in COMPILING_BACKENDS
    assert len(traces) == (1 if compiles else 3)
    fn(np.ones((6,), "float32"), scale=2.0, shape=(2, 3))  # a new shape: traced again
    assert len(traces) == (2 if compiles else 4)


def test_new_variables_follow_a_distribution_exactly_where_the_seam_says():
    if keras.backend.backend() == "torch":  # Keras 3.15 has no torch distribution backend
        with pytest.raises(AttributeError, match="list_devices"):
            keras.distribution.DataParallel()
        assert not lays_out_variables()
        return
    with keras.distribution.DataParallel().scope():  # tensorflow: constructs, but places nothing
        variable = keras.Variable(np.zeros(4, "float32"))
    assert (variable._layout is not None) == lays_out_variables() == (keras.backend.backend() == "jax")


def test_keep_tokens_sharded_is_a_hint_only_inside_a_compiled_step_under_a_distribution():
    x = keras.ops.ones((2, 6, 3))
    assert keep_tokens_sharded(x, axis=1) is x  # no distribution
    if keras.backend.backend() == "torch":  # no keras.distribution on torch (see above)
        return
    with keras.distribution.DataParallel().scope():
        assert keep_tokens_sharded(x, axis=1) is x  # eager: nothing to hint
        hinted = compiled(lambda t: keep_tokens_sharded(t, axis=1) * 2.0)(x)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(hinted), np.full((2, 6, 3), 2.0, "float32"))


def test_imports_and_serves_on_keras_numpy_backend():
    """Keras' numpy backend runs inference only (no `make_train_function`): the import must not need one."""
    run_python(
        """
        import keras, numpy as np, keras_gralora
        assert not hasattr(keras.Model, "make_train_function")
        layer = keras_gralora.GraLoRADense(8, r=4, k=2, hybrid_r=2, init_weights=False)
        layer.build((None, 16))
        x = np.random.default_rng(0).random((3, 16), dtype="float32")
        merged = np.asarray(layer._kernel) + np.asarray(layer.delta_kernel())
        np.testing.assert_allclose(np.asarray(layer(x)), x @ merged + np.asarray(layer.bias), rtol=1e-5, atol=1e-6)
        """,
        "numpy",
    )


@pytest.mark.parametrize("eager_form", [True, False])
def test_both_forms_of_the_routed_forward_equal_each_row_through_block_forward(eager_form, monkeypatch):
    from keras_gralora import ops as gralora_ops

    monkeypatch.setattr(gralora_ops, "dispatches_each_op", lambda: eager_form)
    rng = np.random.default_rng(0)
    rows, n, d, r, k, h = 3, 5, 8, 4, 2, 2
    x, a = rng.normal(size=(rows, n, d)), rng.normal(size=(rows, k, d // k, r))
    b = rng.normal(size=(rows, k, r, d // k))
    hybrid_a, hybrid_b = rng.normal(size=(rows, d, h)), rng.normal(size=(rows, h, d))
    scale = np.array([2.0, 0.5, 0.0])
    tensors = [
        keras.ops.convert_to_tensor(v.astype("float32")) for v in (x, a, b, scale[:, None, None], hybrid_a, hybrid_b)
    ]
    got = keras.ops.convert_to_numpy(gralora_ops.routed_block_forward(*tensors))
    for i in range(rows):
        args = [keras.ops.convert_to_tensor(v[i].astype("float32")) for v in (x, a, b)]
        want = gralora_ops.block_forward(
            *args, float(scale[i]), *[keras.ops.convert_to_tensor(v[i].astype("float32")) for v in (hybrid_a, hybrid_b)]
        )
        np.testing.assert_allclose(got[i], keras.ops.convert_to_numpy(want), rtol=1e-5, atol=1e-5)


def test_to_numpy_reads_variables_without_numpy_2_copy_warning():
    import warnings

    from keras_gralora.backend import to_numpy

    variable = keras.Variable(np.arange(6, dtype="float32").reshape(2, 3))
    with warnings.catch_warnings():
        # Keras' own convert_to_numpy(variable) warns on jax with numpy 2; on torch and tensorflow Keras'
        # conversion of the backend tensor itself warns (np.array(tensor)), which no seam of ours reaches.
        warnings.simplefilter("error" if keras.backend.backend() == "jax" else "ignore", DeprecationWarning)
        values = to_numpy(variable), to_numpy(variable.value * 2)
    np.testing.assert_array_equal(values[0], np.arange(6).reshape(2, 3))
    np.testing.assert_array_equal(values[1], 2 * np.arange(6).reshape(2, 3))


def test_one_process_writes_and_reads_whole_arrays():
    """With one process (the multi-process case: `tests/distributed/test_processes.py`), this process writes
    every file, agreement is its own flag, and nothing needs gathering."""
    assert backend.process_count() == 1 and backend.process_index() == 0 and backend.is_writer()
    assert backend.all_agree(True) and not backend.all_agree(False)
    variable = keras.Variable(np.arange(6.0).reshape(2, 3))
    assert not backend.spans_processes(variable.value)
    assert backend.gathered(variable) is variable
    np.testing.assert_array_equal(backend.to_numpy(variable), np.arange(6.0).reshape(2, 3))


def test_register_parameters_lists_adapters_as_torch_parameters():
    """KerasHub's models list no torch parameters until registered again (torch); elsewhere a no-op."""
    pytest.importorskip("keras_hub")
    backbone, _ = tiny_gemma()
    backbone.enable_gralora(r=2, k=2)  # registers them (`inject.sync_trainable`)
    if keras.backend.backend() == "torch":
        trainable = {id(p) for p in backbone.parameters() if p.requires_grad}
        assert trainable == {id(v.value) for v in backbone.trainable_weights} and len(trainable) == 8
    backend.register_parameters(backbone)  # any backend: no error
