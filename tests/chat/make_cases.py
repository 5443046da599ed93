#!/usr/bin/python3
"""Writes the conversation files tests/chat/cases/NN-name.json (inputs for
render_all.py and `gemma4c render`). Run once after editing; the JSON files
are committed. Keys as in render_template.py: messages, tools,
add_generation_prompt, enable_thinking (absent = undefined), bos_token."""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))

WEATHER = {"type": "function", "function": {
    "name": "get_current_weather", "description": "Get the current weather in a given location",
    "parameters": {"type": "object", "properties": {
        "location": {"type": "string", "description": "City name"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["location"]}}}
FLIGHTS = {"type": "function", "function": {
    "name": "search_flights", "description": "Search flights.",
    "parameters": {"type": "object", "properties": {
        "origin": {"type": "string", "description": "IATA code"},
        "dates": {"type": "array", "description": "Travel dates", "items": {"type": "string"}},
        "passengers": {"type": "integer", "minimum": 1, "default": 1},
        "filters": {"type": "object", "properties": {
            "nonstop": {"type": "boolean"},
            "max_price": {"type": "number", "description": "USD"},
            "cabin": {"type": "string", "enum": ["economy", "business", "first"]}},
            "required": ["nonstop"]},
        "notes": {"type": "string", "nullable": True}},
        "required": ["origin", "dates"]}}}
TODO = {"type": "function", "function": {
    "name": "add_todos", "description": "Add items to a todo list",
    "parameters": {"type": "object", "properties": {
        "items": {"type": "array", "description": "Todo entries", "items": {
            "type": "object", "description": "one entry",
            "properties": {"title": {"type": "string"}, "priority": {"type": "integer", "enum": [1, 2, 3]},
                           "tags": {"type": "array", "items": {"type": "string"}}},
            "required": ["title"]}},
        "maybe": {"type": "array", "items": {"type": ["string", "null"], "enum": ["a", "b"], "extra": None}},
        "Mode": {"type": "STRING", "enum": ["fast", "slow"], "description": "Run mode"},
        "config": {"type": "object", "additionalProperties": False, "description": "free-form"},
        "type": {"type": "string"},
        "description": {"type": "string"},
        "nullable_obj": {"type": "object", "nullable": True, "properties": {"x": {"type": "number"}}},
        "multi": {"type": ["string", "integer"]},
        "count": {"type": "integer", "enum": [1, 2]}},
        "required": ["items"]}}}
NODESC = {"type": "function", "function": {"name": "ping", "parameters": {"type": "object", "properties": {}}}}
NOPARAMS = {"type": "function", "function": {"name": "now", "description": "Current time"}}
RESP = {"type": "function", "function": {
    "name": "lookup", "description": "Look up a word",
    "parameters": {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]},
    "response": {"type": "object", "description": "definition", "properties": {"text": {"type": "string"}}}}}
RESP2 = {"type": "function", "function": {
    "name": "count", "description": "Count", "parameters": {"type": "object", "properties": {"s": {"type": "string"}}},
    "response": {"type": "integer"}}}
NOTYPE = {"type": "function", "function": {
    "name": "odd", "description": "schema without type", "parameters": {"properties": {"a": {"type": "string"}}, "required": ["a"]}}}

U = lambda t: {"role": "user", "content": t}
A = lambda t: {"role": "assistant", "content": t}
S = lambda t: {"role": "system", "content": t}


def call(name, args, id=None):
    c = {"type": "function", "function": {"name": name, "arguments": args}}
    if id is not None:
        c["id"] = id
    return c


def tool(content, id=None, name=None):
    m = {"role": "tool", "content": content}
    if id is not None:
        m["tool_call_id"] = id
    if name is not None:
        m["name"] = name
    return m


CASES = []


def case(name, messages, tools=None, gen=True, think="absent", **extra):
    d = {"messages": messages}
    if tools is not None:
        d["tools"] = tools
    d["add_generation_prompt"] = gen
    if think != "absent":
        d["enable_thinking"] = think
    d.update(extra)
    CASES.append((name, d))


# --- plain turns, thinking switch, system/developer
case("basic", [U("Hello!")])
case("basic-think-on", [U("Hello!")], think=True)
case("basic-think-off", [U("Hello!")], think=False)
case("basic-no-gen", [U("Hello!")], gen=False)
case("basic-no-gen-think", [U("Hello!")], gen=False, think=True)
case("system", [S("You are terse."), U("Hi")])
case("system-think", [S("  You are terse.\n\n"), U("Hi")], think=True)
case("developer-first", [{"role": "developer", "content": "Dev rules."}, U("Hi")])
case("developer-middle", [U("Hi"), {"role": "developer", "content": "Later rule."}, U("Again")])
case("system-only", [S("Only a system prompt")])
case("system-only-think-tools", [S("sys")], tools=[WEATHER], think=True)
case("system-list-content", [{"role": "system", "content": [{"type": "text", "text": "sys 'quoted'"}]}, U("x")])
case("system-null-content", [{"role": "system", "content": None}, U("x")])
case("system-unicode-ws", [S("\u3000\u00a0 Système ünïcödé \u2003\n"), U(" \t hé \u2028")])
case("think-string-truthy", [U("Hello!")], think="yes")
case("think-zero-falsy", [U("Hello!")], think=0)
case("custom-bos", [U("Hello!")], bos_token="<BOS>")
# --- multi-turn, thought stripping
case("multiturn", [U("What is 2+2?"), A("4."), U("And times 3?"), A("12."), U("Thanks")])
case("multiturn-strip-thought", [S("Be brief."), U("2+2?"),
     A("<|channel>thought\nSimple: 4.<channel|>2+2 = 4."), U("times 3?")], think=True)
case("multiturn-reasoning-dropped", [U("2+2?"),
     {"role": "assistant", "content": "4", "reasoning_content": "add them"}, U("ok")], think=True)
case("strip-dangling-channel", [U("q"), A("Answer <|channel>thought\nunfinished"), U("next")])
case("strip-stray-close", [U("q"), A("  left<channel|>right  "), U("next")])
case("strip-multiple-blocks", [U("q"), A("<|channel>a<channel|>one <|channel>b<channel|>two"), U("n")])
case("assistant-parts", [U("q"), {"role": "assistant", "content": [
    {"type": "text", "text": "<|channel>thought\nhmm<channel|> Part one."}, {"type": "text", "text": " Part two. "}]}, U("n")])
case("assistant-last-no-gen", [U("q"), A("The answer.")], gen=False)
case("assistant-continuation", [U("q"), A("first half"), A("second half")])
case("empty-user-content", [U(""), A(""), U("   ")])
case("assistant-null-content", [U("q"), {"role": "assistant", "content": None}, U("again")])
case("consecutive-users", [U("one"), U("two"), U("three")])
case("unknown-role", [U("q"), {"role": "narrator", "content": "Meanwhile..."}, U("go on")])
case("model-role-literal", [U("q"), {"role": "model", "content": "<|channel>x<channel|>lit"}, U("go")])
case("user-number-content", [{"role": "user", "content": 42}])
case("user-text-part-missing-text", [{"role": "user", "content": [{"type": "text"}, {"type": "text", "text": " ok "}]}])
case("unicode-content", [U("Grüße 👋🏽 — 日本語 «quotes» \"dq\" 'sq' \\back\\slash"), A("Antwort: ✓"), U("👨‍👩‍👧")])
# --- multimodal
case("multimodal", [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "  What is this?  "},
     {"type": "audio"}, {"type": "text", "text": "Transcribe."}, {"type": "video"}]}])
