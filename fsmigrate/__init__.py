"""fsmigrate: versioned, forward-only, audited migrations for Google Cloud Firestore."""

from importlib import metadata

try:  # the version is written once, in pyproject.toml
    __version__ = metadata.version("fsmigrate")
except metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
