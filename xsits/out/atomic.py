"""Atomic writes: a file or directory appears under its final name only once complete.

:func:`atomic_path` yields a hidden temporary path next to the destination and moves it
there at the end (``os.link`` / ``os.replace`` / ``os.rename``), so a crash never leaves a
half-written output under the final name; any exception removes the temporary.
:func:`ensure_dir` creates an output directory, refusing one that is (or lies under) an
existing file before anything is read.

Owns: the temporary name, the commit (never clobbering without ``overwrite``; a directory
swapped in place), the cleanup, and :class:`~xsits.errors.OutputDirError` /
:class:`~xsits.errors.OutputExistsError` of outputs.
Must not: know formats or encodings (:mod:`xsits.out.export`).

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> final = Path(tempfile.mkdtemp()) / "sub" / "a.txt"
>>> with atomic_path(final) as tmp:
...     _ = tmp.write_text("hello")
>>> final.read_text()
'hello'
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from xsits.errors import OutputDirError, OutputExistsError

__all__ = ["atomic_path", "ensure_dir"]


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _exists_error(path: Path) -> OutputExistsError:
    return OutputExistsError(f"{path} already exists; pass overwrite=True to replace it")


def _commit(tmp: Path, path: Path, overwrite: bool) -> None:
    """Move the finished ``tmp`` to ``path`` (never clobbering unless ``overwrite``)."""
    if not overwrite:
        if tmp.is_dir():
            if path.exists() or path.is_symlink():
                raise _exists_error(path)
            os.rename(tmp, path)  # fails on an existing non-empty directory
            return
        try:
            os.link(tmp, path)  # atomic "create if absent"
        except FileExistsError:
            raise _exists_error(path) from None
        except OSError:  # no hard links on this file system
            if path.exists():
                raise _exists_error(path) from None
            os.replace(tmp, path)
            return
        tmp.unlink()
        return
    swap = (path.is_dir() and not path.is_symlink()) or (tmp.is_dir() and path.exists())
    if not swap:
        os.replace(tmp, path)
        return
    old = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.old")
    os.rename(path, old)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.rename(old, path)
        raise
    _remove(old)


def ensure_dir(path: str | os.PathLike) -> Path:
    """Create the output directory ``path`` (and its parents) unless it exists; return it.

    Raises
    ------
    OutputDirError
        ``path`` or one of its parents is an existing file (checked before anything is read
        or written).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> base = Path(tempfile.mkdtemp())
    >>> ensure_dir(base / "a" / "b").is_dir()
    True
    >>> _ = (base / "f").write_text("x")
    >>> ensure_dir(base / "f" / "out")
    Traceback (most recent call last):
    ...
    xsits.errors.OutputDirError: output directory '.../f/out': '.../f' is an existing file; ...
    """
    path = Path(path).expanduser()
    for on_the_way in (path, *path.parents):
        if on_the_way.is_dir():
            break
        if on_the_way.exists() or on_the_way.is_symlink():
            raise OutputDirError(f"output directory '{path}': '{on_the_way}' is an existing file; "
                                 "choose another directory or remove the file")
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it to ``path``, else delete it.

    The temporary name is hidden, unique and keeps the suffix (``.f7.nc.1a2b3c4d.tmp.nc``),
    so writers that look at the suffix (ffmpeg, Pillow) still work. It may be a file or a
    directory (Zarr). Any exception, including ``KeyboardInterrupt``, removes it.

    Parameters
    ----------
    path
        Final path; its parent directory is created if needed.
    overwrite
        Replace an existing ``path``; if False, :class:`~xsits.errors.OutputExistsError` is
        raised before writing (and again, without clobbering, if it appeared meanwhile).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> final = Path(tempfile.mkdtemp()) / "a.txt"
    >>> with atomic_path(final) as tmp:
    ...     _ = tmp.write_text("hello")
    >>> final.read_text(), sorted(p.name for p in final.parent.iterdir())
    ('hello', ['a.txt'])
    """
    path = Path(path)
    ensure_dir(path.parent)
    if not overwrite and (path.exists() or path.is_symlink()):
        raise _exists_error(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
    try:
        yield tmp
        _commit(tmp, path, overwrite)
    except BaseException:
        _remove(tmp)
        raise
