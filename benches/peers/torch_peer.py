"""The issue-11 workload in PyTorch, for the side-by-side table in BENCHMARKS.md.

D-PSGD with local Nesterov momentum (lr 0.05, beta 0.9, weight decay 1e-4), ring with weights
1/3, MLP 784-128-10 (ReLU, softmax cross-entropy), batch 32 per agent, random inputs fixed
before timing; one step = forward + backward + local step + gossip. Two implementations:

* loop:    one nn.Module and one torch.optim.SGD per agent, a Python loop over agents, then
           the ring average of every tensor;
* batched: all agents' weights stacked, torch.bmm forward, autograd backward, one fused (or
           foreach) SGD over the stacked tensors, and gossip as a dense n x n matmul (W @ X).

Install (CPU is enough; the default PyPI wheel also works without a GPU):
    python3 -m venv /tmp/peers-venv && /tmp/peers-venv/bin/pip install torch numpy
Run:
    /tmp/peers-venv/bin/python benches/peers/torch_peer.py --agents 4,16,64,256 --json torch.json
"""

import argparse
import json
import time

import torch
import torch.nn.functional as F

LR, BETA, WD, BATCH = 0.05, 0.9, 1e-4, 32


def ring(n):
    w = torch.zeros(n, n)
    for i in range(n):
        for j in (i - 1, i, i + 1):
            w[i, j % n] += 1.0 / 3.0
    return w


def sgd(params):
    kw = dict(lr=LR, momentum=BETA, nesterov=True, weight_decay=WD)
    try:
        return torch.optim.SGD(params, fused=True, **kw), "fused"
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.SGD(params, foreach=True, **kw), "foreach"


class Loop:
    def __init__(self, n, dims):
        self.n = n
        self.models = [
            torch.nn.Sequential(
                torch.nn.Linear(dims[0], dims[1]), torch.nn.ReLU(), torch.nn.Linear(dims[1], dims[2])
            )
            for _ in range(n)
        ]
        self.opts = [torch.optim.SGD(m.parameters(), lr=LR, momentum=BETA, nesterov=True, weight_decay=WD) for m in self.models]
        self.x = torch.randn(n, BATCH, dims[0])
        self.y = torch.randint(0, dims[2], (n, BATCH))

    def step(self):
        for i, (m, o) in enumerate(zip(self.models, self.opts)):
            o.zero_grad(set_to_none=True)
            F.cross_entropy(m(self.x[i]), self.y[i]).backward()
            o.step()
        with torch.no_grad():
            n = self.n
            for k, _ in enumerate(self.models[0].parameters()):
                ps = [list(m.parameters())[k] for m in self.models]
                old = torch.stack([p.detach() for p in ps])
                mixed = (old.roll(1, 0) + old + old.roll(-1, 0)) / 3.0 if n > 2 else old.mean(0, keepdim=True).expand_as(old)
                for p, v in zip(ps, mixed):
                    p.copy_(v)


class Batched:
    def __init__(self, n, dims):
        self.n = n
        b1, b2 = 1 / dims[0] ** 0.5, 1 / dims[1] ** 0.5
        u = lambda shape, b: (torch.rand(*shape) * 2 - 1).mul_(b).requires_grad_()
        self.params = [
            u((n, dims[1], dims[0]), b1), u((n, 1, dims[1]), b1),
            u((n, dims[2], dims[1]), b2), u((n, 1, dims[2]), b2),
        ]
        self.opt, self.kind = sgd(self.params)
        self.w = ring(n)
        self.x = torch.randn(n, BATCH, dims[0])
        self.y = torch.randint(0, dims[2], (n * BATCH,))

    def step(self):
        w1, c1, w2, c2 = self.params
        self.opt.zero_grad(set_to_none=True)
        h = torch.relu(torch.baddbmm(c1, self.x, w1.transpose(1, 2)))
        z = torch.baddbmm(c2, h, w2.transpose(1, 2))
        # Sum over agents of each agent's mean loss: agent i's gradient is its own.
        (F.cross_entropy(z.reshape(-1, z.shape[-1]), self.y) * self.n).backward()
        self.opt.step()
        with torch.no_grad():
            for p in self.params:
                flat = p.view(self.n, -1)
                flat.copy_(self.w @ flat)


def timed(make, n, dims, seconds):
    """Windows of ~50 ms; the best window is reported (as bench_native does: on a shared
    machine it is the closest to an unloaded one), and the mean over all windows too."""
    impl = make(n, dims)
    t = time.perf_counter()
    for _ in range(3):
        impl.step()
    per_window = max(1, int(0.05 / ((time.perf_counter() - t) / 3) + 0.999))
    best, total, steps, start = float("inf"), 0.0, 0, time.perf_counter()
    while time.perf_counter() - start < seconds or steps < 3 * per_window:
        t = time.perf_counter()
        for _ in range(per_window):
            impl.step()
        w = time.perf_counter() - t
        best, total, steps = min(best, w), total + w, steps + per_window
    per_step = best / per_window
    return {
        "agents": n,
        "agent_steps_per_s": n / per_step,
        "agent_steps_per_s_mean": n * steps / total,
        "ms_per_step": per_step * 1e3,
        "steps_timed": steps,
        "steps_per_window": per_window,
    }, impl


def sgemm_rate():
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(15):
        t = time.perf_counter()
        for _ in range(5):
            a @ b
        best = max(best, 5 * 2 * 1024**3 / (time.perf_counter() - t) / 1e9)
    # (15 tries, best kept, as bench_native measures its ceiling)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", default="4,16,64,256")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--loop-max", type=int, default=64, help="largest n for the (slow) loop")
    ap.add_argument("--json")
    args = ap.parse_args()
    dims = (784, 128, 10)
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "sgemm_1024_gflops": sgemm_rate(), "loop": [], "batched": []}
    print(f"torch {out['torch']}, {out['threads']} threads, 1024^3 sgemm {out['sgemm_1024_gflops']:.1f} GFLOP/s")
    for n in [int(v) for v in args.agents.split(",")]:
        r, impl = timed(Batched, n, dims, args.seconds)
        r["sgd"] = impl.kind
        out["batched"].append(r)
        line = f"n={n:4d}  batched ({impl.kind} SGD): {r['agent_steps_per_s']:8.0f} agent-steps/s (mean {r['agent_steps_per_s_mean']:6.0f}) {r['ms_per_step']:8.3f} ms/step"
        if n <= args.loop_max:
            r, _ = timed(Loop, n, dims, args.seconds)
            out["loop"].append(r)
            line += f"   loop: {r['agent_steps_per_s']:8.0f} agent-steps/s (mean {r['agent_steps_per_s_mean']:6.0f}) {r['ms_per_step']:8.3f} ms/step"
        print(line, flush=True)
    print(json.dumps(out))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
