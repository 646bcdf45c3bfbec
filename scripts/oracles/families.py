#!/usr/bin/env python3
"""Makes the small random models of issue 22's families in each family's real HF layout, runs
them with Hugging Face transformers (fp32, CPU) and writes their oracle.json: prompt ids, last
logits, 48 greedy ids, tokenizer cases from the reference tokenizers. Run on a machine with
torch + transformers + tokenizers + sentencepiece + safetensors:

    python3 scripts/oracles/families.py models/kjv-bitnet-11m/heldout.txt OUTDIR

Nothing here reads bitjit's output. Families:
  falcon3-tiny   LlamaForCausalLM, quantization_config bitnet / bitlinear / offline: U8 [out/4,in]
                 packed weights + weight_scale (divisor), byte-level BPE tokenizer.json with the
                 LLaMA-3 split regex, Falcon3's chat template.
  falcone-tiny   LlamaForCausalLM, bitnet / autobitlinear / online / use_rms_norm: bf16 masters
                 ternarized at load, an RMSNorm inside every BitLinear; Llama-3 style tokenizer
                 (BOS via TemplateProcessing) and Llama-3 chat template.
  bitnet158-tiny 1bitLLM's BitnetForCausalLM layout (inner_attn_ln, ffn_layernorm, fp16 masters,
                 SiLU), SentencePiece BPE tokenizer.model; run through transformers'
                 BitNetForCausalLM (hidden_act silu, autobitlinear online), the same computation.
"""
import json, os, sys, math, shutil, traceback
os.environ.setdefault("TORCH_COMPILE_DISABLE", "1")
import torch
import transformers
from safetensors.torch import save_file

text_path, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
lines = [l for l in open(text_path, encoding="utf-8").read().splitlines() if l.strip()]
torch.manual_seed(22)

PROMPTS = ["In the beginning", "And I saw a new heaven", "Blessed are the", "The grace of our Lord"]
TOK_CASES = ["Hello, world!", "And I saw a new heaven and a new earth", "  two  spaces and\ttab\n\nnewlines",
             "digits 1234567 and 3.14", "caf\u00e9 na\u00efve \u00fcber \u4e2d\u6587 \U0001F600", "I'm he's they'll WE'RE",
             "", " ", "Alpha and Omega, the first and the last.", "x"]
LLAMA3_PAT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
              r"|\s*[\r\n]+|\s+(?!\S)|\s+")
FALCON3_TEMPLATE = ("{% for message in messages %}{% if message['role'] == 'system' %}{{ '<|system|>\\n' + message['content'] + '\\n' }}"
                    "{% elif message['role'] == 'user' %}{{ '<|user|>\\n' + message['content'] + '\\n' }}"
                    "{% elif message['role'] == 'assistant' %}{% if not loop.last %}{{ '<|assistant|>\\n' + message['content'] + eos_token + '\\n' }}"
                    "{% else %}{{ '<|assistant|>\\n' + message['content'] + eos_token }}{% endif %}{% endif %}"
                    "{% if loop.last and add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}{% endfor %}")
LLAMA3_TEMPLATE = ("{% set loop_messages = messages %}{% for message in loop_messages %}"
                   "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}"
                   "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
                   "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")
log = open(os.path.join(out, "log.txt"), "w")
def say(*a):
    print(*a); print(*a, file=log); log.flush()
say("transformers", transformers.__version__, "torch", torch.__version__)

def bpe_tokenizer(d, specials, bos=None):
    from tokenizers import Tokenizer, models, trainers, pre_tokenizers, decoders, Regex, processors
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PAT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=500, special_tokens=[], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                             show_progress=False)
    tok.train_from_iterator(lines, tr)
    tok.add_special_tokens(specials)
    if bos:
        tok.post_processor = processors.TemplateProcessing(single=bos + " $A", pair=bos + " $A " + bos + " $B",
                                                           special_tokens=[(bos, tok.token_to_id(bos))])
    tok.save(os.path.join(d, "tokenizer.json"))
    return tok

