"""What the audit benchmarks share: where results go, the dataset's default place, how they are saved."""
from __future__ import annotations

from pathlib import Path

from cxredge.io import write_json, write_text

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_DATA = Path("../shared/data/chest_xray_4class")  # from the repository root, as the docs name it


def save(out: Path, stem: str, doc: dict, text: str) -> None:
    """out/stem.json and out/stem.md, atomically; the markdown is printed too."""
    write_json(out / f"{stem}.json", doc)
    write_text(out / f"{stem}.md", text)
    print(text)
