"""Device technology presets (issue 14 item 2): every preset loads and every field is sourced,
aihwkit's published presets carry aihwkit's numbers, a device's write pulse lengthens the update
pulse slot (never shortens it), and the new presets train.

aihwkit's presets are read in IBM/aihwkit src/aihwkit/simulator/presets/devices.py at commit
9488fd086590ce2cbfe5e1fc4f8d7c6c4651272f. Not carried over (no faithful archsim family):
PCMPresetDevice (an exp-step device with w_min 0, used only as a one-sided pair with refresh, and
with dw_min_std_add/dw_min_std_slope noise and reset draws), ReRamArrayOMPresetDevice and
ReRamArrayHfO2PresetDevice (soft bounds with log-normal step spread, a subtracted symmetry point
with a noisy reference, and write noise). ReRamESPresetDevice is checked in
tests/test_devices_exp_pow_step.py.
"""
from __future__ import annotations

import math

import pytest
import yaml

from archsim.estimate import estimate
from archsim.hw.components import UpdateDriver
from archsim.specs import load_architecture, load_device, load_workload, preset_names, preset_path

from conftest import REPO, WORKLOADS

AIHWKIT = "(IBM/aihwkit @9488fd08)"

#: archsim preset -> (aihwkit preset class, its numbers at @9488fd08, by archsim field name).
AIHWKIT_PRESETS = {
    "reram_sb_gong2018": ("ReRamSBPresetDevice", dict(
        kind="soft_bounds", dw_min=0.002, up_down=0.0, w_max=1.25, w_min=-0.75, mult_noise=False,
        dw_min_dtod=0.3, up_down_dtod=0.01, w_max_dtod=0.3 / 1.25, w_min_dtod=0.3 / 0.75,
        dw_min_std=3.75)),
    "capacitor_li2018": ("CapacitorPresetDevice", dict(
        kind="linear_step", dw_min=0.005, up_down=0.0, w_max=1.0, w_min=-1.0, mult_noise=False,
        gamma_up=0.05, gamma_down=0.05, dw_min_dtod=0.1, up_down_dtod=0.06, w_max_dtod=0.07,
        w_min_dtod=0.07, gamma_up_dtod=0.01, gamma_down_dtod=0.01, dw_min_std=0.3,
        mean_bound_reference=True)),
    "ecram_tang2018": ("EcRamPresetDevice", dict(
        kind="linear_step", dw_min=0.002, up_down=0.0, w_max=1.1724, w_min=-0.8276,
        mult_noise=True, gamma_up=0.1153, gamma_down=0.5085, dw_min_dtod=0.1, up_down_dtod=0.01,
        w_max_dtod=0.05, w_min_dtod=0.05, gamma_up_dtod=0.05, gamma_down_dtod=0.05,
        dw_min_std=0.3, mean_bound_reference=True)),
    "ecram_mo_kim2019": ("EcRamMOPresetDevice", dict(
        kind="linear_step", dw_min=2.8214e-4, up_down=0.0, w_max=1.1714, w_min=-0.8286,
        mult_noise=True, gamma_up=0.4152, gamma_down=0.7342, dw_min_dtod=0.1, up_down_dtod=0.01,
        w_max_dtod=0.05, w_min_dtod=0.05, gamma_up_dtod=0.05, gamma_down_dtod=0.05,
        dw_min_std=2.0, mean_bound_reference=True)),
    "idealized_rasch2019": ("IdealizedPresetDevice", dict(
        kind="constant_step", dw_min=0.0002, dw_min_dtod=0.3, dw_min_std=0.3, up_down=0.0,
        up_down_dtod=0.0, w_max=1.0, w_min=-1.0, w_max_dtod=0.3, w_min_dtod=0.3)),
    "gokmen_vlasov2016": ("GokmenVlasovPresetDevice", dict(
        kind="constant_step", dw_min=0.0016, dw_min_dtod=0.3, dw_min_std=0.3, up_down=0.0,
        up_down_dtod=0.01, w_max=1.0, w_min=-1.0, w_max_dtod=0.3, w_min_dtod=0.3)),
}

