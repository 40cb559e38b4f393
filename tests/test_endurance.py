"""Endurance (issue 14, item 4): writes (coincidences) per device per step and per epoch, counted
per device by the functional tiles and per array by the schedule, and the lifetime they give."""
from __future__ import annotations

import json
import math

import pytest
import yaml

torch = pytest.importorskip("torch")

from archsim.activity_run import activity_run  # noqa: E402
from archsim.cli import main  # noqa: E402
from archsim.endurance import endurance_block, lifetime_epochs, write_rates  # noqa: E402
from archsim.estimate import estimate  # noqa: E402
from archsim.functional.config import RPUConfig  # noqa: E402
from archsim.functional.tiki_taka import TikiTakaTile  # noqa: E402
from archsim.functional.tile import AnalogTile  # noqa: E402
from archsim.schedule import build_schedule  # noqa: E402
from archsim.specs import DeviceSpec, load_architecture, load_device, load_workload  # noqa: E402

from conftest import REPO, WORKLOADS  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tile(mode: str, seed: int = 0, out: int = 7, inp: int = 5) -> AnalogTile:
    cfg = RPUConfig(device=load_device("rpu_baseline"), inp_res=-1, out_res=-1, desired_bl=10,
                    update_mode=mode)
    return AnalogTile(out, inp, cfg, generator=torch.Generator().manual_seed(seed))


def _updates(tile, calls=3, k=40, seed=1):
    g = torch.Generator().manual_seed(seed)
    for _ in range(calls):
        x = torch.randn(k, tile.in_size, generator=g)
        d = torch.randn(k, tile.out_size, generator=g) * 0.1
        tile.update(x, d, 0.01)


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_per_device_writes_sum_to_the_coincidence_counter(mode):
    """The per-device accumulator summed equals the scalar coincidence counter; its max and
    99th percentile are the activity's writes_max and writes_p99."""
    tile = _tile(mode)
    _updates(tile)
    w, act = tile.device_writes, tile.activity
    assert w.shape == (7, 5) and act.coincidences > 0
    assert float(w.sum()) == pytest.approx(act.coincidences, rel=1e-6)
    if mode == "exact":
        assert torch.equal(w, w.round())                   # sampled whole counts
    assert act.writes_max == pytest.approx(float(w.max()))
    flat = w.reshape(-1).sort().values
    assert act.writes_p99 == pytest.approx(float(flat[math.ceil(0.99 * flat.numel()) - 1]))
    assert act.writes_p99 <= act.writes_max


def test_writes_survive_counter_restores_and_state_dicts():
    """Restoring counters (as after an evaluation) keeps the devices' wear; reset_activity clears
    it; a state dict carries it."""
    tile = _tile("fast")
    _updates(tile)
    saved = tile.activity
    before = tile.device_writes.clone()
    tile.activity = saved
    assert torch.equal(tile.device_writes, before)
    state = tile.state_dict()
    other = _tile("fast", seed=5)
    other.load_state_dict(state)
    assert torch.equal(other.device_writes, before)
    assert other.activity.writes_max == saved.writes_max
    tile.reset_activity()
    assert float(tile.device_writes.abs().sum()) == 0.0 and tile.activity.writes_max == 0


def test_sgd_and_tiki_taka_arrays_are_counted_separately():
    """Tiki-Taka: A's writes (SGD updates) and C's (transfer updates) each in their own fields,
    each equal to its array's per-device counts and coincidence counter."""
    arch = load_architecture("rpu2016", overrides={
        "update.algorithm": "tiki_taka", "update.transfer_every": 4, "update.n_reads_per_transfer": 2})
    cfg = RPUConfig.from_specs(load_device("rpu_baseline"), arch, "fast")
    tile = TikiTakaTile(8, 6, cfg, generator=torch.Generator().manual_seed(0))
    tile.set_weights(torch.zeros(8, 6))
    tile.update(torch.ones(40, 6), -torch.ones(40, 8), 0.01)
    act = tile.activity
    a, c = tile.fast.device_writes, tile.slow.device_writes
    assert act.coincidences > 0 and act.transfer_coincidences > 0
    assert float(a.sum()) == pytest.approx(act.coincidences, rel=1e-6)
    assert float(c.sum()) == pytest.approx(act.transfer_coincidences, rel=1e-6)
    assert act.writes_max == pytest.approx(float(a.max()))
    assert act.transfer_writes_max == pytest.approx(float(c.max()))
    rates = write_rates(act.to_dict())
    assert rates["writes_max_per_update"] == pytest.approx(float(a.max()) / 40)
    assert rates["transfer_writes_max_per_update"] == pytest.approx(float(c.max()) / 20)
    assert rates["transfer_writes_mean_per_update"] == pytest.approx(
        act.transfer_coincidences / (48 * 20))
    # an SGD tile has no transfer writes
    sgd = write_rates(_tile_activity_dict())
    assert sgd["transfer_writes_max_per_update"] is None and sgd["writes_max_per_update"] > 0


