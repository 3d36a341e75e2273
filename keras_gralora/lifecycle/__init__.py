"""The adapter lifecycle across a model: activate, disable, delete, merge, unload, count.

Above model surgery, below files; see the architecture guide.
"""
