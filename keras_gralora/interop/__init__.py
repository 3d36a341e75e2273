"""Adapters from and to other libraries: PEFT adapter directories (`peft.py`) and the name tables (`names.py`)."""

from keras_gralora.interop.peft import load_peft_adapter, save_peft_adapter

__all__ = ["load_peft_adapter", "save_peft_adapter"]
