"""Model surgery: which layers an adapter touches, adapting them in place, per-layer settings, one rollback helper.

Above `layers/`, below the adapter lifecycle; see the architecture guide.
"""
