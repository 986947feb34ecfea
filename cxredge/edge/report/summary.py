"""The report's first screen: which model to deploy, by a stated rule, with its numbers and every caveat.

Rule (RULE below): among the models of the main bench (the run's own test split when there is one),
the smallest int8 model whose accuracy 95% CI overlaps the most accurate model's CI and whose top-1
agreement with its float32 model is >= 97%; when no int8 model qualifies, the most accurate model, and
a warning says why. Without CIs (bench --ci 0), "overlaps" is "within 1 point of the best".
Warnings gathered: audit shortcut warnings and leakage (audit.json), the OOD guard's share (bench.json
ood), a test set too small for the claimed precision (accuracy CI half-width > 2 points), noisy latency
rows, the bundled sample as data, skipped inputs. TF-free.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

from cxredge import markdown as md
from cxredge.edge.bench.results import fmt, noisy, spread
from cxredge.paths import SAMPLE_DATA

MIN_AGREEMENT = 0.97
MAX_HALF_WIDTH = 0.02
NO_CI_MARGIN = 0.01
RULE = ("Recommended = the smallest int8 model whose accuracy 95% CI overlaps the most accurate model's CI and "
        f"whose top-1 agreement with its float32 model is >= {MIN_AGREEMENT:.0%} (without CIs: within "
        f"{NO_CI_MARGIN * 100:.0f} point of the best); if none qualifies, the most accurate model.")


@dataclass
class Card:
    model: str | None = None
    why: str = ""
    facts: list[tuple[str, str]] = field(default_factory=list)
    class_rows: list[list[str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def markdown(self) -> list[str]:
        return card_markdown(self)

    def html(self) -> str:
        return card_html(self)


def main_bench(benches: list[tuple[Path, dict]]) -> tuple[Path, dict] | None:
    """The bench the verdict is taken from: the run's own images (dataset.internal), local, with accuracy."""
    with_acc = [(p, b) for p, b in benches if any(isinstance(m, dict) and m.get("accuracy") is not None
                                                  for m in (b.get("models") or {}).values())]
    if not with_acc:
        return None
    return sorted(with_acc, key=lambda pb: (not (pb[1].get("dataset") or {}).get("internal", False),
                                            bool(pb[1].get("remote"))))[0]


def _size(b: dict, key: str) -> int | None:
    return next((r.get("size_bytes") for r in b.get("results") or [] if r["model"] == key
                 and r.get("size_bytes") is not None), None)


def _ci(m: dict) -> list | None:
    return (m.get("ci95") or {}).get("accuracy")


def recommend(b: dict) -> tuple[str | None, str, list[str]]:
    """(model key, why, warnings) by RULE."""
    models = {k: m for k, m in (b.get("models") or {}).items() if m.get("accuracy") is not None}
    if not models:
        return None, "no model with an accuracy", []
    best = max(models, key=lambda k: models[k]["accuracy"])
    bm = models[best]

    def overlaps(m: dict) -> bool:
        a, c = _ci(m), _ci(bm)
        if a and c:
            return a[1] >= c[0]
        return m["accuracy"] >= bm["accuracy"] - NO_CI_MARGIN

    int8 = {k: m for k, m in models.items() if "int8" in k.split("/")[-1]}
    ok = [k for k, m in int8.items() if overlaps(m) and (m.get("agreement_with_float") or 0) >= MIN_AGREEMENT]
    if ok:
        pick = min(ok, key=lambda k: (_size(b, k) or float("inf"), -models[k]["accuracy"]))
        return pick, (f"int8, accuracy CI overlaps the best ({best}, {bm['accuracy']:.3f}), agreement with float "
                      f"{models[pick]['agreement_with_float']:.1%}"), []
    why = "no int8 model" if not int8 else (
        f"no int8 model within the best's CI with >= {MIN_AGREEMENT:.0%} agreement with float")
    return best, f"the most accurate model ({why})", [f"recommendation is not an int8 model: {why}"]


def latency_text(benches: list[tuple[Path, dict]], key: str, name) -> list[tuple[str, str]]:
    """One fact per device: the model's median latency on its first ok row, noisy rows marked."""
    out, seen = [], set()
    for path, b in benches:
        host = (b.get("remote") or {}).get("label") or (b.get("device") or {}).get("hostname")
        if host in seen:  # one latency per device (the same device benched on another dataset adds nothing)
            continue
        r = next((r for r in b.get("results") or [] if r["model"] == key and r.get("status") == "ok"
                  and (r.get("latency_ms") or {}).get("median") is not None), None)
        if r is None:
            continue
        lat = r["latency_ms"]
        text = f"{lat['median']:.2f} ms median ({Path(str(r.get('delegate'))).name}, {r.get('threads')} thread(s))"
        if noisy(r):
            text += f" NOISY: p90/median {spread(r):.2f}, not to be trusted"
        seen.add(host)
        out.append((f"latency on {host or '?'}", text))
    return out


def is_sample(b: dict, run: dict) -> bool:
    paths = [(b.get("dataset") or {}).get("path"), ((run or {}).get("data") or {}).get("path")]
    sample = SAMPLE_DATA.resolve()
    for p in paths:
        if isinstance(p, str) and p:
            try:
                rp = Path(p).resolve()
            except (OSError, RuntimeError):
                continue
            if rp == sample or rp.is_relative_to(sample):
                return True
    return False


