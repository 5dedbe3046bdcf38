"""A drop folder and its subfolders, handled without ever following a symbolic link.

Whoever can write in a drop folder must not make the engine read, write or move anything outside it.
The folder is opened once (its configured path may be a link: that is the operator's choice); every
operation after that goes through directory descriptors (`*at` calls): a subfolder is opened with
O_NOFOLLOW | O_DIRECTORY each time (a link or a file put in its place is an error, not a detour),
files are read with O_NOFOLLOW and must be regular files, outputs are created with O_EXCL | O_NOFOLLOW,
and moves never replace what is at the target (a planted link there stays untouched).

Names are kept within the 255 bytes a directory entry can hold: an output named after a long input
name (`<name>.rejects.csv`) is shortened, with a hash of the full name to keep it unique.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["DropDir", "NotRegular", "fit"]

_NAME_MAX = 255
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class NotRegular(OSError):
    """A name that is a link, a folder, a pipe or a device where a regular file was expected."""


def fit(name: str, suffix: str = "") -> str:
    """`name + suffix`, shortened to fit a directory entry (255 bytes) when it would not."""
    whole = (name + suffix).encode("utf-8", "surrogateescape")
    if len(whole) <= _NAME_MAX:
        return name + suffix
    tag = "~" + hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    room = _NAME_MAX - len((tag + suffix).encode())
    head = name.encode("utf-8", "surrogateescape")[:room].decode("utf-8", "ignore")
    return head + tag + suffix


def _variant(name: str, n: int) -> str:
    """results.csv → results.2.csv (a name that is free in the target folder)."""
    stem, dot, ext = name.rpartition(".")
    return fit(f"{stem}.{n}", f".{ext}") if dot and stem else fit(name, f".{n}")


def kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


class DropDir:
    """`folder` with its `subfolders`, made if missing; they must be real folders, not links."""

    def __init__(self, folder: Path, subfolders: tuple[str, ...] = ("processing", "done", "failed")) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        for sub in subfolders:
            with contextlib.suppress(FileExistsError):
                os.mkdir(sub, 0o750, dir_fd=self.fd)
            os.close(self.sub(sub))  # a link or a file in its place fails here, at start

    def close(self) -> None:
        os.close(self.fd)

    def sub(self, name: str | None) -> int:
        """A new descriptor of subfolder `name` (None: the folder itself), refusing a link."""
        if name is None:
            return os.dup(self.fd)
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise NotRegular(exc.errno, f"{name}/ is not a folder (a link?): nothing is moved there") from exc
            raise

    def _at(self, sub: str | None) -> _Fd:
        return _Fd(self.sub(sub))

    def entries(self, sub: str | None, pattern: str) -> Iterator[tuple[str, os.stat_result]]:
        """(name, lstat) of the entries matching `pattern`, sorted; hidden ones (.name) left out."""
        with self._at(sub) as fd:
            names = sorted(e.name for e in os.scandir(fd) if not e.name.startswith(".")
                           and fnmatch.fnmatchcase(e.name, pattern))
            for name in names:
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                yield name, st

    def stat(self, sub: str | None, name: str) -> os.stat_result | None:
        """lstat of `name`, or None when there is none (or the name cannot exist: too long)."""
        with self._at(sub) as fd:
            try:
                return os.stat(name, dir_fd=fd, follow_symlinks=False)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ENAMETOOLONG, errno.ENOTDIR):
                    return None
                raise

    def open_read(self, sub: str | None, name: str) -> BinaryIO:
        """A regular file, for reading; a link or anything else is NotRegular."""
        with self._at(sub) as fd:
            try:
                f = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fd)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise NotRegular(exc.errno, "a symbolic link: not followed") from exc
                raise
        st = os.fstat(f)
        if not stat.S_ISREG(st.st_mode):
            os.close(f)
            raise NotRegular(errno.EINVAL, f"{kind(st.st_mode)}: not read")
        return os.fdopen(f, "rb")

    def create(self, sub: str | None, name: str, *, replace_link: bool = False) -> BinaryIO:
        """A new file, created exclusively (never through a link, never over an existing file)."""
        with self._at(sub) as fd:
            if replace_link:  # our own work file's name: whatever is there is not ours to keep
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=fd)
            f = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640, dir_fd=fd)
        return os.fdopen(f, "r+b")

    def reopen(self, sub: str | None, name: str) -> BinaryIO:
        """Our own work file again (a resumed file's rejects): a regular file with one link, else NotRegular."""
        with self._at(sub) as fd:
            try:
                f = os.open(name, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise NotRegular(exc.errno, "a symbolic link") from exc
                raise
        st = os.fstat(f)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            os.close(f)
            raise NotRegular(errno.EINVAL, "not our work file")
        return os.fdopen(f, "r+b")

    def create_free(self, sub: str, name: str) -> tuple[BinaryIO, str]:
        """`create` under `name`, or the first free variant of it (results.2.csv …)."""
        for n in range(1, 1000):
            candidate = name if n == 1 else _variant(name, n)
            try:
                return self.create(sub, candidate), candidate
            except FileExistsError:
                continue
        raise FileExistsError(errno.EEXIST, "no free name")

    def move(self, src_sub: str | None, name: str, dst_sub: str | None, target: str | None = None, *,
             any_free: bool = True) -> str | None:
        """Move `name` (whatever it is: a link moves as the link) without replacing anything at the target;
        the name it got (a free variant when taken and `any_free`), or None when the target was taken."""
        target = target or name
        with self._at(src_sub) as src, self._at(dst_sub) as dst:
            for n in range(1, 1000 if any_free else 2):
                candidate = target if n == 1 else _variant(target, n)
                try:
                    os.link(name, candidate, src_dir_fd=src, dst_dir_fd=dst, follow_symlinks=False)
                except FileExistsError:
                    continue
                except OSError as exc:
                    if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                        raise
                    # no hard links here (some network shares): a rename, after checking the target is free
                    try:
                        os.stat(candidate, dir_fd=dst, follow_symlinks=False)
                        continue
                    except FileNotFoundError:
                        os.rename(name, candidate, src_dir_fd=src, dst_dir_fd=dst)
                        return candidate
                os.unlink(name, dir_fd=src)
                return candidate
        return None

    def unlink(self, sub: str | None, name: str) -> None:
        with self._at(sub) as fd, contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=fd)

    def write_new(self, sub: str, name: str, data: bytes) -> str:
        fh, got = self.create_free(sub, name)
        with fh:
            fh.write(data)
        return got


class _Fd:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __enter__(self) -> int:
        return self.fd

    def __exit__(self, *_: object) -> None:
        os.close(self.fd)
