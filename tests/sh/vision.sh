#!/usr/bin/env bash
# gemma4c logits with images (shared/testdata/gemma4-mm-ref): the GGUF pair
# and the HF folder against the transformers-path reference, the run-length
# check, every image format (BMP and lossless WebP give the PNG's soft tokens
# exactly), and hostile files: truncated / corrupt files of each format and
# headers claiming 100000 x 100000 pixels, each a clear error and no crash.
. "$(dirname "$0")/lib.sh"
MM=$SHARED/testdata/gemma4-mm-ref
PY=/usr/bin/python3
[ -d "$MM" ] || { fail "no $MM"; exit 0; }
M=img-pngtest-91x69
cmp_f32() { # A B TOL: max |a - b| <= TOL, same size
    $PY - "$1" "$2" "$3" <<'PYEOF'
import sys, numpy as np
a = np.fromfile(sys.argv[1], np.float32); b = np.fromfile(sys.argv[2], np.float32)
d = float(np.abs(a - b).max()) if a.size == b.size and a.size else float("inf")
print("    max |d| = %.3g (%d values)" % (d, a.size))
sys.exit(0 if d <= float(sys.argv[3]) else 1)
PYEOF
}
for src in gguf hf; do
    if [ $src = gguf ]; then model=$MM/gemma4-mm.gguf; mmp=$MM/gemma4-mm.mmproj.gguf; else model=$MM/gemma4-mm.hf; mmp=$MM/gemma4-mm.hf; fi
    if "$G4" logits -m "$model" --mmproj "$mmp" --tokens-file $MM/$M.hf.tokens.txt --image $MM/media/$M.png \
        --out "$TMP/l.f32" --embd-out "$TMP/e.f32" --exact -t 2 2>"$TMP/err"; then
        check "$src: --exact soft tokens of a PNG within 1e-3 of the reference" cmp_f32 "$TMP/e.f32" $MM/$M.hf.embd.f32 1e-3
        check "$src: --exact logits within 1e-3 of the reference" cmp_f32 "$TMP/l.f32" $MM/$M.hf.logits.f32 1e-3
    else
        cat "$TMP/err"; fail "$src: logits --image failed"
    fi
