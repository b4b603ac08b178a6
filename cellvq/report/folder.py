"""Write a folder atomically: build it in a temporary sibling folder, then rename it into place.

When the target already holds files that are not the folder's own (``owned``), say a run's database, those
are left alone and each new file is moved in by an atomic rename, ``last`` at the end; own files the new
build no longer has are removed. A failed build leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Collection
from pathlib import Path

__all__ = ["write_folder"]


def write_folder(out_dir: str | os.PathLike[str], build: Callable[[Path], None], *, owned: Collection[str],
                 last: str | None = None, flag: str = "--out") -> Path:
    """Call ``build(tmp)`` on a fresh temporary sibling of ``out_dir``, then move the result into place.

    ``owned``: the names the build may write (anything else in ``out_dir`` is foreign and kept). ``last``:
    the file moved in last when files are moved one by one (readers take it as the sign the folder is
    complete). ``flag``: the CLI option named when ``out_dir`` is a file.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"report folder {out_dir} exists and is a file; pass a folder path to {flag}")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the report folder is an ordinary folder
    try:
        build(tmp)
        _move_into_place(tmp, out_dir, owned, last)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _move_into_place(tmp: Path, out_dir: Path, owned: Collection[str], last: str | None) -> None:
    if not out_dir.exists():
        os.replace(tmp, out_dir)
    elif all(p.name in owned for p in out_dir.iterdir()):
        _swap_whole(tmp, out_dir)
    else:
        _move_files(tmp, out_dir, owned, last)


def _swap_whole(tmp: Path, out_dir: Path) -> None:
    """Only an older build inside: swap the whole folder, then drop the old one."""
    old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
    old.rmdir()
    os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)


def _move_files(tmp: Path, out_dir: Path, owned: Collection[str], last: str | None) -> None:
    """The folder holds other things: replace file by file (``last`` at the end), drop stale own files."""
    new = {p.name for p in tmp.iterdir()}
    for name in sorted(new, key=lambda n: n == last):
        os.replace(tmp / name, out_dir / name)
    for name in owned:
        if name not in new and (out_dir / name).exists():
            (out_dir / name).unlink()
