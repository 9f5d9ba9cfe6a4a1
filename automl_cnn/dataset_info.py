"""What a study was searched on, as one small value (stored with the study by
:func:`automl_cnn.record.write_study_info`).

Example:
    >>> DatasetInfo("digits", tuple("0123456789"), (1, 8, 8), 10).to_dict()["input_shape"]
    [1, 8, 8]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DatasetInfo:
    """What a study was searched on: enough to rebuild and feed its networks."""

    name: str
    classes: tuple[str, ...]
    input_shape: tuple[int, int, int]
    num_classes: int
    sizes: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, data: Any) -> DatasetInfo:
        """From an :class:`~automl_cnn.data.ImageSplits`."""
        return cls(data.name, tuple(map(str, data.classes)), tuple(data.input_shape),
                   int(data.num_classes), dict(data.sizes()))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "classes": list(self.classes),
                "input_shape": list(self.input_shape), "num_classes": self.num_classes,
                "sizes": dict(self.sizes)}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> DatasetInfo:
        return cls(str(raw.get("name", "")), tuple(map(str, raw.get("classes", ()))),
                   tuple(int(v) for v in raw["input_shape"]),  # type: ignore[arg-type]
                   int(raw["num_classes"]), dict(raw.get("sizes") or {}))


__all__ = ["DatasetInfo"]
