"""The study's answer in plain words: the headline questions in order, one sentence each with its 95 % interval,
Holm-adjusted p and verdict, then one per transfer direction and probe."""

from __future__ import annotations

from typing import Any


def difference(r: dict[str, Any]) -> str:
    """A paired difference in points with its 95 % interval: '+7.5 [+3.0, +12.5]'."""
    e = r["diff"]
    if e["lo"] is None:
        return f"{100 * e['value']:+.1f} [no interval: one cluster at one seed]"
    return f"{100 * e['value']:+.1f} [{100 * e['lo']:+.1f}, {100 * e['hi']:+.1f}]"


def points(r: dict[str, Any]) -> str:
    value, interval = difference(r).split(" ", 1)
    return f"{value} points {interval}, adjusted p = {r['p_adjusted']:.3g}"


def verdict(r: dict[str, Any]) -> str:
    """A gain or a loss only when the Holm-adjusted p-value is below 0.05."""
    if r["p_adjusted"] >= 0.05:
        return "no evidence of a change"
    return "a gain" if r["diff"]["value"] > 0 else "a loss"


def group_prefix(results: dict[str, Any], group: str) -> str:
    """'At KEY = VALUE: ' before a sweep group's rows; nothing for a study without a sweep."""
    return "" if group == "all" else f"At {results['preset']['sweep']['key']} = {group}: "


def headline(results: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """The report's questions in order, as (question, comparison, paired result): understanding and generation
    synergy of the first unified variant, then each other unified variant against it, per comparison group."""
    rows = []
    for group, comp in results["comparisons"].items():
        where = group_prefix(results, group)
        first, syn = next(iter(comp["synergy"].items()))
        for kind in ("understanding", "generation"):
            s = syn.get(kind)
            if s and s["pooled"]:
                rows.append((f"{where}{kind.capitalize()}", f"{first} vs {s['vs']}", s["pooled"]))
        for label, arch in comp["architecture"].items():
            for kind, r in arch.items():
                if r:
                    rows.append((f"{where}{label.split(' - ')[0]} vs {first}", kind, r))
    return rows


def transfer_rows(results: dict[str, Any]) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(group prefix, variant, task, row) of every transfer row in the results."""
    return [
        (group_prefix(results, g), v, t, row)
        for g, per in results.get("transfer", {}).items()
        for v, tasks in per.items()
        for t, row in tasks.items()
    ]


_TRANSFER_WHAT = {
    "UEG": "drawing what only the understanding side was taught",
    "GEU": "answering about what only the generation side was taught",
}


def transfer_answer(results: dict[str, Any]) -> list[str]:
    """One sentence per comparison group, direction and probe (direct and stepwise together) for the first unified
    variant: transfer minus floor, 'above the floor' only when the Holm-adjusted p is below 0.05 (the rest is in
    the transfer table). Scene tasks speak only where a study has no probe."""
    first = next((v["name"] for v in results["preset"]["variants"] if v["role"] == "unified"), None)
    rows = [x for x in transfer_rows(results) if x[1] == first and x[3].get("transfer_minus_floor")]
    probes = [x for x in rows if x[3].get("probe")]
    picked: dict[tuple[str, str, str], dict[str, tuple[str, dict[str, Any]]]] = {}
    for where, _, t, row in probes or rows:
        family = t.removesuffix("_stepwise") if probes else ""
        picked.setdefault((where, row["direction"], family), {}).setdefault(row["mode"], (t, row))
    out = []
    several = len({k[2] for k in picked}) > 1  # name the probe when the study has more than one
    for (where, direction, family), modes in picked.items():
        parts = []
        for mode, (t, row) in sorted(modes.items()):
            r = row["transfer_minus_floor"]
            above = "above the floor" if r["p_adjusted"] < 0.05 and r["diff"]["value"] > 0 else "no evidence"
            parts.append(
                f"{mode} ({t}) {100 * row['transfer']['value']:.0f} % right, "
                f"{points(r).replace(' points', ' points over the floor')}: {above}"
            )
        probe = f" by {family}" if several else ""
        out.append(f"{where}Transfer {direction}{probe} ({first}, {_TRANSFER_WHAT[direction]}): {'; '.join(parts)}.")
    return out


def answer(results: dict[str, Any]) -> list[str]:
    """One short sentence per question, with its 95 % interval and Holm-adjusted p; a change is a gain or a loss
    only when the adjusted p is below 0.05, else 'no evidence'; then one per transfer probe."""
    return [
        f"{question} ({what}): {points(r)}: {verdict(r)}." for question, what, r in headline(results)
    ] + transfer_answer(results)
