#!/usr/bin/env python3
"""Re-runs scripts/oracles/families_ref.py's forward in float64 (every f32 made f64) on a bundled
family model and compares it with its f32 oracle.json: the greedy ids step by step, and the
last logits' max abs difference. A difference here that bitjit shows too is the f32 oracle
sitting at an int8 rounding boundary, not a bitjit error (tests/support/oracle_check.h).

    /usr/bin/python3 scripts/oracles/families_f64_probe.py models/falcone-tiny master PROMPT_INDEX
"""
import json, struct, sys, os, torch
here = os.path.dirname(os.path.abspath(__file__))
src = open(os.path.join(here, "families_ref.py")).read().split("ONLY = ")[0]
exec(src.replace(".float()", ".double()").replace("torch.float32", "torch.float64"))
torch.set_default_dtype(torch.float64)

def load_st(path):
    b = open(path, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); base = 8 + n; out = {}
    kinds = {"BF16": torch.int16, "F16": torch.float16, "U8": torch.uint8, "F32": torch.float32}
    for k, v in h.items():
        if k == "__metadata__": continue
        a, e = v["data_offsets"]
        t = torch.frombuffer(bytearray(b[base + a:base + e]), dtype=kinds[v["dtype"]])
        if v["dtype"] == "BF16": t = t.view(torch.bfloat16)
        out[k] = t.reshape(v["shape"])
    return out

d, key, pi = sys.argv[1], sys.argv[2], int(sys.argv[3])
cfg = json.load(open(d + "/config.json")); sd = load_st(d + "/model.safetensors"); o = json.load(open(d + "/oracle.json"))
p = o["prompts"][pi]; seq = list(p["ids"]); g = p[key + "_greedy_ids"]
with torch.no_grad():
    want = torch.tensor(p[key + "_last_logits"], dtype=torch.float64)
    print("last logits: max |f64 - oracle(f32)| = %.6f" % float((forward(cfg, sd, seq)[-1] - want).abs().max()))
    for i in range(len(g)):
        lg = forward(cfg, sd, seq)[-1]
        best = int(lg.argmax())
        if best != g[i]:
            print("greedy step", i, "f64 best", best, "oracle", g[i], "gap", float(lg[best] - lg[g[i]])); break
        seq.append(g[i])
    else: print("greedy: f64 agrees with the oracle on all", len(g))
