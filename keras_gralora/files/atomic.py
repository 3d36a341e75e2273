"""Writing a file or a directory so that a reader sees the old one or the new one, never a mix.

Every save of keras_gralora goes through here:

- `replacing_file(target)` yields a temporary path beside `target`; once the
  caller has written it, it is flushed and fsynced, renamed over `target`
  and the folder is fsynced. On any error (a full disk, a kill) `target`
  is untouched.
- `replacing_directory(target)` does the same for a directory: the new
  contents go into a temporary directory beside it (the old directory's
  other files are hard-linked in), which is then swapped with the old one
  in one step (Linux `renameat2(RENAME_EXCHANGE)`).
- New files and directories get the mode the umask gives (as `open` and
  Keras' own saves do); a replaced one keeps its mode and its owner (a
  process that may not give it that owner refuses before writing).
- A target that is a symbolic link is written where the link points; the
  link stays. A directory target that is a file is refused.
- Temporary names are `.<name>.keras_gralora-tmp-<pid>-<random>`; those
  left by a process that no longer runs (a killed save) are removed by the
  next save of the same target.
- An `OSError` names the user's path, never a temporary one.
- Under several processes (multi-host jax), process 0 writes; the others
  wait until it is in place (`one_writer.py`).
"""

import contextlib
import ctypes
import ctypes.util
import errno
import os
import secrets
import shutil
import stat

from keras_gralora.files.one_writer import one_writer, scratch

TMP_MARK = ".keras_gralora-tmp-"
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def temp_path(target, suffix=""):
    """A fresh temporary path beside `target`, tagged with this process's id, ending in `suffix`."""
    folder, name = os.path.split(os.path.abspath(target))
    return os.path.join(folder, f".{name}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}{suffix}")


def remove_stale_temps(target):
    """Removes the temporary files of `target` whose writing process is gone."""
    folder, name = os.path.split(os.path.abspath(target))
    prefix = f".{name}{TMP_MARK}"
    with contextlib.suppress(OSError):
        for entry in os.listdir(folder):
            pid = entry[len(prefix) :].split("-", 1)[0] if entry.startswith(prefix) else ""
            if pid.isdigit() and not _running(int(pid)):
                _remove(os.path.join(folder, entry))


