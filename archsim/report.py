"""Human-readable tables (tabulate) and Markdown reports of an :class:`EstimateResult`."""
from __future__ import annotations

from tabulate import tabulate

from archsim.units import format_quantity as fq


#: Report titles of the Tiki-Taka algorithms (``update.algorithm``).
TT_NAMES = {"tiki_taka": "Tiki-Taka v1", "tiki_taka_v2": "Tiki-Taka v2 (TTv2, buffered transfer)",
            "chopped_tiki_taka_v2": "Chopped Tiki-Taka v2 (chopped TTv2)"}


def estimate_tables(r, fmt: str = "simple") -> list[tuple[str, str]]:
    """(title, table) pairs of an estimate result, in display order."""
    out = []
    summary = [
        ["workload", f"{r.workload} (batch {r.batch_size}, T {r.seq_len}, {r.n_weights:,} weights)"],
        ["architecture / device", f"{r.architecture} / {r.device}"],
        ["tiles (array utilization)", f"{r.tiles} ({r.array_utilization:.1%})"],
        ["time per step", fq(r.time_per_step_s, "s")],
        ["time per epoch", f"{fq(r.time_per_epoch_s, 's')} ({r.steps_per_epoch:,} steps, {r.epoch_method})"],
        ["energy per step", fq(r.energy_per_step_J, "J")],
        ["energy per epoch", fq(r.energy_per_epoch_J, "J")],
        ["training ops per step", f"{r.ops_per_step:.3g} (3 x forward, forward = 2 x MACs)"],
        ["throughput", fq(r.ops_per_s, "op/s")],
        ["efficiency", fq(r.ops_per_W, "op/s/W")],
        ["closed form vs SimPy (first step)", f"{fq(r.analytic_step_s, 's')} vs {fq(r.first_step_s, 's')}"],
    ]
    out.append(("Summary", tabulate(summary, tablefmt=fmt)))
    if r.chip:
        c = r.chip
        rows = [[comp, f"{r.area_m2.get(comp, 0.0) * 1e6:,.3f}", fq(r.static_W.get(comp, 0.0), "W")]
                for comp in r.area_m2 if comp not in ("chip", "tile")
                and (r.area_m2.get(comp) or r.static_W.get(comp))]
        rows.append(["one tile", f"{r.area_m2['tile'] * 1e6:,.3f}", fq(r.static_W["tile"], "W")])
        rows.append(["chip", f"{c['area_m2'] * 1e6:,.1f}", fq(c["static_W"], "W")])
        gated = "power-gated: only used tiles leak" if c["power_gating"] else "every tile leaks"
        out.append((f"Area and static power ({c['n_tiles']} tiles, {c['used_tiles']} used, {gated}; "
                    f"average power {fq(c['average_power_W'], 'W')}; no area given for: "
                    f"{', '.join(c['area_not_modelled']) or 'none'})",
                    tabulate(rows, headers=["component", "area (mm2)", "static power"], tablefmt=fmt)))
    out.append(("Mapping", tabulate(
        [[m["matrix"], m["shape"], m["tiles"], f"{m['utilization']:.1%}"] for m in r.mapping],
        headers=["matrix", "shape", "tiles (rows x cols)", "array utilization"], tablefmt=fmt)))
    tt = getattr(r, "tiki_taka", None)
    if tt:
        e = tt["transfer_energy_J"]
        rows = [[label, f"{tt['sgd'][k]:,}" if k == "tiles" else fq(tt["sgd"][k], u),
                 f"{tt['tiki_taka'][k]:,}" if k == "tiles" else fq(tt["tiki_taka"][k], u),
                 f"{tt['tiki_taka'][k] / tt['sgd'][k]:.3f}x" if tt["sgd"][k] else "-"]
                for label, k, u in (("tiles", "tiles", ""), ("time per step", "time_per_step_s", "s"),
                                    ("energy per step", "energy_per_step_J", "J"),
                                    ("time per epoch", "time_per_epoch_s", "s"),
                                    ("energy per epoch", "energy_per_epoch_J", "J"))]
        rows += [["transfer reads per step", "0", f"{tt['transfer_reads_per_step']:,}", "-"],
                 ["transfer updates per step", "0", f"{tt['transfer_updates_per_step']:,}", "-"],
                 ["transfer read energy per step", "0", fq(e["transfer_read"], "J"), "-"],
                 ["transfer update energy per step", "0", fq(e["transfer_update"], "J"), "-"]]
        h = tt.get("buffer")
        name, how = TT_NAMES.get(tt.get("algorithm", "tiki_taka"), TT_NAMES["tiki_taka"]), ""
        if h:
            places = sorted(set(h["level"].values()))
            ops = h["digital_ops_per_step"]
            rows += [[f"buffer H ({h['word_bits']}-bit words, in {', '.join(places)})", "0",
                      fq(h["bytes"], "B"), "-"],
                     ["buffer H digital ops per step (add, mul)", "0",
                      f"{ops.get('add', 0):,.0f}, {ops.get('mul', 0):,.0f}", "-"],
                     ["buffer H traffic per step", "0", fq(h["bits_moved_per_step"] / 8, "B"), "-"],
                     ["of the transfer update energy: buffer H", "0",
                      fq(h["energy_per_step_J"], "J"), "-"]]
            how = (f"; buffer H: threshold {h['thres_scale']:g} dw_min, momentum "
                   f"{h['momentum']:g}, forget_buffer {str(h['forget_buffer']).lower()}, at most "
                   f"{h['transfer_desired_bl']} pulse(s) per transfer"
                   + (f", in_chop_prob {h['in_chop_prob']:g}" if "in_chop_prob" in h else ""))
        out.append((f"{name} (arrays A and C per block; a transfer of {tt['n_reads_per_transfer']} "
                    f"column(s) every {tt['transfer_every']} rank-one updates, transfer_lr "
                    f"{tt['transfer_lr']:g}, gamma {tt['gamma']:g}{how}) beside the SGD design",
                    tabulate(rows, headers=["", "SGD", "Tiki-Taka", "ratio"], tablefmt=fmt)))
    if getattr(r, "endurance", None):
        out.append(endurance_table(r.endurance, fmt))
    total = r.energy_per_step_J
    out.append(("Energy per step by component", tabulate(
        [[c, fq(e, "J"), f"{e / total:.1%}"] for c, e in r.energy_breakdown_J.items() if e > 0]
        + [["total", fq(total, "J"), "100%"]],
        headers=["component", "energy", "share"], tablefmt=fmt)))
    out.append(("Per step by phase", tabulate(
        [[p, fq(v["time_s"], "s"), fq(v["energy_J"], "J")] for p, v in r.phase_breakdown.items()],
        headers=["phase", "time", "energy"], tablefmt=fmt)))
    out.append(("What bounds each phase (the stage that holds its resource longest per vector, "
                "share of the phase's op time; the resource its stages waited for in SimPy)", tabulate(
        [[p, v["stage"], f"{v['share']:.0%}", v.get("waits_on") or "-",
          fq(v["wait_per_step_s"], "s") if v.get("waits_on") else "-"]
         for p, v in r.bound_by.items()],
        headers=["phase", "bound by", "share", "waits on", "waiting per step"], tablefmt=fmt)))
    if r.memory:
        levels = r.memory["levels"]
        placed: dict[str, list[str]] = {}
        for what, level in r.memory["placement"].items():
            placed.setdefault(level, []).append(what)
        out.append((f"Memory per step (BPTT state: {r.memory['bptt_state']})", tabulate(
            [[lvl, fq(v["bytes_moved"], "B"), fq(v["energy_J"], "J"), fq(v["peak_bytes"], "B"),
              fq(v["capacity_bytes"], "B"), ", ".join(placed.get(lvl, [])) or "working vectors"
              if lvl == "buffer" else ", ".join(placed.get(lvl, []))]
             for lvl, v in levels.items()],
            headers=["level", "moved", "energy", "state kept (peak)", "capacity", "holds"],
            tablefmt=fmt)))
    util = [[k, f"{v:.1%}", f"{r.utilization.get(k + '_max', v):.1%}"]
            for k, v in r.utilization.items() if not k.endswith("_max")]
    out.append(("Busy fraction per resource (mean / max over instances)", tabulate(
        util, headers=["resource", "mean", "max"], tablefmt=fmt)))
    if r.baselines:
        out.append(("Digital baselines (same workload, batch and T; energy = modelled power x time, "
                    "bound = board TDP x time)", tabulate(
            [[b["name"], fq(b["time_per_step_s"], "s"), fq(b["energy_per_step_J"], "J"),
              fq(b.get("energy_bound_J", b["energy_per_step_J"]), "J"),
              f"{b['speedup']:.3g}x", f"{b['energy_ratio']:.3g}x",
              f"{b.get('energy_ratio_bound', b['energy_ratio']):.3g}x",
              "" if b["utilization"] is None else f"{b['utilization']:.1%}",
              "" if b.get("threads") is None else str(b["threads"])]
             for b in r.baselines],
            headers=["baseline:precision", "time/step", "energy/step", "energy bound", "speedup",
                     "energy ratio", "energy ratio (bound)", "utilization", "CPU threads"],
            tablefmt=fmt)))
    return out


