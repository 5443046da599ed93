#!/usr/bin/python3
"""Render every conversation file with the official Gemma 4 templates.

usage: render_all.py OUTDIR FILE.json...

For each FILE writes OUTDIR/NAME.31b.txt (google-gemma-4-31B-it.jinja) and
OUTDIR/NAME.e.txt (the E2B/E4B variant) and OUTDIR/NAME.interleaved.txt
(google-gemma-4-31B-it-interleaved.jinja, llama.cpp's variant), or an empty NAME.<fam>.err when the
template raises (the layout `gemma4c render --out-dir` writes). One process for all files keeps the test fast.

No E2B/E4B template file is in shared/reference/templates/; per
gemma4-chat-format.md §0 it differs from the 31B one only in not pre-filling
the empty thought block in the generation prompt, so the E variant is the 31B
text with exactly that statement removed (the removal is asserted).
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.environ.get("G4_SHARED") or os.path.join(HERE, "..", "..", "..", "shared")
REF = os.path.join(SHARED, "reference")
sys.path.insert(0, REF)
import render_template  # noqa: E402

PREFILL = (
    "        {%- if not enable_thinking | default(false) -%}\n"
    "            {{- '<|channel>thought\\n<channel|>' -}}\n"
    "        {%- endif -%}\n"
)


def main():
    out = sys.argv[1]
    with open(os.path.join(REF, "templates", "google-gemma-4-31B-it.jinja"), encoding="utf-8", newline="") as f:
        t31 = f.read()
    assert t31.count(PREFILL) == 1, "31B template changed: cannot derive the E2B/E4B variant"
    te = t31.replace(PREFILL, "")
    # compile each template once (render_template.render recompiles per call)
    env = render_template.make_env()
    with open(os.path.join(REF, "templates", "google-gemma-4-31B-it-interleaved.jinja"), encoding="utf-8",
              newline="") as f:
        til = f.read()
    tmpls = (("31b", env.from_string(t31)), ("e", env.from_string(te)), ("interleaved", env.from_string(til)))
    for path in sys.argv[2:]:
        name = os.path.splitext(os.path.basename(path))[0]
        with open(path, "rb") as f:
            conv = json.loads(f.read().decode("utf-8"))
        if isinstance(conv, list):
            conv = {"messages": conv}
        # the same context as render_template.render()
        ctx = {
            "messages": conv["messages"],
            "tools": conv.get("tools"),
            "add_generation_prompt": bool(conv.get("add_generation_prompt", False)),
            "bos_token": conv.get("bos_token", "<bos>"),
            "eos_token": conv.get("eos_token", "<eos>"),
        }
        if "enable_thinking" in conv:  # absent stays undefined
            ctx["enable_thinking"] = conv["enable_thinking"]
        ctx.update(conv.get("vars", {}))
        for fam, tmpl in tmpls:
            try:
                res = tmpl.render(**ctx)
                with open(os.path.join(out, f"{name}.{fam}.txt"), "wb") as f:
                    f.write(res.encode("utf-8"))
            except Exception as e:  # template errors are expected for some inputs
                # empty marker file (gemma4c --out-dir writes the same), reason on stderr
                open(os.path.join(out, f"{name}.{fam}.err"), "w").close()
                sys.stderr.write(f"{name} ({fam}): template raised {type(e).__name__}: {e}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