def _running(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_apart(source, target, where):
    """Raises `ValueError` when directory `target` is `source`, holds it or lies inside it (links resolved)."""
    source_path, target_path = os.path.realpath(source), os.path.realpath(target)
    if os.path.commonpath([source_path, target_path]) in (source_path, target_path):
        raise ValueError(
            f"{where}: the output '{os.fspath(target)}' is, holds or lies inside the input '{os.fspath(source)}' "
            f"({target_path} and {source_path}); writing it would replace what is being read. Write elsewhere."
        )


def check_directory_target(target, where):
    """Where a directory `target` is written (`_resolved`); `NotADirectoryError` if a file is in the way."""
    target = _resolved(os.fspath(target))
    if os.path.lexists(target) and not os.path.isdir(target):
        raise NotADirectoryError(
            errno.ENOTDIR,
            f"{where}: cannot write the directory '{target}': a file of that name exists. Name another "
            "directory, or remove the file first",
        )
    return target


def _resolved(target):
    """Where writing `target` goes: a symbolic link's destination (the link itself is kept)."""
    return os.path.realpath(target) if os.path.islink(target) else target


@contextlib.contextmanager
def replacing_file(target, where, suffix=""):
    """Yields a temporary path (ending in `suffix`) for the new `target`; put in place only if the block succeeds."""
    with one_writer(target, where) as writes:
        if not writes:
            with scratch() as folder:
                yield os.path.join(folder, "file" + suffix)
            return
        with _replacing_file(target, where, suffix) as tmp:
            yield tmp


@contextlib.contextmanager
def _replacing_file(target, where, suffix):
    target = _resolved(os.fspath(target))
    folder = _existing_folder(target, where)
    remove_stale_temps(target)
    tmp = temp_path(target, suffix)
    try:
        with naming_errors(target, where):
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the umask applies
            keep_mode_and_owner(target, tmp, where)
        yield tmp
        with naming_errors(target, where):
            _fsync_path(tmp)
            os.replace(tmp, target)
            _fsync_path(folder)
    finally:
        _remove(tmp)


def write_bytes(target, data, where):
    """Writes `data` to `target` atomically (see `replacing_file`)."""
    with replacing_file(target, where) as tmp, naming_errors(target, where):
        with open(tmp, "wb") as f:
            f.write(data)


@contextlib.contextmanager
def replacing_directory(target, where, owned):
    """Yields a temporary directory holding the old `target`'s files except `owned`; swaps it in on success.

    The caller writes its files (`owned` names) into the yielded directory; an owned name it does not write
    (a file an earlier save wrote, such as `adapter.gguf`) is gone from the new directory.
    """
    with one_writer(target, where) as writes:
        if not writes:
            with scratch() as folder:
                yield folder
            return
        with _replacing_directory(target, where, owned) as tmp:
            yield tmp


@contextlib.contextmanager
def _replacing_directory(target, where, owned):
    target = check_directory_target(target, where)
    folder = _existing_folder(target, where)
    remove_stale_temps(target)
    tmp = temp_path(target)
    try:
        with naming_errors(target, where):
            _copy_others(target, tmp, owned)
            keep_mode_and_owner(target, tmp, where)
        yield tmp
        with naming_errors(target, where):
            for name in owned:  # the caller's files; an owned name it did not write is absent from the new one
                if os.path.exists(os.path.join(tmp, name)):
                    _fsync_path(os.path.join(tmp, name))
            _fsync_path(tmp)
            if os.path.isdir(target):
                _swap_or_replace_files(tmp, target, owned)
            else:
                os.rename(tmp, target)
            _fsync_path(folder)
    finally:
        _remove(tmp)


def _copy_others(target, tmp, owned):
    if os.path.isdir(target):
        shutil.copytree(
            target,
            tmp,
            symlinks=True,
            copy_function=os.link,
            ignore=lambda folder, names: [n for n in names if folder == target and n in owned],
        )
    else:
        os.mkdir(tmp, 0o777)  # the umask applies


def _swap_or_replace_files(tmp, target, owned):
    """Swaps `tmp` and `target` in one step; where the system cannot, replaces `owned` one by one, in order."""
    if _exchange(tmp, target):
        return
    for name in owned:  # not atomic as a whole: readers detect a mix (the weights record the config's hash)
        if os.path.exists(os.path.join(tmp, name)):
            os.replace(os.path.join(tmp, name), os.path.join(target, name))
        else:
            _remove(os.path.join(target, name))


def _exchange(a, b):
    libc_name = ctypes.util.find_library("c")
    renameat2 = getattr(ctypes.CDLL(libc_name, use_errno=True), "renameat2", None) if libc_name else None
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code))


def _existing_folder(target, where):
    folder = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"{where}: cannot save '{target}': the folder '{folder}' does not exist. Create it first."
        )
    return folder


def keep_mode_and_owner(target, tmp, where):
    """Gives `tmp` the mode and owner of `target`, where `target` exists; `PermissionError` if the owner cannot be."""
    try:
        status = os.stat(target)
    except FileNotFoundError:
        return
    now = os.stat(tmp)
    if (now.st_uid, now.st_gid) != (status.st_uid, status.st_gid):
        try:
            os.chown(tmp, status.st_uid, status.st_gid)
        except PermissionError:
            error = PermissionError(
                errno.EPERM,
                f"{where}: cannot replace '{target}' keeping its owner (user {status.st_uid}, group "
                f"{status.st_gid}): this process (user {os.getuid()}) may not give files that owner. Run as that "
                "user, or move the old one away first; nothing was written",
            )
            error._gralora_named = True
            raise error from None
    os.chmod(tmp, stat.S_IMODE(status.st_mode))


def _fsync_path(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def naming_errors(target, where):
    """Re-raises an `OSError` about a temporary path as one about `target`."""
    try:
        yield
    except OSError as error:
        if getattr(error, "_gralora_named", False):
            raise
        named = OSError(error.errno, f"{where}: cannot write '{target}': {error.strerror or error}")
        named._gralora_named = True
        raise named from error


def _remove(path):
    """Removes a temporary path if it exists (best effort: an error here must not hide the save's own)."""
    if not os.path.lexists(path):
        return
    with contextlib.suppress(OSError):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
