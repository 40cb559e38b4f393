"""Digital output gain (periphery.out_scale) per matrix: 600-step LSTM2-64 runs on War and Peace.

The architecture spec has one out_scale for every tile; this diagnostic builds the model with
one gain for the LSTM layers and another for the output layer (AnalogLSTM's output_config) and
trains it with archsim's trainer. From the repository root (about 1 minute per run):

    python reports/lstm2x64_warpeace_fp_vs_rpu/diagnostics/out_scale_scan.py > reports/lstm2x64_warpeace_fp_vs_rpu/diagnostics/out_scale_scan.jsonl
"""
import dataclasses
import json

from archsim.errors import DivergenceError
from archsim.functional import train as trainer
from archsim.functional.config import RPUConfig
from archsim.functional.lstm import AnalogLSTM
from archsim.specs import load_architecture, load_device, load_workload

SCAN = [(1.0, 2.0), (1.0, 4.0), (1.0, 8.0), (2.0, 2.0)]   # (LSTM layers, output layer)


def model_builder(gain_lstm: float, gain_out: float):
    def build(workload, arch, device, vocab_size, *, seed, update_mode="fast", torch_device="cpu",
              dtype=None):
        config = RPUConfig.from_specs(device, arch, update_mode)
        kw = {} if dtype is None else {"dtype": dtype}
        return AnalogLSTM(vocab_size, workload.model.hidden_size, workload.model.layers,
                          dataclasses.replace(config, out_scale=gain_lstm),
                          output_config=dataclasses.replace(config, out_scale=gain_out),
                          array_rows=arch.array.rows, array_cols=arch.array.cols, seed=seed,
                          device=str(torch_device), **kw)
    return build


def main() -> None:
    workload = load_workload("workloads/lstm2x64.yaml")
    arch, device = load_architecture("rpu2016"), load_device("rpu_baseline")
    for gain_lstm, gain_out in SCAN:
        trainer.build_model = model_builder(gain_lstm, gain_out)
        row = {"out_scale_lstm": gain_lstm, "out_scale_output": gain_out}
        try:
            r = trainer.train(workload, arch, device, data_path="../shared/data/warpeace_input.txt",
                              max_chars=1_920_000, seed=0, learning_rate=0.1, progress=False)
            row.update(valid_loss=r.valid_loss, test_loss=r.test_loss, seconds=r.seconds)
        except DivergenceError as exc:
            row["diverged"] = str(exc)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
