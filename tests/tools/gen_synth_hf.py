#!/usr/bin/python3
"""Benchmark helper (not a test; needs numpy): write a ~1 GB synthetic Gemma 4 (E-style, BF16) Hugging Face folder with real
tensor names, two shards + index. Usage: /usr/bin/python3 tests/tools/gen_synth_hf.py /tmp/synth.hf
then: /usr/bin/time -v build/gemma4c convert /tmp/synth.hf -o /tmp/synth.gguf --type BF16
The data goes to OUTDIR only; never commit it."""
import json, os, struct, sys, shutil
import numpy as np
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
REF = os.path.join(os.environ.get('G4_SHARED', os.path.join(os.path.dirname(os.path.abspath(__file__)), '../../../shared')), 'testdata/gemma4-ref/gemma4-e.hf')
H, L, V, P, nH, nKV, hd, ghd, FF = 1536, 8, 65536, 256, 8, 1, 256, 512, 6144
types = ['sliding_attention'] * 3 + ['full_attention'] + ['sliding_attention'] * 3 + ['full_attention']
n_shared = 2
cfg = json.load(open(f'{REF}/config.json'))
tc = cfg['text_config']
tc.update(hidden_size=H, num_hidden_layers=L, vocab_size=V, vocab_size_per_layer_input=V,
          hidden_size_per_layer_input=P, num_attention_heads=nH, num_key_value_heads=nKV,
          head_dim=hd, global_head_dim=ghd, intermediate_size=FF, layer_types=types,
          num_kv_shared_layers=n_shared, use_double_wide_mlp=False, sliding_window=512, dtype='bfloat16')
json.dump(cfg, open(f'{out}/config.json', 'w'), indent=2)
for f in ['generation_config.json', 'tokenizer.json', 'tokenizer_config.json']:
    shutil.copy(f'{REF}/{f}', out)
pf = 'model.language_model.'
T = {}
T[pf + 'embed_tokens.weight'] = (V, H)
T[pf + 'embed_tokens_per_layer.weight'] = (V, L * P)
T[pf + 'per_layer_model_projection.weight'] = (L * P, H)
T[pf + 'per_layer_projection_norm.weight'] = (P,)
T[pf + 'norm.weight'] = (H,)
for i in range(L):
    d = ghd if types[i] == 'full_attention' else hd
    p = f'{pf}layers.{i}.'
    T[p + 'input_layernorm.weight'] = (H,)
    T[p + 'self_attn.q_proj.weight'] = (nH * d, H)
    if i < L - n_shared:
        T[p + 'self_attn.k_proj.weight'] = (nKV * d, H)
        T[p + 'self_attn.v_proj.weight'] = (nKV * d, H)
        T[p + 'self_attn.k_norm.weight'] = (d,)
    T[p + 'self_attn.o_proj.weight'] = (H, nH * d)
    T[p + 'self_attn.q_norm.weight'] = (d,)
    T[p + 'post_attention_layernorm.weight'] = (H,)
    T[p + 'pre_feedforward_layernorm.weight'] = (H,)
    T[p + 'mlp.gate_proj.weight'] = (FF, H)
    T[p + 'mlp.up_proj.weight'] = (FF, H)
    T[p + 'mlp.down_proj.weight'] = (H, FF)
    T[p + 'post_feedforward_layernorm.weight'] = (H,)
    T[p + 'layer_scalar'] = (1,)
    T[p + 'per_layer_input_gate.weight'] = (P, H)
    T[p + 'per_layer_projection.weight'] = (H, P)
    T[p + 'post_per_layer_input_norm.weight'] = (H,)
names = sorted(T)
rng = np.random.default_rng(0)
shards = [names[: len(names) // 2], names[len(names) // 2:]]
wm = {}
total = 0
for si, sn in enumerate(shards):
    fn = f'model-{si + 1:05d}-of-00002.safetensors'
    hdr, off = {}, 0
    for n in sn:
        nb = int(np.prod(T[n])) * 2
        hdr[n] = {'dtype': 'BF16', 'shape': list(T[n]), 'data_offsets': [off, off + nb]}
        off += nb
        wm[n] = fn
    hdr['__metadata__'] = {'format': 'pt'}
    hj = json.dumps(hdr).encode()
    hj += b' ' * (-len(hj) % 8)
    with open(f'{out}/{fn}', 'wb') as f:
        f.write(struct.pack('<Q', len(hj)))
        f.write(hj)
        for n in sn:
            cnt = int(np.prod(T[n]))
            # bf16 = top half of float32 normals * 0.02, written in slabs
            for s in range(0, cnt, 1 << 24):
                k = min(1 << 24, cnt - s)
                x = (rng.standard_normal(k, dtype=np.float32) * 0.02).view(np.uint32) >> 16
                f.write(x.astype('<u2').tobytes())
    total += off
json.dump({'metadata': {'total_size': total}, 'weight_map': wm}, open(f'{out}/model.safetensors.index.json', 'w'), indent=2)
print(f'{out}: {len(names)} tensors, {total / 1e9:.3f} GB')
