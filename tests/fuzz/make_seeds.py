#!/usr/bin/env python3
# tests/fuzz/make_seeds.py -- writes the committed seed corpora of the libFuzzer harnesses from
# the real files in the repository (models/, tests/golden/), so every seed is traceable:
#   corpus/safetensors/  "config.json \0BJSEP\0 model.safetensors" images of a tiny BitNet
#                        (packed U8 and f32 masters), the real config.json files alone, and
#                        the real packed model's header with an empty data section;
#   corpus/tokenizer/    a small tokenizer.json cut from the kjv one, and the kjv one itself;
#   corpus/bpe/          text (selector byte + bytes) for the BPE encoder round trip;
#   corpus/ir/           the golden .bjir files with their comment lines dropped;
#   corpus/aot_bundle/   by `make_seeds.py --aot LIB.so`: the bundle symbol's bytes cut out of a
#                        bitjitc library of the tiny model (bitjitc tests/fuzz/tiny-model -o LIB.so).
# The tiny model (tests/fuzz/tiny-model/) is written too; `bitjitc` compiles it for the AOT seed.
# Usage: python3 tests/fuzz/make_seeds.py            (from the repository root)
#        python3 tests/fuzz/make_seeds.py --aot tiny.so
import json
import os
import re
import struct
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FUZZ = os.path.join(ROOT, "tests", "fuzz")
KJV = os.path.join(ROOT, "models", "kjv-bitnet-11m", "packed")
SEP = b"\0BJSEP\0"