def _tile_activity_dict():
    tile = _tile("fast")
    _updates(tile, calls=1)
    return tile.activity.to_dict()


def test_nominal_writes_per_device_by_hand():
    """Nominal profile: every line fires in every slot, so each device of an SGD matrix is
    written T x B x BL times a step, and steps_per_epoch times that an epoch."""
    w = load_workload(WORKLOADS / "tiny.yaml")
    arch = load_architecture(w.architecture)
    T, B, BL = w.training.seq_len, w.training.batch_size, arch.update.desired_bl
    e = endurance_block(build_schedule(w, arch, steps=1), load_device(w.device), w.steps_per_epoch())
    assert not e["measured"] and e["endurance_cycles"] is None and e["lifetime_epochs"] is None
    for row in e["arrays"]:
        assert row["mean_per_step"] == pytest.approx(T * B * BL)
        assert row["mean_per_epoch"] == pytest.approx(T * B * BL * w.steps_per_epoch())
        assert row["updates_per_step"] == T * B
        assert row["max_per_step"] is None and row["mean_source"] == "schedule"


def test_lifetime_arithmetic_and_estimate_block(capsys):
    assert lifetime_epochs(1e9, 2e4) == pytest.approx(5e4)
    assert lifetime_epochs(None, 2e4) is None and lifetime_epochs(1e9, 0.0) is None
    w = load_workload(WORKLOADS / "tiny.yaml")
    r = estimate(w, device=load_device("ecram_tang2018"), baselines=[])
    e = r.endurance
    per_epoch = max(row["mean_per_epoch"] for row in e["arrays"])
    assert e["endurance_cycles"] == 1e9
    assert e["lifetime_epochs"] == pytest.approx(1e9 / per_epoch)
    assert all(row["lifetime_basis"] == "mean" for row in e["arrays"])
    assert main(["estimate", str(WORKLOADS / "tiny.yaml"), "--device", "ecram_tang2018", "--json",
                 "--baselines", ""]) == 0
    assert json.loads(capsys.readouterr().out)["endurance"]["lifetime_epochs"] == pytest.approx(
        e["lifetime_epochs"])


def test_presets_with_endurance_have_sources():
    """Endurance is set only with a citable source; the ECRAM presets carry the >1e9 figure."""
    found = {}
    for path in sorted((REPO / "models" / "devices").glob("*.yaml")):
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        if "endurance_cycles" in raw:
            entry = raw["endurance_cycles"]
            assert isinstance(entry, dict) and entry.get("source", "").strip(), path.name
            assert "Fuller" in entry["source"] or "Melianas" in entry["source"]
            found[path.stem] = entry["value"]
    assert found == {"ecram_tang2018": 1e9}
    assert load_device("ecram_mo_kim2019").endurance_cycles == 1e9    # inherits it
    assert load_device("rpu_baseline").endurance_cycles is None
    with pytest.raises(ValueError):
        DeviceSpec(name="x", kind="constant_step", endurance_cycles=0)


def test_measured_profile_has_max_and_p99(text_file):
    """``archsim run``'s path: the measured profile carries the per-tile write rates, and the
    estimate's lifetime uses the most-written device."""
    w = load_workload(WORKLOADS / "tiny.yaml")
    arch = load_architecture(w.architecture)
    r = activity_run(w, arch, load_device("ecram_tang2018"), steps=2, data_path=text_file)
    prof = r.activity
    tiles = {k: v for k, v in prof.per_matrix.items()}
    assert tiles and all(v["writes_max_per_update"] > 0 for v in tiles.values())
    assert prof.writes_max_per_update == max(v["writes_max_per_update"] for v in tiles.values())
    e = r.measured.endurance
    assert e["measured"] and all(row["lifetime_basis"] == "max" for row in e["arrays"])
    for row in e["arrays"]:
        assert row["mean_source"] == "measured"
        assert row["max_per_step"] >= row["p99_per_step"] >= 0
        assert row["lifetime_epochs"] == pytest.approx(1e9 / row["max_per_epoch"])
    # mean (measured) = coincidences / devices / steps of the functional run (one tile a matrix)
    per_tile = r.train.activity["per_tile"]
    for row in e["arrays"]:
        c = per_tile[f"{row['matrix']}[0]"]
        assert row["mean_per_step"] == pytest.approx(
            c["coincidences"] / row["devices"] / r.train.steps, rel=1e-6)
        assert row["max_per_step"] == pytest.approx(c["writes_max"] / r.train.steps, rel=1e-6)
