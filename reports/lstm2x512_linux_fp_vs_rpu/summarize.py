"""Write README.md of this folder from the run's curves (rerun after copying newer curves in)."""
import re
from pathlib import Path

from archsim.functional.report_tables import command_and_run_table, load_curve, run_row

HERE = Path(__file__).resolve().parent
COMMAND = ("nice -n 19 python -m archsim validate workloads/lstm2x512.yaml --device rpu_baseline "
           "--data ../shared/data/linux_kernel_input.txt --epochs 2 --seed 0 --threads 1 "
           "--out RUN_DIR --json")


def valid_at(curve, chars):
    pts = [p for p in curve if p.get("valid_loss") is not None and p["chars"] <= chars]
    return pts[-1] if pts else None


DIVERGED = """The rpu_baseline run diverged: at the workload's learning rate 0.05 (no gradient clipping) its
training loss fell slowly (3.63 at step 173 against floating point's 3.61; 3.31 at step 290) and
then jumped to 27.8 nats/char at step 295, which archsim stops as divergence (exit 3; the last lines
of its log are in `run/rpu_baseline/stderr_tail.txt`). Floating point at the same learning rate
also spiked once (valid 2.66 at step 519, 3.62 at step 692) and recovered. So 0.05 is at the edge
of stability for this network even in floating point, and past it on rpu_baseline devices. Next:
the same comparison at a lower learning rate (0.02) or with `training.grad_clip`, both sides alike.

"""

COMMAND_LR002 = ("nice -n 15 python -m archsim train workloads/lstm2x512.yaml --device DEVICE "
                 "--data ../shared/data/linux_kernel_input.txt --epochs 2 --seed 0 --threads 1 "
                 "--lr 0.02 --out RUN_DIR --no-progress --json")


def gap_table(marks):
    """The validation losses of both sides at their common curve points, and the gap."""
    return ("Validation loss at the same points (the gap is rpu_baseline - floating point):\n\n"
            "| chars | epoch | floating point | rpu_baseline | gap |\n|---|---|---|---|---|\n"
            + ("\n".join(marks) or "| - | - | - | - | - |"))


def runs(folder):
    """The run table's rows, the curves and the validation gaps at common points of ``folder``."""
    rows, curves = [], {}
    for run, label in (("fp", "floating point (ideal device)"), ("rpu_baseline", "rpu_baseline (fast update)")):
        curves[run] = curve = load_curve(HERE / folder / run / "curve.json")
        if curve and curve[-1].get("diverged"):
            end = curve[-1]
            rows.append(f"| {label} | {end['chars'] / 5538004:.2f} | {end['train_loss']:.1f} | - | - | "
                        f"diverged at step {end['step']} ({end['chars']:,} chars) |")
        else:
            rows.append(run_row(label, curve, unfinished="stopped here when the session ended"))
    marks, seen = [], set()
    for p in curves["rpu_baseline"]:
        if p.get("valid_loss") is None or p["chars"] in seen:   # the final point repeats the last one
            continue
        seen.add(p["chars"])
        fp = valid_at(curves["fp"], p["chars"])
        if fp is not None and fp["chars"] == p["chars"]:
            marks.append(f"| {p['chars']:,} | {p['epoch']:.2f} | {fp['valid_loss']:.3f} | "
                         f"{p['valid_loss']:.3f} | {p['valid_loss'] - fp['valid_loss']:+.3f} |")
    return rows, curves, marks


rows, curves, marks = runs("run")
rows2, curves2, marks2 = runs("run_lr0.02")
rows3, curves3, marks3 = runs("run_lr0.02_clip")
COMMAND_CLIP = ("nice -n 10 python -m archsim train reports/lstm2x512_linux_fp_vs_rpu/lstm2x512_clip.yaml "
                "--device DEVICE --data ../shared/data/linux_kernel_input.txt --epochs 2 --seed 0 "
                "--threads 1 --out RUN_DIR --no-progress --json")


def diverged(curve):
    """The diverged point of a curve, or None."""
    return curve[-1] if curve and curve[-1].get("diverged") else None


