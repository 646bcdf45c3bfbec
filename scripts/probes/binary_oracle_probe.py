#!/usr/bin/env python3
"""scripts/probes/binary_oracle_probe.py -- the binary BitNet forward of
models/kjv-bitnet1-11m/README.md in PyTorch, in several arithmetic variants, against the
model's oracle.json (issue 10; the findings are in docs/numerics.md).

Not part of the build or the tests: it needs torch and safetensors, which Debian's apt does not
provide (it was run on the device machine, torch 2.11 CPU). It rebuilds the rule from the README,
independently of bitjit:
  weights   W_b = beta * Sign(W - alpha), alpha = mean(W), beta = mean|W|, Sign(0) = -1
  act quant s = 127 / max(max|x|, 1e-5), q = clamp(round_half_even(x * s), -128, 127)
  layer     HF BitNet layout (sub-norms, relu^2, GQA, RoPE half-split, tied head)

Modes:
  --variants   fp32 forwards that differ only in where they round (act quant formula, the
               matmul as F.linear of dequantized values or as an integer dot then rescale,
               RMSNorm mean in f32 or in f64); prints each one's max |logit - oracle| per prompt.
  --round32    the exact forward (integer dots, f64 elsewhere) with chosen tensors rounded to
               f32: which rounding points decide the oracle's boundary prompt.
  --dump-q F --prompt I
               compares bitjit's int8 activations (a dump: per act-quant call, int64 K, int64 T,
               T*K int8 codes, T*K f32 inputs, in graph order: qkv, o, gate/up, down per layer)
               with the exact forward's, and prints the first codes that differ and how far
               the exact value x*s was from the .5 boundary.
  --greedy     the exact forward's greedy continuation (as many ids as the oracle's) against
               the oracle's master_greedy_ids.
  --rule ternary runs the same on kjv-bitnet-11m's master (absmean RoundClip weights).
Usage: binary_oracle_probe.py MODEL_DIR [--rule binary|ternary] (--variants | --round32 | --greedy |
       --dump-q FILE --prompt I)
"""
import argparse, json, struct

import numpy as np
import torch
from safetensors.torch import load_file

ap = argparse.ArgumentParser()
ap.add_argument("model", help="e.g. models/kjv-bitnet1-11m (with master/ and oracle.json)")
ap.add_argument("--variants", action="store_true")
ap.add_argument("--round32", action="store_true")
ap.add_argument("--dump-q")
ap.add_argument("--prompt", type=int, default=0)
ap.add_argument("--rule", choices=("binary", "ternary"), default="binary",
                help="binary: the README's Sign rule (kjv-bitnet1-11m); ternary: absmean RoundClip (kjv-bitnet-11m master)")
ap.add_argument("--greedy", action="store_true", help="the exact forward's 48 greedy ids against the oracle's")
args = ap.parse_args()

idx = json.load(open(f"{args.model}/master/model.safetensors.index.json"))
W = {}
for shard in sorted(set(idx["weight_map"].values())):
    W.update(load_file(f"{args.model}/master/{shard}"))
cfg = json.load(open(f"{args.model}/master/config.json"))
orc = json.load(open(f"{args.model}/oracle.json"))
H, Hkv, L, D = (cfg[k] for k in ("num_attention_heads", "num_key_value_heads", "num_hidden_layers", "hidden_size"))
d, eps, theta = D // H, cfg["rms_norm_eps"], cfg["rope_theta"]