#: Published write pulse widths (t_pulse_s) and where they are from.
PULSES = {"ecram_tang2018": (5e-9, "Tang et al., IEDM 2018"), "ecram_mo_kim2019": (10e-9, "Kim et al., IEDM 2019"),
          "capacitor_li2018": (50e-9, "Li et al., VLSI 2018"), "gokmen_vlasov2016": (1e-9, "Gokmen & Vlasov 2016")}


def _raw(name: str) -> dict:
    return yaml.safe_load(preset_path("devices", name).read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", preset_names("devices"))
def test_every_preset_loads_and_every_field_is_value_and_source(name):
    """Stricter than tests/test_specs.py's check of numbers: every field of a device preset,
    kinds and switches included, is ``{value, source}`` with a source, and the loader keeps it."""
    spec = load_device(name)
    assert spec.name == name
    raw = _raw(name)
    fields = set(raw) - {"name", "description", "inherits"}
    assert fields, name
    for key in fields:
        entry = raw[key]
        assert isinstance(entry, dict) and set(entry) == {"value", "source"}, (name, key)
        assert str(entry["source"]).strip(), (name, key)
        assert spec.sources[key] == entry["source"]


@pytest.mark.parametrize("name", sorted(AIHWKIT_PRESETS))
def test_aihwkit_presets_carry_aihwkit_numbers(name):
    cls, numbers = AIHWKIT_PRESETS[name]
    spec, own = load_device(name), _raw(name)
    for field, value in numbers.items():
        expected = value if isinstance(value, (str, bool)) else pytest.approx(value, rel=1e-12)
        assert getattr(spec, field) == expected, (name, field)
        assert AIHWKIT in spec.sources[field], (name, field)
        # inherited fields name the parent's aihwkit class, whose value aihwkit repeats
        assert field not in own or cls in spec.sources[field], (name, field)


def test_reram_sb_is_the_soft_bounds_fit_of_the_reram_es_data():
    """Both ReRAM fits cite Gong et al., Nat. Commun. 2018, and price a write alike."""
    sb, es = load_device("reram_sb_gong2018"), load_device("reram_es_gong2018")
    assert (sb.kind, es.kind) == ("soft_bounds", "exp_step")
    text = preset_path("devices", "reram_sb_gong2018").read_text(encoding="utf-8")
    assert "Gong" in text and "s41467-018-04485-1" in text and "write_noise_std 56" in text
    assert sb.e_pulse_cell_J == es.e_pulse_cell_J and "MNSIM" in sb.sources["e_pulse_cell_J"]
    assert sb.t_pulse_s is None and sb.endurance_cycles is None     # none published


def test_published_pulse_widths():
    found = {n: load_device(n).t_pulse_s for n in preset_names("devices")}
    assert {n: t for n, t in found.items() if t is not None} == \
        {n: pytest.approx(t, rel=1e-12) for n, (t, _) in PULSES.items()}
    for name, (_, cites) in PULSES.items():
        raw = _raw(name)
        if "t_pulse_s" in raw:                              # inherited ones are cited by the parent
            assert cites in raw["t_pulse_s"]["source"], name


def test_the_pulse_slot_is_the_longer_of_architecture_and_device():
    rpu, shared = load_architecture("rpu2016"), load_architecture("shared_adc256_nominal")
    assert UpdateDriver(rpu, load_device("ecram_tang2018")).pulse_s == pytest.approx(5e-9, rel=1e-12)
    assert UpdateDriver(rpu, load_device("ecram_tang2018")).device_pulse_longer
    assert UpdateDriver(rpu, load_device("gokmen_vlasov2016")).pulse_s == 1e-9
    assert not UpdateDriver(rpu, load_device("gokmen_vlasov2016")).device_pulse_longer
    assert UpdateDriver(rpu, load_device("rpu_baseline")).pulse_s == 1e-9
    assert UpdateDriver(rpu).pulse_s == 1e-9
    slot = shared.update.t_pulse_s                          # 25.6 ns: longer than 10 ns MO-ECRAM
    assert UpdateDriver(shared, load_device("ecram_mo_kim2019")).pulse_s == slot
    d = UpdateDriver(rpu, load_device("capacitor_li2018"))
    assert d.update_time_s(4) == pytest.approx(4 * 50e-9 + rpu.update.t_overhead_s, rel=1e-12)


@pytest.mark.parametrize("fidelity", ["analytic", "simpy"])
def test_a_longer_device_pulse_lengthens_the_update_phase_by_exactly_the_pulses(fidelity):
    """tiny on rpu2016: the update phase's critical path is the T x B rank-one updates of the
    LSTM matrix, BL slots each; a 5 ns pulse instead of 1 ns adds T x B x BL x 4 ns and nothing
    else; the same device without a pulse width times exactly as before."""
    w, arch = load_workload(WORKLOADS / "tiny.yaml"), load_architecture("rpu2016")
    ecram = load_device("ecram_tang2018")
    no_pulse = ecram.model_copy(update={"t_pulse_s": None})
    base = estimate(w, arch, no_pulse, baselines=[], fidelity=fidelity)
    long = estimate(w, arch, ecram, baselines=[], fidelity=fidelity)
    tr = w.training
    extra = tr.seq_len * tr.batch_size * arch.update.desired_bl * (5e-9 - arch.update.t_pulse_s)
    phase = {p: (long.phase_breakdown[p]["time_s"], base.phase_breakdown[p]["time_s"])
             for p in base.phase_breakdown}
    assert phase["update"][0] - phase["update"][1] == pytest.approx(extra, rel=1e-9)
    for p in ("forward", "backward"):
        assert phase[p][0] == pytest.approx(phase[p][1], rel=1e-12)
    assert long.time_per_step_s - base.time_per_step_s == pytest.approx(extra, rel=1e-9)
    # the rule is max(architecture, device): as if the architecture's slot were 5 ns
    wide = estimate(w, load_architecture("rpu2016", overrides={"update.t_pulse_s": "5 ns"}),
                    no_pulse, baselines=[], fidelity=fidelity)
    assert long.time_per_step_s == pytest.approx(wide.time_per_step_s, rel=1e-12)
    # the estimate says so, once; a device pulse no longer than the slot changes nothing
    said = [n for n in long.notes if n.startswith("update pulse slot")]
    assert len(said) == 1 and "5 ns" in said[0] and "ecram_tang2018" in said[0] and "1 ns" in said[0]
    assert not any(n.startswith("update pulse slot") for n in base.notes)
    gv = load_device("gokmen_vlasov2016")
    same = estimate(w, arch, gv, baselines=[], fidelity=fidelity)
    plain = estimate(w, arch, gv.model_copy(update={"t_pulse_s": None}), baselines=[],
                     fidelity=fidelity)
    assert same.time_per_step_s == plain.time_per_step_s
    assert not any(n.startswith("update pulse slot") for n in same.notes)


def test_estimate_text_prints_the_pulse_line(capsys):
    from archsim.cli import main

    assert main(["estimate", str(WORKLOADS / "tiny.yaml"), "--device", "capacitor_li2018",
                 "--baselines", ""]) == 0
    out = capsys.readouterr().out
    assert "update pulse slot 50 ns: device capacitor_li2018's write pulse" in out


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("name", ["reram_sb_gong2018"])
def test_new_presets_train_without_nan(name, text_file):
    from archsim.functional.train import train

    w = load_workload(WORKLOADS / "tiny.yaml")
    r = train(w, load_architecture("rpu2016"), load_device(name), data_path=text_file,
              max_chars=400, progress=False)
    assert r.steps > 0 and r.device == name
    for loss in (r.train_loss, r.valid_loss, r.test_loss):
        assert math.isfinite(loss) and loss > 0, (name, loss)


def test_readme_lists_every_device_preset():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for name in ("reram_sb_gong2018", *AIHWKIT_PRESETS, "reram_es_gong2018"):
        assert f"`{name}`" in readme, name
