#!/usr/bin/python3
"""Compare a measured and a simulated trace of the same training step.

Both traces are in the one schema, "switchyard.trace v1" (graph/trace_schema.hpp): the measured
one from `train --trace STEPS --out DIR` (DIR/trace.json), the simulated one from
`simulate ... --out DIR` (DIR/trace.json). Ops are matched by node id (the id of the node in the
program both sides run or price), so the two must come from the same config, --set overrides,
optimizer and mesh.

Prints, for the traced steps (averaged per step when several were traced, or --step N):
  - time per phase (forward, backward, optimizer) and per op kind: measured and simulated sums
    of op durations in ms per step, their ratio (measured / simulated) and the ops per step;
  - node ids present in only one trace, nodes whose op name or scope differ between them, and
    nodes whose flops or bytes differ;
  - with --nodes, one row per node id: op, scope, measured and simulated µs, ratio.

Exit status: 0; 1 with --check when a traced step's (node id, op name, scope) set differs from
the simulated one, or a node's flops or bytes (both OpDef::cost) differ; 2 with one line on
stderr for bad input (a missing file, a file that is not a switchyard trace, a step that was not
traced).

Standard library only: run with /usr/bin/python3 scripts/trace_diff.py MEASURED SIMULATED.
"""

import argparse
import json
import sys

SCHEMA = "switchyard.trace v1"


