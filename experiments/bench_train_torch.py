#!/usr/bin/python3
"""PyTorch twin of a Switchyard decoder-only MoE config, timed for experiments/bench_train.

The model follows graph/models/transformer.hpp and graph/models/moe.cpp for the settings bench_moe uses:
token embedding (tied with the output layer, logits scaled by d_model^-0.5), pre-RMSNorm layers
of causal self-attention (no position bias, no 1/sqrt(d_kv): T5 folds it into the init) and
GEGLU FFN, an MoE FFN every `moe.every`-th layer, final RMSNorm, mean token cross-entropy plus
the MoE balance loss (Switch, top-1 fractions, coef 1e-2) and router z-loss (coef 1e-3).

MoE routing, as Switchyard's top_k router with policy "all": router logits and softmax in f32
(selective precision: autocast is off for the router), top-k experts per token, gates
renormalised to g / (g1 + g2 + 1e-9), one group of all tokens, slot = exclusive cumsum over the
group per expert with every first choice ranked before any second choice, a choice is kept iff
its slot < C with C = ceil(k * CF * S / E) ("ceil_k"), dropped choices contribute nothing (the
residual carries the token). Dispatch and combine are gathers and index_adds in O(tokens * k * D)
(how PyTorch MoE layers are written), experts run as one batched matmul over [E, C, D].

Prints per-step times and one line `RESULT {json}`; warm-up steps are not timed.

  /usr/bin/python3 experiments/bench_train_torch.py --precision bf16 --steps 3 --warmup 1
"""
import argparse
import json
import math
import sys
import time

try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = None

import torch
import torch.nn.functional as F


def load_config(path):
    if tomllib is None:
        sys.exit("bench_train_torch: needs Python >= 3.11 (tomllib) to read " + path)
    with open(path, "rb") as f:
        c = tomllib.load(f)
    m, moe, tr = c["model"], c.get("moe", {}), c.get("train", {})
    if m.get("architecture") != "decoder_only":
        sys.exit(f"bench_train_torch: {path}: only decoder_only models (architecture = {m.get('architecture')!r})")
    if m.get("ffn", "geglu") != "geglu" or moe.get("router", "top_k") != "top_k" or moe.get("policy_train", "all") != "all":
        sys.exit(f"bench_train_torch: {path}: only GEGLU FFNs and the top_k router with policy 'all' are mirrored")
    if moe.get("group_size", 0) != 0 or moe.get("capacity", "ceil_k") != "ceil_k":
        sys.exit(f"bench_train_torch: {path}: only one routing group (group_size = 0) and capacity = 'ceil_k' are mirrored")
    return dict(vocab=m["vocab"], d_model=m["d_model"], d_ff=m["d_ff"], heads=m["heads"], d_kv=m["d_kv"],
                layers=m["layers"], every=moe.get("every", 0), experts=moe.get("experts", 0), k=moe.get("k", 2),
                cf=moe.get("cf_train", 1.25), batch=tr.get("batch", 16), length=tr.get("length", 256))


class RMSNorm(torch.nn.Module):
    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        x32 = x.float()
        y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * self.scale).to(x.dtype)


def init_linear(*shape, fan_in):
    return torch.nn.Parameter(torch.randn(*shape) * math.sqrt(0.1 / fan_in))


class Attention(torch.nn.Module):
    def __init__(self, d, h, dk):
        super().__init__()
        self.h, self.dk = h, dk
        self.wqkv = init_linear(d, 3 * h * dk, fan_in=d)
        self.wo = init_linear(h * dk, d, fan_in=h * dk)

    def forward(self, x, mask):  # x [B, T, D]
        B, T, _ = x.shape
        q, k, v = (x @ self.wqkv).view(B, T, 3, self.h, self.dk).permute(2, 0, 3, 1, 4)  # [B, H, T, K] each
        s = q @ k.transpose(-1, -2) + mask  # [B, H, T, T]
        p = torch.softmax(s.float(), dim=-1).to(v.dtype)
        o = (p @ v).transpose(1, 2).reshape(B, T, self.h * self.dk)
        return o @ self.wo


class GegluFfn(torch.nn.Module):
    def __init__(self, d, f):
        super().__init__()
        self.wi0 = init_linear(d, f, fan_in=d)
        self.wi1 = init_linear(d, f, fan_in=d)
        self.wo = init_linear(f, d, fan_in=f)

    def forward(self, x):
        return (F.gelu(x @ self.wi0, approximate="tanh") * (x @ self.wi1)) @ self.wo


