"""The package version, as the User-Agent reports it."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("offload-client")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

USER_AGENT = f"offload-client/{__version__}"
