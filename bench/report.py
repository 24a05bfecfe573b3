"""What every benchmark ends with: its figures as JSON on stdout, and in --json FILE."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def emit(out: dict[str, Any], path: Path | None) -> None:
    """Print ``out`` as JSON, and write it to ``path`` if one was given."""
    text = json.dumps(out, indent=2)
    if path:
        Path(path).write_text(text)
    print(text)