def pack(t):  # transformers' own packing
    from transformers.integrations.bitnet import pack_weights
    return pack_weights(t.clone())

def ternarize(w):
    s = 1.0 / w.abs().mean().clamp(min=1e-5)
    return (w * s).round().clamp(-1, 1), s

def run_oracle(model, enc, prompts, key):
    res = []
    model.eval()
    with torch.no_grad():
        for p in prompts:
            ids = enc(p)
            x = torch.tensor([ids])
            logits = model(x).logits[0, -1].float()
            greedy, gaps, seq = [], [], list(ids)
            for _ in range(48):
                lg = model(torch.tensor([seq])).logits[0, -1].float()
                top = torch.topk(lg, 2)
                gaps.append(float(top.values[0] - top.values[1]))
                nxt = int(top.indices[0]); greedy.append(nxt); seq.append(nxt)
            res.append({"prompt": p, "ids": ids, key + "_last_logits": [round(float(v), 6) for v in logits],
                        key + "_greedy_ids": greedy, key + "_min_top2_gap": min(gaps)})
            say(key, repr(p), ids, greedy[:12], "min gap %.4f" % min(gaps))
    return res

def llama_family(name, qcfg, tie, tok_kind):
    d = os.path.join(out, name); os.makedirs(d, exist_ok=True)
    if tok_kind == "falcon3":
        specials = ["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>"]
        tok = bpe_tokenizer(d, specials)
        tcfg = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|endoftext|>", "bos_token": None,
                "add_bos_token": False, "chat_template": FALCON3_TEMPLATE}
        bos, eos = None, tok.token_to_id("<|endoftext|>")
    else:
        specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
        tok = bpe_tokenizer(d, specials, bos="<|begin_of_text|>")
        tcfg = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
                "chat_template": LLAMA3_TEMPLATE}
        bos, eos = tok.token_to_id("<|begin_of_text|>"), tok.token_to_id("<|eot_id|>")
    json.dump(tcfg, open(os.path.join(d, "tokenizer_config.json"), "w"), indent=1)
    V = tok.get_vocab_size()
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu", "hidden_size": 256,
           "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
           "head_dim": 64, "max_position_embeddings": 512, "rms_norm_eps": 1e-6, "rope_theta": 1000042.0,
           "vocab_size": V, "tie_word_embeddings": tie, "bos_token_id": bos, "eos_token_id": eos,
           "attention_bias": False, "mlp_bias": False, "torch_dtype": "bfloat16", "quantization_config": qcfg}
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"), indent=1)
    H, F, L = 256, 512, 2
    sd = {"model.embed_tokens.weight": (torch.randn(V, H) * 1.0).bfloat16(),
          "model.norm.weight": (1 + 0.1 * torch.randn(H)).bfloat16()}
    if not tie: sd["lm_head.weight"] = (torch.randn(V, H) * 0.05).bfloat16()
    online = qcfg.get("quantization_mode") == "online"
    for l in range(L):
        p = f"model.layers.{l}."
        sd[p + "input_layernorm.weight"] = (1 + 0.1 * torch.randn(H)).bfloat16()
        sd[p + "post_attention_layernorm.weight"] = (1 + 0.1 * torch.randn(H)).bfloat16()
        for proj, (o, i) in {"self_attn.q_proj": (256, H), "self_attn.k_proj": (128, H), "self_attn.v_proj": (128, H),
                             "self_attn.o_proj": (H, 256), "mlp.gate_proj": (F, H), "mlp.up_proj": (F, H),
                             "mlp.down_proj": (H, F)}.items():
            w = torch.randn(o, i) * 0.05
            if online:
                sd[p + proj + ".weight"] = w.bfloat16()
            else:
                q, s = ternarize(w)
                sd[p + proj + ".weight"] = pack(q.to(torch.int8))
                ws = s if qcfg.get("linear_class", "bitlinear") == "bitlinear" else 1.0 / s
                sd[p + proj + ".weight_scale"] = torch.tensor([float(ws)]).bfloat16()
            if qcfg.get("use_rms_norm"):
                sd[p + proj + ".rms_norm.weight"] = (1 + 0.1 * torch.randn(i)).bfloat16()
    save_file({k: v.contiguous() for k, v in sd.items()}, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    model, info = transformers.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, output_loading_info=True)
    say(name, "loading info", {k: v for k, v in info.items() if v})
    bad = info.get("missing_keys") or info.get("unexpected_keys")
    if bad: raise RuntimeError(f"{name}: HF did not read every tensor: {info}")
    say(name, type(model).__name__, [type(m).__name__ for m in model.model.layers[0].self_attn.modules()][:3])
    from tokenizers import Tokenizer
    t = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    enc = lambda s: t.encode(s).ids
    key = "master" if online else "packed"
    res = run_oracle(model, enc, PROMPTS, key)
    cases = [{"text": s, "ids": t.encode(s).ids} for s in TOK_CASES]
    chat = None
    try:
        ht = transformers.AutoTokenizer.from_pretrained(d)
        conv = [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "Who is the Alpha?"},
                {"role": "assistant", "content": "The first and the last."}, {"role": "user", "content": "And the Omega?"}]
        txt = ht.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
        chat = {"messages": conv, "text": txt, "ids": ht(txt, add_special_tokens=False)["input_ids"]}
        say(name, "chat", repr(txt))
    except Exception: say(traceback.format_exc())
    json.dump({"transformers": transformers.__version__, "torch": torch.__version__, "family": name,
               "quantization_config": qcfg, "prompts": res, "tokenizer": cases, "chat": chat},
              open(os.path.join(d, "oracle.json"), "w"))

