"""What a Beam run stages for workers that have only what was staged (Dataflow).

A Dataflow worker starts from Beam's SDK container: Python and apache-beam, nothing of
the machine that launched the job. It installs the packages the job staged
(`--extra_package`: pip installs each with its dependencies) and unpickles the pipeline.
The pipeline carries the migration script's source and the run's settings
(`pipeline.WorkerSpec`); what the workers still need is fsmigrate itself, which the
script and the DoFns import.

So a run on any runner but the local DirectRunner (whose workers share this process's
environment) stages fsmigrate: `wheel` packs the fsmigrate that is running here (its
package files as installed, editable or not, with its distribution's metadata: version,
dependencies, entry points) into a wheel in a temporary directory, and `options` adds it
to the pipeline's `extra_packages`, after any the user gave. Nothing for the user to
write (no setup.py, no requirements file). The wheel is the same bytes for the same
files, so a test can install exactly what a run stages.
"""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

from fsmigrate.errors import UsageError
from fsmigrate.files import private_file

DISTRIBUTION = "fsmigrate"
LOCAL_RUNNERS = ("directrunner", "direct", "")
REMOTE_RUNNERS = ("dataflowrunner", "dataflow")
# what the dist-info of a wheel holds (the installer's own files are not copied)
DIST_INFO = ("entry_points.txt", "top_level.txt")
_WHEEL = "Wheel-Version: 1.0\nGenerator: fsmigrate\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
_EPOCH = (1980, 1, 1, 0, 0, 0)  # zip's earliest time: the same bytes for the same files


def needed(options: dict[str, str]) -> bool:
    """Whether a pipeline run with `options` has workers outside this environment: any
    runner but the DirectRunner."""
    runner = options.get("runner", "").strip().lower()
    return runner.rsplit(".", 1)[-1] not in LOCAL_RUNNERS


def remote(options: dict[str, str]) -> bool:
    """Whether the workers of a pipeline run with `options` run on other machines (Dataflow),
    where a journal must be in an object store they and this machine share."""
    runner = options.get("runner", "").strip().lower()
    return runner.rsplit(".", 1)[-1] in REMOTE_RUNNERS


def package_dir() -> Path:
    import fsmigrate

    return Path(fsmigrate.__file__).resolve().parent


def _package_files(root: Path) -> Iterator[tuple[str, Path]]:
    """(name in the wheel, file) of every file of the package, compiled files aside."""
    for path in sorted(root.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo"):
            continue
        yield f"{root.name}/{path.relative_to(root).as_posix()}", path


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def wheel(directory: Path) -> Path:
    """Pack the running fsmigrate into `directory` as `fsmigrate-VERSION-py3-none-any.whl`
    (a pure-Python wheel: the package's files, its METADATA with its dependencies, its
    entry points, a RECORD of hashes) and return its path."""
    dist = metadata.distribution(DISTRIBUTION)
    version = dist.version
    info = f"{DISTRIBUTION}-{version}.dist-info"
    entries: list[tuple[str, bytes]] = [
        (name, path.read_bytes()) for name, path in _package_files(package_dir())
    ]
    # (a source tree's `.egg-info` names the same metadata PKG-INFO)
    found = dist.read_text("METADATA") or dist.read_text("PKG-INFO")
    if not found:
        raise UsageError(f"staging for Beam's workers: {DISTRIBUTION}'s metadata is missing")
    entries.append((f"{info}/METADATA", found.encode()))
    for name in DIST_INFO:
        text = dist.read_text(name)
        if text is not None:
            entries.append((f"{info}/{name}", text.encode()))
    entries.append((f"{info}/WHEEL", _WHEEL.encode()))
    record = [_record_line(name, data) for name, data in entries] + [f"{info}/RECORD,,"]
    entries.append((f"{info}/RECORD", ("\n".join(record) + "\n").encode()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            item = zipfile.ZipInfo(name, _EPOCH)
            item.external_attr = 0o644 << 16
            item.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(item, data)
    path = Path(directory) / f"{DISTRIBUTION}-{version}-py3-none-any.whl"
    with private_file(path, "wb") as fh:
        fh.write(buffer.getvalue())
    return path
