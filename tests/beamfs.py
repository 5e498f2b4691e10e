"""A Beam filesystem that is not local to fsmigrate: `fsmtest://NAME` is a URL, read and
written only through Beam's FileSystems (as gs:// is on Dataflow), kept in the local
directory FSMIGRATE_TEST_FS_ROOT so that it outlives a process killed in a test.

Importing this module registers the scheme (Beam finds FileSystem subclasses)."""

from __future__ import annotations

import os
from typing import Any

from apache_beam.io.filesystem import FileMetadata, FileSystem
from apache_beam.io.localfilesystem import LocalFileSystem

SCHEME = "fsmtest"
PREFIX = f"{SCHEME}://"


def root() -> str:
    return os.environ["FSMIGRATE_TEST_FS_ROOT"]


def local(url: str) -> str:
    assert url.startswith(PREFIX), url
    return os.path.join(root(), url[len(PREFIX) :])


def url(path: str) -> str:
    return PREFIX + os.path.relpath(path, root())


class RootedFileSystem(FileSystem):
    """`fsmtest://a/b` is `$FSMIGRATE_TEST_FS_ROOT/a/b`."""

    def __init__(self, pipeline_options: Any = None) -> None:
        super().__init__(pipeline_options)
        self._fs = LocalFileSystem(pipeline_options)

    @classmethod
    def scheme(cls) -> str:
        return SCHEME

    def join(self, basepath: str, *paths: str) -> str:
        return "/".join([basepath.rstrip("/"), *paths])

    def split(self, path: str) -> tuple[str, str]:
        head, _, tail = path.rstrip("/").rpartition("/")
        return head, tail

    def mkdirs(self, path: str) -> None:
        self._fs.mkdirs(local(path))

    def has_dirs(self) -> bool:
        return True

    def _list(self, dir_or_prefix: str) -> Any:
        for meta in self._fs._list(local(dir_or_prefix)):
            yield FileMetadata(url(meta.path), meta.size_in_bytes, meta.last_updated_in_seconds)

    def create(self, path: str, *args: Any, **kwargs: Any) -> Any:
        os.makedirs(os.path.dirname(local(path)), exist_ok=True)
        return self._fs.create(local(path), *args, **kwargs)

    def open(self, path: str, *args: Any, **kwargs: Any) -> Any:
        return self._fs.open(local(path), *args, **kwargs)

    def copy(self, source: list[str], destination: list[str]) -> None:
        self._fs.copy([local(p) for p in source], [local(p) for p in destination])

    def rename(self, source: list[str], destination: list[str]) -> None:
        self._fs.rename([local(p) for p in source], [local(p) for p in destination])

    def exists(self, path: str) -> bool:
        return self._fs.exists(local(path))

    def size(self, path: str) -> int:
        return self._fs.size(local(path))

    def last_updated(self, path: str) -> float:
        return self._fs.last_updated(local(path))

    def checksum(self, path: str) -> str:
        return self._fs.checksum(local(path))

    def metadata(self, path: str) -> FileMetadata:
        meta = self._fs.metadata(local(path))
        return FileMetadata(path, meta.size_in_bytes, meta.last_updated_in_seconds)

    def delete(self, paths: list[str]) -> None:
        self._fs.delete([local(p) for p in paths])
