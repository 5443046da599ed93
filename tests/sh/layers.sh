#!/usr/bin/env bash
# Layering: src/ is a stack of folders, each using only those below it.
# Checks (1) the #include lines of src/, include/ and cli/ against the table
# below, (2) the object graph of $BUILD/libgemma4c.a (nm: undefined symbol ->
# the object defining it) for cycles, for references to a layer a folder
# may not use and, inside src/tensor/, for references that do not point down
# its rows, (3) that the library exports only g4_* / gemma4c_* names.
#   bash tests/sh/layers.sh            # everything
#   bash tests/sh/layers.sh --no-cli   # or LAYERS_CLI=0: skip the cli/ check
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.."

# The layers of src/, bottom to top, and what each may use besides itself
# ("public" = include/gemma4c.h). Folders that do not exist yet are fine; a
# folder of src/ missing here is an error (add it to the table).
RULES='
util    :
media   : util
tensor  : util
arch    : util tensor
format  : util tensor arch
adapter : util tensor arch format
ops     : util tensor arch format adapter
model   : util tensor arch format adapter ops
encoder : util tensor arch format adapter ops media
text    : util tensor arch format
constrain : util tensor arch format text
sample  : util public
engine  : util tensor arch format adapter ops model text constrain sample media encoder public
'
# Inside src/tensor/ (see tensor/kernels.h), bottom to top: an object may
# reference only objects of lower rows (so the ISA files never call each
# other). A tensor object missing here is an error.
TENSOR_ROWS='
1 : types fp16 cpu pool
2 : quant_ref act vec bf16
3 : quant_avx512_p
4 : quant_x86 quant_x86_legacy quant_avx512_k quant_avx512_q quant_arm vec_kv
5 : kernels
6 : matmul q8t
'
# cli/ and server/ (front ends) may include, in quotes, only gemma4c.h and
# their own headers; in angle brackets anything that is not a header of src/
# (libc, jansson, libedit; server/ also <microhttpd.h>).
CLI=${LAYERS_CLI:-1}
for a in "$@"; do
    case $a in
    --no-cli) CLI=0 ;;
    *) echo "usage: layers.sh [--no-cli]" >&2; exit 2 ;;
    esac
done
LIB=$BUILD/libgemma4c.a

declare -A ALLOW # layer -> " itself and the layers it may use "
while IFS=: read -r l deps; do
    l=${l// /}; [ -n "$l" ] && ALLOW[$l]=" $l $deps "
done <<<"$RULES"
is_layer() { [ -n "${ALLOW[$1]:-}" ]; }
may_use() { case ${ALLOW[$1]} in *" $2 "*) return 0 ;; esac; return 1; }

