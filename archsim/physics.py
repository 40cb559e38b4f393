"""The physics report (reports/physics/): where the data of BPTT lives and what moving it costs.

Tables, each computed here from the estimate API (SimPy timing, priced actions):

- store vs recompute: BPTT state kept per step, time and energy per step, for lstm2x64, lstm2x512
  and lstm3x512 on every architecture preset;
- bytes moved per memory level per step (store mode), with what each level holds;
- replication: lstm2x512 at batch 1, 8, 32, 128 with 1, 2 and 4 copies of every matrix, each
  copy with its own digital unit: time, speedup, energy, and the tiles and area it costs;
- energy of lstm2x512 per step by component on every preset, before issue 10 (the numbers of
  ``before_issue10.json``, measured at the commit before it) and now.

The library never prints; ``archsim physics`` writes the folder.
"""
from __future__ import annotations

import json
from pathlib import Path

from archsim.units import format_quantity as fq

#: Workloads of the store-vs-recompute table (repository workloads/ names).
WORKLOADS = ("lstm2x64", "lstm2x512", "lstm3x512")
BATCHES = (1, 8, 32, 128)
COPIES = (1, 2, 4)
BEFORE_FILE = "before_issue10.json"


def _workload(repo: Path, name: str):
    from archsim.specs import load_workload

    return load_workload(repo / "workloads" / f"{name}.yaml")


def _with(arch, **system):
    return arch.model_copy(update={"system": arch.system.model_copy(update=system)})


def store_vs_recompute(repo: Path, presets: list[str]) -> list[dict]:
    from archsim.estimate import estimate
    from archsim.specs import load_architecture

    rows = []
    for name in WORKLOADS:
        w = _workload(repo, name)
        for preset in presets:
            base = load_architecture(preset)
            for mode in ("store", "recompute"):
                r = estimate(w, _with(base, bptt_state=mode), baselines=[])
                levels = r.memory["levels"]
                rows.append({
                    "workload": name, "architecture": preset, "bptt_state": mode,
                    "state_bytes": sum(v["peak_bytes"] for v in levels.values()),
                    "moved_bytes": sum(v["bytes_moved"] for v in levels.values()),
                    "dram_bytes": levels.get("dram", {}).get("bytes_moved", 0.0),
                    "time_per_step_s": r.time_per_step_s, "energy_per_step_J": r.energy_per_step_J,
                    "memory_energy_J": sum(v["energy_J"] for v in levels.values()),
                    "analog_energy_J": sum(r.energy_breakdown_J[c] for c in ("array", "dac", "integrator", "adc")),
                    "backward_s": r.phase_breakdown["backward"]["time_s"],
                    "bound_by": {p: v["stage"] for p, v in r.bound_by.items()},
                    "levels": levels, "placement": r.memory["placement"],
                })
    return rows


def replication(repo: Path, preset: str = "rpu2016") -> list[dict]:
    from archsim.compare_rows import area_m2
    from archsim.estimate import estimate
    from archsim.specs import load_architecture

    w = _workload(repo, "lstm2x512")
    base = load_architecture(preset)
    rows = []
    for batch in BATCHES:
        ref = None
        for copies in COPIES:
            r = estimate(w, _with(base, replication=copies), batch=batch, baselines=[])
            ref = ref or r
            area, missing = area_m2(base, r.tiles)
            rows.append({
                "batch": batch, "copies": copies, "tiles": r.tiles,
                "time_per_step_s": r.time_per_step_s,
                "speedup": ref.time_per_step_s / r.time_per_step_s,
                "backward_speedup": ref.phase_breakdown["backward"]["time_s"]
                / r.phase_breakdown["backward"]["time_s"],
                "energy_per_step_J": r.energy_per_step_J, "area_m2": area,
                "area_missing": missing,
                "bound_by": {p: v["stage"] for p, v in r.bound_by.items()},
            })
    return rows


def before_after(repo: Path, out: Path, presets: list[str]) -> dict:
    from archsim.estimate import estimate
    from archsim.specs import load_architecture

    before_path = out / BEFORE_FILE
    before = json.loads(before_path.read_text()) if before_path.exists() else {"rows": {}}
    w = _workload(repo, "lstm2x512")
    now = {}
    for preset in presets:
        r = estimate(w, load_architecture(preset))
        now[preset] = {"time_per_step_s": r.time_per_step_s,
                       "energy_per_step_J": r.energy_per_step_J,
                       "energy_breakdown_J": r.energy_breakdown_J,
                       "baselines": {b["name"]: {"speedup": b["speedup"],
                                                 "energy_ratio": b["energy_ratio"]}
                                     for b in r.baselines}}
    return {"before": before, "now": now}


def physics_report(repo: Path, out: Path) -> dict:
    """Compute every table; returns what :func:`write_report` writes."""
    from archsim.specs.loader import preset_names

    presets = preset_names("architectures")
    return {"presets": presets, "store_vs_recompute": store_vs_recompute(repo, presets),
            "replication": replication(repo), "energy": before_after(repo, out, presets)}


def _table(headers: list[str], rows: list[list]) -> str:
    from tabulate import tabulate

    return tabulate(rows, headers=headers, tablefmt="github")