def last_valid(curve):
    pts = [p for p in curve if p.get("valid_loss") is not None]
    return pts[-1] if pts else None


FINDINGS = []
fp2, rpu2 = diverged(curves2["fp"]), diverged(curves2["rpu_baseline"])
if fp2 is not None:
    before = last_valid(curves2["fp"])
    FINDINGS.append(
        f"**Floating point itself diverged at lr 0.02**: its validation loss was {before['valid_loss']:.3f} "
        f"at step {before['step']}, and by step {fp2['step']} ({fp2['chars']:,} characters) its training "
        f"loss was {fp2['train_loss']:.1f} nats/char. At lr 0.05 it had spiked near the same place (valid "
        "2.66 at step 519, 3.62 at step 692) and recovered. So the instability is the recipe's (plain SGD "
        "with no clipping, on this corpus, in the first epoch), not the devices'; a lower learning rate "
        "alone does not cure it.")
if rpu2 is None and curves2["rpu_baseline"]:
    end = curves2["rpu_baseline"][-1]
    FINDINGS.append(
        f"rpu_baseline at lr 0.02 had not diverged when the session ended (step {end['step']}, "
        f"{end['chars']:,} characters, epoch {end['epoch']:.2f}).")
elif rpu2 is not None:
    FINDINGS.append(f"rpu_baseline at lr 0.02 diverged too, at step {rpu2['step']} "
                    f"({rpu2['chars']:,} characters).")
CLIP_FINDINGS = []
fp3, rpu3 = diverged(curves3["fp"]), diverged(curves3["rpu_baseline"])
if curves3["fp"] and fp3 is None and curves3["fp"][-1].get("final"):
    end = curves3["fp"][-1]
    CLIP_FINDINGS.append(
        f"**The clip cures floating point**: it passes step 729 and finishes the 2 epochs (test "
        f"{end['test_loss']:.3f}; at lr 0.05 without the clip it ended at 1.685).")
if rpu3 is not None:
    before = last_valid(curves3["rpu_baseline"])
    CLIP_FINDINGS.append(
        f"**It does not cure rpu_baseline**: ahead of floating point in validation loss until then "
        f"({before['valid_loss']:.3f} against {valid_at(curves3['fp'], before['chars'])['valid_loss']:.3f} "
        f"at step {before['step']}), it diverged at step {rpu3['step']} ({rpu3['chars']:,} characters), "
        "about where the unclipped runs of both sides diverged (steps 729 and 797). Why: the next "
        "section.")


def diagnosis_rows(path):
    """One table row per experiment of ``diagnosis/step832.txt`` (diagnose_divergence.py's output)."""
    rows = []
    for block in path.read_text().split("\n$ "):
        lines = [line for line in block.strip().splitlines() if line]
        if not lines:
            continue
        flags = lines[0].split("--steps", 1)[1].split(None, 1)
        change = flags[1] if len(flags) > 1 else "nothing (the run as it was)"
        losses = [float(line.split("loss ")[1].split()[0]) for line in lines if line.startswith("step ")]
        steps = [int(line.split()[1].rstrip(":")) for line in lines if line.startswith("step ")]
        end = (f"diverged at step {steps[-1]}" if lines[-1].startswith("diverged") else
               f"{losses[-1]:.2f} at step {steps[-1]}")
        rows.append(f"| `{change}` | {losses[0]:.2f} | {losses[1]:.2f} | {max(losses):.2f} | {end} |")
    return rows


