"""``archsim calibrate``: the GPU baseline model against its measurements, error per row and precision."""
from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser(
        "calibrate",
        help="print the GPU utilization model's error per measured row, for every precision with data",
        description="Compare the GPU baseline model with the measurements it was fitted to, per "
                    "precision (DeepBench V100 fp32 and fp16 rows; torch/cuDNN fp32 and TF32 rows "
                    "measured on an H200; all read from reports/baselines/) and print the error per row.")
    p.add_argument("--gpu", action="append", metavar="NAME[:PRECISION]",
                   help="GPU preset with measurements (v100, h200), optionally one precision "
                        "(v100:fp16); repeatable; default: every GPU and precision with data")
    p.add_argument("--refit", action="store_true",
                   help="also repeat the least-squares fit and print preset vs refitted parameters")
    p.add_argument("--transfer-check", action="store_true",
                   help="also show the V100 fp32 fit moved to the H200 against the H200 measurements")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.set_defaults(handler=run)


def _table(rows: list[dict]) -> str:
    from tabulate import tabulate

    phases = [p for p in ("forward", "backward", "backward_data", "backward_weights")
              if any(f"{p}_error_pct" in r for r in rows)]
    headers = ["row", "measured ms", "model ms", "error %"] + [f"{p} err %" for p in phases]
    body = [[r["row"], r["measured_ms"], r["model_ms"], r["error_pct"]]
            + [r.get(f"{p}_error_pct", "") for p in phases] for r in rows]
    return tabulate(body, headers=headers, floatfmt=".3f", tablefmt="github")


def _selected(args, sets: dict) -> list[str]:
    """The "gpu:precision" keys to report, validated (one-line SpecError on a bad --gpu)."""
    from archsim.baselines.gpu import split_name
    from archsim.errors import SpecError

    if not args.gpu:
        return list(sets)
    keys = []
    for given in args.gpu:
        base, precision = split_name(given)
        match = [k for k in sets if split_name(k)[0] == base and precision in (None, split_name(k)[1])]
        if not match:
            raise SpecError("command line", "--gpu", given,
                            f"allowed: {', '.join(sets) or 'none'} (GPU:precision with measurements "
                            "in reports/baselines/; a bare GPU name selects all its precisions)")
        keys += [k for k in match if k not in keys]
    return keys


def run(args) -> int:
    from archsim.baselines import calibration as cal
    from archsim.baselines.gpu import load_gpu, split_name

    sets = cal.calibration_sets()
    report: dict = {}
    for key in _selected(args, sets):
        base, precision = split_name(key)
        spec = load_gpu(base)
        source, rows_in = sets[key]
        rows = cal.calibration_table(spec, precision, rows_in)
        entry = {"gpu": base, "precision": precision, "source": source, "rows": rows,
                 "max_abs_total_error_pct": max(abs(r["error_pct"]) for r in rows),
                 "objective": cal.fit_loss(spec, precision, rows_in)}
        if args.refit:
            fitted, loss = cal.fit_utilization(spec, precision, rows_in)
            current = cal.mode(spec, precision).u
            names_fit = cal.fit_parameters(spec, rows_in, precision)
            entry["refit"] = {"objective": loss, "parameters": {
                k: {"preset": getattr(current, k), "refit": getattr(fitted, k)} for k in names_fit}}
        report[key] = entry
    if args.transfer_check:
        rows = cal.transfer_check("v100", "h200")
        report["transfer_v100_to_h200"] = {
            "source": "v100 fitted fp32 parameters with h200 peak/bandwidth, against "
                      + sets.get("h200:fp32", ("H200 fp32 measurements",))[0], "rows": rows}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for key, entry in report.items():
        if key == "transfer_v100_to_h200":
            print("\nTransfer check: the V100 fp32 fit moved to the H200 (how far an extrapolated "
                  "preset can miss); error = model/measured - 1")
        else:
            print(f"\n{key}: model vs {entry['source']}; error = model/measured - 1; "
                  f"largest |total error| {entry['max_abs_total_error_pct']:.1f} %, "
                  f"fit objective {entry['objective']:.4f}")
        print(_table(entry["rows"]))
        if "refit" in entry:
            from tabulate import tabulate

            print(f"refit objective {entry['refit']['objective']:.4f}")
            print(tabulate([[k, v["preset"], v["refit"]] for k, v in entry["refit"]["parameters"].items()],
                           headers=["parameter", "preset", "refit"], floatfmt=".4g", tablefmt="github"))
    return 0
