"""Side-by-side table from the JSON files benches/peers/run.sh writes."""

import json
import sys

out, threads = sys.argv[1], sys.argv[2:]
for t in threads:
    nat = json.load(open(f"{out}/native-{t}.json"))
    tor = json.load(open(f"{out}/torch-{t}.json"))
    loop = {r["agents"]: r for r in tor["loop"]}
    bat = {r["agents"]: r for r in tor["batched"]}
    print(f"\n{t} thread(s): native sgemm ceiling {nat['sgemm_ceiling_gflops']:.0f} GFLOP/s, "
          f"torch 1024^3 matmul {tor['sgemm_1024_gflops']:.0f} GFLOP/s (torch {tor['torch']})\n")
    print("| n | native agent-steps/s (ms/step) | dense GFLOP/s (% of ceiling) | PyTorch batched | PyTorch loop | native / batched | native / loop |")
    print("|---|---|---|---|---|---|---|")
    for r in nat["results"]:
        n = r["agents"]
        b, l = bat.get(n), loop.get(n)
        cell = lambda x: f"{x['agent_steps_per_s']:,.0f} ({x['ms_per_step']:.2f})" if x else "—"
        ratio = lambda x: f"{r['agent_steps_per_s'] / x['agent_steps_per_s']:.1f}×" if x else "—"
        print(f"| {n} | {cell(r)} | {r['dense_gflops']:.0f} ({100 * r['dense_fraction_of_sgemm_ceiling']:.0f}%) | "
              f"{cell(b)} | {cell(l)} | {ratio(b)} | {ratio(l)} |")