class BadInput(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse would print the usage too)
        print(f"trace_diff: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def load(path):
    """Returns (source, ops by step {step: {node: event}}, step wall times {step: µs})."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as e:
        raise BadInput(f"{path}: cannot read: {e.strerror}")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadInput(f"{path}: not a trace (not JSON: {e})")
    other = doc.get("otherData") if isinstance(doc, dict) else None
    if not isinstance(other, dict) or other.get("schema") != SCHEMA or not isinstance(doc.get("traceEvents"), list):
        raise BadInput(f"{path}: not a switchyard trace (expected otherData.schema \"{SCHEMA}\" and traceEvents)")
    ops, walls = {}, {}
    try:
        for e in doc["traceEvents"]:
            if e.get("ph") != "X":
                continue
            args = e.get("args", {})
            if e.get("cat") == "step":
                walls[args["step"]] = float(e["dur"])
            else:
                step_ops = ops.setdefault(args["step"], {})
                node = int(args["node"])
                if node in step_ops:
                    raise BadInput(f"{path}: node {node} appears twice in step {args['step']}")
                step_ops[node] = e
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise BadInput(f"{path}: not a switchyard trace (an event lacks {e})")
    if not ops:
        raise BadInput(f"{path}: the trace holds no ops")
    return other.get("source", "?"), ops, walls


def ratio(a, b):
    return f"{a / b:.2f}" if b > 0 else "-"


def ranges(ids, limit=12):
    """[1, 2, 3, 7] -> "1-3, 7"; past `limit` ranges, "..., (N ids)"."""
    out, ids = [], sorted(ids)
    i = 0
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        out.append(str(ids[i]) if i == j else f"{ids[i]}-{ids[j]}")
        i = j + 1
    if len(out) > limit:
        return ", ".join(out[:limit]) + f", ... ({len(ids)} ids)"
    return ", ".join(out)


def table(title, key, measured_steps, simulated):
    """Time per group (key(event)): measured ms/step (mean over steps), simulated ms, ratio, ops/step."""
    rows = {}
    n = len(measured_steps)
    for step_ops in measured_steps:
        for e in step_ops.values():
            r = rows.setdefault(key(e), [0.0, 0.0, 0, 0])
            r[0] += float(e["dur"]) / n
            r[2] += 1
    for e in simulated.values():
        r = rows.setdefault(key(e), [0.0, 0.0, 0, 0])
        r[1] += float(e["dur"])
        r[3] += 1
    lines = [f"{title:<24} {'measured ms':>12} {'simulated ms':>13} {'ratio':>8} {'ops':>6} {'sim ops':>8}"]
    total = [0.0, 0.0]
    for name, (m, s, calls, sim_calls) in sorted(rows.items(), key=lambda kv: (-kv[1][0], kv[0])):
        lines.append(f"{name:<24} {m / 1e3:>12.3f} {s / 1e3:>13.4f} {ratio(m, s):>8} {calls // n:>6} {sim_calls:>8}")
        total[0] += m
        total[1] += s
    lines.append(f"{'all ops':<24} {total[0] / 1e3:>12.3f} {total[1] / 1e3:>13.4f} {ratio(*total):>8}")
    return "\n".join(lines)


def identity(e):
    return (e["name"], e["args"].get("scope", ""))


def cost(e):
    return (e["args"].get("flops"), e["args"].get("bytes"))


def main():
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("measured", help="trace.json of `train --trace`")
    p.add_argument("simulated", help="trace.json of `simulate --out`")
    p.add_argument("--step", type=int, help="compare this traced step only (default: every traced step, averaged)")
    p.add_argument("--nodes", action="store_true", help="also one row per node id")
    p.add_argument("--check", action="store_true",
                   help="exit 1 unless every compared step has exactly the simulated (node id, op name, scope) set "
                        "and the same flops and bytes per node")
    a = p.parse_args()

    try:
        m_source, m_ops, m_walls = load(a.measured)
        s_source, s_ops, s_walls = load(a.simulated)
        if len(s_ops) != 1:
            raise BadInput(f"{a.simulated}: holds {len(s_ops)} steps; a simulated trace holds one")
        if a.step is not None and a.step not in m_ops:
            raise BadInput(f"--step {a.step}: not in {a.measured} (traced steps: {ranges(m_ops)})")
    except BadInput as e:
        print(f"trace_diff: {e}", file=sys.stderr)
        return 2

    steps = [a.step] if a.step is not None else sorted(m_ops)
    measured = [m_ops[s] for s in steps]
    simulated = next(iter(s_ops.values()))
    wall_m = sum(m_walls.get(s, 0.0) for s in steps) / len(steps)
    wall_s = next(iter(s_walls.values()), 0.0)

    print(f"measured:  {a.measured} ({m_source}), step{'s' if len(steps) > 1 else ''} {ranges(steps)}")
    print(f"simulated: {a.simulated} ({s_source})")
    print(f"step time: measured {wall_m / 1e3:.3f} ms, simulated {wall_s / 1e3:.4f} ms, ratio {ratio(wall_m, wall_s)}")
    print()
    print(table("phase", lambda e: e["cat"], measured, simulated))
    print()
    print(table("op kind", lambda e: e["name"], measured, simulated))

    differs = False
    print()
    for step, step_ops in zip(steps, measured):
        only_m = set(step_ops) - set(simulated)
        only_s = set(simulated) - set(step_ops)
        both = set(step_ops) & set(simulated)
        changed = sorted(n for n in both if identity(step_ops[n]) != identity(simulated[n]))
        costs = sorted(n for n in both if cost(step_ops[n]) != cost(simulated[n]))
        if only_m or only_s or changed or costs:
            differs = True
        print(f"step {step}: {len(step_ops)} measured ops, {len(simulated)} simulated ops")
        print(f"  only measured:  {ranges(only_m) or '-'}")
        print(f"  only simulated: {ranges(only_s) or '-'}")
        print(f"  op or scope differ: {', '.join(str(n) for n in changed[:20]) or '-'}"
              + (f" (and {len(changed) - 20} more)" if len(changed) > 20 else ""))
        for n in changed[:5]:
            print(f"    node {n}: measured {identity(step_ops[n])}, simulated {identity(simulated[n])}")
        print(f"  flops or bytes differ: {ranges(costs) or '-'}")

    if a.nodes:
        print()
        print(f"{'node':>6} {'op':<20} {'scope':<44} {'measured µs':>12} {'simulated µs':>13} {'ratio':>8}")
        for n in sorted(set(simulated).union(*[set(s) for s in measured])):
            times = [float(s[n]["dur"]) for s in measured if n in s]
            m = sum(times) / len(times) if times else None
            e = simulated.get(n) or next(s[n] for s in measured if n in s)
            s = float(simulated[n]["dur"]) if n in simulated else None
            m_text = f"{m:>12.3f}" if m is not None else f"{'-':>12}"
            s_text = f"{s:>13.4f}" if s is not None else f"{'-':>13}"
            r = ratio(m, s) if m is not None and s is not None else "-"
            print(f"{n:>6} {e['name']:<20} {e['args'].get('scope', ''):<44} {m_text} {s_text} {r:>8}")

    if a.check and differs:
        print("trace_diff: the measured and simulated ops differ (see above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
