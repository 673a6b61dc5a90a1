"""Resume for ``dflab scan``: a killed scan of a large folder goes on where it stopped.

Each file's record is appended to ``OUT/.scan_journal.jsonl`` (one JSON line, flushed and fsynced) the moment the
file is done. A rerun with the same ``--out``, detectors and options takes the records of the files that have not
changed since (same path, size and modification time) from the journal and scans only the others, so no file is
scanned twice and none appears twice in the report. Error records are not reused (a missing file may have come
back; they cost little to redo). The journal is deleted once the reports are written: the report is then the record.
A line cut short by the kill is dropped on the next start.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

JOURNAL_NAME = ".scan_journal.jsonl"


def fingerprint(detectors: Sequence[str | None], names: Sequence[str], opts: Any) -> str:
    """What a reused record must have been scanned with: checkpoints (path and modification time), detector names,
    and every scan option."""
    ckpts = [[d, os.stat(d).st_mtime_ns if d and os.path.exists(d) else None] for d in detectors]
    return json.dumps({"detectors": ckpts, "names": list(names), "options": asdict(opts)}, sort_keys=True, default=str)


def _file_key(path: Path) -> list[Any] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [str(path), st.st_size, st.st_mtime_ns]


class ScanJournal:
    """The finished records of an interrupted scan, and the file the running scan appends its records to.

    Args:
        out: the report folder (created).
        settings: :func:`fingerprint` of this run; a journal written with other settings is discarded.
    """

    def __init__(self, out: Path, settings: str) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.path = out / JOURNAL_NAME
        self.settings = settings
        self.discarded = False
        self._done: dict[str, tuple[list[Any], dict[str, Any]]] = {}
        lines = self.path.read_text(encoding="utf-8").splitlines() if self.path.exists() else []
        entries = []
        for line in lines:
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:  # the line being written when the scan was killed
                continue
        if entries and entries[0].get("settings") == settings:
            for e in entries[1:]:
                if isinstance(e, dict) and {"key", "record"} <= set(e):
                    self._done[e["key"][0]] = (e["key"], e["record"])
        else:
            self.discarded = bool(entries)
        # rewritten whole (valid lines only) before appending: a torn last line must not swallow the next record
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(json.dumps({"settings": settings}) + "\n")
            for key, record in self._done.values():
                fh.write(json.dumps({"key": key, "record": record}) + "\n")
        os.replace(tmp, self.path)
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - held open for the run, closed in finish()

    def get(self, path: Path) -> dict[str, Any] | None:
        """The journalled record of ``path`` when the file is unchanged and its scan did not end in an error."""
        found = self._done.get(str(path))
        if found is None or found[1].get("status") == "error" or found[0] != _file_key(path):
            return None
        return found[1]

    def add(self, path: Path, record: dict[str, Any]) -> None:
        """Append ``path``'s record, durably (the next kill cannot take it back)."""
        key = _file_key(path) or [str(path), None, None]
        self._fh.write(json.dumps({"key": key, "record": record}) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def finish(self) -> None:
        """The reports are written: the journal has done its job."""
        self._fh.close()
        self.path.unlink(missing_ok=True)

    def close(self) -> None:
        """Stop appending and keep the journal (the scan did not finish)."""
        self._fh.close()
