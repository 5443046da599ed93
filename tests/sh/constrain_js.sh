#!/usr/bin/env bash
# Constrained decoding checked by an independent validator: test_constrain
# generates outputs over the real Gemma vocabulary with random logits (JSON
# answers for 50+ schemas, tool-call arguments parsed by gemma4c's Gemma 4
# output parser) and writes them out; ajv (npm) validates each against its
# schema. Needs node and tests/js/node_modules (scripts/setup.sh).
source "$(dirname "$0")/lib.sh"

JSDIR=tests/js
if ! command -v node >/dev/null; then fail "node is not installed (needed for ajv)"; exit 1; fi
if [ ! -d "$JSDIR/node_modules/ajv" ]; then
    if ! npm ci --prefix "$JSDIR" --no-audit --no-fund >"$TMP/npm.log" 2>&1; then
        fail "npm ci --prefix $JSDIR"; tail -5 "$TMP/npm.log"; exit 1
    fi
fi
if G4_CONSTRAIN_DUMP="$TMP/out.jsonl" G4_CONSTRAIN_SEEDS=${G4_CONSTRAIN_SEEDS:-3} \
        "$BUILD/tests/test_constrain" >"$TMP/gen.log" 2>&1; then
    ok "test_constrain generated $(wc -l <"$TMP/out.jsonl") outputs"
else
    fail "test_constrain failed while generating"; tail -20 "$TMP/gen.log"
fi
n_json=$(grep -c '"kind":"json"' "$TMP/out.jsonl")
n_tool=$(grep -c '"kind":"tool"' "$TMP/out.jsonl")
check "at least 150 JSON answers ($n_json) and 20 tool calls ($n_tool)" [ "$n_json" -ge 150 ] && [ "$n_tool" -ge 20 ]
if node "$JSDIR/validate_schema.js" "$TMP/out.jsonl" >"$TMP/ajv.log" 2>&1; then
    ok "$(tail -1 "$TMP/ajv.log")"
else
    fail "ajv rejected outputs"; head -30 "$TMP/ajv.log"
fi
