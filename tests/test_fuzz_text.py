"""Fuzz (Hypothesis) of text readers: LiteRT `benchmark_model` output (lines of the committed sample,
mutated, shuffled, numbers swapped) and the CLI's comma lists and KEY=VALUE options. Each ends in a
result or one CxrError, never another exception.

Budget: tests/fuzz.py (FUZZ examples per test; CXREDGE_FUZZ_EXAMPLES raises it)."""
from __future__ import annotations

import math
import re
from pathlib import Path

from hypothesis import assume, given
from hypothesis import strategies as st

from cxredge.edge.runtime.benchmark_model import read_bench_file
from cxredge.errors import CxrError
from fuzz import FUZZ

SAMPLE = (Path(__file__).parent / "fixtures" / "benchmark_model_android_sample.txt").read_text().splitlines()
NUMBER = re.compile(r"\d+(?:\.\d+)?")
WEIRD_NUMBERS = ["0", "-0", "1e999", "-1e999", "nan", "1e-320", "00", "9" * 400, "²", "١٢", "-5", "", "1.5e+06"]


@st.composite
def benchmark_texts(draw) -> str:
    lines = list(SAMPLE)
    for _ in range(draw(st.integers(0, 12))):
        i = draw(st.integers(0, len(lines) - 1))
        how = draw(st.sampled_from(["number", "drop", "dup", "cut", "junk", "swap"]))
        if how == "number":
            nums = list(NUMBER.finditer(lines[i]))
            if nums:
                m = draw(st.sampled_from(nums))
                lines[i] = lines[i][:m.start()] + draw(st.sampled_from(WEIRD_NUMBERS)) + lines[i][m.end():]
        elif how == "drop":
            del lines[i]
        elif how == "dup":
            lines.insert(i, lines[i])
        elif how == "cut":
            lines[i] = lines[i][:draw(st.integers(0, len(lines[i])))]
        elif how == "junk":
            lines.insert(i, draw(st.text(max_size=40)))
        else:
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        if not lines:
            lines = [""]
    return "\n".join(lines)


def check_bench_text(tmp_path: Path, text: str) -> None:
    assume(not text.lstrip().startswith("{"))  # a bench.json: the report's reader, fuzzed in test_fuzz_documents
    path = tmp_path / "bm.txt"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        doc = read_bench_file(path)
    except CxrError as exc:
        assert "bm.txt" in str(exc) and "\n" not in str(exc)
        return
    assert doc["results"] and all(r["status"] == "ok" for r in doc["results"])
    for r in doc["results"]:
        s = r["speedup_vs_float32"]
        assert s is None or (isinstance(s, float) and math.isfinite(s) and s > 0)


@FUZZ
@given(text=benchmark_texts())
def test_fuzz_benchmark_model_text(tmp_path, text):
    check_bench_text(tmp_path, text)


@FUZZ
@given(text=st.text(max_size=300).map(lambda t: "Inference timings in us: " + t))
def test_fuzz_benchmark_model_random_text(tmp_path, text):
    check_bench_text(tmp_path, text)


def test_unmutated_sample_parses(tmp_path):
    (tmp_path / "bm.txt").write_text("\n".join(SAMPLE))
    doc = read_bench_file(tmp_path / "bm.txt")
    assert len(doc["results"]) >= 2


# --- CLI option parsing ---------------------------------------------------------------------

OPTION_TEXT = st.text(alphabet=st.sampled_from(list("0123456789,= -_.abAB:@[]\t") + ["\u00b2", "\u0661", "\x00", "é"]),
                      max_size=24)


def result_or_error(fn, *args):
    try:
        return fn(*args)
    except CxrError as exc:
        assert "\n" not in str(exc)
        return None


@FUZZ
@given(value=OPTION_TEXT)
def test_fuzz_comma_lists(value):
    from cxredge.cli.common import split_ints, split_list
    from cxredge.cli.ensemble import parse_weights
    from cxredge.cli.quantize import parse_modes
    from cxredge.cli.train import parse_blocks, parse_variants
    from cxredge.edge.explain.occlusion import parse_fill

    items = result_or_error(split_list, value, "--x")
    assert items is None or (items and all(i == i.strip() and i and "," not in i for i in items))
    ints = result_or_error(split_ints, value, "--threads")
    assert ints is None or all(isinstance(n, int) and n >= 1 for n in ints)
    allowed = result_or_error(split_list, value, "--x", ("a", "b"))
    assert allowed is None or set(allowed) <= {"a", "b"}
    weights = result_or_error(parse_weights, value)
    assert weights is None or all(math.isfinite(w) and w >= 0 for w in weights)
    for fn in (parse_modes, parse_variants, parse_blocks, parse_fill):
        result_or_error(fn, value)


@FUZZ
@given(items=st.lists(OPTION_TEXT, max_size=4))
def test_fuzz_key_value_options(items):
    from cxredge.cli.bench import parse_options
    from cxredge.cli.bench_remote import pairs
    from cxredge.remote.ssh import parse_options as ssh_options
    from cxredge.remote.ssh import parse_target

    opts = result_or_error(parse_options, items)
    assert opts is None or all(k and k == k.strip() for k, _ in opts)
    env = result_or_error(pairs, items, "--remote-env")
    assert env is None or all(k.isidentifier() for k, _ in env)
    ssh = result_or_error(ssh_options, items)
    assert ssh is None or all(k and v for k, v in ssh)
    for item in items:
        t = result_or_error(parse_target, item)
        assert t is None or (t.host and not re.search(r"\s", t.host) and (t.port is None or 0 < t.port < 65536))