case("multimodal-think", [{"role": "user", "content": [{"type": "text", "text": "Compare"},
     {"type": "image"}, {"type": "image"}]}], think=True)
case("multimodal-image-url-dropped", [{"role": "user", "content": [
    {"type": "image_url", "image_url": {"url": "http://x"}}, {"type": "input_audio"}, {"type": "text", "text": "see"}]}])
case("multimodal-history", [{"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": "what?"}]},
     A("A bird."), {"role": "user", "content": [{"type": "video"}]}], gen=False)
# --- tool declarations
case("tools-weather", [U("Weather in Paris?")], tools=[WEATHER])
case("tools-two-nested", [U("Weather and flights?")], tools=[WEATHER, FLIGHTS])
case("tools-complex-schema", [U("Add todos")], tools=[TODO])
case("tools-no-desc-no-params", [U("ping")], tools=[NODESC, NOPARAMS])
case("tools-response-decl", [U("define x")], tools=[RESP, RESP2])
case("tools-no-type-schema", [U("odd")], tools=[NOTYPE])
case("tools-think-system", [S("Use tools wisely."), U("Weather?")], tools=[WEATHER, FLIGHTS], think=True)
case("tools-empty-list", [U("hi")], tools=[])
# --- tool calls and results (OpenAI form)
case("toolcall-roundtrip", [U("Weather in Paris?"),
     {"role": "assistant", "tool_calls": [call("get_current_weather", {"location": "Paris", "unit": "celsius"}, "c1")]},
     tool("15 C, sunny", "c1"), A("It is 15 °C and sunny in Paris.")], tools=[WEATHER])