DIAG_FILE = HERE / "diagnosis" / "step832.txt"
DIAGNOSIS = "" if not DIAG_FILE.exists() else f"""
### Why rpu_baseline diverged at lr 0.02: the weights it had reached, not its update

The run's last checkpoint (step 832, ten steps before the divergence) was continued step by step
with one thing changed at a time, on the batches the run would have seen, by
`diagnose_divergence.py` here (output: `diagnosis/step832.txt`, with each command; RUN_DIR held the
run's 95 MB checkpoint, which is not committed). The same program on the current code gives the
run's own losses at steps 833-842 to the last digit, so it continues the run faithfully.

| changed from step 832 on | loss at 833 | at 834 | largest | end |
|---|---|---|---|---|
{chr(10).join(diagnosis_rows(DIAG_FILE))}

- **The learning rate is what matters.** At lr 0.02 every variant's loss rises within two steps
  (3.47 to 3.9-4.3 at step 834) and then diverges or stays far above where it was; at lr 0.01 the
  loss falls at once (2.87 at step 835, 2.57 at step 854).
- **Not the devices' update.** Floating point started from the same weights (`--as-ideal`) diverges
  at lr 0.02 (step 839, with the output weights growing past the devices' bounds) and recovers at
  lr 0.01, like the devices.
- **Not the noise.** Without cycle-to-cycle update noise (`dw_min_std` 0) or without output noise
  the losses at step 834 are the same to 0.002, and both rise to 11-12 nats/char within 12 steps;
  other random draws (`--generator-seed 5`) reach 13.7 (just under the divergence limit of 13.8)
  and are still at 4.1 twenty steps later.
- **Not the clip.** Clipping the errors at 0.01 instead of 0.05 does not help.

So the rpu_baseline run had reached weights where a step of lr 0.02 overshoots (its loss at step
832, 3.47, was already above its 2.83 average at step 692), which the floating-point run at lr
0.02 with the clip never reached. Hence the recipe below: lr 0.01 with the same clip, both sides.
"""

RUNS4 = HERE / "run_lr0.01_clip"
rows4, curves4, marks4 = runs("run_lr0.01_clip") if RUNS4.exists() else ([], {}, [])
COMMAND_LR001 = ("nice -n 10 python -m archsim train reports/lstm2x512_linux_fp_vs_rpu/lstm2x512_lr0.01_clip.yaml "
                 "--device DEVICE --data ../shared/data/linux_kernel_input.txt --epochs 2 --seed 0 "
                 "--threads 1 --out RUN_DIR --no-progress --json")


def lr001_findings():
    """What the lr 0.01 runs show, from their curves."""
    if not rows4:
        return ""
    fp, rpu = curves4["fp"], curves4["rpu_baseline"]
    gaps = []   # (epoch, rpu - fp validation loss) at common points from epoch 0.2 on
    for p in rpu:
        q = valid_at(fp, p["chars"]) if p.get("valid_loss") is not None else None
        if q is not None and q["chars"] == p["chars"] and p["epoch"] >= 0.2:
            gaps.append((p["epoch"], p["valid_loss"] - q["valid_loss"]))
    out = []
    if diverged(rpu) is None and rpu and rpu[-1]["step"] > 842:
        out.append("rpu_baseline passed the stretch where it diverged at lr 0.02 (steps 797-842) and "
                   + ("finished the 2 epochs." if rpu[-1].get("final") else f"went on to step {rpu[-1]['step']}."))
    ahead = [(e, g) for e, g in gaps if g < 0]
    if ahead:
        last_ahead = max(e for e, _ in ahead)
        behind = [(e, g) for e, g in gaps if e > last_ahead]
        text = (f"From epoch 0.2 to {last_ahead:.1f} its validation loss is below floating point's at "
                f"{len(ahead)} of {len([1 for e, _ in gaps if e <= last_ahead])} common points (by up to "
                f"{-min(g for _, g in ahead):.3f} nats/char): at this learning rate the devices learn "
                "faster than floating point in the first epoch (as at lr 0.02 before either diverged)")
        if behind:
            text += (f"; from epoch {behind[0][0]:.1f} on it is above (by {min(g for _, g in behind):+.3f} to "
                     f"{max(g for _, g in behind):+.3f} nats/char): floating point overtakes it")
        out.append(text + ". The expected update is floating point's "
                   "(tests/test_functional_update.py: the exact update's mean against -lr d x, the fast "
                   "update's mean and variance against the exact one's), so the difference lies in what "
                   "the devices add: bounded weights (about +-0.6), noise, quantization. Where the "
                   "weights ended: the next section. Why the devices lead early: "
                   "`../lstm2x64_warpeace_fp_vs_rpu/diagnostics/early_lead/` (LSTM2-64 at the same "
                   "learning rate, where the devices also leave the unigram plateau first: most of "
                   "that lead comes from their device-to-device up/down imbalance, the property "
                   "behind most of the gap at the end; its drift alone gives the lead, through the "
                   "output layer's devices).")
    end_fp, end_rpu = fp[-1] if fp else None, rpu[-1] if rpu else None
    if end_fp is not None and end_rpu is not None and end_fp.get("final") and end_rpu.get("final"):
        out.append(f"**After 2 epochs: test {end_rpu['test_loss']:.3f} (rpu_baseline) against "
                   f"{end_fp['test_loss']:.3f} (floating point), a gap of "
                   f"{end_rpu['test_loss'] - end_fp['test_loss']:+.3f} nats/char**, one seed. Both are "
                   "far from converged at this learning rate (floating point at lr 0.05 reached 1.685).")
    return "\n\n".join(out)


