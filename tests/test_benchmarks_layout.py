"""benchmarks/ stays navigable: scripts grouped by verb, results mirrored, one index, helpers in one module,
and every benchmarks/ path the docs quote exists (issue 23 item 5, issue 24 item 7)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
RESULTS = BENCH / "results"
INDEX = BENCH / "README.md"
SKIP = ("<", "*", "...")  # placeholders in commands, not files


def expand(text: str) -> list[str]:
    """Shell-style brace expansion of one path: a.{json,md} -> [a.json, a.md]."""
    m = re.search(r"\{([^{}]*)\}", text)
    if not m:
        return [text]
    return [x for alt in m.group(1).split(",") for x in expand(text[:m.start()] + alt + text[m.end():])]


def quoted_paths(text: str) -> set[str]:
    """Every `benchmarks/...` path in the text, and the index's `R/...` shorthand, braces expanded."""
    found = set()
    for m in re.finditer(r"(?<![\w/.$])(benchmarks/[\w./{},-]*|R/[\w./{},-]+)", text):
        raw = m.group(1).rstrip(".,")
        if raw.startswith("R/"):
            raw = "benchmarks/results/" + raw[2:]
        if raw.endswith("/.."):
            continue
        found.update(expand(raw))
    return {p.rstrip("/") for p in found if not any(s in p for s in SKIP) and p.rstrip("/") != "benchmarks/results"}


def verbs() -> list[str]:
    return sorted(p.name for p in BENCH.iterdir() if p.is_dir() and p.name not in ("results", "__pycache__"))


def test_results_mirror_the_script_folders():
    flat = sorted(p.name for p in RESULTS.iterdir() if p.is_file())
    assert not flat, f"results must go to benchmarks/results/<verb>/, not flat: {flat}"
    result_verbs = sorted(p.name for p in RESULTS.iterdir() if p.is_dir())
    assert result_verbs and set(result_verbs) <= set(verbs()), (result_verbs, verbs())
    assert not sorted(p.name for p in BENCH.glob("*.py") if p.name != "common.py"), "scripts go to benchmarks/<verb>/"


def test_index_names_every_script_and_every_result():
    index = INDEX.read_text()
    covered = quoted_paths(index)
    scripts = {f"{p.parent.name}/{p.name}" for p in BENCH.glob("*/*.py")}
    missing_scripts = sorted(s for s in scripts if s not in index)
    assert not missing_scripts, f"benchmarks/README.md does not name: {missing_scripts}"
    entries = [p for verb in RESULTS.iterdir() if verb.is_dir() for p in verb.iterdir()]
    assert len(entries) > 40
    missing = sorted(str(p.relative_to(BENCH)) for p in entries
                     if f"benchmarks/{p.relative_to(BENCH)}" not in covered)
    assert not missing, f"benchmarks/README.md has no index row for: {missing}"


def _docs() -> list[Path]:
    md = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted(BENCH.rglob("*.md"))]
    return [p for p in md if p.is_file()] + sorted(BENCH.rglob("*.py"))


@pytest.mark.parametrize("doc", _docs(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_quoted_benchmarks_path_exists(doc: Path):
    # a stem (`--out R/quantize/x`, `--result x`) counts when its .json / .md is there
    missing = sorted(p for p in quoted_paths(doc.read_text())
                     if not (ROOT / p).exists() and not any((ROOT / p).parent.glob(Path(p).name + ".*")))
    assert not missing, f"{doc.relative_to(ROOT)} quotes paths that do not exist: {missing}"


def test_shared_helpers_are_defined_once():
    again = {}
    for p in BENCH.glob("*/*.py"):
        src = p.read_text()
        names = re.findall(r"^def (cli|cpu_info|cpu_flags|cpu_summary|machine_info|results_dir)\b", src, re.M)
        names += re.findall(r"^(RESULTS) = (?!results_dir\()", src, re.M)
        names += ["class NullTracker"] if re.search(r"^class NullTracker\b", src, re.M) else []
        if names:
            again[str(p.relative_to(BENCH))] = names
    assert not again, f"defined outside benchmarks/common.py: {again}"


def test_brace_expansion_and_placeholders():
    assert expand("R/a/b.{json,md}") == ["R/a/b.json", "R/a/b.md"]
    assert quoted_paths("see `R/train/x_{a,b}.md` and benchmarks/results/<verb>/") == {
        "benchmarks/results/train/x_a.md", "benchmarks/results/train/x_b.md"}
