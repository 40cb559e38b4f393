"""Print the markdown table of this folder's runs (run.sh): per learning rate, each run's validation
and test loss and its validation gap to the floating-point run of the same learning rate.

    python reports/lstm2x64_warpeace_fp_vs_rpu/diagnostics/states/table.py
"""
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHANGES = {
    "fp": "floating point (ideal device)",
    "rpu_baseline": "(none): dw_min 0.001, bounds +-0.6",
    "rpu_coarse_steps": "4x the step: dw_min 0.004",
    "rpu_fine_steps": "1/4 the step: dw_min 0.00025",
    "rpu_wide_bounds": "bounds +-2",
    "rpu_fine_steps_wide_bounds": "dw_min 0.00025 and bounds +-2",
}


def main() -> None:
    print("| lr | steps | run | change from `rpu_baseline` | valid | test | valid gap to fp |")
    print("|---|---:|---|---|---:|---:|---:|")
    for folder in sorted(HERE.glob("lr*"), key=lambda p: -float(p.name[2:])):
        runs = {}
        for name in CHANGES:
            path = folder / f"{name}.json"
            if path.is_file() and path.stat().st_size:
                runs[name] = json.loads(path.read_text())
        fp = runs.get("fp")
        for name, r in runs.items():
            gap = "" if fp is None or name == "fp" else f"{r['valid_loss'] - fp['valid_loss']:+.3f}"
            print(f"| {folder.name[2:]} | {r['steps']:,} | {name} | {CHANGES[name]} | "
                  f"{r['valid_loss']:.3f} | {r['test_loss']:.3f} | {gap} |")


if __name__ == "__main__":
    main()
