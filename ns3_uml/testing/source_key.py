"""The cache key of something built from a source tree (the fuzz targets, the sanitized
venv): a short hash over its input files, the compiler's version and the ns-3 it uses."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from ..paths import ns3_package_dir

__all__ = ["source_files", "source_key"]


def source_files(source: Path, tops: dict[str, tuple[str, ...]]) -> list[Path]:
    """CMakeLists.txt and pyproject.toml, then every file under each of ``tops`` (a folder
    of ``source`` -> the suffixes wanted), sorted."""
    files = [source / "CMakeLists.txt", source / "pyproject.toml"]
    for top, suffixes in tops.items():
        files += sorted(p for p in (source / top).rglob("*")
                        if p.suffix in suffixes and p.is_file())
    return files


def source_key(source: Path, label: str, files: list[Path], compiler: str) -> str:
    """16 hex digits over ``label``, the files (names and contents), ``compiler --version``
    and the ns3 package's place."""
    h = hashlib.sha256(f"{label}\n".encode())
    for path in files:
        h.update(f"{path.relative_to(source)}\n".encode() + path.read_bytes())
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True,
                             check=True).stdout
    h.update(version.encode() + ns3_package_dir().encode())
    return h.hexdigest()[:16]
