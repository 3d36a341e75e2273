"""Files: atomic writes, untrusted HDF5, the adapter file format, all-or-nothing loading, the merged export.

Above the adapter lifecycle, below serving and interop; see the architecture guide.
"""
