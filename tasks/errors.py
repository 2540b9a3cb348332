"""One exception hierarchy for compatbuild, each class with a stable exit code.

The invoke layer turns any :class:`CompatError` into ``invoke.Exit(message, code)``,
so a user error is one line on stderr and a non-zero exit, never a traceback. Every class
lives here and has a code of its own (tests/test_errors.py checks both), so a script can
tell "the lockfile is wrong" from "a mirror is down". Raise a subclass, never CompatError
itself; exit code 1 is left for disk errors the task layer reports, 130 for an interrupt,
141 for a closed stdout (``| head -1``, ended quietly as SIGPIPE ends a C tool).
"""

from __future__ import annotations

import functools
import re


# Credentials a message may carry, each replaced by ***: the one redaction every message,
# error and log line of compatbuild passes through (CompatError applies it to itself).
# Compiled on the first redaction, not at import: `invoke --list` redacts nothing.
@functools.cache
def _secrets() -> tuple[tuple[re.Pattern[str], str], ...]:
    return (
        # user:password@ after a scheme, from scheme:// to the LAST '@' before the host (a password
        # may hold a raw '@', '#' or '?'); also scheme:/ (a URL given as a path, whose '//' Path ate)
        (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*:/+)[^/\s'\"<>]*@(?!sha256:)"), r"\1***@"),
        # user:password@registry/repo, with no scheme, to the last '@' (not name:tag@sha256:digest)
        (re.compile(r"(?<![\w./:@-])[\w.%+-]+:[^\s/'\"<>]+@(?!sha256:)(?=[\w\[])"), "***@"),
        # ?token=..., &password=... in a query
        (re.compile(r"(?i)([?&](?:token|access_token|password|passwd|secret|key|sig|signature)=)[^&#\s'\"]+"),
         r"\1***"),
        # password: x, "token": "x", 'password': 'x' (JSON, a Python repr, YAML): the quotes are kept
        (re.compile(r"""((?:auth|password|passwd|identitytoken|registrytoken|token)['"]?\s*[:=]\s*)(['"]?)"""
                    r"""[^\s"',}]+""", re.I), r"\1\2***"),
        (re.compile(r"(Basic|Bearer)\s+[A-Za-z0-9+/=._-]{8,}", re.I), r"\1 ***"),
    )


# Said where a first run offline ends (a base image it cannot pull, RPMs it cannot pin).
OFFLINE_HINT = "without the internet, `invoke test-profile` prepares a local stand-in to try every task with"


def redact(text: str) -> str:
    """``text`` with anything that looks like a credential replaced by ``***``."""
    for pattern, repl in _secrets():
        text = pattern.sub(repl, text)
    return text


class CompatError(Exception):
    """Base of every error compatbuild reports to a user; raise a subclass.

    Its message is redacted (:func:`redact`) when it is made, so no exit shows a credential.
    """

    exit_code = 1

    def __init__(self, *args: object) -> None:
        super().__init__(*(redact(a) if isinstance(a, str) else a for a in args))


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
    """An output is unusable: a path compatbuild did not make, an unwritable cache or output
    folder, or a last build whose record or libraries are gone."""

    exit_code = 12


class RpmError(CompatError):
    """Repository metadata is unusable, or a package requirement cannot be met."""

    exit_code = 13


class NotDownloaded(DownloadError):
    """A file the lockfile names is not in the cache yet: run `invoke download`."""

    exit_code = 14


class ConfigError(CompatError):
    """A setting (invoke.yaml, INVOKE_COMPATBUILD_* env) or a flag is unknown or ill-typed."""

    exit_code = 15


class PinError(CompatError):
    """A new pin cannot be made: an unknown version, or a manifest that does not offer it."""

    exit_code = 16


class SysrootError(CompatError):
    """A sysroot cannot be made or used: an unsafe, corrupt or unsupported archive, or no loader."""

    exit_code = 17


class ToolError(CompatError):
    """A program compatbuild runs on the host (gpg) is missing or cannot start."""

    exit_code = 18


class FixupError(CompatError):
    """The weak-version fix-up cannot edit a file: not an x86_64 or aarch64 ELF shared object, or unreadable."""

    exit_code = 19


class ProfileError(CompatError):
    """A test-profile input could not be made (missing tool, failed debootstrap, bad toolchain)."""

    exit_code = 20


class SizeError(DownloadError):
    """A download is larger than the lockfile's pinned size or the cap for an unpinned file,
    or a file:// URL names something that is not a regular file of bounded size."""

    exit_code = 21


class LockTimeout(CompatError):
    """Another process held a download's lock for longer than this one waits for it."""

    exit_code = 22


class RpmUnsigned(SignatureError):
    """A pinned RPM carries no OpenPGP signature over its header (tasks/inputs/rpmsig.py)."""

    exit_code = 30


class RpmSignerError(SignatureError):
    """A pinned RPM is signed, but not by the fingerprint its target's rpm_key pins."""

    exit_code = 31


class RpmTampered(SignatureError):
    """A pinned RPM's signature or payload digest does not match its bytes: it was altered."""

    exit_code = 32


class RpmFormatError(SignatureError):
    """A pinned file is not a readable RPM (lead, signature header or header is corrupt)."""

    exit_code = 33


class ZigError(CompatError):
    """The zig backend's tools (cargo-zigbuild, zig) in the cache are missing or corrupt."""

    exit_code = 35


class ZigTargetError(CompatError):
    """The pinned zig cannot target the lockfile target's glibc (or it is below Rust std's floor)."""

    exit_code = 36


class RustStdError(CompatError):
    """The host's Rust toolchain has no std for the target triple (rustup target add)."""

    exit_code = 37


class CrossCompileError(CompatError):
    """A crate compiles C for another arch, which the docker backend's cross-link route cannot
    (no C cross compiler in the builder image); the zig backend can."""

    exit_code = 38


class RegistryImageRefused(CompatError):
    """A stage image pulled from a registry does not carry the labels of the stage's inputs."""

    exit_code = 40


class RegistryTagMoved(CompatError):
    """A registry tag now names another image than the one first pulled (the local index's)."""

    exit_code = 41


class RegistryError(CompatError):
    """A registry cannot be used: a bad name, unreachable, credentials refused, a push failed."""

    exit_code = 42


class TransportError(CompatError):
    """Files cannot be sent to, or brought back from, a Docker daemon that cannot see this machine."""

    exit_code = 43