def forward(ids, dt, exact, aq="mul", mm="lin", rms_mean="f64", r32=(), log=None):
    """Last-position logits (f64). exact: integer dots in f64 (exact), then / s * beta.
    r32: names of tensors rounded to f32 in an f64 run ('res', 'rms', 'mm', 'kv', 'attn', 'ffn')."""
    R = lambda t, what: t.float().double() if what in r32 else t
    P = {k: v.to(dt) for k, v in W.items()}

    def rms(x, w):
        if rms_mean == "f64":
            v = (x * x).double().sum(-1, keepdim=True).to(dt) * (1.0 / x.shape[-1])
            return R(w * (x * (1.0 / torch.sqrt(v + eps))), "rms")
        return R(w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)), "rms")

    def bitlinear(x, w, name):
        am = x.abs().amax(-1, keepdim=True).clamp(min=1e-5)
        s = 127.0 / am
        xs = x / am * 127.0 if aq == "div" else x * s
        q = xs.round().clamp(-128, 127)
        if log is not None:
            log.setdefault(name, (q, xs))
        if args.rule == "binary":
            sign = torch.where(w - w.mean() > 0, 1.0, -1.0).to(dt)
            beta = w.abs().mean()
        else:  # absmean: gamma = max(mean|W|, 1e-5), W_t = clamp(round(W / gamma), -1, 1), scale gamma
            beta = w.abs().mean().clamp(min=1e-5)
            sign = (w / beta).round().clamp(-1, 1)
        if exact:
            return R(((q.double() @ sign.double().T) / s.double() * beta.double()).to(dt), "mm")
        if mm == "int":
            return torch.nn.functional.linear(q, sign) / s * beta
        return torch.nn.functional.linear(q / s, sign * beta)

    T = len(ids)
    x = P["model.embed_tokens.weight"][torch.tensor(ids)]
    inv = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
    ang = torch.arange(T).float()[:, None] * inv[None, :]
    ang = torch.cat([ang, ang], -1)
    cos, sin = ang.cos().to(dt), ang.sin().to(dt)
    rot = lambda t: torch.cat([-t[..., d // 2:], t[..., : d // 2]], -1)
    mask = torch.full((T, T), float("-inf"), dtype=dt).triu(1)
    for l in range(L):
        p = f"model.layers.{l}."
        h = rms(x, P[p + "input_layernorm.weight"])
        q = bitlinear(h, P[p + "self_attn.q_proj.weight"], f"{l}.qkv").view(T, H, d).transpose(0, 1)
        k = bitlinear(h, P[p + "self_attn.k_proj.weight"], f"{l}.qkv").view(T, Hkv, d).transpose(0, 1)
        v = bitlinear(h, P[p + "self_attn.v_proj.weight"], f"{l}.qkv").view(T, Hkv, d).transpose(0, 1)
        q = R(q * cos + rot(q) * sin, "kv")
        k, v = R(k * cos + rot(k) * sin, "kv"), R(v, "kv")
        k, v = k.repeat_interleave(H // Hkv, 0), v.repeat_interleave(H // Hkv, 0)
        a = ((q @ k.transpose(-1, -2)) / d ** 0.5 + mask).softmax(-1)
        o = R((a @ v).transpose(0, 1).reshape(T, D), "attn")
        x = R(x + bitlinear(rms(o, P[p + "self_attn.attn_sub_norm.weight"]), P[p + "self_attn.o_proj.weight"], f"{l}.o"), "res")
        h = rms(x, P[p + "post_attention_layernorm.weight"])
        g = bitlinear(h, P[p + "mlp.gate_proj.weight"], f"{l}.gu")
        u = bitlinear(h, P[p + "mlp.up_proj.weight"], f"{l}.gu")
        f = R(torch.relu(g) ** 2 * u, "ffn")
        x = R(x + bitlinear(rms(f, P[p + "mlp.ffn_sub_norm.weight"]), P[p + "mlp.down_proj.weight"], f"{l}.down"), "res")
    x = rms(x, P["model.norm.weight"])
    return (x[-1] @ P["model.embed_tokens.weight"].T).double()


def vs_oracle(run):
    row = []
    for pr in orc["prompts"]:
        ref = torch.tensor(pr["master_last_logits"], dtype=torch.float64)
        row.append((run(pr["ids"]) - ref).abs().max().item())
    return f"max {max(row):.6f}: " + " ".join(f"{x:.6f}" for x in row)


print("prompts:", [p["prompt"] for p in orc["prompts"]])
print("exact (integer dots, f64 elsewhere):", vs_oracle(lambda ids: forward(ids, torch.float64, True)))
if args.variants:
    for aq in ("mul", "div"):
        for mm in ("lin", "int"):
            for rm in ("f64", "f32"):
                r = vs_oracle(lambda ids: forward(ids, torch.float32, False, aq, mm, rm))
                print(f"f32 act-quant x{'*s' if aq == 'mul' else '/max*127'} matmul "
                      f"{'F.linear(q/s, sign*beta)' if mm == 'lin' else 'F.linear(q, sign)/s*beta'} "
                      f"RMSNorm mean in {rm}: {r}")
if args.round32:
    for r32 in ((), ("kv",), ("kv", "attn"), ("ffn",), ("res",), ("rms",), ("mm",), ("res", "rms", "mm"),
                ("res", "rms", "mm", "kv", "attn", "ffn")):
        print(f"exact, rounded to f32 at {r32 or '(nothing)'}: "
              + vs_oracle(lambda ids: forward(ids, torch.float64, True, r32=r32)))
if args.greedy:
    for pr in orc["prompts"]:
        ids, want = list(pr["ids"]), pr["master_greedy_ids"]
        for _ in range(len(want)):
            ids.append(int(forward(ids, torch.float64, True).argmax()))
        got = ids[len(pr["ids"]):]
        first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), None)
        print(f"exact forward, greedy {pr['prompt']!r}: " + ("equal" if first is None else f"differs first at {first}"))
if args.dump_q:
    buf, off, recs = open(args.dump_q, "rb").read(), 0, []
    while off < len(buf):
        K, T = struct.unpack_from("qq", buf, off)
        q = np.frombuffer(buf, np.int8, K * T, off + 16).reshape(T, K)
        x = np.frombuffer(buf, np.float32, K * T, off + 16 + K * T).reshape(T, K)
        recs.append((q, x))
        off += 16 + 5 * K * T
    log = {}
    forward(orc["prompts"][args.prompt]["ids"], torch.float64, True, log=log)
    sites = ["qkv", "o", "gu", "down"]
    for i in range(min(len(recs), 4 * L)):
        name = f"{i // 4}.{sites[i % 4]}"
        qe, xs = (t.numpy() for t in log[name])
        qo, xo = recs[i]
        if qo.shape != qe.shape:
            break
        diff = list(zip(*np.nonzero(qe.astype(np.int64) != qo)))
        print(f"layer {name}: {len(diff)} codes differ")
        for t, k in diff[:2]:
            print(f"   token {t} col {k}: bitjit {qo[t, k]} exact {int(qe[t, k])}; exact x*s = {xs[t, k]:.9f}, "
                  f"bitjit's f32 input x*127/max = {float(xo[t, k]) * 127.0 / np.abs(xo[t]).max():.9f}")
        if diff:
            break