class MoeFfn(torch.nn.Module):
    def __init__(self, d, f, experts, k, cf):
        super().__init__()
        self.E, self.k, self.cf = experts, k, cf
        self.router = init_linear(d, experts, fan_in=d)
        self.wi0 = init_linear(experts, d, f, fan_in=d)
        self.wi1 = init_linear(experts, d, f, fan_in=d)
        self.wo = init_linear(experts, f, d, fan_in=f)

    def forward(self, x):  # x [B, T, D] -> y, aux loss, z loss
        shape = x.shape
        xs = x.reshape(-1, shape[-1])  # [S, D]: one group
        S, E, K = xs.shape[0], self.E, self.k
        C = math.ceil(K * self.cf * S / E)
        with torch.autocast("cpu", enabled=False):  # router in f32
            logits = xs.float() @ self.router  # [S, E]
            probs = torch.softmax(logits, dim=-1)
            gates, experts = torch.topk(probs, K, dim=-1)  # [S, K]
            gates = gates / (gates.sum(-1, keepdim=True) + 1e-9)
            z_loss = torch.logsumexp(logits, dim=-1).pow(2).mean()
            top1 = F.one_hot(experts[:, 0], E).float()
            aux_loss = E * E * (top1.mean(0) * probs.mean(0)).mean()
        with torch.no_grad():  # slots: every first choice before any second choice, tokens in order
            onehot = F.one_hot(experts.t().reshape(-1), E)  # [K*S, E] rank-major
            slot = ((onehot.cumsum(0) - onehot) * onehot).sum(-1)  # [K*S]
            choice_expert = experts.t().reshape(-1)
            kept = slot < C
            token = torch.arange(S).repeat(K)[kept]  # the token of each kept choice
            dest = (choice_expert * C + slot)[kept]  # its row in the flat [E*C] expert buffer
        gate_kept = gates.t().reshape(-1)[kept]
        buf = xs.new_zeros(E * C, xs.shape[1]).index_copy(0, dest, xs[token])  # dispatch [E*C, D]
        h = buf.view(E, C, -1)
        h = F.gelu(torch.bmm(h, self.wi0), approximate="tanh") * torch.bmm(h, self.wi1)
        out = torch.bmm(h, self.wo).view(E * C, -1)  # [E*C, D]
        y = out.new_zeros(xs.shape).index_add(0, token, out[dest] * gate_kept.unsqueeze(-1).to(out.dtype))  # combine
        return y.view(shape).to(x.dtype), aux_loss, z_loss


class Layer(torch.nn.Module):
    def __init__(self, c, moe):
        super().__init__()
        self.norm1, self.norm2 = RMSNorm(c["d_model"]), RMSNorm(c["d_model"])
        self.attn = Attention(c["d_model"], c["heads"], c["d_kv"])
        self.moe = moe
        self.ffn = (MoeFfn(c["d_model"], c["d_ff"], c["experts"], c["k"], c["cf"]) if moe
                    else GegluFfn(c["d_model"], c["d_ff"]))

    def forward(self, x, mask):
        x = x + self.attn(self.norm1(x), mask)
        if self.moe:
            y, aux, z = self.ffn(self.norm2(x))
            return x + y, aux, z
        return x + self.ffn(self.norm2(x)), None, None


class Model(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.d = c["d_model"]
        self.embed = torch.nn.Parameter(torch.randn(c["vocab"], c["d_model"]))
        every = c["every"]
        self.layers = torch.nn.ModuleList(
            [Layer(c, moe=every > 0 and (i + 1) % every == 0) for i in range(c["layers"])])
        self.norm = RMSNorm(c["d_model"])

    def forward(self, tokens, targets):
        T = tokens.shape[1]
        mask = torch.full((T, T), -1e9).triu(1)
        x = self.embed[tokens]
        aux = z = 0.0
        for layer in self.layers:
            x, a, zz = layer(x, mask)
            if a is not None:
                aux, z = aux + a, z + zz
        logits = (self.norm(x) @ self.embed.t().to(x.dtype)) * self.d ** -0.5
        ce = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1))
        return ce + 1e-2 * aux + 1e-3 * z


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="experiments/configs/models/bench_moe.toml")
    ap.add_argument("--precision", choices=["f32", "bf16"], default="f32", help="bf16: torch.autocast(bfloat16)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    c = load_config(a.model)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model = Model(c)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    B, T = c["batch"], c["length"]
    timed, loss = 0.0, float("nan")
    for s in range(a.warmup + a.steps):
        seq = torch.randint(4, c["vocab"], (B, T + 1))
        tokens, targets = seq[:, :-1], seq[:, 1:]
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            loss_t = model(tokens, targets)
        opt.zero_grad(set_to_none=True)
        loss_t.backward()
        opt.step()
        sec = time.perf_counter() - t0
        loss = loss_t.item()
        measured = s >= a.warmup
        if measured:
            timed += sec
        print(f"step {s + 1:>3} {'' if measured else '(warm)':<7} {sec:8.3f} s  {B * T / sec:8.0f} tokens/s  loss {loss:.4f}",
              flush=True)
    sec = timed / a.steps
    print(f"pytorch {torch.__version__} {a.precision}: {sec:.3f} s/step, {B * T / sec:.0f} tokens/s")
    print("RESULT " + json.dumps(dict(impl="pytorch", torch=torch.__version__, precision=a.precision, threads=a.threads,
                                      steps=a.steps, seconds_per_step=sec, tokens_per_s=B * T / sec, loss=loss)))


if __name__ == "__main__":
    main()
