"""Markdown tables per track from an `evaluate` results.json, as docs/evaluation-real.md shows them.

Usage: python scripts/real_eval_tables.py RUN/eval/results.json. The cost column is ASSUMED, not metered: 2,540 prompt +
60 completion tokens per oracle call at gpt-4.1-mini list prices ($0.40 / $1.60 per million tokens), times the oracle
calls per 100k frames the evaluation counted (the ground-truth stand-in meters no tokens)."""
import json, sys
r = json.load(open(sys.argv[1]))
PER_CALL = (2540 * 0.40 + 60 * 1.60) / 1e6   # assumed tokens at gpt-4.1-mini list prices
def ci(m):
    if m is None or m.get("estimate") is None: return "—"
    return f"{m['estimate']:.3f} [{m['low']:.3f}, {m['high']:.3f}]"
def pct(x): return "—" if x is None else f"{x:.1%}"
def f3(x): return "—" if x is None else f"{x:.3f}"
TITLES = {"cascade": "cascade", "layer1_only": "Layer 1 only", "layer2_only": "Layer 2 only (any detection)",
          "layer2_only_at_bar": "Layer 2 only (at its bars)", "oracle_only": "oracle only (stand-in)"}
for track in list(r["tracks"]) + ["overall"]:
    ms = r["metrics"][track]
    c = ms["cascade"]
    print(f"\n**{track}** ({c['n']} frames, {c['n_defective']} defective)\n")
    print("| system | recall [95% CI] | precision [95% CI] | F1 [95% CI] | class acc. [95% CI] | decided L1 / L2 / L3 | L2 coverage | L2 precision (class) | assumed $ / 100k |")
    print("|---|---|---|---|---|---|---|---|---|")
    for s in ("cascade", "layer1_only", "layer2_only", "layer2_only_at_bar", "oracle_only"):
        if s not in ms: continue
        m = ms[s]; dd = m["decided_by"]; nn = max(m["n"], 1)
        ca = m.get("class_accuracy"); l2 = m.get("layer2") or {}
        calls = m["oracle_calls_per_100k"]
        l2p = "—" if l2.get("precision") is None else f"{l2['precision']:.3f} ({f3(l2.get('class_precision'))})"
        print(f"| {TITLES[s]} | {ci(m['recall'])} | {ci(m['precision'])} | {ci(m['f1'])} | {ci(ca) if ca else 'n/a'} | "
              f"{dd['1']/nn:.1%} / {dd['2']/nn:.1%} / {dd['3']/nn:.1%} | "
              f"{pct(l2.get('coverage')) if s in ('cascade',) else '—'} | {l2p if s == 'cascade' else '—'} | ${calls*PER_CALL:,.2f} |")
