"""Turning a built Keras layer into its GraLoRA variant and back, keeping the object (and so the model's graph).

The one place the package changes a layer's class: Keras' functional models
hold their layers by identity, so a replacement object would leave the graph
calling the old one. The variants subclass the Keras class and add no
weights of the base's, so the object stays a `Dense`/`EinsumDense` to Keras.
A layer holding expert weights likewise becomes `GraLoRA<its class>`
(`expert_hosts.py`), which reads its adapted weights in `call`.
"""

from keras_gralora.layers import expert_hosts, experts
from keras_gralora.layers.kinds import ADAPTED_CLASS, BASE_CLASS
from keras_gralora.layers.quantized import rebind_quantize


def adapt_in_place(layer, name, config):
    """Turns a built Dense/EinsumDense into its GraLoRA variant, keeping the object; returns the adapted layer.

    An expert weight (`experts.ExpertWeight`, or a holder a rollback detached) gets its adapter layer attached.
    """
    if isinstance(layer, (experts.ExpertWeight, experts.GraLoRAExpertWeights)):
        return expert_hosts.attach(layer, name, config)
    layer.__class__ = ADAPTED_CLASS[type(layer)]
    rebind_quantize(layer)
    layer._init_gralora(config, name)
    layer._build_gralora()
    return layer


def unadapt_in_place(layer):
    """Turns a GraLoRA layer without adapters back into its plain Keras class (an expert weight's: detached)."""
    if isinstance(layer, experts.GraLoRAExpertWeights):
        expert_hosts.detach(layer)
        return
    if layer._gralora_seed is not None:
        layer._tracker.untrack(layer._gralora_seed)
    del layer._gralora, layer._gralora_seed
    layer.__class__ = BASE_CLASS[type(layer)]
    rebind_quantize(layer)  # its class changed: `guards.traced_state` sees it