# includes FILE: "LINE DELIM PATH" for each #include (DELIM " or <)
includes() {
    awk '/^[ \t]*#[ \t]*include[ \t]*[<"]/ {
        s = $0; sub(/^[ \t]*#[ \t]*include[ \t]*/, "", s)
        d = substr(s, 1, 1); s = substr(s, 2); sub(/[>"].*/, "", s); print FNR, d, s }' "$1"
}

# T = what FILE's include of PATH (delimiter D) names: a layer, "public",
# "cli", "system" (not ours) or "?" (quoted, but no such header)
target() {
    local file=$1 d=$2 p=$3 dir=${1%/*} first=${3%%/*}
    if [ "$d" = '"' ] && [ -e "$dir/$p" ]; then
        case $dir in src/*) first=${dir#src/}; T=${first%%/*} ;; cli | server) case $p in */*) T="?" ;; *) T=$dir ;; esac ;; *) T="?" ;; esac
    elif [ "$p" != "$first" ] && { is_layer "$first" || [ -e "src/$p" ]; }; then T=$first
    elif [ -e "include/$p" ]; then T=public
    elif [ "$d" = '<' ]; then T=system
    else T="?"; fi
}

# ---- (1) includes ---------------------------------------------------------
bad=0; n=0
while IFS= read -r f; do
    n=$((n + 1))
    rel=${f#src/}
    if [ "$rel" = "${rel#*/}" ]; then echo "  $f: not inside a layer folder of src/"; bad=$((bad + 1)); continue; fi
    layer=${rel%%/*}
    if ! is_layer "$layer"; then echo "  $f: src/$layer is not in the layer table"; bad=$((bad + 1)); continue; fi
    while read -r ln d p; do
        target "$f" "$d" "$p"; t=$T
        [ "$t" = system ] && continue
        may_use "$layer" "$t" && continue
        echo "  $f:$ln: $layer includes $p ($t)"; bad=$((bad + 1))
    done < <(includes "$f")
done < <(find src -name '*.[ch]' | sort)
if [ $bad = 0 ]; then ok "includes: src/ follows the layer table ($n files)"
else fail "includes: $bad include(s) in src/ break the layer table"; fi

bad=0
for f in include/*.h; do
    [ -e "$f" ] || continue
    while read -r ln d p; do
        target "$f" "$d" "$p"; t=$T
        [ "$t" = system ] && continue
        echo "  $f:$ln: the public header includes $p ($t)"; bad=$((bad + 1))
    done < <(includes "$f")
done
check "includes: include/ needs only system headers" test $bad = 0

if [ "$CLI" = 0 ]; then
    echo "skip includes: cli/ (--no-cli / LAYERS_CLI=0)"
else
    for fe in cli server; do
        bad=0; n=0
        for f in $fe/*.c $fe/*.h; do
            [ -e "$f" ] || continue
            n=$((n + 1))
            while read -r ln d p; do
                target "$f" "$d" "$p"; t=$T
                [ "$t" = "$fe" ] && continue
                case $t in system) continue ;; public) [ "$p" = gemma4c.h ] && continue ;; esac
                echo "  $f:$ln: $fe includes $p ($t)"; bad=$((bad + 1))
            done < <(includes "$f")
        done
        if [ $bad = 0 ]; then ok "includes: $fe/ uses only gemma4c.h ($n files)"
        else fail "includes: $bad include(s) in $fe/ reach past gemma4c.h"; fi
    done
fi

# ---- (2) object graph -------------------------------------------------------
if [ ! -f "$LIB" ]; then fail "objects: no $LIB (build first)"; exit 0; fi
objs=()
for m in $(ar t "$LIB" | sort -u); do
    for o in "$BUILD"/src/*/"$m"; do [ -f "$o" ] && objs+=("$o"); done
done
if [ ${#objs[@]} = 0 ]; then fail "objects: none of $LIB's members found under $BUILD/src"; exit 0; fi

# edges "from to symbol" (one symbol per pair), objects named src/LAYER/x.o
nm -A -P "${objs[@]}" 2>/dev/null | awk -v b="$BUILD/" '
    { o = $1; sub(/:$/, "", o); if (index(o, b) == 1) o = substr(o, length(b) + 1) }
    $3 == "U" { und[o, $2] = 1; next }
    $3 ~ /^[A-TV-Z]$/ { def[$2] = o }
    END { for (k in und) { split(k, a, SUBSEP); t = def[a[2]]
              if (t != "" && t != a[1] && !((a[1], t) in seen)) { seen[a[1], t] = 1; print a[1], t, a[2] } } }' |
    sort >"$TMP/edges"

# cycles: objects that reach each other, one group per strongly connected set
awk '
    { e[$1, $2] = $3; out[$1] = out[$1] " " $2; node[$1] = 1; node[$2] = 1 }
    END {
        for (s in node) {                      # reach[s, x]: s reaches x
            split("", q); h = 1; t = 0; q[++t] = s
            while (h <= t) { u = q[h++]; k = split(out[u], v, " ")
                for (i = 1; i <= k; i++) if (!((s, v[i]) in reach)) { reach[s, v[i]] = 1; q[++t] = v[i] } }
        }
        for (s in node) {
            if (done[s] || !((s, s) in reach)) continue
            grp = ""; for (x in node) if ((s, x) in reach && (x, s) in reach) { done[x] = 1; grp = grp " " x }
            print "  cycle:" grp
            for (x in node) for (y in node)
                if ((x, y) in e && (s, x) in reach && (x, s) in reach && (s, y) in reach && (y, s) in reach)
                    print "    " x " -> " y " (" e[x, y] ")"
        }
    }' "$TMP/edges" >"$TMP/cycles"
cat "$TMP/cycles"
check "objects: no cycles among the ${#objs[@]} objects of $LIB ($(wc -l <"$TMP/edges") links)" test ! -s "$TMP/cycles"

bad=0
while read -r from to sym; do
    lf=${from#src/}; lf=${lf%%/*}; lt=${to#src/}; lt=${lt%%/*}
    may_use "$lf" "$lt" && continue
    echo "  $from -> $to ($sym): $lf uses $lt"; bad=$((bad + 1))
done <"$TMP/edges"
if [ $bad = 0 ]; then ok "objects: every reference follows the layer table"
else fail "objects: $bad object reference(s) break the layer table"; fi

declare -A ROW
while IFS=: read -r r names; do
    for m in $names; do ROW[$m]=${r// /}; done
done <<<"$TENSOR_ROWS"
bad=0
for o in "${objs[@]}"; do
    case $o in "$BUILD"/src/tensor/*) m=${o##*/}; m=${m%.o}
        [ -n "${ROW[$m]:-}" ] || { echo "  src/tensor/$m.o is not in TENSOR_ROWS"; bad=$((bad + 1)); } ;;
    esac
done
while read -r from to sym; do
    case $from$to in src/tensor/*src/tensor/*) ;; *) continue ;; esac
    a=${from##*/}; a=${a%.o}; b=${to##*/}; b=${b%.o}
    [ -n "${ROW[$a]:-}" ] && [ -n "${ROW[$b]:-}" ] || continue
    [ "${ROW[$b]}" -lt "${ROW[$a]}" ] && continue
    echo "  $from -> $to ($sym): row ${ROW[$a]} uses row ${ROW[$b]}"; bad=$((bad + 1))
done <"$TMP/edges"
if [ $bad = 0 ]; then ok "objects: src/tensor/ references point down its rows"
else fail "objects: $bad reference(s) inside src/tensor/ break its rows"; fi

# ---- (3) exported names -----------------------------------------------------
nm -g -P --defined-only "$LIB" 2>/dev/null | awk 'NF > 1 && $2 ~ /^[A-Z]$/ && $1 !~ /^(g4_|gemma4c_)/ { print "  " $1 }' | sort -u >"$TMP/names"
cat "$TMP/names"
check "exports: $LIB defines only g4_* and gemma4c_* globals" test ! -s "$TMP/names"