done
# the mmproj beside the model is found without --mmproj; the fast path is
# close: 0.05, plus where its products are rounded (AVX512_BF16: bf16
# attention, tensor/bf16.h; VNNI: Q8_0 linears, matmul.h) the soft tokens'
# relative bound (test_vision.c's fast_bound: rho = 4.5 sqrt(R8 e8^2 + Rb
# u^2 / 3), R8 = 2 (1 + 4 L) = 18 int8 roundings of rms e8 = 3.5 / (127
# sqrt(12)) relative, Rb = 4 L = 8 bf16 ones, u = 2^-8, L = 2) at the
# logits' scale, rho rms(ref) (the text model carries a relative error
# along, first order)
fast_tol=0.05
if grep -qw avx512_vnni /proc/cpuinfo && { [ -z "${GEMMA4C_CPU:-}" ] || [ "$GEMMA4C_CPU" = avx512 ]; }; then
    fast_tol=$($PY -c "import numpy as n,sys;r=n.fromfile(sys.argv[1],n.float32).astype(n.float64)
e8=3.5/(127*12**0.5);print(0.05 + 4.5 * (18 * e8 * e8 + 8 / 3 / 65536) ** 0.5 * float(n.sqrt((r * r).mean())))" \
        $MM/$M.hf.logits.f32)
fi
if "$G4" logits -m $MM/gemma4-mm.gguf --tokens-file $MM/$M.hf.tokens.txt --image $MM/media/$M.png \
    --out "$TMP/l.f32" -t 2 2>"$TMP/err"; then
    check "fast path (no --exact), mmproj found beside the model: logits within $fast_tol" cmp_f32 "$TMP/l.f32" \
        $MM/$M.hf.logits.f32 "$fast_tol"
else cat "$TMP/err"; fail "logits without --mmproj"; fi

# a run whose length is not the image's token count: an error naming both
"$G4" logits -m $MM/gemma4-mm.gguf --tokens-file $MM/$M.tokens.txt --image $MM/media/$M.png --out "$TMP/x" 2>"$TMP/err"
check "run length mismatch is an error naming 48 and 266" grep -q "has 48 tokens but image item 1 gives 266" "$TMP/err"
"$G4" logits -m $MM/gemma4-mm.gguf --tokens-file $MM/$M.hf.tokens.txt --out "$TMP/x" --image $MM/media/$M.png \
    --image $MM/media/$M.png 2>"$TMP/err"
check "more media than placeholder runs is an error" grep -q "2 media given but" "$TMP/err"
"$G4" logits -m $MM/gemma4-mm.gguf --mmproj $MM/gemma4-mm.gguf --tokens-file $MM/$M.hf.tokens.txt \
    --image $MM/media/$M.png --out "$TMP/x" 2>"$TMP/err"
check "a text model given as --mmproj is refused" grep -q "an mmproj file has 'clip'" "$TMP/err"

# other formats: BMP and lossless WebP decode to the PNG's pixels
G=img-grey-300x200
soft_of() { "$G4" logits -m $MM/gemma4-mm.gguf --tokens-file $MM/$G.hf.tokens.txt --image "$1" --out "$TMP/x" \
    --embd-out "$2" --exact -t 2; }
if command -v ffmpeg >/dev/null; then
    ffmpeg -loglevel error -y -i $MM/media/$G.png -pix_fmt bgr24 "$TMP/$G.bmp"
    ffmpeg -loglevel error -y -i $MM/media/$G.png -c:v libwebp -lossless 1 "$TMP/$G.webp"
    ffmpeg -loglevel error -y -i $MM/media/$G.png "$TMP/$G.gif"
    soft_of $MM/media/$G.png "$TMP/png.f32"
    for f in bmp webp; do
        if soft_of "$TMP/$G.$f" "$TMP/$f.f32" 2>"$TMP/err"; then
            check "$f: same soft tokens as the PNG" cmp -s "$TMP/png.f32" "$TMP/$f.f32"
        else cat "$TMP/err"; fail "$f: decode"; fi
    done
    check "gif: decodes (first frame) with the image's token count" soft_of "$TMP/$G.gif" "$TMP/gif.f32"
else
    fail "ffmpeg not installed (scripts/setup.sh installs it)"
fi

# hostile files: truncated and corrupt copies of each format, huge headers
hostile=()
for f in $MM/media/$M.png $MM/media/img-jpeg-493x312.jpg "$TMP/$G.bmp" "$TMP/$G.webp" "$TMP/$G.gif"; do
    [ -f "$f" ] || continue
    b=$(basename "$f"); n=$(stat -c %s "$f")
    head -c $((n / 2)) "$f" >"$TMP/trunc-$b"; hostile+=("$TMP/trunc-$b")
    head -c 40 "$f" >"$TMP/head-$b"; hostile+=("$TMP/head-$b")
    cp "$f" "$TMP/flip-$b"; chmod u+w "$TMP/flip-$b"
    printf '\xff\x00\x13\x37\xde\xad\xbe\xef' | dd of="$TMP/flip-$b" bs=1 seek=$((n / 3)) conv=notrunc 2>/dev/null
    hostile+=("$TMP/flip-$b")
done
$PY - "$TMP" <<'PYEOF'
import struct, sys, zlib
d = sys.argv[1]
def chunk(t, b): return struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b) & 0xffffffff)
open(d + "/huge.png", "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0))
    + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
open(d + "/huge.bmp", "wb").write(b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) + struct.pack("<IiiHHIIiiII", 40, 100000, 100000, 1, 24, 0, 0, 0, 0, 0, 0))
open(d + "/huge.gif", "wb").write(b"GIF89a" + struct.pack("<HHBBB", 65535, 65535, 0, 0, 0) + b";")
sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, 60000, 60000, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
sos = b"\xff\xda" + struct.pack(">HB", 12, 3) + b"\x01\x00\x02\x11\x03\x11" + b"\x00\x3f\x00"
open(d + "/huge.jpg", "wb").write(b"\xff\xd8" + sof + sos + b"\0" * 16 + b"\xff\xd9")
vp8x = b"VP8X" + struct.pack("<I", 10) + b"\0\0\0\0" + (16382).to_bytes(3, "little") + (16382).to_bytes(3, "little")
open(d + "/huge.webp", "wb").write(b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x)
open(d + "/notimage.png", "wb").write(b"hello, not an image\n")
PYEOF
for f in "${hostile[@]}" "$TMP"/huge.* "$TMP/notimage.png"; do
    "$G4" logits -m $MM/gemma4-mm.gguf --tokens-file $MM/$M.hf.tokens.txt --image "$f" --out "$TMP/x" 2>"$TMP/err"
    rc=$?
    b=$(basename "$f")
    if [ $rc = 1 ] && grep -q "$b" "$TMP/err"; then ok "hostile $b: clear error ($(head -c 150 "$TMP/err" | tr '\n' ' '))"
    elif [ $rc = 1 ] && grep -q "placeholder run 1 .* gives" "$TMP/err"; then
        # a damaged byte inside the data may still decode (JPEG, GIF and BMP
        # pixels carry no checksum): then the other image's token count differs
        case $b in flip-*) ok "hostile $b: decoded despite the damage, then the run check ($(head -c 100 "$TMP/err"))" ;;
                   *) fail "hostile $b: accepted" ;; esac
    elif [ $rc = 0 ]; then
        # a corrupted byte may still decode (JPEG/GIF are forgiving): fine if it ran
        case $b in flip-*) ok "hostile $b: decoded despite the damage (no crash)" ;; *) fail "hostile $b: accepted" ;; esac
    else cat "$TMP/err"; fail "hostile $b: exit $rc"; fi
