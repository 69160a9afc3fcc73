"""Privacy reports: the issue's acceptance checks, equal-utility comparison with the trivial
anonymizers, and JSON / Markdown writers.

Variant names used by the checks: ``original``, ``sm``, ``nt``, ``op`` (the SAN),
``ae_only`` (the autoencoder trained with ``lambda_gender = 0``, its SM output),
``blur_<sigma>`` and ``pixelate_<block>`` (the trivial anonymizers).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from facecore.privacy.evaluation import PrivacyResult, equal_utility

__all__ = [
    "anonymizer_sweeps",
    "done_when_checks",
    "equal_utility_table",
    "markdown_report",
    "write_report",
]

PROTOCOL = "cross_photo"


def _acc(table: dict, variant: str, clf: str) -> float:
    return table[variant]["gender"][clf]["accuracy"]


def _match(table: dict, variant: str, matcher: str, key: str, protocol: str = PROTOCOL) -> float:
    return table[variant]["match"][matcher][protocol][key]


def done_when_checks(
    table: dict[str, Any],
    *,
    gender: str,
    matcher: str,
    real: bool = False,
    auxiliary_valid_accuracy: float | None = None,
    protocol: str = PROTOCOL,
) -> list[dict[str, Any]]:
    """The issue's "Done when" criteria on one unseen gender classifier and one unseen
    matcher: a list of ``{"check", "value", "target", "passed"}``. ``real=True`` adds the
    real-face criteria, which apply when ``auxiliary_valid_accuracy >= 0.85``. Matching
    figures come from ``protocol`` (``cross_photo``; ``same_photo`` where each person has
    one photo)."""
    out: list[dict[str, Any]] = []

    def add(name: str, value: float, target: float, passed: bool) -> None:
        out.append({"check": name, "value": round(float(value), 4), "target": round(float(target), 4),
                    "passed": bool(passed)})

    a = {v: _acc(table, v, gender) for v in ("original", "sm", "nt", "op") if v in table}
    m = {v: _match(table, v, matcher, "auc", protocol) for v in ("original", "sm", "nt", "op") if v in table}
    add(f"{gender} accuracy SM >= original - 0.05", a["sm"], a["original"] - 0.05, a["sm"] >= a["original"] - 0.05)
    add(f"{gender} accuracy OP <= original - 0.30", a["op"], a["original"] - 0.30, a["op"] <= a["original"] - 0.30)
    add(f"{matcher} AUC (original vs SM, {protocol}) >= 0.95 x original-vs-original",
        m["sm"], 0.95 * m["original"], m["sm"] >= 0.95 * m["original"])
    add(f"{matcher} AUC SM >= NT >= OP (NT shown)", m["nt"], m["op"], m["sm"] >= m["nt"] >= m["op"])
    add(f"{gender} accuracy SM >= NT >= OP (NT shown)", a["nt"], a["op"], a["sm"] >= a["nt"] >= a["op"])
    if "ae_only" in table:
        l1_sm, l1_ae = table["sm"]["l1"], table["ae_only"]["l1"]
        add("L1(X, X'_SM) <= 1.5 x autoencoder-only L1", l1_sm, 1.5 * l1_ae, l1_sm <= 1.5 * l1_ae)
    if real:
        strong = auxiliary_valid_accuracy is not None and auxiliary_valid_accuracy >= 0.85
        tag = "" if strong else " (not required: auxiliary < 85%)"
        add(f"{gender} accuracy drop OP >= 0.15{tag}", a["original"] - a["op"], 0.15,
            a["original"] - a["op"] >= 0.15)
        add(f"{gender} accuracy drop SM <= 0.07{tag}", a["original"] - a["sm"], 0.07,
            a["original"] - a["sm"] <= 0.07)
        if "ae_only" in table:
            t_sm = _match(table, "sm", matcher, "tar@far=0.01", protocol)
            t_ae = _match(table, "ae_only", matcher, "tar@far=0.01", protocol)
            add(f"{matcher} TAR@FAR 1% SM >= 0.9 x autoencoder-only{tag}", t_sm, 0.9 * t_ae,
                t_sm >= 0.9 * t_ae)
    return out


def anonymizer_sweeps(table: dict[str, Any]) -> dict[str, list[str]]:
    """``{"blur": [variants by increasing strength], "pixelate": [...]}`` from the names."""
    sweeps: dict[str, list[tuple[float, str]]] = {}
    for v in table:
        kind, _, strength = v.partition("_")
        if kind in ("blur", "pixelate") and strength:
            try:
                sweeps.setdefault(kind, []).append((float(strength), v))
            except ValueError:
                continue
    return {k: [v for _, v in sorted(s)] for k, s in sweeps.items()}


def equal_utility_table(
    table: dict[str, Any],
    *,
    gender: str,
    matcher: str,
    utility: str = "auc",
    variants: Sequence[str] = ("sm", "nt", "op"),
    protocol: str = PROTOCOL,
) -> list[dict[str, Any]]:
    """For each SAN variant: its matcher ``utility`` (``auc`` or ``tar@far=0.01``, of
    ``protocol``) and ``gender`` accuracy, and each anonymizer's gender accuracy interpolated at
    the same utility (``None`` when the sweep does not reach it). The identity anonymizer
    (strength 0) is the ``original`` row, prepended to each sweep."""
    sweeps = anonymizer_sweeps(table)
    rows = []
    for v in variants:
        if v not in table:
            continue
        u = _match(table, v, matcher, utility, protocol)
        row: dict[str, Any] = {"variant": v, "utility": utility, "protocol": protocol, "value": u,
                               "gender_accuracy": _acc(table, v, gender)}
        for kind, names in sweeps.items():
            names = ["original", *names]
            us = [_match(table, n, matcher, utility, protocol) for n in names]
            ps = [_acc(table, n, gender) for n in names]
            row[f"{kind}_gender_accuracy"] = equal_utility(us, ps, u)
        rows.append(row)
    return rows


def _f(x: Any, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return "nan" if math.isnan(x) else f"{x:.{digits}f}"
    return str(x)


def markdown_report(
    result: PrivacyResult,
    *,
    title: str,
    meta: dict[str, Any] | None = None,
    checks: Sequence[dict[str, Any]] = (),
    equal_utility_rows: Sequence[dict[str, Any]] = (),
    images: Sequence[str] = (),
) -> str:
    """A Markdown report: one table per gender classifier and per matcher, checks, the
    equal-utility comparison and links to the plots."""
    t = result.table
    variants = list(t)
    lines = [f"# {title}", ""]
    if meta:
        lines += ["```json", json.dumps(meta, indent=1, sort_keys=True, default=str), "```", ""]
    lines += ["## Reconstruction", "", "| variant | L1(X, X') |", "|---|---|"]
    lines += [f"| {v} | {_f(t[v]['l1'], 4)} |" for v in variants]
    lines.append("")
    clfs = list(next(iter(t.values()))["gender"])
    if clfs:
        lines += ["## Gender classifiers (accuracy against the true gender / ROC AUC of P(female))", ""]
        head = " | ".join(f"{c} ({result.evaluators.get(c, '?')}) acc / AUC" for c in clfs)
        lines += [f"| variant | {head} |", "|---|" + "---|" * len(clfs)]
        for v in variants:
            cells = " | ".join(
                f"{_f(t[v]['gender'][c]['accuracy'])} / {_f(t[v]['gender'][c]['auc'])}" for c in clfs
            )
            lines.append(f"| {v} | {cells} |")
        lines.append("")
    for mname in next(iter(t.values()))["match"]:
        role = result.evaluators.get(mname, "?")
        for protocol in next(iter(t.values()))["match"][mname]:
            first = t[variants[0]]["match"][mname][protocol]
            lines += [f"## Matcher {mname} ({role}), {protocol} "
                      f"({first['genuine']} genuine / {first['impostor']} impostor pairs)", "",
                      "| variant | AUC | EER | TAR@FAR 1% | TAR@FAR 0.1% |", "|---|---|---|---|---|"]
            for v in variants:
                r = t[v]["match"][mname][protocol]
                lines.append(f"| {v} | {_f(r['auc'])} | {_f(r['eer'])} | {_f(r['tar@far=0.01'])} | "
                             f"{_f(r['tar@far=0.001'])} |")
            lines.append("")
    if checks:
        lines += ["## Acceptance checks", "", "| check | value | target | passed |", "|---|---|---|---|"]
        lines += [f"| {c['check']} | {_f(c['value'])} | {_f(c['target'])} | {'yes' if c['passed'] else 'NO'} |"
                  for c in checks]
        lines.append("")
    if equal_utility_rows:
        kinds = sorted({k[: -len('_gender_accuracy')] for r in equal_utility_rows for k in r
                        if k.endswith("_gender_accuracy") and k != "gender_accuracy"})
        lines += ["## At equal matcher utility (gender accuracy of the anonymizer interpolated at the "
                  "SAN variant's utility)", "",
                  "| SAN variant | utility | value | SAN gender acc | " + " | ".join(f"{k} gender acc" for k in kinds) + " |",
                  "|---|---|---|---|" + "---|" * len(kinds)]
        for r in equal_utility_rows:
            lines.append(f"| {r['variant']} | {r['utility']} | {_f(r['value'])} | {_f(r['gender_accuracy'])} | "
                         + " | ".join(_f(r.get(f"{k}_gender_accuracy")) for k in kinds) + " |")
        lines.append("")
    if images:
        lines += ["## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in images] + [""]
    return "\n".join(lines)


def write_report(
    out_dir: str | Path,
    result: PrivacyResult,
    *,
    title: str,
    meta: dict[str, Any] | None = None,
    checks: Sequence[dict[str, Any]] = (),
    equal_utility_rows: Sequence[dict[str, Any]] = (),
    images: Sequence[str] = (),
    stem: str = "report",
) -> tuple[Path, Path]:
    """Write ``<stem>.json`` (meta, figures, evaluator roles, checks, equal-utility rows)
    and ``<stem>.md``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "title": title,
        "meta": meta or {},
        "evaluators": result.evaluators,
        "figures": result.table,
        "checks": list(checks),
        "equal_utility": list(equal_utility_rows),
    }
    js = out / f"{stem}.json"
    js.write_text(json.dumps(payload, indent=1, sort_keys=True, default=str))
    md = out / f"{stem}.md"
    md.write_text(markdown_report(result, title=title, meta=meta, checks=checks,
                                  equal_utility_rows=equal_utility_rows, images=images))
    return js, md
