"""The physics report (reports/physics/): where the data of BPTT lives and what moving it costs.

Tables, each computed here from the estimate API (SimPy timing, priced actions):

- store vs recompute: BPTT state kept per step, time and energy per step, for lstm2x64, lstm2x512
  and lstm3x512 on every architecture preset;
- bytes moved per memory level per step (store mode), with what each level holds;
- replication: lstm2x512 at batch 1, 8, 32, 128 with 1, 2 and 4 copies of every matrix, each
  copy with its own digital unit: time, speedup, energy, and the tiles and area it costs;
- chip area and static power by component for every preset (issue 11);
- energy of lstm2x512 per step by component on every preset, before issue 10, after it (before
  issue 11) and now (``before_issue10.json`` and ``before_issue11.json``, measured at the commits
  before each).

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
#: Earlier measurements of the energy table, oldest first.
BEFORE_FILES = ("before_issue10.json", "before_issue11.json")


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
    from archsim.estimate import estimate
    from archsim.hw.chip import occupied_area_m2
    from archsim.specs import load_architecture

    w = _workload(repo, "lstm2x512")
    base = load_architecture(preset)
    rows = []
    for batch in BATCHES:
        ref = None
        for copies in COPIES:
            r = estimate(w, _with(base, replication=copies), batch=batch, baselines=[])
            ref = ref or r
            rows.append({
                "batch": batch, "copies": copies, "tiles": r.tiles,
                "time_per_step_s": r.time_per_step_s,
                "speedup": ref.time_per_step_s / r.time_per_step_s,
                "backward_speedup": ref.phase_breakdown["backward"]["time_s"]
                / r.phase_breakdown["backward"]["time_s"],
                "energy_per_step_J": r.energy_per_step_J,
                "area_m2": occupied_area_m2(base, r.tiles),
                "bound_by": {p: v["stage"] for p, v in r.bound_by.items()},
            })
    return rows


def chip_table(presets: list[str]) -> list[dict]:
    from archsim.hw.chip import chip_budget
    from archsim.specs import load_architecture

    rows = []
    for preset in presets:
        arch = load_architecture(preset)
        b = chip_budget(arch)
        rows.append({"architecture": preset, "n_tiles": arch.system.n_tiles,
                     "area_m2": b.area_m2, "static_W": b.static_W, "chip_area_m2": b.chip_area_m2,
                     "chip_static_W": b.chip_static_W, "tile_area_m2": b.tile_area_m2,
                     "area_limit_m2": b.area_limit_m2, "missing_area": b.missing_area})
    return rows


def before_after(repo: Path, out: Path, presets: list[str]) -> dict:
    from archsim.estimate import estimate
    from archsim.specs import load_architecture

    before = [json.loads((out / f).read_text()) for f in BEFORE_FILES if (out / f).exists()]
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
            "replication": replication(repo), "chip": chip_table(presets),
            "energy": before_after(repo, out, presets)}


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
              "the tiles the copies occupy with their digital units, tile buffers and buses "
              "(`archsim/hw/chip.py`); the chip's other tiles leak all the same.", ""]
    rows = [[r["batch"], r["copies"], r["tiles"], fq(r["time_per_step_s"], "s"),
             f"{r['speedup']:.2f}x", f"{r['backward_speedup']:.2f}x", fq(r["energy_per_step_J"], "J"),
             f"{r['area_m2'] * 1e6:.1f} mm2",
             "/".join(r["bound_by"][p] for p in ("forward", "backward", "update"))]
            for r in data["replication"]]
    lines += [_table(["batch", "copies", "tiles", "time/step", "speedup", "backward speedup",
                      "energy/step", "area", "bound by (fwd/bwd/upd)"], rows), ""]
    # -- chip area and static power
    lines += ["## Chip area and static power per preset", "",
              "Every tile of the chip (`system.n_tiles`), its digital units, buses and global "
              "buffer (`archsim/hw/chip.py`); static power with every tile on (no power gating). "
              "mm2 / W per component; sources in the presets and in `sources.md`.", ""]
    comps = [c for c in data["chip"][0]["area_m2"] if c != "dram"] if data["chip"] else []
    rows = [[r["architecture"], r["n_tiles"]]
            + [f"{r['area_m2'][c] * 1e6:,.1f} / {r['static_W'][c]:.3g}" for c in comps]
            + [f"{r['chip_area_m2'] * 1e6:,.0f}", f"{r['chip_static_W']:.3g}",
               "" if not r["area_limit_m2"] else f"{r['chip_area_m2'] / r['area_limit_m2']:.0%}",
               ", ".join(r["missing_area"])]
            for r in data["chip"]]
    lines += [_table(["architecture", "tiles", *comps, "chip mm2", "chip static W",
                      "of area limit", "no area given"], rows), ""]
    # -- energy before / after
    e = data["energy"]
    series = [(b.get("label", b.get("commit", "before")), b.get("rows", {})) for b in e["before"]]
    series.append(("now", e["now"]))
    lines += ["## Energy of lstm2x512 per step, before and after issues 10 and 11", "",
              "Measured at the commit before issue 10 (" + ", ".join(
                  f"{b.get('label')}: commit {b.get('commit')}" for b in e["before"]) + ") and on "
              "this tree. Components in µJ; the V100 in fp16.", ""]
    first_now = next(iter(e["now"].values()))["energy_breakdown_J"]
    comps = list(first_now)
    rows = []
    for preset in data["presets"]:
        for label, src_rows in series:
            src = src_rows.get(preset)
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