done
for f in "$TMP"/huge.*; do
    "$G4" logits -m $MM/gemma4-mm.gguf --tokens-file $MM/$M.hf.tokens.txt --image "$f" --out "$TMP/x" 2>"$TMP/err"
    check "$(basename "$f"): refused from the header" grep -q "refused before decoding\|at most" "$TMP/err"
done

# video: a lossless clip made here from known frames gives, frame by frame,
# the soft tokens of those frames encoded as images (budget 70); a folder of
# the frames and an animated GIF (against its own frames) likewise
if command -v ffmpeg >/dev/null; then
    mkdir -p "$TMP/f" "$TMP/g"
    ffmpeg -loglevel error -f lavfi -i testsrc=size=160x120:rate=10 -frames:v 40 "$TMP/f/%03d.png"
    ffmpeg -loglevel error -framerate 10 -i "$TMP/f/%03d.png" -c:v png "$TMP/clip.mkv"
    ffmpeg -loglevel error -framerate 10 -i "$TMP/f/%03d.png" "$TMP/clip.gif"
    ffmpeg -loglevel error -i "$TMP/clip.gif" "$TMP/g/%03d.png"
    # 32 of 40 frames: idx_j = floor(j * 40 / 32); 160x120 -> 432x336, 63 tokens a frame
    imgs=(); gimgs=(); toks="2"
    for j in $(seq 0 31); do
        k=$(( j * 40 / 32 + 1 )); imgs+=(--image "$TMP/f/$(printf %03d $k).png"); gimgs+=(--image "$TMP/g/$(printf %03d $k).png")
        toks="$toks 12$(printf ' 14%.0s' $(seq 63)) 13"
    done
    echo "$toks" >"$TMP/img.tok"; echo "$toks" | sed 's/ 14/ 18/g' >"$TMP/vid.tok"
    run_soft() { local tok=$1 out=$2; shift 2
        "$G4" logits -m $MM/gemma4-mm.gguf --tokens-file "$tok" --out "$TMP/x" --embd-out "$out" --exact -t 2 "$@"; }
    if run_soft "$TMP/img.tok" "$TMP/frames.f32" --image-tokens 70 "${imgs[@]}" 2>"$TMP/err"; then
        for src in clip.mkv f; do
            if run_soft "$TMP/vid.tok" "$TMP/v.f32" --video "$TMP/$src" 2>"$TMP/err"; then
                check "video $src: 32 frames x 63 soft tokens equal the frames encoded as images" cmp -s "$TMP/frames.f32" "$TMP/v.f32"
            else cat "$TMP/err"; fail "video $src"; fi
        done
        run_soft "$TMP/img.tok" "$TMP/gframes.f32" --image-tokens 70 "${gimgs[@]}" 2>"$TMP/err" &&
        run_soft "$TMP/vid.tok" "$TMP/gv.f32" --video "$TMP/clip.gif" 2>"$TMP/err"
        check "animated GIF: its frames' soft tokens, as images" cmp -s "$TMP/gframes.f32" "$TMP/gv.f32"
    else cat "$TMP/err"; fail "frames as images"; fi
    # a truncated clip decodes what it holds (fewer frames: the runs then
    # disagree); bytes that are no video are an error naming the file
    head -c 3000 "$TMP/clip.mkv" >"$TMP/trunc.mkv"
    "$G4" logits -m $MM/gemma4-mm.gguf --tokens-file "$TMP/vid.tok" --out "$TMP/x" --video "$TMP/trunc.mkv" 2>"$TMP/err"
    check "truncated video: exit 1 with a message" test $? = 1 -a -s "$TMP/err"
    head -c 5000 /dev/urandom >"$TMP/noise.mkv"
    "$G4" logits -m $MM/gemma4-mm.gguf --tokens-file "$TMP/vid.tok" --out "$TMP/x" --video "$TMP/noise.mkv" 2>"$TMP/err"
    check "noise as a video: an error naming the file" grep -q "noise.mkv" "$TMP/err"
    "$G4" logits -m $MM/gemma4-mm.gguf --tokens-file "$TMP/vid.tok" --out "$TMP/x" --video $MM/media/$M.png \
        --video-frames 4 2>"$TMP/err"
    check "a still image as --video: one frame, and the run check says so" grep -q "more placeholder runs than media given: run 2" "$TMP/err"
    # FFmpeg is loaded by the first video file only (src/media/video.c): the
    # binary does not link it; with libavcodec hidden (a mount namespace,
    # where unshare is allowed) a video is an error naming the library and
    # its Debian package, and images still work
    no_ffmpeg_linked() { ! ldd "$G4" | grep -q 'libavcodec\|libavformat\|libavutil\|libswscale'; }
    check "gemma4c does not link FFmpeg (ldd)" no_ffmpeg_linked
    so=$(strings "$G4" | grep -m1 '^libavcodec\.so\.[0-9]*$')
    lib=$(ldconfig -p | awk -v so="$so" '$1 == so && /x86-64/ { print $NF; exit }')
    hide() { unshare -rm sh -c 'mount --bind /dev/null "$0" && exec "$@"' "$lib" "$@"; }
    if [ -n "$so" ] && [ -n "$lib" ] && hide true 2>/dev/null; then
        hide "$G4" logits -m $MM/gemma4-mm.gguf --tokens-file "$TMP/vid.tok" --out "$TMP/x" --video "$TMP/clip.mkv" 2>"$TMP/err"
        check "without $so: exit 1" test $? = 1
        check "without $so: the error names it and its package" grep -q "clip.mkv: .*$so.*install Debian's ${so%%.so.*}${so##*.so.}" "$TMP/err"
        hide "$G4" logits -m $MM/gemma4-mm.gguf --tokens-file $MM/$M.hf.tokens.txt --image $MM/media/$M.png \
            --out "$TMP/l.f32" 2>"$TMP/err"
        check "without $so: images still work" test $? = 0 -a -s "$TMP/l.f32"
        hide "$G4" logits -m $MM/gemma4-mm.gguf --tokens-file "$TMP/vid.tok" --out "$TMP/x" --embd-out "$TMP/v2.f32" \
            --exact -t 2 --video "$TMP/f" 2>"$TMP/err"
        check "without $so: a folder of frames still works" cmp -s "$TMP/frames.f32" "$TMP/v2.f32"
    else echo "skip FFmpeg hidden: no unshare -rm here"; fi
