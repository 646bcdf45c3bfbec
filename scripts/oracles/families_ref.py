#!/usr/bin/env python3
"""Independent reference oracles for issue 22's model families, for a machine without HF
transformers (Debian 12: python3-torch 1.13, python3-sentencepiece, python3-jinja2).

    /usr/bin/python3 scripts/oracles/families_ref.py [REPO]

Writes models/{falcon3-tiny,falcone-tiny,bitnet158-tiny}/ in each family's real HF layout
(config.json, model.safetensors, tokenizer files) and their oracle.json. The forward pass here
is a plain PyTorch transcription of transformers' modeling_llama.py + integrations/bitnet.py
(BitLinear, AutoBitLinear with WeightQuant/ActQuant, use_rms_norm) and of 1bitLLM's
modeling_bitnet.py / utils_quant.py, in fp32 on the CPU. Nothing here reads bitjit's code or
output. scripts/oracles/families.py makes the same kind of oracle with HF transformers itself
(for a machine that has it). Seeds are fixed: the files are reproducible.
"""
import json, math, os, struct, sys
import torch
import torch.nn.functional as F

REPO = sys.argv[1] if len(sys.argv) > 1 else "."
KJV = os.path.join(REPO, "models/kjv-bitnet-11m")
H, FF, L, NH, NKV, HD = 256, 512, 2, 4, 2, 64

# ---- HF's packing (integrations/bitnet.py pack_weights / unpack_weights) -------------------------
def pack(q):  # q: int tensor [out, in] of -1/0/1 -> U8 [out/4, in]; row r of quarter i in bits 2i
    out, k = q.shape
    rows = out // 4
    codes = (q + 1).to(torch.uint8)
    p = torch.zeros(rows, k, dtype=torch.uint8)
    for i in range(4):
        p |= codes[i * rows:(i + 1) * rows] << (2 * i)
    return p

def unpack(p):
    rows = p.shape[0]
    return torch.cat([((p >> (2 * i)) & 3).to(torch.float32) - 1 for i in range(4)], 0)

# ---- safetensors writer ------------------------------------------------------------------------
DT = {torch.bfloat16: "BF16", torch.float16: "F16", torch.float32: "F32", torch.uint8: "U8"}
def tensor_bytes(t):
    t = t.contiguous()
    if t.dtype == torch.bfloat16: return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()

def save_safetensors(path, tensors):
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, t in tensors.items():
        b = tensor_bytes(t)
        header[name] = {"dtype": DT[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b); off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h))); f.write(h)
        for b in blobs: f.write(b)

# ---- the forward pass (modeling_llama + integrations/bitnet) ------------------------------------
def rmsnorm(x, w, eps):
    var = x.pow(2).mean(-1, keepdim=True)
    return w * (x * torch.rsqrt(var + eps))

def act_quant_int(x):  # BitLinear.activation_quant: int8 values and the scale
    s = 127.0 / x.abs().max(dim=-1, keepdim=True).values.clamp(min=1e-5)
    return (x * s).round().clamp(-128, 127), s

def act_quant(x):  # ActQuant / 1bitLLM activation_quant: quantize-dequantize
    q, s = act_quant_int(x)
    return q / s

def weight_quant(w):  # WeightQuant / 1bitLLM weight_quant: absmean ternary, dequantized
    s = 1.0 / w.abs().mean().clamp(min=1e-5)
    return (w * s).round().clamp(-1, 1) / s

def bitlinear(sd, prefix, x, q):
    """q: the quantization_config (None: 1bitLLM masters)."""
    if q and q.get("use_rms_norm"):
        x = rmsnorm(x, sd[prefix + ".rms_norm.weight"].float(), q.get("rms_norm_eps", 1e-6))
    w = sd[prefix + ".weight"]
    if q and q.get("quantization_mode", "offline") == "offline":
        wq = unpack(w)
        ws = sd[prefix + ".weight_scale"].float()
        if q.get("linear_class", "bitlinear") == "bitlinear":  # y / (input_scale * weight_scale)
            xi, s = act_quant_int(x)
            return F.linear(xi, wq) / (s * ws)
        return F.linear(act_quant(x), wq) * ws  # AutoBitLinear offline: output * weight_scale
    return F.linear(act_quant(x), weight_quant(w.float()))

