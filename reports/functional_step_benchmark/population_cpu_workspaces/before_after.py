"""Side-by-side CPU step of LSTM2-512 populations, the code before and after the workspace change,
interleaved round by round (each (tree, K) its own process, fast update, 1 thread, batch 32, T 100).

    python before_after.py BEFORE_TREE AFTER_TREE OUT.json [rounds] [K,K,...]

Runs the worker of AFTER_TREE's benchmarks/functional_step.py (which counts minor page faults)
with PYTHONPATH set to each tree, so that only the archsim package differs."""
import json, os, statistics, subprocess, sys
before, after, out = sys.argv[1:4]
rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 3
ks = [int(k) for k in (sys.argv[5] if len(sys.argv) > 5 else "1,4,16").split(",")]
script = os.path.join(after, "benchmarks", "functional_step.py")
res = {}
for r in range(rounds):
    for tree, name in ((before, "before"), (after, "after")):
        for k in ks:
            env = dict(os.environ, PYTHONPATH=tree, OMP_NUM_THREADS="1")
            cmd = [sys.executable, script, "--worker", "--mode", "fast", "--hidden", "512", "--layers", "2",
                   "--batch", "32", "--seq", "100", "--vocab", "100", "--steps", "1", "--threads", "1",
                   "--torch-device", "cpu", "--arch", "rpu2016", "--device", "rpu_baseline",
                   "--population", str(k)]
            p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tree)
            if p.returncode:
                sys.exit(p.stderr[-2000:])
            w = json.loads(p.stdout.strip().splitlines()[-1])
            rec = res.setdefault(f"{name} K={k}", {"cpu_s_per_model": [], "faults_per_model": []})
            rec["cpu_s_per_model"] += [t / k for t in w["cpu"]]
            rec["faults_per_model"] += [f / k for f in w["minor_faults"]]
            print(f"round {r+1} {name} K={k}: {w['cpu'][0]/k*1e3:.0f} ms/model, {w['minor_faults'][0]/k:.0f} faults/model", flush=True)
rows = {}
for name in ("before", "after"):
    one = statistics.median(res[f"{name} K=1"]["cpu_s_per_model"])
    for k in ks:
        rec = res[f"{name} K={k}"]
        t = statistics.median(rec["cpu_s_per_model"])
        rec.update(median_s=t, vs_k1=t / one, median_faults=statistics.median(rec["faults_per_model"]))
        print(f"{name:6s} K={k:2d}: {t*1e3:6.0f} ms/model  {t/one:.2f}x of K=1  {rec['median_faults']:8.0f} faults/model")
json.dump({"rounds": rounds, "members": ks, "results": res}, open(out, "w"), indent=1)