WEIGHTS_FILE = HERE / "diagnosis" / "weights_lr0.01_clip.txt"


def weight_tables(text):
    """The two tables of ``weight_stats.py``'s output ``text`` as markdown, and their rows as dicts."""
    blocks = [b for b in text.split("\n\n") if b.strip()]
    tables, moved, where = [], [], []
    for block in blocks:
        lines = [line for line in block.splitlines() if line and not line.startswith(("$", "floating point:", "device run:"))]
        if not lines:
            continue
        # Columns are separated by two or more spaces (cells hold single spaces).
        cells = [[c.strip() for c in re.split(r"\s{2,}", line.strip())] for line in lines]
        head, body = cells[0], cells[1:]
        def row(r):   # a | inside a cell (|w|) would end it
            return "| " + " | ".join(c.replace("|", "\\|") for c in r) + " |"
        tables.append("\n".join([row(head), "|" + "---|" * len(head)] + [row(r) for r in body]))
        if "moved fp" in head:
            moved = [dict(zip(head, r)) for r in body]
        elif "at a bound" in head:
            where = [dict(zip(head, r)) for r in body]
    return tables, moved, where


def percent(rows, side, column):
    """The largest percentage of ``column`` over ``rows`` of ``side`` ("device": the device run)."""
    values = [float(r[column].rstrip(" %")) for r in rows if r[column].endswith("%")
              and (r["side"] == "floating point") == (side == "fp")]
    return max(values) if values else float("nan")


def span(rows, column, fmt="{:.3f}"):
    """``lo-hi`` of a numeric column over rows (one number when they agree)."""
    values = [float(r[column].replace(",", "")) for r in rows]
    lo, hi = fmt.format(min(values)), fmt.format(max(values))
    return lo if lo == hi else f"{lo}-{hi}"


