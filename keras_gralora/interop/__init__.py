"""Adapters from and to other libraries: PEFT directories (`peft.py`), exact LoRA (`lora.py`), their name tables.

Nothing is imported here, so the command line's numpy-only modules
(`convert.py`, `factors.py`, `lora_files.py`) load without Keras.
"""