fi

# synth: a tiny model with its tiny mmproj answers about an image end to end
# (run --image, mmproj found beside the model); same seed, same bytes
mkdir -p "$TMP/s"
"$G4" synth --arch tiny -o "$TMP/s/tiny.gguf" 2>/dev/null
"$G4" synth --arch tiny --mmproj -o "$TMP/s/mmproj-tiny.gguf" 2>/dev/null
"$G4" synth --arch tiny --mmproj -o "$TMP/mmproj-again.gguf" 2>/dev/null
check "synth --mmproj: same seed, same bytes" cmp -s "$TMP/s/mmproj-tiny.gguf" "$TMP/mmproj-again.gguf"
out=$("$G4" run -m "$TMP/s/tiny.gguf" --image $MM/media/img-jpeg-493x312.jpg -p "What is in this picture?" -n 4 \
    --greedy -t 2 2>"$TMP/err")
check "run --image with synth's tiny model and mmproj" test $? = 0
"$G4" synth --arch e9b --mmproj -o "$TMP/x.gguf" 2>"$TMP/err"
check "synth --mmproj with an unknown arch is an error" grep -q "unknown --arch 'e9b'" "$TMP/err"

# generate: ids with the run expanded, greedy first token = the reference's argmax (373)
first=$("$G4" generate -m $MM/gemma4-mm.gguf --tokens-file $MM/$M.hf.tokens.txt --image $MM/media/$M.png -n 1 --greedy \
    --exact -t 2 2>"$TMP/err")
check "generate --image: first token is the reference argmax 373 (got '$first')" test "$first" = 373

# an HF folder's processor_config.json sets the default image budget
cp -r $MM/gemma4-mm.hf "$TMP/hf70"; chmod -R u+w "$TMP/hf70"
sed -i 's/"max_soft_tokens": 280/"max_soft_tokens": 70/' "$TMP/hf70/processor_config.json"
"$G4" logits -m "$TMP/hf70" --tokens-file $MM/$M.hf.tokens.txt --image $MM/media/$M.png --out "$TMP/x" 2>"$TMP/err"
check "HF folder with max_soft_tokens 70: the image gives 63 tokens" grep -q "image item 1 gives 63 soft tokens" "$TMP/err"
