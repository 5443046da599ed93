#!/usr/bin/python3
"""Independent check of gemma4c's training gradients.

A compact Gemma 4 text forward in torch float64, written from
shared/docs/gemma4-text.md and the facts in NAME.config.json ("derived"),
reading the Hugging Face folder NAME.hf/ (safetensors parsed here with numpy).
For each model it compares the gradients that build/tests/test_grad wrote
(G4_GRAD_DUMP) with

  1. torch autograd of the same loss: per tensor ||g_c - g_t|| / ||g_t|| <= 1e-4
  2. central finite differences of the float64 loss on a few entries per
     tensor (the largest and two random ones of at least a tenth of it):
     |g_c - fd| / |fd| <= 1e-3

Loss: first 24 ids of NAME.tokens.txt, target t = id t+1, mean over 23.
MoE: top-k selection is not differentiable; autograd, like gemma4c, sends
gradient through the selected experts' weights only, and the tiny finite
difference step (1e-6) does not flip a selection.

usage: grad_torch.py SHARED_DIR DUMP_DIR NAME...   (exit 1 on any failure)
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch

torch.set_default_dtype(torch.float64)
T_LOSS = 24


def load_safetensors(folder):
    out = {}
    for fn in sorted(os.listdir(folder)):
        if not fn.endswith(".safetensors"):
            continue
        with open(os.path.join(folder, fn), "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            hdr = json.loads(f.read(n))
            data = f.read()
        for k, v in hdr.items():
            if k == "__metadata__":
                continue
            assert v["dtype"] == "F32", (k, v["dtype"])
            b, e = v["data_offsets"]
            a = np.frombuffer(data[b:e], dtype="<f4").reshape(v["shape"])
            out[k.replace("model.language_model.", "")] = torch.tensor(a.astype(np.float64), requires_grad=True)
    return out


# HF name (after the prefix; "L." = "layers.N.") -> GGUF name (README table)
HF2GGUF = {
    "embed_tokens.weight": "token_embd.weight",
    "embed_tokens_per_layer.weight": "per_layer_token_embd.weight",
    "per_layer_model_projection.weight": "per_layer_model_proj.weight",
    "per_layer_projection_norm.weight": "per_layer_proj_norm.weight",
    "norm.weight": "output_norm.weight",
    "L.input_layernorm.weight": "attn_norm.weight",
    "L.self_attn.q_proj.weight": "attn_q.weight",
    "L.self_attn.k_proj.weight": "attn_k.weight",
    "L.self_attn.v_proj.weight": "attn_v.weight",
    "L.self_attn.o_proj.weight": "attn_output.weight",
    "L.self_attn.q_norm.weight": "attn_q_norm.weight",
    "L.self_attn.k_norm.weight": "attn_k_norm.weight",
    "L.post_attention_layernorm.weight": "post_attention_norm.weight",
    "L.pre_feedforward_layernorm.weight": "ffn_norm.weight",
    "L.mlp.gate_proj.weight": "ffn_gate.weight",
    "L.mlp.up_proj.weight": "ffn_up.weight",
    "L.mlp.down_proj.weight": "ffn_down.weight",
    "L.post_feedforward_layernorm.weight": "post_ffw_norm.weight",
    "L.layer_scalar": "layer_output_scale.weight",
    "L.per_layer_input_gate.weight": "inp_gate.weight",
    "L.per_layer_projection.weight": "proj.weight",
    "L.post_per_layer_input_norm.weight": "post_norm.weight",
    "L.router.proj.weight": "ffn_gate_inp.weight",
    "L.router.scale": "ffn_gate_inp.scale",
    "L.router.per_expert_scale": "ffn_down_exps.scale",
    "L.experts.gate_up_proj": "ffn_gate_up_exps.weight",
    "L.experts.down_proj": "ffn_down_exps.weight",
    "L.pre_feedforward_layernorm_2.weight": "pre_ffw_norm_2.weight",
    "L.post_feedforward_layernorm_1.weight": "post_ffw_norm_1.weight",
    "L.post_feedforward_layernorm_2.weight": "post_ffw_norm_2.weight",
}


def gguf_name(hf):
    if hf.startswith("layers."):
        _, n, rest = hf.split(".", 2)
        return "blk.%s.%s" % (n, HF2GGUF["L." + rest])
    return HF2GGUF[hf]


def rms(x, w, eps):
    y = x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps)
    return y * w if w is not None else y


def gelu(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def rope(x, pos, inv_freq):
    # x [T, heads, d]; NeoX pairs (i, i + d/2); inv_freq [d/2] (0: not rotated)
    ang = pos[:, None] * inv_freq[None, :]
    c, s = torch.cos(ang)[:, None, :], torch.sin(ang)[:, None, :]
    h = x.shape[-1] // 2
    a, b = x[..., :h], x[..., h:]
    return torch.cat([a * c - b * s, b * c + a * s], -1)


# LoRA pairs by HF weight name: (A [r, in], B [out, r], scale); empty: none
LORA = {}


def lin(W, name, x):
    y = x @ W[name].T
    if name in LORA:
        a, b, sc = LORA[name]
        y = y + sc * ((x @ a.T) @ b.T)
    return y


def forward(W, cfg, tok):
    hc, dv = cfg["hf_like_config"], cfg["derived"]
    H, L, V = hc["hidden_size"], hc["num_hidden_layers"], hc["vocab_size"]
    nH, eps, P = hc["num_attention_heads"], hc["rms_norm_eps"], hc["hidden_size_per_layer_input"]
    window, cap = hc["sliding_window"], hc["final_logit_softcapping"]
    T = len(tok)
    tk = torch.tensor(tok)
    pos = torch.arange(T, dtype=torch.float64)
    x = W["embed_tokens.weight"][tk] * math.sqrt(H)
    if P:
        tp = W["embed_tokens_per_layer.weight"][tk].reshape(T, L, P) * math.sqrt(P)
        pr = (x @ W["per_layer_model_projection.weight"].T).reshape(T, L, P) / math.sqrt(H)
        pr = rms(pr, W["per_layer_projection_norm.weight"], eps)
        ple = (pr + tp) / math.sqrt(2)
    i = torch.arange(T)
    causal = i[None, :] <= i[:, None]
    sliding = causal & (i[:, None] - i[None, :] < window)
    kv = {}
    for l in range(L):
        p = "layers.%d." % l
        swa = dv["layer_is_sliding"][l]
        hd, nkv = dv["head_dim_per_layer"][l], dv["n_head_kv_per_layer"][l]
        if swa:
            inv = hc["rope_theta_swa"] ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
        else:
            gd, rp = hc["global_head_dim"], dv["rope_full"]["rotated_pairs"]
            inv = hc["rope_theta"] ** (-torch.arange(0, gd, 2, dtype=torch.float64) / gd)
            inv = torch.where(torch.arange(gd // 2) < rp, inv, torch.zeros_like(inv))
        xn = rms(x, W[p + "input_layernorm.weight"], eps)
        q = lin(W, p + "self_attn.q_proj.weight", xn).reshape(T, nH, hd)
        q = rope(rms(q, W[p + "self_attn.q_norm.weight"], eps), pos, inv)
        if dv["layer_has_own_kv"][l]:
            kr = lin(W, p + "self_attn.k_proj.weight", xn).reshape(T, nkv, hd)
            vw = W.get(p + "self_attn.v_proj.weight")
            vr = kr if vw is None else lin(W, p + "self_attn.v_proj.weight", xn).reshape(T, nkv, hd)
            k = rope(rms(kr, W[p + "self_attn.k_norm.weight"], eps), pos, inv)
            v = rms(vr, None, eps)
            kv[l] = (k, v)
        else:
            k, v = kv[dv["kv_reuse_source"][str(l)]]
        G = nH // nkv
        k = k.repeat_interleave(G, dim=1)
        v = v.repeat_interleave(G, dim=1)
        s = torch.einsum("thd,jhd->htj", q, k)
        s = s.masked_fill(~(sliding if swa else causal)[None], float("-inf"))
        a = torch.einsum("htj,jhd->thd", torch.softmax(s, -1), v).reshape(T, nH * hd)
        o = lin(W, p + "self_attn.o_proj.weight", a)
        x = x + rms(o, W[p + "post_attention_layernorm.weight"], eps)
        h = rms(x, W[p + "pre_feedforward_layernorm.weight"], eps)
        f = lin(W, p + "mlp.down_proj.weight",
                gelu(lin(W, p + "mlp.gate_proj.weight", h)) * lin(W, p + "mlp.up_proj.weight", h))
        if hc["num_experts"]:
            E, K = hc["num_experts"], hc["top_k_experts"]
            f = rms(f, W[p + "post_feedforward_layernorm_1.weight"], eps)
            r = rms(x, None, eps) * W[p + "router.scale"] / math.sqrt(H)
            pr_ = torch.softmax(r @ W[p + "router.proj.weight"].T, -1)
            top = torch.topk(pr_, K, dim=-1).indices
            wsel = torch.gather(pr_, 1, top)
            wsel = wsel / wsel.sum(-1, keepdim=True) * W[p + "router.per_expert_scale"][top]
            xe = rms(x, W[p + "pre_feedforward_layernorm_2.weight"], eps)
            gu, dn = W[p + "experts.gate_up_proj"], W[p + "experts.down_proj"]
            Fe = gu.shape[1] // 2
            mo = torch.zeros_like(x)
            for t in range(T):
                for kk in range(K):
                    e = int(top[t, kk])
                    g_u = gu[e] @ xe[t]
                    mo_t = dn[e] @ (gelu(g_u[:Fe]) * g_u[Fe:])
                    mo = mo.index_add(0, torch.tensor([t]), (wsel[t, kk] * mo_t)[None])
            f = f + rms(mo, W[p + "post_feedforward_layernorm_2.weight"], eps)
        x = x + rms(f, W[p + "post_feedforward_layernorm.weight"], eps)
        if P:
            g = gelu(x @ W[p + "per_layer_input_gate.weight"].T) * ple[:, l]
            x = x + rms(g @ W[p + "per_layer_projection.weight"].T, W[p + "post_per_layer_input_norm.weight"], eps)
        x = x * W[p + "layer_scalar"]
    x = rms(x, W["norm.weight"], eps)
    z = x @ W["embed_tokens.weight"].T
    return cap * torch.tanh(z / cap)


def loss_of(W, cfg, tok):
    lg = forward(W, cfg, tok[:-1])
    return torch.nn.functional.cross_entropy(lg, torch.tensor(tok[1:]))


def read_dump(path):
    out = {}
    with open(path, "rb") as f:
        assert f.read(4) == b"G4GR"
        loss = struct.unpack("<d", f.read(8))[0]
        while True:
            b = f.read(4)
            if not b:
                break
            nl = struct.unpack("<I", b)[0]
            name = f.read(nl).decode()
            n = struct.unpack("<Q", f.read(8))[0]
            out[name] = np.frombuffer(f.read(4 * n), dtype="<f4").astype(np.float64)
    return loss, out


def check(shared, dump_dir, name):
    ref = os.path.join(shared, "testdata", "gemma4-ref")
    cfg = json.load(open(os.path.join(ref, name + ".config.json")))
    W = load_safetensors(os.path.join(ref, name + ".hf"))
    tok = [int(t) for t in open(os.path.join(ref, name + ".tokens.txt")).read().split()][:T_LOSS + 1]
    # gemma4c's loss: positions 0..23 of 24 ids, targets ids 1..23 (23 terms)
    tok = tok[:T_LOSS]
    c_loss, cg = read_dump(os.path.join(dump_dir, name + ".grad"))
    loss = loss_of(W, cfg, tok)
    loss.backward()
    fails = 0
    print("%s: loss torch %.9f gemma4c %.9f" % (name, loss.item(), c_loss))
    if abs(loss.item() - c_loss) > 1e-5 * abs(loss.item()):
        print("  FAIL loss differs"); fails += 1
    worst_ag, worst_fd, n_fd = 0.0, 0.0, 0
    rng = np.random.default_rng(7)
    seen = set()
    for hf, w in W.items():
        gg = gguf_name(hf)
        seen.add(gg)
        if gg not in cg:
            print("  FAIL %s: no gradient from gemma4c" % gg); fails += 1; continue
        gt = w.grad.detach().numpy().reshape(-1)
        gc = cg[gg]
        if gc.size != gt.size:
            print("  FAIL %s: %d vs %d entries" % (gg, gc.size, gt.size)); fails += 1; continue
        nt = np.linalg.norm(gt)
        rel = np.linalg.norm(gc - gt) / nt if nt > 0 else np.linalg.norm(gc)
        # layer_scalar: one number whose gradient is a sum over the whole
        # residual stream (T*H terms that nearly cancel, exactly so in the last
        # layer, whose output the final norm rescales): f32 leaves an absolute
        # error of ~1e-6 there, so it is compared on the scale 1e-2
        scalar = gt.size == 1
        if scalar:
            rel = abs(gc[0] - gt[0]) / max(abs(gt[0]), 1e-2)
        worst_ag = max(worst_ag, rel)
        if rel > 1e-4:
            print("  FAIL %s: autograd relative error %.3e (|g| %.3e)" % (gg, rel, nt)); fails += 1
        # finite differences in float64 on the largest entry and two others >= 10% of it
        mx = np.abs(gt).max()
        idx = [int(np.argmax(np.abs(gt)))]
        cand = np.nonzero(np.abs(gt) >= 0.1 * mx)[0]
        idx += [int(j) for j in rng.choice(cand, size=min(2, len(cand)), replace=False) if int(j) != idx[0]]
        flat = w.data.view(-1)
        for j in idx:
            v0 = flat[j].item()
            h = 1e-6 * max(1.0, abs(v0))
            with torch.no_grad():
                flat[j] = v0 + h
                lp = loss_of(W, cfg, tok).item()
                flat[j] = v0 - h
                lm = loss_of(W, cfg, tok).item()
                flat[j] = v0
            fd = (lp - lm) / (2 * h)
            e = abs(gc[j] - fd) / (max(abs(fd), 1e-2) if scalar else abs(fd))
            worst_fd = max(worst_fd, e)
            n_fd += 1
            if e > 1e-3:
                print("  FAIL %s[%d]: gemma4c %.9g, float64 finite difference %.9g (rel %.2e)" % (gg, j, gc[j], fd, e))
                fails += 1
    extra = set(cg) - seen
    if extra:
        print("  FAIL gradients for tensors the checkpoint lacks: %s" % sorted(extra)); fails += 1
    print("  %d tensors: autograd worst relative error %.2e; %d finite differences, worst %.2e; %s"
          % (len(W), worst_ag, n_fd, worst_fd, "ok" if not fails else "%d FAILED" % fails))
    return fails


def check_lora(shared, dump_dir, name):
    """The LoRA gradients test_grad wrote for NAME (an F32 base): autograd of
    the adapter's A and B <= 1e-4 per tensor, float64 finite differences on
    the largest entry of each <= 1e-3. The base weights stay frozen."""
    ref = os.path.join(shared, "testdata", "gemma4-ref")
    cfg = json.load(open(os.path.join(ref, name + ".config.json")))
    W = load_safetensors(os.path.join(ref, name + ".hf"))
    for w in W.values():
        w.requires_grad_(False)
    g2h = {gguf_name(k): k for k in W}
    tok = [int(t) for t in open(os.path.join(ref, name + ".tokens.txt")).read().split()][:T_LOSS]
    cg = {}
    with open(os.path.join(dump_dir, name + ".lora"), "rb") as f:
        assert f.read(4) == b"G4LR"
        c_loss, = struct.unpack("<d", f.read(8))
        sc, = struct.unpack("<f", f.read(4))
        while True:
            b = f.read(4)
            if not b:
                break
            nm = f.read(struct.unpack("<I", b)[0]).decode()
            d0, d1 = struct.unpack("<II", f.read(8))
            v = np.frombuffer(f.read(4 * d0 * d1), "<f4").reshape(d0, d1).astype(np.float64)
            g = np.frombuffer(f.read(4 * d0 * d1), "<f4").reshape(d0, d1).astype(np.float64)
            cg[nm] = (v, g)
    LORA.clear()
    params = {}
    for nm, (v, g) in cg.items():
        base = nm.rsplit(".", 1)[0]
        t = torch.tensor(v, requires_grad=True)
        params[nm] = t
    for nm in params:
        if nm.endswith("lora_a"):
            base = nm[:-len(".lora_a")]
            LORA[g2h[base]] = (params[nm], params[base + ".lora_b"], float(sc))
    loss = loss_of(W, cfg, tok)
    loss.backward()
    fails = 0
    print("%s LoRA: loss torch %.9f gemma4c %.9f, %d pairs" % (name, loss.item(), c_loss, len(LORA)))
    if abs(loss.item() - c_loss) > 1e-5 * abs(loss.item()):
        print("  FAIL loss differs"); fails += 1
    worst_ag = worst_fd = 0.0
    for nm, t in params.items():
        gt = t.grad.numpy().reshape(-1)
        gc = cg[nm][1].reshape(-1)
        rel = np.linalg.norm(gc - gt) / np.linalg.norm(gt)
        worst_ag = max(worst_ag, rel)
        if rel > 1e-4:
            print("  FAIL %s: autograd relative error %.3e" % (nm, rel)); fails += 1
        j = int(np.argmax(np.abs(gt)))
        flat = t.data.view(-1)
        v0 = flat[j].item()
        h = 1e-6 * max(1.0, abs(v0))
        with torch.no_grad():
            flat[j] = v0 + h
            lp = loss_of(W, cfg, tok).item()
            flat[j] = v0 - h
            lm = loss_of(W, cfg, tok).item()
            flat[j] = v0
        fd = (lp - lm) / (2 * h)
        e = abs(gc[j] - fd) / abs(fd)
        worst_fd = max(worst_fd, e)
        if e > 1e-3:
            print("  FAIL %s[%d]: gemma4c %.9g, float64 finite difference %.9g" % (nm, j, gc[j], fd)); fails += 1
    LORA.clear()
    print("  %d tensors: autograd worst relative error %.2e; finite differences worst %.2e; %s"
          % (len(params), worst_ag, worst_fd, "ok" if not fails else "%d FAILED" % fails))
    return fails


def main():
    shared, dump_dir, names = sys.argv[1], sys.argv[2], sys.argv[3:]
    if names and names[0] == "--lora":
        sys.exit(1 if sum(check_lora(shared, dump_dir, n) for n in names[1:]) else 0)
    fails = sum(check(shared, dump_dir, n) for n in names)
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