def put(rel, data):
    path = os.path.join(FUZZ, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def safetensors(tensors):
    """tensors: list of (name, dtype, shape, bytes) -> file image."""
    header, off, blobs = {"__metadata__": {"format": "pt"}}, 0, []
    for name, dt, shape, data in tensors:
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(data)]}
        off += len(data)
        blobs.append(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def bf16(n, v=0x3F80):
    return struct.pack("<%dH" % n, *([v] * n))


def f32(n, seed):
    vals, s = [], seed
    for _ in range(n):
        s = (s * 1103515245 + 12345) & 0x7FFFFFFF
        vals.append(((s >> 8) % 2001 - 1000) / 1000.0)
    return struct.pack("<%df" % n, *vals)


def tiny_model(packed, vocab, hidden=32, inter=64, heads=2, kv=1):
    hd = hidden // heads
    cfg = {
        "architectures": ["BitNetForCausalLM"], "model_type": "bitnet", "hidden_act": "relu2",
        "hidden_size": hidden, "intermediate_size": inter, "num_hidden_layers": 1,
        "num_attention_heads": heads, "num_key_value_heads": kv, "max_position_embeddings": 64,
        "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "vocab_size": vocab, "tie_word_embeddings": True,
        "bos_token_id": vocab - 2, "eos_token_id": vocab - 1,
        "quantization_config": {"quant_method": "bitnet", "linear_class": "bitlinear",
                                "quantization_mode": "offline" if packed else "online"},
    }
    t = [("model.embed_tokens.weight", "BF16", [vocab, hidden], bf16(vocab * hidden, 0x3C00)),
         ("model.norm.weight", "BF16", [hidden], bf16(hidden))]
    p = "model.layers.0."
    t += [(p + "input_layernorm.weight", "BF16", [hidden], bf16(hidden)),
          (p + "post_attention_layernorm.weight", "BF16", [hidden], bf16(hidden)),
          (p + "self_attn.attn_sub_norm.weight", "BF16", [hidden], bf16(hidden)),
          (p + "mlp.ffn_sub_norm.weight", "BF16", [inter], bf16(inter))]
    lin = [("self_attn.q_proj", hidden, hidden), ("self_attn.k_proj", kv * hd, hidden),
           ("self_attn.v_proj", kv * hd, hidden), ("self_attn.o_proj", hidden, hidden),
           ("mlp.gate_proj", inter, hidden), ("mlp.up_proj", inter, hidden), ("mlp.down_proj", hidden, inter)]
    for i, (name, out, inp) in enumerate(lin):
        if packed:
            # 2-bit codes 0,1,2 (-1, 0, +1) cycling: not all zero, every value present
            data = bytes(((i + j) % 3) | (((i + j + 1) % 3) << 2) | (((i + j + 2) % 3) << 4) | (1 << 6)
                         for j in range(out // 4 * inp))
            t.append((p + name + ".weight", "U8", [out // 4, inp], data))
            t.append((p + name + ".weight_scale", "BF16", [1], bf16(1, 0x3F80)))
        else:
            t.append((p + name + ".weight", "F32", [out, inp], f32(out * inp, i + 1)))
    return json.dumps(cfg, indent=2).encode(), safetensors(t)


def tiny_tokenizer(keep=280):
    tj = json.load(open(os.path.join(KJV, "tokenizer.json"), encoding="utf-8"))
    vocab = {k: v for k, v in tj["model"]["vocab"].items() if v < keep}
    merges = []
    for m in tj["model"]["merges"]:
        a, b = m if isinstance(m, list) else m.split(" ", 1)
        if a in vocab and b in vocab and a + b in vocab:
            merges.append([a, b])
    tj["model"]["vocab"] = vocab
    tj["model"]["merges"] = merges
    for i, a in enumerate(tj["added_tokens"]):
        a["id"] = keep + i
    pp = tj.get("post_processor") or {}
    for st in (pp.get("special_tokens") or {}).values():
        st["ids"] = [keep + [a["content"] for a in tj["added_tokens"]].index(st["id"])]
    return json.dumps(tj, ensure_ascii=False).encode(), keep + len(tj["added_tokens"])


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--aot":
        aot_seed(sys.argv[2])
        return
    tok, vocab = tiny_tokenizer()
    put("corpus/tokenizer/tiny-tokenizer.json", tok)
    put("corpus/tokenizer/kjv-tokenizer.json", open(os.path.join(KJV, "tokenizer.json"), "rb").read())
    for packed in (True, False):
        cfg, st = tiny_model(packed, vocab)
        kind = "packed" if packed else "master"
        put("corpus/safetensors/tiny-%s.bin" % kind, cfg + SEP + st)
        if packed:
            d = "tiny-model"
            put(d + "/config.json", cfg)
            put(d + "/model.safetensors", st)
            put(d + "/tokenizer.json", tok)
            put(d + "/tokenizer_config.json", open(os.path.join(KJV, "tokenizer_config.json"), "rb").read())
    for m in ("kjv-bitnet-11m/packed", "kjv-bitnet-11m/master", "kjv-bitnet1-11m/master"):
        put("corpus/safetensors/config-%s.json" % m.replace("/", "-"),
            open(os.path.join(ROOT, "models", m, "config.json"), "rb").read())
    with open(os.path.join(KJV, "model.safetensors"), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        put("corpus/safetensors/kjv-packed-header-only.bin", struct.pack("<Q", n) + f.read(n))
    texts = [b"In the beginning God created the heaven and the earth.",
             "caf\u00e9 \u65e5\u672c\u8a9e \U0001F600 <|begin_of_text|>x".encode(),
             b"  \n\n\t 123 4567 it's don't",
             b"\xff\xfe invalid \xc3 utf8 \xe2\x82"]
    for i, t in enumerate(texts):
        for sel in (0, 1, 2):
            put("corpus/bpe/text-%d-%d.bin" % (i, sel), bytes([sel]) + t)
    for name in sorted(os.listdir(os.path.join(ROOT, "tests", "golden"))):
        if name.endswith(".bjir"):
            text = open(os.path.join(ROOT, "tests", "golden", name), "rb").read()
            body = b"".join(l for l in text.splitlines(True) if not l.lstrip().startswith(b"#"))
            put("corpus/ir/" + name, body)


def aot_seed(lib):
    """Cuts the bundle symbol's bytes out of a bitjitc library."""
    syms = subprocess.run(["nm", "-S", "--defined-only", lib], capture_output=True, text=True, check=True).stdout
    m = re.search(r"^([0-9a-f]+) ([0-9a-f]+) \w bitjit_aot_bundle$", syms, re.M)
    addr, size = int(m.group(1), 16), int(m.group(2), 16)
    secs = subprocess.run(["readelf", "-SW", lib], capture_output=True, text=True, check=True).stdout
    for line in secs.splitlines():
        f = re.match(r"\s*\[\s*\d+\]\s+(\S+)\s+\S+\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)", line)
        if not f:
            continue
        saddr, soff, ssize = int(f.group(2), 16), int(f.group(3), 16), int(f.group(4), 16)
        if saddr <= addr < saddr + ssize:
            data = open(lib, "rb").read()[soff + addr - saddr: soff + addr - saddr + size]
            put("corpus/aot_bundle/tiny-bundle.bin", data)
            return
    sys.exit("bundle symbol not found in a section of " + lib)


if __name__ == "__main__":
    main()
