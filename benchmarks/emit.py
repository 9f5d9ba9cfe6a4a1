"""Print a benchmark's figures as JSON and, when asked, write them to a file too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def emit(result: Any, path: Path | None) -> None:
    text = json.dumps(result, indent=2)
    print(text, flush=True)
    if path:
        path.write_text(text)