def rope(x, theta, pos):  # x [T, heads, hd]; rotate_half style
    hd = x.shape[-1]
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    fr = pos.float()[:, None] * inv[None, :]
    emb = torch.cat([fr, fr], -1)
    cos, sin = emb.cos()[:, None, :], emb.sin()[:, None, :]
    x1, x2 = x[..., :hd // 2], x[..., hd // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin

def forward(cfg, sd, ids):
    q = cfg.get("quantization_config")
    bitnet_1b = cfg["architectures"][0] == "BitnetForCausalLM"
    eps, theta = cfg["rms_norm_eps"], cfg["rope_theta"]
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim", cfg["hidden_size"] // nh)
    act = F.silu if cfg["hidden_act"] == "silu" else (lambda v: F.relu(v) ** 2)
    T = len(ids)
    pos = torch.arange(T)
    x = sd["model.embed_tokens.weight"].float()[torch.tensor(ids)]
    mask = torch.full((T, T), float("-inf")).triu(1)
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = rmsnorm(x, sd[p + "input_layernorm.weight"].float(), eps)
        qq = rope(bitlinear(sd, p + "self_attn.q_proj", h, q).view(T, nh, hd), theta, pos)
        kk = rope(bitlinear(sd, p + "self_attn.k_proj", h, q).view(T, nkv, hd), theta, pos)
        vv = bitlinear(sd, p + "self_attn.v_proj", h, q).view(T, nkv, hd)
        rep = nh // nkv
        kk, vv = kk.repeat_interleave(rep, 1), vv.repeat_interleave(rep, 1)
        att = torch.einsum("thd,shd->hts", qq, kk) * (hd ** -0.5) + mask
        a = torch.einsum("hts,shd->thd", att.softmax(-1), vv).reshape(T, nh * hd)
        if bitnet_1b: a = rmsnorm(a, sd[p + "self_attn.inner_attn_ln.weight"].float(), eps)
        x = x + bitlinear(sd, p + "self_attn.o_proj", a, q)
        h = rmsnorm(x, sd[p + "post_attention_layernorm.weight"].float(), eps)
        m = act(bitlinear(sd, p + "mlp.gate_proj", h, q)) * bitlinear(sd, p + "mlp.up_proj", h, q)
        if bitnet_1b: m = rmsnorm(m, sd[p + "mlp.ffn_layernorm.weight"].float(), eps)
        x = x + bitlinear(sd, p + "mlp.down_proj", m, q)
    x = rmsnorm(x, sd["model.norm.weight"].float(), eps)
    head = sd["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else sd["lm_head.weight"]
    return x @ head.float().t()

def oracle(cfg, sd, prompts, key):
    out = []
    with torch.no_grad():
        for text, ids in prompts:
            last = forward(cfg, sd, ids)[-1]
            seq, greedy, gaps = list(ids), [], []
            for _ in range(48):
                lg = forward(cfg, sd, seq)[-1]
                top = torch.topk(lg, 2)
                gaps.append(float(top.values[0] - top.values[1]))
                greedy.append(int(top.indices[0])); seq.append(greedy[-1])
            out.append({"prompt": text, "ids": ids, key + "_last_logits": [round(float(v), 6) for v in last],
                        key + "_greedy_ids": greedy, key + "_min_top2_gap": round(min(gaps), 6)})
            print(cfg["architectures"][0], key, repr(text), "greedy", greedy[:10], "min top-2 gap %.4f" % min(gaps))
    return out

def render_chat(template, msgs, bos, eos):
    import jinja2
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)  # as transformers' apply_chat_template
    return env.from_string(template).render(messages=msgs, add_generation_prompt=True, bos_token=bos, eos_token=eos)

CONV = [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "Who is the Alpha?"},
        {"role": "assistant", "content": "The first and the last."}, {"role": "user", "content": " And the Omega? "}]
FALCON3_TEMPLATE = ("{% for message in messages %}{% if message['role'] == 'system' %}{{ '<|system|>\\n' + message['content'] + '\\n' }}"
                    "{% elif message['role'] == 'user' %}{{ '<|user|>\\n' + message['content'] + '\\n' }}"
                    "{% elif message['role'] == 'assistant' %}{% if not loop.last %}{{ '<|assistant|>\\n' + message['content'] + eos_token + '\\n' }}"
                    "{% else %}{{ '<|assistant|>\\n' + message['content'] + eos_token }}{% endif %}{% endif %}"
                    "{% if loop.last and add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}{% endfor %}")
LLAMA3_TEMPLATE = ("{% set loop_messages = messages %}{% for message in loop_messages %}"
                   "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}"
                   "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
                   "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")

def kjv_prompts():
    o = json.load(open(os.path.join(KJV, "oracle.json")))
    return [(p["prompt"], p["ids"]) for p in o["prompts"]]  # HF tokenizers' ids (BOS included)