def bitnet158():
    name = "bitnet158-tiny"
    d = os.path.join(out, name); os.makedirs(d, exist_ok=True)
    import sentencepiece as spm
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_prefix=os.path.join(d, "tokenizer"),
                                   vocab_size=500, model_type="bpe", byte_fallback=True,
                                   normalization_rule_name="identity", remove_extra_whitespaces=False,
                                   add_dummy_prefix=True, bos_id=1, eos_id=2, unk_id=0, pad_id=-1,
                                   character_coverage=1.0, minloglevel=2)
    os.remove(os.path.join(d, "tokenizer.vocab"))
    sp = spm.SentencePieceProcessor(model_file=os.path.join(d, "tokenizer.model"))
    V = sp.get_piece_size()
    json.dump({"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
               "add_bos_token": True, "add_eos_token": False, "legacy": True},
              open(os.path.join(d, "tokenizer_config.json"), "w"), indent=1)
    H, F, L, NH = 256, 512, 2, 4
    cfg = {"architectures": ["BitnetForCausalLM"], "model_type": "llama", "hidden_act": "silu", "hidden_size": H,
           "intermediate_size": F, "num_hidden_layers": L, "num_attention_heads": NH, "num_key_value_heads": NH,
           "max_position_embeddings": 512, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "vocab_size": V,
           "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2, "weight_bits": 1, "input_bits": 8,
           "attention_bias": False, "torch_dtype": "float16"}
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"), indent=1)
    # the 1bitLLM layout, fp16 masters
    sd = {"model.embed_tokens.weight": torch.randn(V, H).half(), "model.norm.weight": (1 + 0.1 * torch.randn(H)).half(),
          "lm_head.weight": (torch.randn(V, H) * 0.05).half()}
    for l in range(L):
        p = f"model.layers.{l}."
        sd[p + "input_layernorm.weight"] = (1 + 0.1 * torch.randn(H)).half()
        sd[p + "post_attention_layernorm.weight"] = (1 + 0.1 * torch.randn(H)).half()
        sd[p + "self_attn.inner_attn_ln.weight"] = (1 + 0.1 * torch.randn(H)).half()
        sd[p + "mlp.ffn_layernorm.weight"] = (1 + 0.1 * torch.randn(F)).half()
        for proj, (o, i) in {"self_attn.q_proj": (H, H), "self_attn.k_proj": (H, H), "self_attn.v_proj": (H, H),
                             "self_attn.o_proj": (H, H), "mlp.gate_proj": (F, H), "mlp.up_proj": (F, H),
                             "mlp.down_proj": (H, F)}.items():
            sd[p + proj + ".weight"] = (torch.randn(o, i) * 0.05).half()
    save_file(sd, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    # the same tensors through transformers' BitNetForCausalLM (sub-norms renamed), SiLU, online absmean
    from transformers import BitNetConfig, BitNetForCausalLM
    hc = BitNetConfig(hidden_size=H, intermediate_size=F, num_hidden_layers=L, num_attention_heads=NH,
                      num_key_value_heads=NH, max_position_embeddings=512, rms_norm_eps=1e-5, rope_theta=10000.0,
                      vocab_size=V, tie_word_embeddings=False, hidden_act="silu", bos_token_id=1, eos_token_id=2)
    hd = os.path.join(out, "_hf_bitnet158"); os.makedirs(hd, exist_ok=True)
    c2 = hc.to_dict(); c2["architectures"] = ["BitNetForCausalLM"]
    c2["quantization_config"] = {"quant_method": "bitnet", "linear_class": "autobitlinear", "quantization_mode": "online"}
    json.dump(c2, open(os.path.join(hd, "config.json"), "w"))
    ren = {k.replace("inner_attn_ln", "attn_sub_norm").replace("ffn_layernorm", "ffn_sub_norm"): v.float() for k, v in sd.items()}
    save_file(ren, os.path.join(hd, "model.safetensors"), metadata={"format": "pt"})
    model, info = BitNetForCausalLM.from_pretrained(hd, dtype=torch.float32, output_loading_info=True)
    say(name, "loading info", {k: v for k, v in info.items() if v}, model.config.hidden_act)
    if info.get("missing_keys") or info.get("unexpected_keys"): raise RuntimeError(f"{name}: {info}")
    enc = lambda s: [1] + sp.encode(s)
    res = run_oracle(model, enc, PROMPTS, "master")
    cases = [{"text": s, "ids": sp.encode(s)} for s in TOK_CASES]
    json.dump({"transformers": transformers.__version__, "torch": torch.__version__, "family": name,
               "computed_with": "transformers BitNetForCausalLM, hidden_act silu, autobitlinear online, sub-norms renamed",
               "prompts": res, "tokenizer": cases, "tokenizer_add_bos": False}, open(os.path.join(d, "oracle.json"), "w"))
    shutil.rmtree(hd)

jobs = [lambda: llama_family("falcon3-tiny", {"quant_method": "bitnet", "linear_class": "bitlinear",
                                              "quantization_mode": "offline"}, False, "falcon3"),
        lambda: llama_family("falcone-tiny", {"quant_method": "bitnet", "linear_class": "autobitlinear",
                                              "quantization_mode": "online", "use_rms_norm": True,
                                              "rms_norm_eps": 1e-6}, True, "llama3"),
        bitnet158]
# FAMILIES=name,name runs only those (each run draws its own random weights from the seed)
only = [f for f in os.environ.get("FAMILIES", "").split(",") if f]
names = ["falcon3-tiny", "falcone-tiny", "bitnet158-tiny"]
for name, j in zip(names, jobs):
    if only and name not in only: continue
    try: j()
    except Exception: say(traceback.format_exc())
try:
    import inspect, transformers.integrations.bitnet as B
    open(os.path.join(out, "hf_bitnet_integration.py"), "w").write(inspect.getsource(B))
except Exception: say(traceback.format_exc())