case("toolcall-pending-result", [U("Weather in Paris?"),
     {"role": "assistant", "tool_calls": [call("get_current_weather", {"location": "Paris"}, "c1")]},
     tool("15 C", "c1")], tools=[WEATHER])
case("toolcall-no-results", [U("Weather in Paris?"),
     {"role": "assistant", "tool_calls": [call("get_current_weather", {"location": "Paris"})]}], tools=[WEATHER])
case("toolcall-parallel-ids", [U("Paris and London?"),
     {"role": "assistant", "content": None, "tool_calls": [
         call("get_current_weather", {"location": "Paris"}, "a"),
         call("get_current_weather", {"location": "London"}, "b")]},
     tool("11 C", "b"), tool("15 C", "a"), A("Paris 15, London 11.")], tools=[WEATHER], think=False)
case("toolcall-parallel-thinking", [U("Paris and London?"),
     {"role": "assistant", "reasoning_content": "Two calls needed.", "tool_calls": [
         call("get_current_weather", {"location": "Paris"}, "a"),
         call("search_flights", {"origin": "CDG", "dates": ["2026-05-01"], "filters": {"nonstop": True}}, "b")]},
     tool("15 C", "a"), tool([{"type": "text", "text": "2 flights: "}, {"type": "text", "text": "AF1, AF2 "},
                             {"type": "image"}], "b")], tools=[WEATHER, FLIGHTS], think=True)
case("toolcall-reasoning-key", [U("Weather?"),
     {"role": "assistant", "reasoning": "Use the tool.", "reasoning_content": "ignored",
      "tool_calls": [call("get_current_weather", {"location": "Oslo"}, "x")]}], tools=[WEATHER], think=True)
case("toolcall-reasoning-before-last-user", [U("Weather?"),
     {"role": "assistant", "reasoning_content": "old thought", "tool_calls": [call("get_current_weather", {"location": "Oslo"}, "x")]},
     tool("-3 C", "x"), A("Cold."), U("And Rome?")], tools=[WEATHER], think=True)
case("toolcall-result-types", [U("go"),
     {"role": "assistant", "tool_calls": [call("now", {}, "1"), call("now", {}, "2"), call("now", {}, "3"),
                                          call("now", {}, "4"), call("now", {}, "5")]},
     tool(12, "1"), tool(None, "2"), tool(True, "3"), tool(2.5, "4"), {"role": "tool", "tool_call_id": "5"}],
     tools=[NOPARAMS])
case("toolcall-result-json-string", [U("go"),
     {"role": "assistant", "tool_calls": [call("lookup", {"word": "cat"}, "k")]},
     tool("{\"text\": \"a small \\\"felid\\\"\", \"n\": 1}", "k"), A("Done")], tools=[RESP])
case("toolcall-result-by-name", [U("go"),
     {"role": "assistant", "tool_calls": [call("now", {})]}, tool("12:00", name="now")], tools=[NOPARAMS])
case("toolcall-no-ids-last-name", [U("go"),
     {"role": "assistant", "tool_calls": [call("now", {}), call("lookup", {"word": "x"})]},
     tool("r1"), tool("r2")], tools=[NOPARAMS, RESP])
case("toolcall-numeric-ids", [U("go"),
     {"role": "assistant", "tool_calls": [call("now", {}, 1), call("lookup", {"word": "y"}, 2)]},
     tool("t", 1.0, name="zzz"), tool("d", 2)], tools=[NOPARAMS, RESP])
case("toolcall-args-values", [U("go"),
     {"role": "assistant", "tool_calls": [call("f", {
         "int": 15, "neg": -3, "float": 15.5, "whole": 100.0, "small": 1e-05, "tiny": 0.0001, "big": 1e16,
         "bigger": 1.2345678901234568e+17, "pi": 3.141592653589793, "third": 0.1, "negzero": -0.0,
         "t": True, "f": False, "n": None, "arr": [1, "two", [3.0], {"k": None}], "obj": {"Z": 1, "a": {"b": []}, "B": {}},
         "empty": "", "Upper": "U", "lower": "l", "_u": 1, "0digit": 0})]}], gen=False)
case("toolcall-args-unicode-quotes", [U("go"),
     {"role": "assistant", "tool_calls": [call("write", {
         "text": "He said \"hi\" and 'bye'\nnew line\ttab \\ backslash", "emoji": "🎉 ñ 中文 \u200b",
         "clé": "valeur", "code": "print(\"{x}\")  # {}[],:"})]}, tool("ok")])
case("toolcall-args-string-raw", [U("go"),
     {"role": "assistant", "tool_calls": [call("f", "{\"a\": 1}", "s")]}, tool("r", "s")])