def llama_family(name, q, tie, template, g):
    d = os.path.join(REPO, "models", name); os.makedirs(d, exist_ok=True)
    V = 4096
    for f in ("tokenizer.json",):
        open(os.path.join(d, f), "wb").write(open(os.path.join(KJV, "packed", f), "rb").read())
    tc = json.load(open(os.path.join(KJV, "packed/tokenizer_config.json")))
    tc["chat_template"] = template
    json.dump(tc, open(os.path.join(d, "tokenizer_config.json"), "w"), indent=2)
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu", "hidden_size": H,
           "intermediate_size": FF, "num_hidden_layers": L, "num_attention_heads": NH, "num_key_value_heads": NKV,
           "head_dim": HD, "max_position_embeddings": 512, "rms_norm_eps": 1e-6, "rope_theta": 1000042.0,
           "vocab_size": V, "tie_word_embeddings": tie, "bos_token_id": 4094, "eos_token_id": 4095,
           "attention_bias": False, "mlp_bias": False, "torch_dtype": "bfloat16", "quantization_config": q}
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"), indent=2)
    bf = lambda t: t.to(torch.bfloat16)
    sd = {"model.embed_tokens.weight": bf((0.2 if tie else 1.0) * torch.randn(V, H, generator=g)),
          "model.norm.weight": bf(1 + 0.1 * torch.randn(H, generator=g))}
    if not tie: sd["lm_head.weight"] = bf(0.2 * torch.randn(V, H, generator=g))
    online = q.get("quantization_mode") == "online"
    for l in range(L):
        p = f"model.layers.{l}."
        sd[p + "input_layernorm.weight"] = bf(1 + 0.1 * torch.randn(H, generator=g))
        for proj, (o, i) in (("self_attn.q_proj", (NH * HD, H)), ("self_attn.k_proj", (NKV * HD, H)),
                             ("self_attn.v_proj", (NKV * HD, H)), ("self_attn.o_proj", (H, NH * HD))):
            w = 0.05 * torch.randn(o, i, generator=g)
            if online: sd[p + proj + ".weight"] = bf(w)
            else:
                s = 1.0 / w.abs().mean()
                sd[p + proj + ".weight"] = pack((w * s).round().clamp(-1, 1).to(torch.int64))
                sd[p + proj + ".weight_scale"] = bf(torch.tensor([float(s)]))  # bitlinear: the divisor
            if q.get("use_rms_norm"): sd[p + proj + ".rms_norm.weight"] = bf(1 + 0.1 * torch.randn(i, generator=g))
        sd[p + "post_attention_layernorm.weight"] = bf(1 + 0.1 * torch.randn(H, generator=g))
        for proj, (o, i) in (("mlp.gate_proj", (FF, H)), ("mlp.up_proj", (FF, H)), ("mlp.down_proj", (H, FF))):
            w = 0.05 * torch.randn(o, i, generator=g)
            if online: sd[p + proj + ".weight"] = bf(w)
            else:
                s = 1.0 / w.abs().mean()
                sd[p + proj + ".weight"] = pack((w * s).round().clamp(-1, 1).to(torch.int64))
                sd[p + proj + ".weight_scale"] = bf(torch.tensor([float(s)]))
            if q.get("use_rms_norm"): sd[p + proj + ".rms_norm.weight"] = bf(1 + 0.1 * torch.randn(i, generator=g))
    save_safetensors(os.path.join(d, "model.safetensors"), sd)
    key = "master" if online else "packed"
    res = oracle(cfg, sd, kjv_prompts(), key)
    chat = {"messages": CONV, "text": render_chat(template, CONV, "<|begin_of_text|>", "<|end_of_text|>")}
    json.dump({"made_by": "scripts/oracles/families_ref.py (PyTorch %s transcription of transformers' "
               "modeling_llama + integrations/bitnet; prompt ids from kjv-bitnet-11m/oracle.json, HF tokenizers)"
               % torch.__version__, "family": name, "quantization_config": q, "prompts": res, "chat": chat},
              open(os.path.join(d, "oracle.json"), "w"))

TOK_CASES = ["Hello, world!", "And I saw a new heaven and a new earth", "  two  spaces and\ttab\n\nnewlines",
             "digits 1234567 and 3.14", "caf\u00e9 na\u00efve \u00fcber \u4e2d\u6587 \U0001F600", "I'm he's they'll WE'RE",
             "", " ", "Alpha and Omega, the first and the last.", "x", "  leading", "trailing  ", "\u2581 literal",
             "<s> and </s> as text", "ZZZ qqq jjj"]

