"""Creating a GraLoRA adapter's weights on a layer, built or not (PEFT's shapes and initialization)."""

import contextlib

import keras

from keras_gralora import ops as gralora_ops
from keras_gralora.layers.named_adapter import ADAPTER_DTYPE, ROLES, variable_name


class AdapterWeights:
    """Mixin of `GraLoRAAdapter`: the variables of one named adapter, `ROLES` order, float32 whatever the policy."""

    def _create_variables(self, name, config):
        in_features, out_features = self._kernel_matrix_shape()
        config.validate_features(*self.block_sizes_of(self), self._gralora_where())
        r, k, hybrid_r, lead = config.r, config.k, config.hybrid_r, self.lead_shape_of(self)
        # (shape, fan_in of its init, whether it is a B: zero unless init_weights=False); per expert when `lead`
        specs = [((k, in_features // k, r), in_features // k, False), ((k, r, out_features // k), r, True)]
        if hybrid_r:
            specs += [((in_features, hybrid_r), in_features, False), ((hybrid_r, out_features), hybrid_r, True)]
        specs = [(lead + shape, fan_in, is_b) for shape, fan_in, is_b in specs]
        with self._unlocked_tracker(), self._open_name_scope():
            return tuple(
                self._add_adapter_weight(variable_name(role, name), shape, fan_in, zero=is_b and config.init_weights)
                for role, (shape, fan_in, is_b) in zip(ROLES, specs)
            )

    @contextlib.contextmanager
    def _unlocked_tracker(self):
        # Keras locks a layer's state after build; adapting a built layer in
        # place (see `inject.py`) must add state all the same.
        locked = self._tracker.locked
        self._tracker.unlock()
        try:
            yield
        finally:
            if locked:
                self._tracker.lock()

    def _add_adapter_weight(self, name, shape, fan_in, zero):
        if zero:
            initializer = "zeros"
        else:
            bound = gralora_ops.kaiming_uniform_bound(fan_in)
            initializer = keras.initializers.RandomUniform(-bound, bound)
        return self.add_weight(name=name, shape=shape, initializer=initializer, dtype=ADAPTER_DTYPE, autocast=False)