def endurance_table(e: dict, fmt: str = "simple") -> tuple[str, str]:
    """(title, table) of an estimate's ``endurance`` block: writes per device per step and per
    epoch (mean; max and p99 where measured) and the lifetime in epochs."""
    def num(v):
        return "-" if v is None else f"{v:.3g}"

    rows = [[a["matrix"], a["array"], f"{a['devices']:,}", num(a["mean_per_step"]),
             num(a["max_per_step"]), num(a["p99_per_step"]), num(a["mean_per_epoch"]),
             num(a["max_per_epoch"]), num(a["p99_per_epoch"]),
             "-" if a["lifetime_epochs"] is None else f"{a['lifetime_epochs']:.3g} ({a['lifetime_basis']})"]
            for a in e["arrays"]]
    cycles = e.get("endurance_cycles")
    life = ("device endurance not given" if cycles is None else
            f"endurance {cycles:.3g} writes; the array lasts {num(e['lifetime_epochs'])} epochs")
    title = (f"Endurance: writes (coincidences) per device, per step and per epoch of "
             f"{e['steps_per_epoch']:,} steps ({'max and p' + str(e['percentile']) + ' measured' if e['measured'] else 'nominal: mean only'}; {life})")
    return title, tabulate(rows, headers=["matrix", "array", "devices", "mean/step", "max/step",
                                          f"p{e['percentile']}/step", "mean/epoch", "max/epoch",
                                          f"p{e['percentile']}/epoch", "lifetime (epochs)"],
                           tablefmt=fmt)


def _over_budget(r) -> list[str]:
    return [f"OVER BUDGET: {line}" for line in (r.chip or {}).get("exceeded", [])]


def estimate_text(r) -> str:
    parts = _over_budget(r) + [f"{title}\n{table}" for title, table in estimate_tables(r)]
    parts.append("Notes:\n" + "\n".join(f"- {n}" for n in r.notes))
    return "\n\n".join(parts) + "\n"


def estimate_markdown(r, command: str | None = None) -> str:
    lines = [f"# archsim estimate: {r.workload} on {r.architecture}", ""]
    lines += [f"**{line}**" for line in _over_budget(r)] + ([""] if _over_budget(r) else [])
    if command:
        lines += ["Produced by:", "", "```", command, "```", ""]
    for title, table in estimate_tables(r, fmt="github"):
        lines += [f"## {title}", "", table, ""]
    lines += ["## Notes", ""] + [f"- {n}" for n in r.notes] + [""]
    return "\n".join(lines)