def render(data: dict, command: str) -> str:
    lines = ["# Where BPTT's data lives and what moving it costs (issue 10)", "",
             "Generated by:", "", "```", command, "```", "",
             "Every number below is an `archsim estimate` (SimPy timing, priced actions) of the "
             "named workload at its batch (32) and T (100) unless the table says otherwise. BPTT "
             "state is placed by capacity: tile buffer (64 KiB per digital unit), else the 8 MiB "
             "global buffer, else HBM2 (3.9 pJ/bit, 256 GB/s); `archsim/memory.py` explains the "
             "rule and `archsim/program.py` derives what is kept from the LSTM equations.", ""]
    # -- store vs recompute
    lines += ["## Store vs recompute", "",
              "`store` keeps every tile's input u_t, the four gates, c_t and tanh(c_t) per "
              "timestep, and the errors dz_t; `recompute` keeps h_t and c_t (and the character "
              "index) and re-runs each LSTM layer's forward MVM during BPTT (more array cycles, "
              "ADC conversions and read noise, less memory). Errors are kept in both modes.", ""]
    rows = []
    for r in data["store_vs_recompute"]:
        rows.append([r["workload"], r["architecture"], r["bptt_state"], fq(r["state_bytes"], "B"),
                     fq(r["dram_bytes"], "B"), fq(r["time_per_step_s"], "s"),
                     fq(r["energy_per_step_J"], "J"), fq(r["memory_energy_J"], "J"),
                     fq(r["analog_energy_J"], "J"),
                     "/".join(r["bound_by"][p] for p in ("forward", "backward", "update"))])
    lines += [_table(["workload", "architecture", "BPTT", "state kept", "DRAM traffic",
                      "time/step", "energy/step", "memory energy", "array+DAC+int+ADC energy",
                      "bound by (fwd/bwd/upd)"], rows), ""]
    # -- bytes per level
    lines += ["## Bytes per memory level per step (store mode)", ""]
    rows = []
    for r in data["store_vs_recompute"]:
        if r["bptt_state"] != "store":
            continue
        for level, v in r["levels"].items():
            holds = sorted(k for k, lvl in r["placement"].items() if lvl == level)
            rows.append([r["workload"], r["architecture"], level, fq(v["bytes_moved"], "B"),
                         fq(v["energy_J"], "J"), fq(v["peak_bytes"], "B"),
                         fq(v["capacity_bytes"], "B"), ", ".join(holds)])
    lines += [_table(["workload", "architecture", "level", "moved", "energy", "kept (peak)",
                      "capacity", "holds"], rows), ""]
    # -- replication
    lines += ["## Replication (lstm2x512 on rpu2016)", "",
              "Each copy of a matrix holds its share of the batch and has its own digital unit "
              "(and tile buffer); copies apply their own samples' updates and are not kept "
              "identical (Gokmen, Onen & Haensch 2017), so no synchronisation is costed. Area: "
              "the components whose area the preset gives (DACs, ADCs; see `archsim compare`).", ""]
    rows = [[r["batch"], r["copies"], r["tiles"], fq(r["time_per_step_s"], "s"),
             f"{r['speedup']:.2f}x", f"{r['backward_speedup']:.2f}x", fq(r["energy_per_step_J"], "J"),
             f"{r['area_m2'] * 1e6:.1f} mm2",
             "/".join(r["bound_by"][p] for p in ("forward", "backward", "update"))]
            for r in data["replication"]]
    lines += [_table(["batch", "copies", "tiles", "time/step", "speedup", "backward speedup",
                      "energy/step", "area", "bound by (fwd/bwd/upd)"], rows), ""]
    # -- energy before / after
    e = data["energy"]
    before = e["before"].get("rows", {})
    lines += ["## Energy of lstm2x512 per step, before and after issue 10", "",
              f"Before: measured at commit {e['before'].get('commit', '?')} (no memory hierarchy: "
              "buffer traffic at the 64 KB eDRAM's price, 256-bit buses, 256 lanes); now: this "
              "tree. Components in µJ.", ""]
    comps = sorted({c for v in e["now"].values() for c in v["energy_breakdown_J"]}
                   | {c for v in before.values() for c in v["energy_breakdown_J"]},
                   key=lambda c: list(e["now"][next(iter(e["now"]))]["energy_breakdown_J"]).index(c)
                   if c in e["now"][next(iter(e["now"]))]["energy_breakdown_J"] else 99)
    rows = []
    for preset in data["presets"]:
        for label, src in (("before", before.get(preset)), ("now", e["now"].get(preset))):
            if src is None:
                continue
            bd = src["energy_breakdown_J"]
            v100 = src["baselines"].get("v100:fp16") or src["baselines"].get("v100", {})
            rows.append([preset, label, fq(src["time_per_step_s"], "s"), fq(src["energy_per_step_J"], "J")]
                        + [f"{bd.get(c, 0.0) * 1e6:.1f}" for c in comps]
                        + [f"{v100.get('speedup', float('nan')):.3g}x",
                           f"{v100.get('energy_ratio', float('nan')):.3g}x"])
    lines += [_table(["architecture", "", "time/step", "energy/step", *comps, "speedup vs V100",
                      "energy ratio vs V100"], rows), ""]
    return "\n".join(lines)


def write_report(data: dict, out: Path, command: str) -> list[Path]:
    """Write README.md and physics.json into ``out`` atomically (together)."""
    from archsim.fsutil import write_files_together

    files = {"README.md": render(data, command),
             "physics.json": json.dumps(data, indent=1, sort_keys=True, default=str) + "\n"}
    write_files_together(out, files)
    return [out / name for name in files]
