"""An HDF5 file may hold its own data only: no links, external storage or virtual datasets.

HDF5 can point outside the file (external and soft links, datasets stored
in external raw files, virtual datasets gathering other files), so opening
an untrusted file and reading it could read other files of this machine.
Our readers refuse such a file before reading anything from it.
"""

import h5py


def check_self_contained(group, refused):
    """Raises `ValueError` (starting with `refused`) at the first object of `group` stored outside it."""
    for name in group:
        link = group.get(name, getlink=True)
        path = f"{group.name.rstrip('/')}/{name}"
        if not isinstance(link, h5py.HardLink):
            raise ValueError(
                f"{refused}: '{path}' is a {type(link).__name__}; an adapter file holds its own data only "
                "(links could read other files of this machine)."
            )
        obj = group[name]
        if isinstance(obj, h5py.Group):
            check_self_contained(obj, refused)
        elif obj.is_virtual or obj.id.get_create_plist().get_external_count():
            kind = "a virtual dataset" if obj.is_virtual else "stored in external files"
            raise ValueError(
                f"{refused}: dataset '{path}' is {kind}; an adapter file holds its own data only (this could "
                "read other files of this machine)."
            )
