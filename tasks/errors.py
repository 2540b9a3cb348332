"""One exception hierarchy for compatbuild, each class with a stable exit code.

The invoke layer turns any :class:`CompatError` into ``invoke.Exit(message, code)``,
so a user error is one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations


class CompatError(Exception):
    """Base of every error compatbuild reports to a user."""

    exit_code = 1


class LockfileError(CompatError):
    """The lockfile is missing, malformed, or fails validation."""

    exit_code = 2


class DownloadError(CompatError):
    """A fetch failed: HTTP status, connection, truncated body, disk."""

    exit_code = 3


class HashMismatch(CompatError):
    """Bytes on disk do not match the sha256 the lockfile pins."""

    exit_code = 4


class SignatureError(CompatError):
    """A signature is missing, bad, or made by a key the lockfile does not pin."""

    exit_code = 5


class DockerError(CompatError):
    """The Docker daemon is unreachable or an image operation failed."""

    exit_code = 6


class StageBuildError(CompatError):
    """An image stage failed to build."""

    exit_code = 7


class CrateError(CompatError):
    """The crate path is unusable: missing, no Cargo.toml, no cdylib target."""

    exit_code = 8


class CargoError(CompatError):
    """cargo failed inside the builder image."""

    exit_code = 9


class AuditError(CompatError):
    """A library needs more than the target glibc, or has a bad dynamic section."""

    exit_code = 10


class SmokeError(CompatError):
    """The harness could not dlopen a library or call its symbol."""

    exit_code = 11


class OutputError(CompatError):
    """An output path is unusable: it exists and compatbuild did not make it, or cannot be written."""

    exit_code = 12


class ProfileError(CompatError):
    """A test-profile input could not be made (missing tool, failed debootstrap, bad toolchain)."""

    exit_code = 20