case("toolcall-args-missing", [U("go"),
     {"role": "assistant", "tool_calls": [{"id": "q", "function": {"name": "now"}}]}, tool("r", "q")])
case("toolcall-content-and-calls", [U("go"),
     {"role": "assistant", "content": "Let me check.", "tool_calls": [call("now", {}, "z")]},
     tool("noon", "z"), U("thanks")], tools=[NOPARAMS])
case("toolcall-content-and-calls-last", [U("go"),
     {"role": "assistant", "content": "Checking.", "tool_calls": [call("now", {}, "z")]}, tool("noon", "z")])
case("toolcall-calls-content-no-result", [U("go"),
     {"role": "assistant", "content": "Calling now.", "tool_calls": [call("now", {}, "z")]}])
case("toolcall-calls-image-no-result", [U("go"),
     {"role": "assistant", "content": [{"type": "text", "text": "see"}, {"type": "image"}], "tool_calls": [call("now", {}, "z")]}])
case("toolcall-stray-tool-message", [U("go"), tool("orphan", "x"), A("ok")])
case("toolcall-two-rounds", [U("Plan a trip"),
     {"role": "assistant", "reasoning_content": "first weather", "tool_calls": [call("get_current_weather", {"location": "Rome"}, "1")]},
     tool("20 C", "1"),
     {"role": "assistant", "reasoning_content": "now flights", "tool_calls": [call("search_flights", {"origin": "FCO", "dates": []}, "2")]},
     tool("none", "2"), A("Rome is warm; no flights.")], tools=[WEATHER, FLIGHTS], think=True)
case("toolcall-deep-args", [U("go"),
     {"role": "assistant", "tool_calls": [call("f", {"a": {"b": {"c": {"d": [[[{"e": "deep"}]]]}}}})]}], gen=False)
case("toolcall-key-sorting", [U("go"),
     {"role": "assistant", "tool_calls": [call("f", {"b": 1, "B": 2, "a": 3, "A": 4, "_": 5, "[": 6, "Ä": 7, "z9": 8})]}], gen=False)
# --- legacy tool_responses
case("legacy-structured", [U("Weather in Paris?"),
     {"role": "assistant", "tool_calls": [call("get_current_weather", {"location": "Paris"})],
      "tool_responses": [{"name": "get_current_weather", "response": {
          "weather": "sunny", "temperature": 15, "Humid": False, "hourly": [14, 15.5], "wind": {"dir": "NW", "kph": 12}}}]}],
     tools=[WEATHER])
case("legacy-noname-scalar", [U("go"),
     {"role": "assistant", "tool_calls": [call("now", {})],
      "tool_responses": [{"response": "noon"}, {"name": "now", "response": [1, 2]}, {"name": "now"}]},
     A("It is noon.")])
case("legacy-with-content", [U("go"),
     {"role": "assistant", "reasoning_content": "r", "tool_calls": [call("now", {})],
      "tool_responses": [{"name": "now", "response": {"t": "12:00"}}], "content": "Noon."}, U("and?")], think=True)

case("toolcall-key-sorting-unicode", [U("go"),
     {"role": "assistant", "tool_calls": [call("f", {"zèbre": 1, "Émile": 2, "école": 3, "Ábc": 4, "ábd": 5,
                                                     "Ωmega": 6, "alpha": 7, "Яблоко": 8, "яма": 9, "Ёж": 10,
                                                     "Łódź": 11, "łabędź": 12, "Ÿ": 13, "ÿa": 14, "ŒUF": 15})]}],
     gen=False)

# --- inputs the template rejects (gemma4c must reject them too)
case("error-tool-result-unnamed", [U("go"),
     {"role": "assistant", "tool_calls": [call("now", {}, "a")]}, tool("r", "zzz")])
case("error-tool-result-object", [U("go"),
     {"role": "assistant", "tool_calls": [call("now", {}, "a")]}, tool({"k": 1}, "a")])
case("tool-result-empty-object", [U("go"),
     {"role": "assistant", "tool_calls": [call("now", {}, "a")]}, tool({}, "a")])


if __name__ == "__main__":
    d = os.path.join(HERE, "cases")
    os.makedirs(d, exist_ok=True)
    for old in os.listdir(d):
        if old.endswith(".json"):
            os.remove(os.path.join(d, old))
    for i, (name, conv) in enumerate(CASES, 1):
        with open(os.path.join(d, f"{i:02d}-{name}.json"), "w", encoding="utf-8") as f:
            json.dump(conv, f, ensure_ascii=False, indent=1)
            f.write("\n")
    print(len(CASES), "cases")
