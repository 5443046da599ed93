#!/usr/bin/python3
"""Writes N random chat requests (seeded) as OUTDIR/rNNNN.json, for the
render comparison in tests/sh/chat_template.sh: random schemas, nested
values, None, mixed-case keys, floats, media parts, reasoning, OpenAI and
legacy tool results, string arguments, missing ids, thinking on/off/absent.

usage: random_convs.py OUTDIR N [SEED]"""
import json
import os
import random
import sys

WORDS = ["alpha", "Beta", "gamma", "Δelta", "日本", "x", "Y", "_z", "a b", "q'uote", 'dq"', "back\\slash",
         "new\nline", "  pad  ", "🎉", "", "\u3000ws\u00a0"]


def rstr(r):
    return r.choice(WORDS) + (r.choice(WORDS) if r.random() < 0.3 else "")


def rnum(r):
    k = r.random()
    if k < 0.4:
        return r.randint(-1000, 1000)
    if k < 0.6:
        return r.choice([0.1, 1.5, -2.25, 1e-05, 1e16, 1.2345678901234567e+17, 3.0, 100.0, 1e-7, 123.456])
    return round(r.uniform(-1e4, 1e4), r.randint(0, 6))


def rval(r, d=0):
    k = r.random()
    if d > 3 or k < 0.3:
        return rstr(r)
    if k < 0.45:
        return rnum(r)
    if k < 0.55:
        return r.choice([True, False, None])
    if k < 0.75:
        return [rval(r, d + 1) for _ in range(r.randint(0, 3))]
    return {rkey(r): rval(r, d + 1) for _ in range(r.randint(0, 4))}


def rkey(r):
    return r.choice(["a", "B", "b", "A", "key", "Key", "zeta", "_x", "n1", "città", "Z", "m"])


def rschema(r, d=0):
    t = r.choice(["string", "integer", "number", "boolean", "array", "object", "STRING", None])
    s = {}
    if t is not None:
        s["type"] = t
    if r.random() < 0.5:
        s["description"] = rstr(r)
    if r.random() < 0.3:
        s["enum"] = [rstr(r) for _ in range(r.randint(1, 3))]
    if r.random() < 0.2:
        s["nullable"] = r.choice([True, False])
    if t == "array" and r.random() < 0.8:
        it = {"type": r.choice(["string", "object", "integer"])}
        if it["type"] == "object" and d < 2:
            it["properties"] = {rkey(r): rschema(r, d + 1) for _ in range(r.randint(1, 3))}
            if r.random() < 0.5:
                it["required"] = list(it["properties"])[:1]
        if r.random() < 0.3:
            it["description"] = rstr(r)
        if r.random() < 0.2:
            it["type"] = ["string", "null"]
        s["items"] = it
    if t == "object" and d < 2:
        if r.random() < 0.8:
            s["properties"] = {rkey(r): rschema(r, d + 1) for _ in range(r.randint(0, 3))}
        if r.random() < 0.4:
            s["required"] = [rkey(r)]
        if r.random() < 0.2:
            s["additionalProperties"] = False
    if r.random() < 0.1:
        s["default"] = rval(r)
    return s


def rtool(r, name):
    f = {"name": name}
    if r.random() < 0.85:
        f["description"] = rstr(r)
    if r.random() < 0.85:
        p = {"type": "object", "properties": {rkey(r): rschema(r) for _ in range(r.randint(0, 4))}}
        if r.random() < 0.6 and p["properties"]:
            p["required"] = list(p["properties"])[: r.randint(1, len(p["properties"]))]
        f["parameters"] = p
    if r.random() < 0.15:
        f["response"] = {"type": r.choice(["object", "string"]), "description": rstr(r)}
    return {"type": "function", "function": f}


def rcontent(r, assistant=False):
    k = r.random()
    if k < 0.6:
        s = rstr(r)
        if assistant and r.random() < 0.3:
            s = "<|channel>thought\n" + rstr(r) + "<channel|>" + s
        return s
    if k < 0.7:
        return r.choice(["", None])
    parts = []
    for _ in range(r.randint(1, 4)):
        t = r.choice(["text", "text", "image", "audio", "video", "image_url"])
        parts.append({"type": t, "text": rstr(r)} if t == "text" else {"type": t})
    return parts


def rconv(r):
    names = ["get_weather", "search", "now", "lookup"]
    tools = [rtool(r, n) for n in names[: r.randint(0, 3)]]
    msgs = []
    if r.random() < 0.4:
        msgs.append({"role": r.choice(["system", "developer"]), "content": rstr(r)})
    for _ in range(r.randint(1, 4)):
        msgs.append({"role": "user", "content": rcontent(r)})
        k = r.random()
        if k < 0.4:
            msgs.append({"role": "assistant", "content": rcontent(r, True)})
        elif k < 0.8:
            calls = []
            for j in range(r.randint(1, 3)):
                c = {"type": "function", "function": {"name": r.choice(names),
                                                      "arguments": {rkey(r): rval(r) for _ in range(r.randint(0, 3))}}}
                if r.random() < 0.1:
                    c["function"]["arguments"] = json.dumps({"s": rstr(r)})
                if r.random() < 0.85:
                    c["id"] = f"call_{j}"
                calls.append(c)
            a = {"role": "assistant", "tool_calls": calls}
            if r.random() < 0.5:
                a[r.choice(["reasoning_content", "reasoning"])] = rstr(r) or "thinking"
            if r.random() < 0.2:
                a["content"] = rcontent(r, True)
            if r.random() < 0.15:
                a["tool_responses"] = [{"name": c["function"]["name"], "response": rval(r)} for c in calls]
                msgs.append(a)
            else:
                msgs.append(a)
                for j, c in enumerate(calls):
                    if r.random() < 0.9:
                        t = {"role": "tool", "content": r.choice([rstr(r), rstr(r), [{"type": "text", "text": rstr(r)}], rnum(r)])}
                        if "id" in c:
                            t["tool_call_id"] = c["id"]
                        else:
                            t["name"] = c["function"]["name"]
                        msgs.append(t)
                if r.random() < 0.5:
                    msgs.append({"role": "assistant", "content": rcontent(r, True)})
    conv = {"messages": msgs, "add_generation_prompt": r.random() < 0.7}
    if tools or r.random() < 0.2:
        conv["tools"] = tools
    k = r.random()
    if k < 0.35:
        conv["enable_thinking"] = True
    elif k < 0.6:
        conv["enable_thinking"] = False
    return conv


def main():
    out, n = sys.argv[1], int(sys.argv[2])
    r = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    os.makedirs(out, exist_ok=True)
    for i in range(n):
        with open(os.path.join(out, f"r{i:04d}.json"), "w", encoding="utf-8") as f:
            json.dump(rconv(r), f, ensure_ascii=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
