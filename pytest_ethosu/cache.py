"""The on-disk estimate cache: Vela's answer, keyed by everything that can change it.

The key hashes the model's bytes, the accelerator, system config, memory mode and Vela options,
the *contents* of the Vela ``.ini`` files used (Vela's bundled ``Arm/vela.ini`` when none is
given), the Vela version, the core, and ``FORMAT``, this plugin's version of the cached data.
The value is the worker's reply (Vela's rows, summary and compiled operators), from which the
estimator builds the result exactly as it does after a fresh run, so a hit and a miss give the
same result.  Once the advisor has run, the entry also keeps its findings: they depend on
nothing outside the key, so a warm session does not run the advisor again.

Entries are written to a temporary file and moved into place, so xdist workers and concurrent
sessions can share the directory; an entry that cannot be read is treated as a miss and
rewritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .target import Target
from .vela_adapter import bundled_config_dir, vela_version

FORMAT = 2  # 2: replies carry convolution shapes, CPU reasons and the depth granularity


class EstimateCache:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.hits = 0
        self.misses = 0
        self._version = vela_version()
        self._ini_digests: dict[tuple[str, ...], str] = {}

    def _ini_digest(self, files: tuple[str, ...]) -> str:
        if files not in self._ini_digests:
            digest = hashlib.sha256()
            for name in files or (str(bundled_config_dir() / "Arm" / "vela.ini"),):
                digest.update(Path(name).read_bytes())
                digest.update(b"\0")
            self._ini_digests[files] = digest.hexdigest()
        return self._ini_digests[files]

    def key(self, model_sha256: str, target: Target) -> str:
        parts = {
            "format": FORMAT,
            "vela": self._version,
            "model": model_sha256,
            "accelerator": target.accelerator,
            "system_config": target.system_config,
            "memory_mode": target.memory_mode,
            "vela_args": list(target.vela_args),
            "config_names": list(target.config_names),
            "ini": self._ini_digest(target.config_files),
        }
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            entry: dict[str, Any] = json.loads(self._path(key).read_text(encoding="utf-8"))
            if entry.get("key") != key or entry.get("format") != FORMAT:
                raise ValueError("stale entry")
            reply: dict[str, Any] = entry["reply"]
        except (OSError, ValueError, KeyError, TypeError):
            self.misses += 1
            return None
        self.hits += 1
        return reply

    def put(self, key: str, reply: dict[str, Any]) -> None:
        """Store a successful reply; a cache that cannot be written is simply not used."""
        path = self._path(key)
        kept: dict[str, Any] = {"ok": True}
        kept.update((k, reply[k]) for k in ("inspected", "vela", "findings") if k in reply)
        entry = {"format": FORMAT, "key": key, "reply": kept}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".entry.", suffix=".tmp", dir=path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(entry, f, separators=(",", ":"))
            os.replace(tmp, path)
        except OSError:
            pass
