// Validates constrained-decoding outputs with ajv, independently of gemma4c.
// Input: JSON lines {"kind":"json"|"tool","schema":S,"data":TEXT}; every
// TEXT must parse as JSON and validate against S. Prints a summary; exit 1
// on any failure.
"use strict";
const fs = require("fs");
const Ajv = require("ajv");
const file = process.argv[2];
const ajv = new Ajv({ strict: false, allErrors: false });
let ok = 0, bad = 0;
const schemas = new Set();
for (const line of fs.readFileSync(file, "utf8").split("\n")) {
    if (!line) continue;
    const rec = JSON.parse(line);
    schemas.add(JSON.stringify(rec.schema));
    let data, valid = false, why = "";
    try {
        data = JSON.parse(rec.data);
        valid = ajv.validate(rec.schema, data);
        if (!valid) why = ajv.errorsText();
    } catch (e) {
        why = "not JSON: " + e.message;
    }
    if (valid) ok++;
    else {
        bad++;
        if (bad <= 10) console.log(`invalid (${rec.kind}): ${why}\n  schema ${JSON.stringify(rec.schema)}\n  data ${rec.data.slice(0, 300)}`);
    }
}
console.log(`ajv: ${ok} valid, ${bad} invalid, ${schemas.size} distinct schemas`);
process.exit(bad || !ok ? 1 : 0);