def bitnet158(g):
    name = "bitnet158-tiny"
    d = os.path.join(REPO, "models", name); os.makedirs(d, exist_ok=True)
    import sentencepiece as spm
    lines = [l for l in open(os.path.join(KJV, "heldout.txt"), encoding="utf-8").read().splitlines() if l.strip()]
    prefix = os.path.join(d, "tokenizer")
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_prefix=prefix, vocab_size=500,
                                   model_type="bpe", byte_fallback=True, normalization_rule_name="identity",
                                   remove_extra_whitespaces=False, add_dummy_prefix=True, unk_id=0, bos_id=1, eos_id=2,
                                   pad_id=-1, character_coverage=1.0, minloglevel=2, num_threads=1, seed_sentencepiece_size=100000)
    os.remove(prefix + ".vocab")
    sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
    V = sp.get_piece_size()
    json.dump({"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
               "add_bos_token": True, "add_eos_token": False, "legacy": True},
              open(os.path.join(d, "tokenizer_config.json"), "w"), indent=2)
    cfg = {"architectures": ["BitnetForCausalLM"], "model_type": "llama", "hidden_act": "silu", "hidden_size": H,
           "intermediate_size": FF, "num_hidden_layers": L, "num_attention_heads": NH, "num_key_value_heads": NH,
           "max_position_embeddings": 512, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "vocab_size": V,
           "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 32000 if V > 32000 else None,
           "weight_bits": 1, "input_bits": 8, "attention_bias": False, "torch_dtype": "float16"}
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"), indent=2)
    hf = lambda t: t.to(torch.float16)
    sd = {"model.embed_tokens.weight": hf(torch.randn(V, H, generator=g)),
          "model.norm.weight": hf(1 + 0.1 * torch.randn(H, generator=g)),
          "lm_head.weight": hf(0.2 * torch.randn(V, H, generator=g))}
    for l in range(L):
        p = f"model.layers.{l}."
        sd[p + "input_layernorm.weight"] = hf(1 + 0.1 * torch.randn(H, generator=g))
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            sd[p + "self_attn." + proj + ".weight"] = hf(0.05 * torch.randn(H, H, generator=g))
        sd[p + "self_attn.inner_attn_ln.weight"] = hf(1 + 0.1 * torch.randn(H, generator=g))
        sd[p + "post_attention_layernorm.weight"] = hf(1 + 0.1 * torch.randn(H, generator=g))
        sd[p + "mlp.gate_proj.weight"] = hf(0.05 * torch.randn(FF, H, generator=g))
        sd[p + "mlp.up_proj.weight"] = hf(0.05 * torch.randn(FF, H, generator=g))
        sd[p + "mlp.ffn_layernorm.weight"] = hf(1 + 0.1 * torch.randn(FF, generator=g))
        sd[p + "mlp.down_proj.weight"] = hf(0.05 * torch.randn(H, FF, generator=g))
    save_safetensors(os.path.join(d, "model.safetensors"), sd)
    prompts = [(t, [1] + sp.encode(t)) for t in ("In the beginning", "And I saw a new heaven", "Blessed are the",
                                                 "The grace of our Lord")]
    res = oracle(cfg, sd, prompts, "master")
    cases = [{"text": s, "ids": sp.encode(s)} for s in TOK_CASES]
    json.dump({"made_by": "scripts/oracles/families_ref.py (PyTorch %s transcription of 1bitLLM's modeling_bitnet + "
               "utils_quant; tokenizer: sentencepiece %s, trained on kjv-bitnet-11m/heldout.txt)"
               % (torch.__version__, spm.__version__), "family": name, "prompts": res, "tokenizer": cases,
               "tokenizer_add_bos": False}, open(os.path.join(d, "oracle.json"), "w"))

ONLY = sys.argv[2].split(",") if len(sys.argv) > 2 else None  # e.g. falcone-tiny: remake only those
torch.manual_seed(22)
if not ONLY or "falcon3-tiny" in ONLY:
  llama_family("falcon3-tiny", {"quant_method": "bitnet", "linear_class": "bitlinear", "quantization_mode": "offline"},
               False, FALCON3_TEMPLATE, torch.Generator().manual_seed(2201))
if not ONLY or "falcone-tiny" in ONLY:
  llama_family("falcone-tiny", {"quant_method": "bitnet", "linear_class": "autobitlinear", "quantization_mode": "online",
                                "use_rms_norm": True, "rms_norm_eps": 1e-6}, True, LLAMA3_TEMPLATE,
               torch.Generator().manual_seed(2204))
if not ONLY or "bitnet158-tiny" in ONLY:
  bitnet158(torch.Generator().manual_seed(2203))
