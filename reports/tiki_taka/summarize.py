"""README.md and loss.png of the Tiki-Taka study from its points/ (see study.py)."""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from tabulate import tabulate

ALG_NAMES = {"sgd": "SGD", "tiki_taka": "TTv1", "tiki_taka_v2": "TTv2",
             "chopped_tiki_taka_v2": "c-TTv2"}


def _load(points: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(points.glob("*.json"))]


def _diverged(r: dict) -> bool:
    return bool((r.get("train") or {}).get("diverged")) or "DivergenceError" in (r.get("error") or "")


def _loss(r: dict) -> float | None:
    t = r.get("train") or {}
    if _diverged(r):
        return math.inf
    v = t.get("test_loss")
    return None if v is None else float(v)


def _mean_sd(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sd of the finite seeds; ``inf`` when at least half of the seeds diverged (the rule
    of ``archsim reproduce``: a minority of diverged seeds is the optimizer's instability)."""
    values = [v for v in values if v is not None]
    finite = [v for v in values if math.isfinite(v)]
    if not values:
        return None, None
    if len(values) - len(finite) >= len(finite):
        return math.inf, None
    return statistics.fmean(finite), (statistics.stdev(finite) if len(finite) > 1 else None)


def _fmt(m, sd=None, n=None, diverged=0) -> str:
    if m is None:
        return "-"
    if math.isinf(m):
        return "diverged" + (f" ({diverged} of {n})" if n and n > 1 else "")
    s = f"{m:.3f}"
    if sd is not None:
        s += f" ± {sd:.3f}"
    if n and n > 1:
        s += f" ({n - diverged}" + (f" of {n}, {diverged} diverged" if diverged else "") + ")"
    return s


def _cell(group: list[dict]) -> tuple[str, float | None]:
    """A table cell for one (device, algorithm) over its seeds, and the mean the verdicts use."""
    losses = [_loss(r) for r in group]
    m, sd = _mean_sd(losses)
    diverged = sum(1 for v in losses if v is not None and math.isinf(v))
    return _fmt(m, sd, len(group), diverged), m


def _si(v: float, unit: str) -> str:
    for f, p in ((1, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n")):
        if abs(v) >= f:
            return f"{v / f:.3g} {p}{unit}"
    return f"{v:.3g} {unit}"


def _lifetime(est: dict) -> tuple[float | None, str]:
    """The shortest lifetime (epochs) over the arrays, from measured max writes where present."""
    e = (est or {}).get("endurance") or {}
    if not e.get("endurance_cycles"):
        return None, "-"
    best, where = None, "-"
    for a in e.get("arrays", []):
        life = a.get("lifetime_epochs")
        if life is not None and (best is None or life < best):
            best, where = life, f"{a['matrix']} {a.get('array') or ''} ({a.get('lifetime_basis')})".strip()
    return best, where


def summarize(points: Path, out: Path, order: list[str], price) -> None:
    """``price(point) -> estimate summary`` re-prices a point's measured activity."""
    rows = _load(points)
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["device"], r["algorithm"]), []).append(r)
    fp_cell, fp = _cell(groups.get(("ideal", "sgd"), []))
    fp = fp if fp is not None and math.isfinite(fp) else None
    present = {r["device"] for r in rows}
    devices = [d for d in order if d in present]
    algs = [a for a in ALG_NAMES if any(r["algorithm"] == a for r in rows)]

    acc = []
    for d in devices:
        asym = next((r.get("asymmetry") for r in groups.get((d, "sgd"), []) + groups.get((d, algs[-1]), [])), None)
        sgd_m = _mean_sd([_loss(r) for r in groups.get((d, "sgd"), [])])[0]
        row = {"device": d, "asymmetry": "-" if asym is None else f"{100 * asym:g} %"}
        for a in algs:
            row[f"{ALG_NAMES[a]} test"], m = _cell(groups.get((d, a), []))
            if a != "sgd":
                ok = not (m is None or sgd_m is None or math.isinf(m) or math.isinf(sgd_m))
                row[f"{ALG_NAMES[a]} - SGD"] = f"{m - sgd_m:+.3f}" if ok else "-"
                # Share of SGD's gap to floating point that this algorithm closes.
                gap = None if not ok or fp is None else sgd_m - fp
                row[f"{ALG_NAMES[a]} recovers"] = (f"{100 * (sgd_m - m) / gap:.0f} %"
                                                  if gap and gap > 0.02 else "-")
        if fp is not None:
            best = min((v for v in (_mean_sd([_loss(r) for r in groups.get((d, a), [])])[0] for a in algs)
                        if v is not None), default=None)
            row["best - fp"] = "-" if best is None or math.isinf(best) else f"{best - fp:+.3f}"
        acc.append(row)

    cost, facts = [], []
    for d in devices:
        own_sgd = None
        for a in algs:
            g = [r for r in groups.get((d, a), []) if "activity" in r]
            if not g:
                continue
            meas = price(g[0])
            if a == "sgd":
                own_sgd = meas
            same = (meas.get("tiki_taka") or {}).get("sgd") if a != "sgd" else None
            life, where = _lifetime(meas)

            def ratio(key, ref):
                return "-" if not ref else f"{meas[key] / ref[key]:.2f}x"

            facts.append({"device": d, "algorithm": a, "life": life,
                          "vs_run": (meas["time_per_step_s"] / own_sgd["time_per_step_s"]
                                     if own_sgd and a != "sgd" else None),
                          "machinery": (meas["time_per_step_s"] / same["time_per_step_s"]
                                        if same else None),
                          "bm": g[0]["activity"].get("bm_repeats_per_mvm") or 0.0})
            cost.append({
                "device": d, "algorithm": ALG_NAMES[a], "tiles": meas["tiles"],
                "time/step": _si(meas["time_per_step_s"], "s"),
                "energy/step": _si(meas["energy_per_step_J"], "J"),
                "energy/epoch": _si(meas["energy_per_epoch_J"], "J"),
                "time vs SGD run": ratio("time_per_step_s", own_sgd if a != "sgd" else None),
                "energy vs SGD run": ratio("energy_per_step_J", own_sgd if a != "sgd" else None),
                "TT machinery: time, energy": ("-" if not same else
                                               f"{ratio('time_per_step_s', same)}, {ratio('energy_per_step_J', same)}"),
                "bm repeats/MVM": f"{g[0]['activity'].get('bm_repeats_per_mvm') or 0:.2f}",
                "lifetime (epochs)": "-" if life is None else f"{life:.3g}",
                "shortest-lived array": where,
            })

    findings = _findings(acc, facts, algs)
    any_r = next((r for r in rows if "train" in r), {})
    lines = [
        "# Tiki-Taka vs plain pulsed SGD on asymmetric devices (issue 14, item 5)",
        "",
        "LSTM2-64 on War and Peace (workloads/lstm2x64.yaml), learning rate "
        f"{any_r.get('learning_rate')}, {any_r.get('steps')} steps of 32 x 100 characters "
        f"(about {any_r.get('steps', 0) * 3200 / 2882944:.2f} epochs), fast update mode, `rpu2016` "
        "tiles, seeds as counted in the table (in brackets when more than one: seeds that finished, "
        "of those run; a device and algorithm counts as diverged when at least half of its seeds "
        "diverged, else the others' mean ± sd is shown). "
        f"Tiki-Taka settings: {json.dumps(next((r['tt'] for r in rows if r.get('tt')), {}))} "
        "(one transfer per step reading that many columns of A in turn; see study.py).",
        "",
        "Commands (from the repository root; results resume per point):",
        "",
        f"    python reports/tiki_taka/study.py run --steps {any_r.get('steps')} --seeds "
        + " ".join(str(x) for x in sorted({r['seed'] for r in rows})),
        "    python reports/tiki_taka/study.py summarize",
        "",
        "How the Tiki-Taka settings were chosen: one transfer per step (transfer_every = T x B "
        "= 3,200) reading 100 columns keeps the transfers to one batched read and one update of C "
        "per tile and step (a transfer every 32 updates, aihwkit's one per mini-batch of an LSTM "
        "timestep, made a step 10x slower than SGD here); transfer_lr from a 300-step pilot on "
        "ecram_tang2018 at the same learning rate (test loss: SGD 2.925, TTv1 with transfer_lr "
        "0.1 2.322, 0.5 2.242), not tuned per device or per algorithm. TTv2 uses aihwkit's "
        "buffer defaults (thres_scale 1, momentum 0.1, forget_buffer, one pulse per transfer).",
        "",
        "## Findings (generated from the tables below)",
        "",
        "Differences of means over the seeds each point has (see the table); with one or two "
        "seeds per point there is no spread test, so differences of a few hundredths are not "
        "findings.",
        "",
        *findings,
        "",
        "## Test loss (nats/char)",
        "",
        f"Floating point (ideal device, same budget): {fp_cell}. 'recovers': the share of the "
        "gap between SGD and floating point on that device that the algorithm closes (shown where "
        "the gap exceeds 0.02 nats/char).",
        "",
        tabulate(acc, headers="keys", tablefmt="github"),
        "",
        "## Time, energy and lifetime (estimated from each run's measured activity)",
        "",
        "Per training step and epoch of the full workload, each priced from its own run's measured "
        "activity (`archsim run`). 'vs SGD run': against the SGD run on the same device (different "
        "weights, so different activity: the Tiki-Taka runs saturate the ADCs more often, and "
        "every saturated MVM is repeated by bound management, 'bm repeats/MVM'). 'TT machinery': "
        "the same activity on the SGD design (one array per block), i.e. what the second array, "
        "the transfers and the buffer H cost by themselves. Lifetime: epochs until the most-written "
        "device of the shortest-lived array reaches the preset's endurance (only presets with a "
        "published endurance have one).",
        "",
        tabulate(cost, headers="keys", tablefmt="github"),
        "",
    ]
    stopped = [r for r in rows if r.get("error")]
    if stopped:
        lines += ["## Runs that stopped early", "",
                  "A diverged run is a result (its loss shows as 'diverged'); archsim stops a run "
                  "whose training loss exceeds 3 ln V.", ""]
        lines += [f"- {r['label']} seed {r['seed']}: {r['error']}" for r in stopped] + [""]
    (out / "README.md").write_text("\n".join(lines))
    _plot(rows, out / "loss.png")


def _span(values, fmt) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    lo, hi = min(values), max(values)
    return fmt(lo) if fmt(lo) == fmt(hi) else f"{fmt(lo)}-{fmt(hi)}"


def _findings(acc: list[dict], facts: list[dict], algs: list[str]) -> list[str]:
    """Bullet points restating what the tables show (regenerated with them)."""
    out = []
    for a in algs[1:]:
        name = ALG_NAMES[a]
        rec = [f"{r['device']} {r[f'{name} recovers']}" for r in acc if r.get(f"{name} recovers", "-") != "-"]
        diff = {r["device"]: r.get(f"{name} - SGD", "-") for r in acc}
        better = [d for d, v in diff.items() if v != "-" and v.startswith("-")]
        worse = [d for d, v in diff.items() if v.startswith("+")]
        rescued = [r["device"] for r in acc if r.get("SGD test", "").startswith("diverged")
                   and not r.get(f"{name} test", "-").startswith(("diverged", "-"))]
        out.append(f"- {name}: lower test loss than SGD on {', '.join(better) or 'no device'}"
                   + (f"; higher on {', '.join(worse)}" if worse else "")
                   + (f"; finishes where SGD diverged on {', '.join(rescued)}" if rescued else "")
                   + (f". Share of SGD's gap to floating point recovered: {'; '.join(rec)}." if rec else "."))
    tt = [f for f in facts if f["algorithm"] != "sgd"]
    sgd_bm = [f["bm"] for f in facts if f["algorithm"] == "sgd"]
    out.append(f"- Cost of the Tiki-Taka machinery itself (second array, transfers, buffer H; same "
               f"activity on the SGD design): {_span([f['machinery'] for f in tt], lambda v: f'{100 * (v - 1):.1f} %')} "
               "more time per step at these transfer settings. Against the SGD run on the same "
               f"device a Tiki-Taka step takes {_span([f['vs_run'] for f in tt], lambda v: f'{v:.2f}x')} the "
               "time: its runs saturate the ADCs more often, and bound management repeats those MVMs "
               f"({_span([f['bm'] for f in tt], lambda v: f'{v:.2f}')} repeats per MVM against "
               f"{_span(sgd_bm, lambda v: f'{v:.2f}')} for SGD).")
    lives = [f"{f['device']} {ALG_NAMES[f['algorithm']]} {f['life']:.3g}" for f in facts
             if f["life"] is not None]
    if lives:
        out.append("- Lifetime (only presets with a published endurance), epochs until the "
                   f"most-written device wears out: {', '.join(lives)}. A takes the same SGD "
                   "pulses as the SGD array does, so Tiki-Taka changes the lifetime only through "
                   "the weights it learns (C's most-written devices get far fewer writes than A's).")
    return out


def _plot(rows: list[dict], path: Path) -> None:
    from archsim.plots import figure, write_png

    fig = figure(7, 4.2)
    ax = fig.subplots()
    colours = {d: f"C{i}" for i, d in enumerate(dict.fromkeys(r["device"] for r in rows))}
    for r in rows:
        curve = r.get("curve") or []
        if r.get("seed") != 0 or not curve:
            continue
        xs = [c.get("epoch") for c in curve if c.get("valid_loss") is not None]
        ys = [min(c["valid_loss"], 4.0) for c in curve if c.get("valid_loss") is not None]
        style = "-" if r["algorithm"] == "sgd" else ("--" if r["algorithm"] == "tiki_taka" else ":")
        ax.plot(xs, ys, style, color=colours[r["device"]],
                label=f"{r['device']} {ALG_NAMES.get(r['algorithm'], r['algorithm'])}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation loss (nats/char, clipped at 4)")
    ax.legend(fontsize=6, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    write_png(path, fig, dpi=110)
