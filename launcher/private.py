"""Files only the deployment's owner may read: the state directory, engine logs, secrets.

Why: engine logs hold prompts and the deployment secret lets anyone drive the engines, so both live under
the deployment's state directory, created 0700, each file 0600. Every open uses O_NOFOLLOW, so a symlink
planted at a predictable name (the old shared /tmp/hexgen2-logs) cannot redirect a write or a read.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from launcher.errors import LaunchError

DIR_MODE = 0o700
FILE_MODE = 0o600
SECRET_BYTES = 32


def private_dir(path: Path) -> Path:
    """Create `path` (and parents) with mode 0700; refuse a symlink or a directory others can enter."""
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise LaunchError(f"{path}: expected a directory, found a symlink or a file; refusing to use it.")
    if info.st_uid != os.getuid():
        raise LaunchError(f"{path}: the directory belongs to another user (uid {info.st_uid}); refusing to use it.")
    if info.st_mode & 0o077:
        os.chmod(path, DIR_MODE)
    return path


def open_append(path: Path) -> int:
    """A file descriptor appending to `path` (created 0600), never through a symlink."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(path, flags, FILE_MODE)
    except OSError as exc:
        raise LaunchError(f"{path}: cannot open for writing ({exc.strerror}).") from None


def read_tail(path: Path, max_bytes: int) -> str:
    """The last `max_bytes` of a file, not following symlinks; "" when it does not exist."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return ""
    with os.fdopen(fd, "rb") as file:
        size = os.fstat(fd).st_size
        file.seek(max(0, size - max_bytes))
        return file.read().decode("utf-8", "replace")


def new_secret() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


def write_secret(path: Path, value: str) -> None:
    """Write a secret 0600, replacing an older one only if it is a regular file we own."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, FILE_MODE)
    except OSError as exc:
        raise LaunchError(f"{path}: cannot write the secret ({exc.strerror}).") from None
    with os.fdopen(fd, "w") as file:
        os.fchmod(fd, FILE_MODE)
        file.write(value + "\n")


def read_secret(path: Path) -> str:
    """A secret written by `write_secret`; refuse a symlink, an empty file, or one others can read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise LaunchError(f"{path}: cannot read the secret ({exc.strerror}).") from None
    with os.fdopen(fd) as file:
        if os.fstat(fd).st_mode & 0o077:
            raise LaunchError(f"{path}: the secret is readable by other users; chmod 600 it.")
        value = file.read(4096).strip()
    if not value:
        raise LaunchError(f"{path}: the secret file is empty.")
    return value
