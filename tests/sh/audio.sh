#!/usr/bin/env bash
# gemma4c logits --audio: WAV -> soft tokens -> logits of the tiny mm model,
# from the GGUF pair and from the HF folder, against the transformers-path
# reference (shared/testdata/gemma4-mm-ref/*.hf.logits.f32), and the errors
# for files that are not audio. Bounds: 1e-3 with --exact; the fast path's
# text model uses llama.cpp's fp16 GELU table (~0.01 on these logits, see
# the reference README), so 0.02 there; soft tokens 1e-3 both ways.
. "$(dirname "$0")/lib.sh"
M=$SHARED/testdata/gemma4-mm-ref
PY=/usr/bin/python3   # Debian's, with numpy
maxdiff() { "$PY" -c "import numpy as n,sys;a=n.fromfile(sys.argv[1],n.float32);b=n.fromfile(sys.argv[2],n.float32)
print(abs(a-b).max() if a.size==b.size else 'size %d vs %d'%(a.size,b.size))" "$1" "$2"; }
# fast path's relative bound (test_audio.c's fast_bound): 36 roundings on
# the longest path, int8 (VNNI, Q8_0 linears) of rms 3.5 / (127 sqrt(12)),
# or bf16 (AVX512_BF16) of rms 2^-8 / sqrt(3)
rho=0
if { [ -z "${GEMMA4C_CPU:-}" ] || [ "$GEMMA4C_CPU" = avx512 ]; }; then
    if grep -qw avx512_vnni /proc/cpuinfo; then rho=$("$PY" -c "print(4.5 * 36 ** 0.5 * 3.5 / (127 * 12 ** 0.5))")
    elif grep -qw avx512_bf16 /proc/cpuinfo; then rho=$("$PY" -c "print(4.5 * (36 / 3) ** 0.5 / 256)"); fi
fi
# bound of the fast path: max(FLOOR, rho rms(ref)) (soft tokens) or FLOOR +
# rho rms(ref) (logits)
fastb() { "$PY" -c "import numpy as n,sys;r=n.fromfile(sys.argv[1],n.float32);k=float(sys.argv[3])
s=float(n.sqrt((r.astype(n.float64)**2).mean()))
print(max(float(sys.argv[4]), k * s) if sys.argv[2]=='soft' else float(sys.argv[4]) + k * s)" "$1" "$2" "$rho" "$3"; }
below() { "$PY" -c "import sys;sys.exit(0 if float(sys.argv[1])<=float(sys.argv[2]) else 1)" "$1" "$2" 2>/dev/null; }

for it in aud-chirp-0.5s aud-noise-1s aud-pluck-real-0.3s aud-silence-1s aud-speechlike-2.5s; do
    for src in gguf hf; do
        if [ $src = gguf ]; then model=(-m "$M/gemma4-mm.gguf" --mmproj "$M/gemma4-mm.mmproj.gguf")
        else model=(-m "$M/gemma4-mm.hf"); fi   # the folder holds its own towers
        for prec in --exact ""; do
            "$G4" logits "${model[@]}" --tokens-file "$M/$it.hf.tokens.txt" --audio "$M/media/$it.wav" $prec \
                --out "$TMP/l.f32" --embd-out "$TMP/e.f32" -t 2 2>"$TMP/err"
            rc=$?
            if [ $rc != 0 ]; then fail "$it ($src${prec:+ $prec}): exit $rc: $(cat "$TMP/err")"; continue; fi
            dl=$(maxdiff "$TMP/l.f32" "$M/$it.hf.logits.f32") de=$(maxdiff "$TMP/e.f32" "$M/$it.hf.embd.f32")
            bl=1e-3 be=1e-3
            if [ -z "$prec" ]; then
                bl=$(fastb "$M/$it.hf.logits.f32" logits 0.02) be=$(fastb "$M/$it.hf.embd.f32" soft 1e-3)
            fi
            if below "$dl" "$bl" && below "$de" "$be"; then
                ok "$it ($src${prec:+ $prec}): logits max |d| $dl (bound $bl), soft tokens $de (bound $be)"
            else fail "$it ($src${prec:+ $prec}): logits max |d| $dl (bound $bl), soft tokens $de (bound $be)"; fi
        done
    done
done

# not audio / too short: a named error, exit 1
printf 'hello' >"$TMP/x.wav"
"$G4" logits -m "$M/gemma4-mm.gguf" --mmproj "$M/gemma4-mm.mmproj.gguf" --tokens "2 15 17 16" --audio "$TMP/x.wav" \
    --out "$TMP/l.f32" 2>"$TMP/err"
rc=$?
check "a text file as --audio: exit 1 naming the file ($(head -c 120 "$TMP/err"))" \
    eval 'test $rc = 1 && grep -q "x.wav" "$TMP/err" && grep -q "not a readable audio file" "$TMP/err"'
ffmpeg -nostdin -loglevel error -y -f lavfi -i 'anullsrc=r=16000:cl=mono' -t 0.005 -c:a pcm_s16le "$TMP/short.wav"
"$G4" logits -m "$M/gemma4-mm.gguf" --mmproj "$M/gemma4-mm.mmproj.gguf" --tokens "2 15 17 16" --audio "$TMP/short.wav" \
    --out "$TMP/l.f32" 2>"$TMP/err"
rc=$?
check "5 ms of audio: exit 1, too short ($(head -c 120 "$TMP/err"))" \
    eval 'test $rc = 1 && grep -q "too short" "$TMP/err"'
# a 44.1 kHz stereo MP3 of the 2.5 s clip gives the same number of tokens (63)
ffmpeg -nostdin -loglevel error -y -i "$M/media/aud-speechlike-2.5s.wav" -ar 44100 -ac 2 -c:a libmp3lame -b:a 192k \
    "$TMP/s.mp3"
"$G4" logits -m "$M/gemma4-mm.gguf" --mmproj "$M/gemma4-mm.mmproj.gguf" --tokens-file "$M/aud-speechlike-2.5s.hf.tokens.txt" \
    --audio "$TMP/s.mp3" --out "$TMP/l.f32" 2>"$TMP/err"
check "44.1 kHz stereo MP3 of the 2.5 s clip fills the same 63 placeholders ($(head -c 120 "$TMP/err"))" test $? = 0
# gemma4c run with --audio: the chat template's audio part becomes the run
"$G4" run -m "$M/gemma4-mm.gguf" --mmproj "$M/gemma4-mm.mmproj.gguf" --audio "$M/media/aud-chirp-0.5s.wav" \
    -p "Transcribe the following speech segment:" -n 4 --greedy -t 2 >"$TMP/out" 2>"$TMP/err"
check "run --audio answers ($(head -c 120 "$TMP/err"))" test $? = 0