def weights_section():
    if not WEIGHTS_FILE.exists():
        return ""
    text = WEIGHTS_FILE.read_text()
    tables, moved, where = weight_tables(text)
    command = text.splitlines()[0].lstrip("$ ")
    lstm = [m for m in moved if m["matrix"].startswith("lstm")]
    ratio = [float(m["random walk"]) / float(m["moved fp"]) for m in lstm]
    findings = []
    if lstm:
        findings.append(
            f"- **The devices' weights moved {span(lstm, 'moved device')} (rms) in the LSTM layers, "
            f"floating point's {span(lstm, 'moved fp')}.** The pulsed update's sampling noise alone (a "
            f"random walk of each device's {span(lstm, 'coincidences per device (mean)', '{:,.0f}')} "
            f"coincidences on average) accounts for {span(lstm, 'random walk')}, "
            f"{min(ratio):.1f}-{max(ratio):.1f} times floating point's whole movement. A rank-one "
            "update moves a device by one step with probability about |lr x d| / dw_min: the mean is "
            "floating point's update, the variance about dw_min |lr x d|. Over a step's 3,200 rank-one "
            "updates (batch 32 x 100 timesteps) the means of terms of opposite sign cancel, as in "
            "floating point's summed gradient; their variances add up.")
        findings.append(
            "- **The devices' own up/down imbalance** (`up_down_dtod` 0.01) drifts each weight by "
            "n/2 (step_up - step_down) if half of its n coincidences go each way; this column is an "
            "upper end (the most-written devices would pass their bounds, and few do), so the three "
            "parts in quadrature exceed the measured movement.")
    if where:
        lstm_w = [r for r in where if r["matrix"].startswith("lstm")]
        out_w = [r for r in where if not r["matrix"].startswith("lstm")]
        outside = "outside the devices' bounds"
        findings.append(
            f"- **Not the bounds:** at most {percent(lstm_w, 'device', 'at a bound'):.2f} % of the LSTM "
            f"layers' devices ({percent(out_w, 'device', 'at a bound'):.2f} % of the output layer's) end "
            "within one step of a bound, and floating point's weights would fit inside the devices' "
            f"bounds but for {percent(lstm_w, 'fp', outside):.2f} % "
            f"({percent(out_w, 'fp', outside):.2f} %) of them (first table).")
    if lstm:
        findings.append(
            f"- At this learning rate floating point's LSTM weights moved less ({span(lstm, 'moved fp')}) "
            "than their initial spread (rms "
            f"{span([{'w0': m['rms |w0| (fp, device)'].split(',')[0]} for m in lstm], 'w0')}): the "
            "learned signal per device is small against the update's noise, which grows with the "
            "number of coincidences. That the gap opens as training goes on fits this reading; it is "
            "one seed's final state, not a measurement over time.")
    return f"""
### Where the weights ended (lr 0.01, after 2 epochs)

`weight_stats.py` here reads both runs' final checkpoints (not committed; FP_RUN_DIR and RPU_RUN_DIR
held them) and rebuilds the initial weights from the seed (output, with the command:
`diagnosis/weights_lr0.01_clip.txt`):

    {command}

{chr(10).join(t + chr(10) for t in tables)}
{chr(10).join(findings)}
"""


WEIGHTS = weights_section()

# Which part of the update: the same lr 0.01 + clip recipe on two diagnostic devices.
PARTS = (("rpu_fine_steps", "rpu_fine_steps (dw_min 0.00025: half the random walk, the same imbalance drift)",
          "reports/lstm2x64_warpeace_fp_vs_rpu/diagnostics/states/rpu_fine_steps.yaml"),
         ("rpu_symmetric", "rpu_symmetric (up_down_dtod 0: no imbalance drift, the same step)", "rpu_symmetric"))
COMMAND_PARTS = ("nice -n 5 python -m archsim train reports/lstm2x512_linux_fp_vs_rpu/lstm2x512_lr0.01_clip.yaml "
                 "--device DEVICE --data ../shared/data/linux_kernel_input.txt --epochs 2 --seed 0 "
                 "--threads 1 --out RUN_DIR --no-progress --json")


