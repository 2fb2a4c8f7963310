#!/usr/bin/python3
"""Independent NumPy reference of the top-2 MoE layer (Mesh-TensorFlow conventions), for the golden
test tests/graph/test_moe_golden.cpp.

Run with Debian's interpreter (NumPy from python3-numpy):

    /usr/bin/python3 tests/reference/moe_reference.py            # rewrites tests/data/moe_golden.json
    /usr/bin/python3 tests/reference/moe_reference.py --check F  # compares with file F, exit 1 if different

What it computes, in float64, for fixed seeded inputs and weights:
  * the forward output y of the layer: router logits x·W_r, softmax over experts, top-2 gates
    renormalised g/(g1+g2+1e-9), second-expert policy "all", Mesh-TF capacity
    C = max(min_capacity, min(S, floor(S·CF/E))), slots handed out per group by walking all first
    choices in token order and then all second choices (an explicit loop, not a cumsum), a choice kept
    iff its slot < C; expert FFN GEGLU (GELU(x W0) * x W1) Wo with GELU's tanh approximation; the
    combine weighted by the gates; dropped choices contribute 0;
  * the raw load-balance loss (Switch / Mesh-TF: E² · mean over groups and experts of f·P, f the
    fraction of the group's tokens whose top-1 expert is e, P the mean router probability) and the
    raw router z-loss mean over tokens of logsumexp(logits)²;
  * loss = Σ y·R + c_b·aux + c_z·z for a fixed random R, and its gradients with respect to x, the
    router weights and the three expert weights, by a hand-written backward pass. The script checks
    that backward against central finite differences of the forward in float64 (h = 1e-6) before
    writing anything.

The inputs are chosen so that routing decisions are far from ties (checked: for every token the
gaps between its three largest router probabilities exceed 1e-3, so its top-2 set and their order
are fixed), so float32 rounding in the C++ graph cannot change which expert or slot a token gets, and so that the capacity drops both first and
second choices (checked).
"""
import json
import os
import sys

import numpy as np

# ---- configuration (tiny, commit-sized) ----
BATCH, LENGTH, D_MODEL, EXPERTS, D_FF, K = 2, 8, 4, 4, 6, 2
GROUP_SIZE = 8          # tokens per group: 16 tokens -> G = 2 groups of S = 8
CF = 1.5                # train capacity factor: C = floor(8 * 1.5 / 4) = 3
MIN_CAPACITY = 1
BALANCE_COEF = 0.1      # larger than the paper's so their gradients matter in the check
Z_COEF = 0.05
SEED = 4