def warnings_of(main: dict, benches, audit: dict | None, run: dict, extra: list[str], name) -> list[str]:
    w = []
    if is_sample(main, run):
        w.append("this is the bundled sample (a few images per class): its numbers mean nothing; "
                 "train and bench on real data")
    for key, m in (main.get("models") or {}).items():
        ci = _ci(m)
        if ci and (ci[1] - ci[0]) / 2 > MAX_HALF_WIDTH:
            n = (main.get("dataset") or {}).get("n")
            w.append(f"test set too small for the claimed precision: {key} accuracy 95% CI "
                     f"{ci[0]:.3f}-{ci[1]:.3f} (+-{50 * (ci[1] - ci[0]):.1f} points, n={n}); differences smaller "
                     "than that are noise")
            break
    for path, b in benches:
        ood = b.get("ood") or {}
        if isinstance(ood.get("share"), (int, float)) and ood.get("n_flagged"):
            w.append(f"OOD guard: {ood['n_flagged']} of {ood.get('n')} images ({ood['share']:.0%}) on {name(b)} "
                     "look unlike the training data")
        bad = [f"{r['model']} x{r.get('threads')}" for r in b.get("results") or [] if noisy(r)]
        if bad:
            w.append(f"noisy latency on {name(b)} (p90/median > 1.5): {', '.join(bad)}; no speed-up is computed "
                     "from these rows")
    if audit:
        for a in audit.get("warnings") or []:
            w.append(f"audit ({a['kind']}): {a['message']}")
        leak = (audit.get("duplicates") or {}).get("cross_split") or []
        if leak:
            w.append(f"leakage: {len(leak)} group(s) of duplicate images across splits (audit.json)")
    return w + list(extra)


def build_card(benches: list[tuple[Path, dict]], audit: dict | None, run: dict, extra: list[str], name) -> Card:
    card = Card()
    picked = main_bench(benches)
    if picked is None:
        card.warnings = ["no bench with accuracy: run `cxredge bench` to get a recommendation"] + list(extra)
        if audit:
            card.warnings += [f"audit ({a['kind']}): {a['message']}" for a in audit.get("warnings") or []]
        return card
    path, b = picked
    key, card.why, w = recommend(b)
    card.model = key
    m = b["models"][key]
    ci = m.get("ci95") or {}
    size = _size(b, key)
    card.facts = [("model", key), ("why", card.why), ("size", f"{size / 1e6:.2f} MB" if size else "-"),
                  ("accuracy (95% CI)", _with(m.get("accuracy"), ci.get("accuracy"))),
                  ("macro-F1 (95% CI)", _with(m.get("macro_f1"), ci.get("macro_f1"))),
                  ("agreement with float32", fmt(m.get("agreement_with_float"), ".1%")),
                  ("evaluated on", f"{name(b)}: {(b.get('dataset') or {}).get('name')}, "
                                   f"n={(b.get('dataset') or {}).get('n')}")]
    for p, other in benches:
        o = (other.get("models") or {}).get(key)
        if other is not b and o and o.get("accuracy") is not None and (other.get("dataset") or {}).get("name") != \
                (b.get("dataset") or {}).get("name"):
            card.facts.append((f"accuracy on {(other.get('dataset') or {}).get('name')}",
                               _with(o.get("accuracy"), (o.get("ci95") or {}).get("accuracy"))))
    card.facts += latency_text(benches, key, name)
    classes = (b.get("dataset") or {}).get("classes") or list((m.get("per_class") or {}).keys())
    for c in classes:
        v = (m.get("per_class") or {}).get(c) or {}
        card.class_rows.append([c, str(v.get("support", "-")),
                                _with(v.get("sensitivity", v.get("recall")), (ci.get("sensitivity") or {}).get(c)),
                                _with(v.get("specificity"), (ci.get("specificity") or {}).get(c))])
    card.warnings = w + warnings_of(b, benches, audit, run, extra, name)
    return card


def _with(value, ci) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" + (f" ({ci[0]:.3f}-{ci[1]:.3f})" if ci else "")


def card_markdown(card) -> list[str]:
    """The card as Markdown blocks; every piece of text escaped (cxredge/markdown.py)."""
    parts = ["## Summary" + (f": deploy {md.text(card.model, False)}" if card.model else ""), md.rich(RULE)]
    if card.facts:
        parts.append("\n".join(f"- **{md.text(k, False)}**: {md.rich(v)}" for k, v in card.facts))
    if card.class_rows:
        parts.append(md.table(["class", "n", "sensitivity (95% CI)", "specificity (95% CI)"], card.class_rows))
    parts.append(f"**Warnings ({len(card.warnings)})**" + ("" if card.warnings else ": none"))
    if card.warnings:
        parts.append("\n".join(f"- {md.rich(w)}" for w in card.warnings))
    return parts


def card_html(card) -> str:
    e = html.escape
    title = f"Summary: deploy {e(card.model)}" if card.model else "Summary: no recommendation"
    facts = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in card.facts)
    classes = ""
    if card.class_rows:
        head = "".join(f"<th>{h}</th>" for h in ("class", "n", "sensitivity (95% CI)", "specificity (95% CI)"))
        classes = (f"<table><tr>{head}</tr>" + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>"
                                                       for r in card.class_rows) + "</table>")
    warn = (f"<div class='warnh'>Warnings ({len(card.warnings)})</div><ul class='warn'>"
            + "".join(f"<li>{e(w)}</li>" for w in card.warnings) + "</ul>") if card.warnings else \
        "<div class='warnh ok'>Warnings: none</div>"
    return (f"<section class='card' id='summary'><h2>{title}</h2><p class='rule'>{e(RULE)}</p>"
            f"<div class='cols'><div><table class='facts'>{facts}</table>{classes}</div><div>{warn}</div></div>"
            "</section>")
