"""Specific, recordable errors. Every error names the file and the cause; a batch records it and goes on."""

from __future__ import annotations

from pathlib import Path


class DflabError(Exception):
    """Base class of dflab's own errors."""


class MediaError(DflabError):
    """A media file that cannot be used.

    Attributes:
        path: the file.
        cause: a short machine-readable cause, one of ``CAUSES``.
        detail: human-readable detail.
    """

    CAUSES = (
        "missing",
        "zero_bytes",
        "not_media",
        "truncated",
        "unsupported_codec",
        "too_large",
        "bad_dimensions",
        "no_frames",
        "decode_error",
        "unreadable",
    )

    def __init__(self, path: str | Path, cause: str, detail: str = "") -> None:
        if cause not in self.CAUSES:
            raise ValueError(f"unknown media error cause {cause!r}")
        self.path = str(path)
        self.cause = cause
        self.detail = detail
        super().__init__(f"{self.path}: {cause}" + (f" ({detail})" if detail else ""))

    def to_record(self) -> dict[str, str]:
        return {"path": self.path, "cause": self.cause, "detail": self.detail}


class NoFaceError(DflabError):
    """A frame or image in which the face detector found no face."""


class ConfigError(DflabError):
    """A configuration that is invalid (unknown key, wrong type, missing file)."""


class UnknownNameError(ConfigError, KeyError):
    """A name that no registry holds (detector, protocol, dataset, …). A ``KeyError`` too, for existing callers."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class CheckpointError(DflabError):
    """A checkpoint that cannot be loaded (missing card, unknown detector, missing/unexpected keys)."""


class ScoreError(DflabError):
    """A detector produced a non-finite score (NaN/inf) for a file: recorded as an error, never turned into a
    verdict (``NaN >= threshold`` is false, so a NaN would silently read as "real")."""