N_TOKENS = BATCH * LENGTH
G = max(1, N_TOKENS // GROUP_SIZE)
S = N_TOKENS // G
C = max(MIN_CAPACITY, min(S, int(S * CF / EXPERTS)))

GELU_C = 0.7978845608028654  # sqrt(2 / pi)
GELU_A = 0.044715


def gelu(x):
    return 0.5 * x * (1.0 + np.tanh(GELU_C * (x + GELU_A * x ** 3)))


def gelu_grad(x):
    t = np.tanh(GELU_C * (x + GELU_A * x ** 3))
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * GELU_C * (1.0 + 3.0 * GELU_A * x * x)


def softmax(z):
    m = z.max(axis=-1, keepdims=True)
    e = np.exp(z - m)
    return e / e.sum(axis=-1, keepdims=True)


def logsumexp(z):
    m = z.max(axis=-1)
    return m + np.log(np.exp(z - m[..., None]).sum(axis=-1))


def make_inputs():
    rng = np.random.default_rng(SEED)
    return {
        "x": rng.normal(0.0, 1.0, (BATCH, LENGTH, D_MODEL)),
        "r": rng.normal(0.0, 1.0, (BATCH, LENGTH, D_MODEL)),
        "router_w": rng.normal(0.0, 1.0, (D_MODEL, EXPERTS)),
        "wi_0": rng.normal(0.0, D_MODEL ** -0.5, (EXPERTS, D_MODEL, D_FF)),
        "wi_1": rng.normal(0.0, D_MODEL ** -0.5, (EXPERTS, D_MODEL, D_FF)),
        "wo": rng.normal(0.0, D_FF ** -0.5, (EXPERTS, D_FF, D_MODEL)),
    }


def route(probs):
    """Top-2 choices, gates and slots by explicit loops. Returns (idx [G,S,K], gates [G,S,K],
    slot [G,S,K] with -1 for a dropped choice)."""
    idx = np.argsort(-probs, axis=-1, kind="stable")[..., :K]  # ties: lower expert first
    vals = np.take_along_axis(probs, idx, axis=-1)
    gates = vals / (vals.sum(axis=-1, keepdims=True) + 1e-9)
    slot = np.full((G, S, K), -1, dtype=np.int64)
    for g in range(G):
        used = np.zeros(EXPERTS, dtype=np.int64)
        for rank in range(K):          # every first choice before any second choice
            for s in range(S):         # tokens in order
                e = idx[g, s, rank]
                if used[e] < C:
                    slot[g, s, rank] = used[e]
                used[e] += 1
    return idx, gates, slot


def forward(p, routing=None):
    """The layer and the loss. `routing` fixes the discrete decisions (for finite differences)."""
    xg = p["x"].reshape(G, S, D_MODEL)
    logits = xg @ p["router_w"]                      # [G, S, E]
    probs = softmax(logits)
    idx, _, slot = routing if routing is not None else route(probs)
    vals = np.take_along_axis(probs, idx, axis=-1)
    den = vals.sum(axis=-1, keepdims=True) + 1e-9
    gates = vals / den
    dispatch = np.zeros((G, S, EXPERTS, C))
    combine = np.zeros((G, S, EXPERTS, C))
    for g in range(G):
        for s in range(S):
            for r in range(K):
                if slot[g, s, r] >= 0:
                    dispatch[g, s, idx[g, s, r], slot[g, s, r]] = 1.0
                    combine[g, s, idx[g, s, r], slot[g, s, r]] = gates[g, s, r]
    expert_in = np.einsum("gsec,gsd->egcd", dispatch, xg)
    h0 = np.einsum("egcd,edf->egcf", expert_in, p["wi_0"])
    h1 = np.einsum("egcd,edf->egcf", expert_in, p["wi_1"])
    a = gelu(h0) * h1
    expert_out = np.einsum("egcf,efd->egcd", a, p["wo"])
    y = np.einsum("gsec,egcd->gsd", combine, expert_out).reshape(BATCH, LENGTH, D_MODEL)

    top1 = np.eye(EXPERTS)[idx[..., 0]]              # [G, S, E]
    f = top1.mean(axis=1)                            # [G, E]
    P = probs.mean(axis=1)                           # [G, E]
    aux = EXPERTS * EXPERTS * np.mean(f * P)
    lse = logsumexp(logits)                          # [G, S]
    z = np.mean(lse ** 2)
    loss = np.sum(y * p["r"]) + BALANCE_COEF * aux + Z_COEF * z
    cache = dict(xg=xg, logits=logits, probs=probs, idx=idx, slot=slot, vals=vals, den=den, gates=gates,
                 dispatch=dispatch, combine=combine, expert_in=expert_in, h0=h0, h1=h1, a=a,
                 expert_out=expert_out, f=f, lse=lse)
    return dict(y=y, aux=aux, z=z, loss=loss, cache=cache)


def backward(p, out):
    """Hand-written gradients of the loss with respect to x, router_w, wi_0, wi_1, wo."""
    c = out["cache"]
    dy = p["r"].reshape(G, S, D_MODEL)
    # y[g,s] = Σ_{e,c} combine[g,s,e,c] expert_out[e,g,c]
    d_expert_out = np.einsum("gsec,gsd->egcd", c["combine"], dy)
    d_combine = np.einsum("egcd,gsd->gsec", c["expert_out"], dy)
    # expert FFN
    d_wo = np.einsum("egcf,egcd->efd", c["a"], d_expert_out)
    d_a = np.einsum("egcd,efd->egcf", d_expert_out, p["wo"])
    d_h0 = d_a * c["h1"] * gelu_grad(c["h0"])
    d_h1 = d_a * gelu(c["h0"])
    d_wi0 = np.einsum("egcd,egcf->edf", c["expert_in"], d_h0)
    d_wi1 = np.einsum("egcd,egcf->edf", c["expert_in"], d_h1)
    d_expert_in = np.einsum("egcf,edf->egcd", d_h0, p["wi_0"]) + np.einsum("egcf,edf->egcd", d_h1, p["wi_1"])
    d_xg = np.einsum("gsec,egcd->gsd", c["dispatch"], d_expert_in)
    # gates: combine holds gates[g,s,r] at (idx, slot) of kept choices
    d_gates = np.zeros((G, S, K))
    for g in range(G):
        for s in range(S):
            for r in range(K):
                if c["slot"][g, s, r] >= 0:
                    d_gates[g, s, r] = d_combine[g, s, c["idx"][g, s, r], c["slot"][g, s, r]]
    # gates = vals / (Σ vals + eps)
    den = c["den"]
    d_vals = d_gates / den - np.sum(d_gates * c["vals"], axis=-1, keepdims=True) / den ** 2
    d_probs = np.zeros((G, S, EXPERTS))
    np.put_along_axis(d_probs, c["idx"], d_vals, axis=-1)  # top-2 experts are distinct
    # aux = E² / (G E) Σ_{g,e} f P with P = mean_s probs
    d_probs += BALANCE_COEF * EXPERTS * EXPERTS / (G * EXPERTS) * c["f"][:, None, :] / S
    probs = c["probs"]
    d_logits = probs * (d_probs - np.sum(d_probs * probs, axis=-1, keepdims=True))
    # z = mean lse²: d lse = 2 lse / (G S); d logits += d lse * softmax
    d_logits += Z_COEF * 2.0 * c["lse"][..., None] / (G * S) * probs
    d_router_w = np.einsum("gsd,gse->de", c["xg"], d_logits)
    d_xg += np.einsum("gse,de->gsd", d_logits, p["router_w"])
    return {"x": d_xg.reshape(BATCH, LENGTH, D_MODEL), "router_w": d_router_w, "wi_0": d_wi0, "wi_1": d_wi1, "wo": d_wo}


def finite_differences(p, routing, h=1e-6):
    grads = {}
    for name in ["x", "router_w", "wi_0", "wi_1", "wo"]:
        g = np.zeros_like(p[name])
        for i in np.ndindex(p[name].shape):
            plus = {k: v.copy() for k, v in p.items()}
            minus = {k: v.copy() for k, v in p.items()}
            plus[name][i] += h
            minus[name][i] -= h
            g[i] = (forward(plus, routing)["loss"] - forward(minus, routing)["loss"]) / (2 * h)
        grads[name] = g
    return grads


def check_margins(probs, slot):
    sorted_p = -np.sort(-probs, axis=-1)
    gap = np.min(sorted_p[..., :K] - sorted_p[..., 1:K + 1])  # the top-2 set and its order
    assert gap > 1e-3, f"routing is too close to a tie (min probability gap {gap})"
    assert np.any(slot[..., 0] < 0), "no first choice was dropped: pick another seed"
    assert np.any(slot[..., 1] < 0), "no second choice was dropped: pick another seed"
    assert np.any(slot[..., 1] >= 0), "no second choice was kept: pick another seed"


def tensor(a):
    a = np.asarray(a, dtype=np.float64)
    return {"shape": list(a.shape), "data": [float(v) for v in a.reshape(-1)]}


def golden():
    p = make_inputs()
    out = forward(p)
    c = out["cache"]
    check_margins(c["probs"], c["slot"])
    grads = backward(p, out)
    fd = finite_differences(p, (c["idx"], c["gates"], c["slot"]))
    for name, g in grads.items():
        err = np.max(np.abs(g - fd[name]) / np.maximum(1.0, np.abs(fd[name])))
        assert err < 1e-7, f"hand-written backward of {name} disagrees with finite differences: {err}"
    kept = c["slot"] >= 0
    return {
        "comment": "Written by tests/reference/moe_reference.py (NumPy, float64); do not edit by hand.",
        "config": {"batch": BATCH, "length": LENGTH, "d_model": D_MODEL, "experts": EXPERTS, "d_ff": D_FF,
                   "k": K, "group_size": GROUP_SIZE, "cf_train": CF, "min_capacity": MIN_CAPACITY,
                   "balance_coef": BALANCE_COEF, "z_coef": Z_COEF, "policy": "all", "ffn": "geglu",
                   "groups": G, "capacity": C, "seed": SEED},
        "inputs": {name: tensor(v) for name, v in p.items()},
        "outputs": {
            "y": tensor(out["y"]),
            "aux_loss_raw": float(out["aux"]),
            "z_loss_raw": float(out["z"]),
            "loss": float(out["loss"]),
            "fraction_dropped": tensor(np.sum(~kept, axis=(0, 1)) / N_TOKENS),
            "expert_load": tensor(np.eye(EXPERTS)[c["idx"]].sum(axis=(0, 1, 2)) / N_TOKENS),
            "dispatch": tensor(c["dispatch"]),
        },
        "gradients": {name: tensor(g) for name, g in grads.items()},
    }


def compare(a, b, where):
    """Differences between two JSON trees; numbers may differ by 1e-12 relative (BLAS summation
    order on another machine), everything else must be equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{where}: keys {sorted(a.keys())} != {sorted(b.keys())}"]
        return [p for k in a for p in compare(a[k], b[k], f"{where}/{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: length {len(a)} != {len(b)}"]
        return [p for i, (u, v) in enumerate(zip(a, b)) for p in compare(u, v, f"{where}[{i}]")]
    if isinstance(a, float) or isinstance(b, float):
        ok = isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a - b) <= 1e-12 * max(1.0, abs(b))
        return [] if ok else [f"{where}: {a} != {b}"]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


def main(argv):
    text = json.dumps(golden(), indent=1) + "\n"
    if len(argv) == 3 and argv[1] == "--check":
        with open(argv[2]) as f:
            committed = json.load(f)
        fresh = json.loads(text)
        problems = compare(committed, fresh, "")
        if problems:
            print(f"{argv[2]} differs from a fresh run of {argv[0]}:", file=sys.stderr)
            for line in problems[:20]:
                print("  " + line, file=sys.stderr)
            return 1
        print(f"{argv[2]} matches a fresh run")
        return 0
    if len(argv) != 1:
        print(f"usage: {argv[0]} [--check FILE]", file=sys.stderr)
        return 2
    path = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "moe_golden.json"))
    with open(path, "w") as f:
        f.write(text)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
