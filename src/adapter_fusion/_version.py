"""The installed version of adapter-fusion, read from the package metadata (pyproject.toml is the one source).

A leaf module: configs, manifests and saved files record the version without importing the package root (which
imports everything, training included)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("adapter-fusion")
except PackageNotFoundError:  # a source checkout on the path, not installed
    __version__ = "0+unknown"
