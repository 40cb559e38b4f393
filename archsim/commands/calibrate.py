"""``archsim calibrate``: the GPU baseline model against its measurements, error per row."""
from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser(
        "calibrate",
        help="print the GPU utilization model's error per measured row (DeepBench V100, H200)",
        description="Compare the GPU baseline model with the measurements it was fitted to "
                    "(DeepBench V100 fp32 rows; torch/cuDNN fp32 rows measured on an H200) "
                    "and print the error per row.")
    p.add_argument("--gpu", action="append", metavar="NAME",
                   help="GPU preset with measurements (v100, h200); repeatable; default: all")
    p.add_argument("--refit", action="store_true",
                   help="also repeat the least-squares fit and print preset vs refitted parameters")
    p.add_argument("--transfer-check", action="store_true",
                   help="also show the V100 fit moved to the H200 against the H200 measurements")
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


def run(args) -> int:
    from archsim.baselines import gpu as gpumod
    from archsim.errors import SpecError

    names = args.gpu or list(gpumod.CALIBRATION_ROWS)
    report: dict = {}
    for name in names:
        spec = gpumod.load_gpu(name)
        if spec.name not in gpumod.CALIBRATION_ROWS:
            raise SpecError("command line", "--gpu", name,
                            f"allowed: {', '.join(gpumod.CALIBRATION_ROWS)} (GPUs with measurements)")
        rows = gpumod.calibration_table(spec)
        entry = {"source": gpumod.CALIBRATION_SOURCES[spec.name], "rows": rows,
                 "max_abs_total_error_pct": max(abs(r["error_pct"]) for r in rows),
                 "objective": gpumod.fit_loss(spec)}
        if args.refit:
            fitted, loss = gpumod.fit_utilization(spec)
            names_fit = gpumod.fit_parameters(spec, gpumod.calibration_rows(spec))
            entry["refit"] = {"objective": loss, "parameters": {
                k: {"preset": getattr(spec.utilization, k), "refit": getattr(fitted, k)} for k in names_fit}}
        report[spec.name] = entry
    if args.transfer_check:
        rows = gpumod.transfer_check("v100", "h200")
        report["transfer_v100_to_h200"] = {
            "source": "v100 fitted parameters with h200 peak/bandwidth, against "
                      + gpumod.CALIBRATION_SOURCES["h200"], "rows": rows}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for name, entry in report.items():
        if name == "transfer_v100_to_h200":
            print("\nTransfer check: the V100 fit moved to the H200 (how far an extrapolated preset "
                  "can miss); error = model/measured - 1")
        else:
            print(f"\n{name}: model vs {entry['source']}; error = model/measured - 1; "
                  f"largest |total error| {entry['max_abs_total_error_pct']:.1f} %, "
                  f"fit objective {entry['objective']:.4f}")
        print(_table(entry["rows"]))
        if "refit" in entry:
            from tabulate import tabulate

            print(f"refit objective {entry['refit']['objective']:.4f}")
            print(tabulate([[k, v["preset"], v["refit"]] for k, v in entry["refit"]["parameters"].items()],
                           headers=["parameter", "preset", "refit"], floatfmt=".4g", tablefmt="github"))
    return 0