def parts_section():
    curves = {name: load_curve(RUNS4 / name / "curve.json") for name, _, _ in PARTS}
    if not any(curves.values()) or not rows4:
        return ""
    rows = [run_row(label, curves[name], unfinished="stopped here when the session ended")
            for name, label, _ in PARTS]
    devices = ", ".join(f"`{device}`" for _, _, device in PARTS)
    base = {"fp": curves4["fp"], "rpu_baseline": curves4["rpu_baseline"], **curves}
    head = ["epoch", "floating point", "rpu_baseline", *[name for name, _, _ in PARTS]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    common = sorted({p["chars"] for p in curves4["fp"] if p.get("valid_loss") is not None})
    for chars in common:
        vals = {}
        for name, curve in base.items():
            q = valid_at(curve, chars)
            vals[name] = q["valid_loss"] if q is not None and q["chars"] == chars else None
        if all(vals[name] is None for name, _, _ in PARTS):
            continue
        fp = vals["fp"]
        cells = [f"{chars / 5538004:.2f}", f"{fp:.3f}"]
        for name in head[2:]:
            v = vals[name]
            cells.append("-" if v is None else f"{v:.3f} ({v - fp:+.3f})")
        lines.append("| " + " | ".join(cells) + " |")
    return f"""
### Which part of the update: two more device runs

The two terms of the table above, each removed in a run of its own with the same recipe and seed
(DEVICE = {devices}; started together from a clean export, beside each other on the 2-core
session machine):

{command_and_run_table(COMMAND_PARTS, rows)}

Validation loss at floating point's curve points (the gap to floating point in brackets):

{chr(10).join(lines)}
{parts_findings(curves)}
{parts_weights()}"""


def final_test(curve):
    """A finished run's test loss (None while it is unfinished or missing)."""
    return curve[-1]["test_loss"] if curve and curve[-1].get("final") else None


def parts_findings(curves):
    """The test losses of the finished runs against floating point's and rpu_baseline's."""
    fp, base = curves4["fp"], curves4["rpu_baseline"]
    if not (fp and base and fp[-1].get("final") and base[-1].get("final")):
        return ""
    gap = base[-1]["test_loss"] - fp[-1]["test_loss"]
    out = []
    for name, _, _ in PARTS:
        test = final_test(curves[name])
        if test is None:
            continue
        g = test - fp[-1]["test_loss"]
        out.append(f"`{name}` {test:.3f} ({g:+.3f}, {100 * (gap - g) / gap:.0f} % of the gap removed)")
    if not out:
        return ""
    return (f"\n**Test loss after 2 epochs, against floating point {fp[-1]['test_loss']:.3f} and rpu_baseline "
            f"{base[-1]['test_loss']:.3f} (gap {gap:+.3f}):** " + "; ".join(out) + ". One seed each, so "
            "differences of a few hundredths are within seed noise." + (
            " Removing the devices' up/down imbalance (`rpu_symmetric`) closes most of the gap; a quarter "
            "of the step, which halves the random walk and keeps the drift, closes less."
            if len(out) == 2 and curves["rpu_symmetric"][-1]["test_loss"] < curves["rpu_fine_steps"][-1]["test_loss"]
            else "") + "\n")


PARTS_WEIGHTS_FILE = HERE / "diagnosis" / "weights_lr0.01_clip_parts.txt"


def parts_weights(path=PARTS_WEIGHTS_FILE):
    """The movement tables of ``weight_stats.py`` in ``path`` (one block per run), if written."""
    if not path.exists():
        return ""
    blocks = path.read_text().split("\n$ ")
    out = []
    for block in blocks:
        block = block.strip()
        if not block:
            continue
        command = block.splitlines()[0].lstrip("$ ")
        tables, moved, _ = weight_tables(block)
        if moved:
            out.append(f"`{command}`:\n\n{tables[-1]}")
    if not out:
        return ""
    return ("\nWhere their weights ended (`weight_stats.py` against the floating-point run; output, with "
            f"each command: `diagnosis/{path.name}`):\n\n" + "\n\n".join(out) + "\n")


PARTS_SECTION = parts_section()

SEED1 = HERE / "run_lr0.01_clip_seed1"
SEED1_WEIGHTS_FILE = HERE / "diagnosis" / "weights_lr0.01_clip_seed1.txt"
SEED1_RUNS = (("fp", "floating point (ideal device)"), ("rpu_baseline", "rpu_baseline"),
              ("rpu_symmetric", "rpu_symmetric"))
COMMAND_SEED1 = COMMAND_PARTS.replace("--seed 0", "--seed 1")


def seed1_section():
    """The same recipe at seed 1 (floating point, rpu_baseline, rpu_symmetric), set beside seed 0:
    does removing the up/down imbalance close the gap at another seed too?"""
    curves1 = {name: load_curve(SEED1 / name / "curve.json") for name, _ in SEED1_RUNS}
    if not any(curves1.values()):
        return ""
    rows = [run_row(f"{label}, seed 1", curves1[name], unfinished="stopped here when the session ended")
            if not diverged(curves1[name]) else
            f"| {label}, seed 1 | - | - | - | - | diverged at step {curves1[name][-1]['step']} |"
            for name, label in SEED1_RUNS]
    seed0 = {"fp": curves4.get("fp", []), "rpu_baseline": curves4.get("rpu_baseline", []),
             "rpu_symmetric": load_curve(RUNS4 / "rpu_symmetric" / "curve.json")}

    lines = ["| seed | floating point | rpu_baseline (gap) | rpu_symmetric (gap) | share of the gap removed |",
             "|---|---|---|---|---|"]
    removed, ends = {}, {}
    for seed, cs in ((0, seed0), (1, curves1)):
        fp, base, sym = ends[seed] = tuple(final_test(cs[n]) for n in ("fp", "rpu_baseline", "rpu_symmetric"))
        cells = [str(seed), "-" if fp is None else f"{fp:.3f}"]
        for v in (base, sym):
            cells.append("-" if v is None else f"{v:.3f}" + ("" if fp is None else f" ({v - fp:+.3f})"))
        if None not in (fp, base, sym) and base > fp:
            removed[seed] = (base - sym) / (base - fp)
            cells.append(f"{100 * removed[seed]:.0f} %")
        else:
            cells.append("-")
        lines.append("| " + " | ".join(cells) + " |")
    # Validation loss every half epoch, each device run's gap to floating point in brackets.
    marks = ["| epoch | floating point | rpu_baseline | rpu_symmetric |", "|---|---|---|---|"]
    for p in curves1["fp"]:
        if p.get("valid_loss") is None or p.get("final") or round(p["epoch"] * 10) % 5:
            continue
        cells = [f"{p['epoch']:.1f}", f"{p['valid_loss']:.3f}"]
        for name in ("rpu_baseline", "rpu_symmetric"):
            q = valid_at(curves1[name], p["chars"])
            cells.append("-" if q is None or q["chars"] != p["chars"] else
                         f"{q['valid_loss']:.3f} ({q['valid_loss'] - p['valid_loss']:+.3f})")
        marks.append("| " + " | ".join(cells) + " |")
    verdict = ""
    if len(removed) == 2:
        both = all(r >= 0.5 for r in removed.values())
        verdict = ("\n**Both seeds: removing the devices' up/down imbalance closes most of rpu_baseline's "
                   f"gap** ({100 * min(removed.values()):.0f}-{100 * max(removed.values()):.0f} %): "
                   "rpu_baseline ends above rpu_symmetric by "
                   + " and ".join(f"{e[1] - e[2]:+.3f} (seed {sd})" for sd, e in ends.items())
                   + f". Floating point itself ends {abs(ends[1][0] - ends[0][0]):.3f} apart at the two "
                   "seeds, so the size of the gap varies with the seed; the imbalance's share of it "
                   f"stays at {100 * min(removed.values()):.0f} % or more."
                   if both else
                   "\n**The seeds disagree**: removing the imbalance closes "
                   + " and ".join(f"{100 * r:.0f} % (seed {s})" for s, r in removed.items())
                   + " of the gap, so one seed's finding does not carry.") + "\n"
    elif curves1["rpu_baseline"] and curves1["rpu_symmetric"]:
        b, y = final_test(curves1["rpu_baseline"]), final_test(curves1["rpu_symmetric"])
        if b is not None and y is not None:
            verdict = (f"\nSeed 1 without its floating-point side yet: rpu_symmetric {y:.3f} against "
                       f"rpu_baseline {b:.3f} ({y - b:+.3f}).\n")
    return f"""
### A second seed

The same recipe at seed 1 (the networks' initial weights, the devices' variations and the data
order all change with it), run on the 2-core session machine beside other work:

{command_and_run_table(COMMAND_SEED1, rows)}

Validation loss at seed 1, every half epoch (the gap to floating point in brackets):

{chr(10).join(marks)}

Test loss after 2 epochs, each seed's gap to its own floating-point run:

{chr(10).join(lines)}
{verdict}
Curves: `run_lr0.01_clip_seed1/*/curve.png`.
{parts_weights(SEED1_WEIGHTS_FILE)}"""


SEED1_SECTION = seed1_section()

LR001 = "" if not rows4 else f"""
## At learning rate 0.01 with the errors clipped at 0.05 (both sides)

`lstm2x512_lr0.01_clip.yaml` here (the clip recipe at half the learning rate), both sides started
together from clean exports on the 2-core session machine beside the diagnosis above and other
work (so the times are not benchmarks); DEVICE = `ideal` for floating point.

{command_and_run_table(COMMAND_LR001, rows4)}

{gap_table(marks4)}

{lr001_findings()}

Curves: `run_lr0.01_clip/*/curve.png`.
{WEIGHTS}{PARTS_SECTION}{SEED1_SECTION}"""

CLIP = "" if not curves3["fp"] else f"""
### Both sides with the errors clipped (lr 0.02, `training.grad_clip: 0.05`)

`lstm2x512_clip.yaml` here: the workload at lr 0.02 with every error at a tile's outputs clipped
to +-0.05 (archsim's `grad_clip`: element-wise, on the update and on the transposed MVMs, which is
what analog hardware can do; there is no gradient to take a norm of). Floating point was started
first, to see whether the clip removes the divergence; rpu_baseline once it had passed step 729.

{command_and_run_table(COMMAND_CLIP, rows3)}

{gap_table(marks3)}
{chr(10).join(chr(10) + f for f in CLIP_FINDINGS)}
{DIAGNOSIS}"""


LR002 = "" if not any(curves2.values()) else f"""
## At learning rate 0.02 (both sides)

The same network, data and budget at lr 0.02, each side an `archsim train` run of its own (the
two ran side by side, beside the resolution claim's sweep, on the 2-core session machine, at nice
15; DEVICE = `ideal` for floating point). The runs' checkpoints (outside the repository) are not
committed: a run that stopped when the session ended restarts from scratch on another machine.

{command_and_run_table(COMMAND_LR002, rows2)}

{gap_table(marks2)}

{chr(10).join(chr(10) + f for f in FINDINGS)}
{CLIP}
Curves: `run_lr0.02*/*/curve.png`.
{LR001}"""


def state(curve):
    """A run's state in a few words, from its curve."""
    if not curve:
        return "not started"
    end = curve[-1]
    if end.get("diverged"):
        return f"diverged at step {end['step']}"
    if end.get("final"):
        return f"finished, test {end['test_loss']:.3f}"
    return f"at step {end['step']} (epoch {end['epoch']:.2f}, valid {end['valid_loss']:.3f}) when the session ended"


RECIPES = [("lr 0.05 (the workload's)", curves), ("lr 0.02", curves2),
           ("lr 0.02, errors clipped at 0.05", curves3)] + (
    [("lr 0.01, errors clipped at 0.05", curves4)] if rows4 else [])
STATUS = "\n".join(f"| {name} | {state(c.get('fp', []))} | {state(c.get('rpu_baseline', []))} |"
                    for name, c in RECIPES)
text = f"""# LSTM2-512 on the Linux-kernel corpus: floating point vs `rpu_baseline` (issue 13, item 5)

Where it stands (2 epochs asked; each recipe below in its own section):

| recipe | floating point | rpu_baseline |
|---|---|---|
{STATUS}

The seed paper's main workload, never trained by archsim before: 2 layers x 512 units, vocabulary
98, T = 100, batch 32, lr 0.05 (the workload's), 2 epochs of the 5.5 M-character training split
(90/5/5 by position), seed 0, fast update, every matrix on one `rpu2016` 4096 x 4096 tile, 1 torch
thread at nice 19 on the 2-core session machine shared with other work (so the times are not
benchmarks).

Command (from a clean export of the repository; RUN_DIR was outside the repository because the
checkpoints are 14 MB (fp) and 68 MB (rpu_baseline), too large to commit; the curves and results are
copied into `run/` here):

{command_and_run_table(COMMAND, rows)}

{gap_table(marks)}

{DIVERGED if any(p.get("diverged") for p in curves["rpu_baseline"]) else ""}Floating point overfits this split by the second epoch (train 1.09, valid 1.54 nats/char). A run
that did not finish cannot be resumed on a fresh machine (its checkpoint is not committed): rerun
the command (here the floating-point side took 77 minutes and rpu_baseline ran at about 1.2 s a
step, which would be 70 minutes for the 3,460 steps, both beside other work). Curves: `run/*/curve.png`. Regenerate this page with
`python reports/lstm2x512_linux_fp_vs_rpu/summarize.py`.
{LR002}"""
(HERE / "README.md").write_text(text)
