#!/usr/bin/python3
"""Chat training data for the demo model from Debian's wordnet-base.

WordNet 3.0 (Princeton; licence in /usr/share/doc/wordnet-base/copyright:
use, copy, modify and distribute for any purpose with the notice kept) gives
each noun sense a gloss. The most used single-word nouns whose first sense is
a concrete thing (an artifact, animal, food, plant, body part or natural
object) with a short gloss give one fact each, "A guitar is a stringed
instrument usually having six strings.", asked through many phrasings:

  {"messages": [{"role": "user", "content": "Define guitar."},
                {"role": "assistant", "content": "A guitar is a stringed instrument usually having six strings."}]}

Why this shape: a model of a few million parameters trained for minutes
cannot know a word it never saw, but it can learn which fact a new phrasing
of a known word asks for. So held-out items are (word, phrasing) pairs: each
held-out word is trained with its other phrasings, never with this one.

usage: wordnet_chat.py OUT_DIR [N_NOUNS] [N_HELD_OUT]
writes OUT_DIR/train.jsonl (shuffled), eval.jsonl (the held-out pairs),
corpus.txt (the text the tokenizer's merges are learned from: the training
questions and answers), heldout.txt (the held-out questions).
Deterministic: same package version, same files.
"""
import json
import os
import random
import re
import sys

WN = "/usr/share/wordnet"
# lexicographer files of concrete nouns: animal, artifact, body, food, object, plant
CONCRETE = {5, 6, 8, 13, 17, 20}
# the demo's question (make demo) is about a guitar: always in, never held out
DEMO = "guitar"

# Every phrasing ends with the noun, so the answer's first words sit a fixed
# distance after it: a positional attention head (learned early) can copy
# it; with the noun anywhere in the question, a 1.7M model trained for
# minutes learnt the glosses but not which one was asked for.
TEMPLATES = [
    "What is {a} {w}?",
    "Define {w}.",
    "Explain the word {w}.",
    "What is the meaning of {w}?",
    "Describe {a} {w}.",
    "What's {a} {w}?",
    "Give me the definition of {w}.",
    "Can you define {w}?",
    "What is meant by {w}?",
    "Tell me about {a} {w}.",
]


def article(word):
    return "an" if word[0] in "aeiou" else "a"


def short_gloss(g):
    """First clause of a gloss, without parentheses; None when unusable."""
    d = re.split(r'; "|;|"', g)[0]
    d = re.sub(r"\([^)]*\)", "", d)
    d = d.split(",")[0]
    d = re.sub(r"\s+", " ", d).strip().rstrip(".").strip()
    words = d.split()
    if len(words) < 3 or len(words) > 11 or not d.isascii() or not re.fullmatch(r"[A-Za-z' -]+", d):
        return None
    return d


def main():
    out = sys.argv[1]
    n_nouns = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    n_held = int(sys.argv[3]) if len(sys.argv) > 3 else 50
    if not os.path.isfile(os.path.join(WN, "index.noun")):
        sys.exit("wordnet_chat.py: %s/index.noun not found (apt-get install wordnet-base)" % WN)
    os.makedirs(out, exist_ok=True)
    # index.noun: lemma pos synset_cnt p_cnt [ptr...] sense_cnt tagsense_cnt offsets (most used first)
    cands = []
    for line in open(os.path.join(WN, "index.noun"), encoding="latin-1"):
        if line.startswith(" "):
            continue
        f = line.split()
        lemma, p_cnt = f[0], int(f[3])
        tagged = int(f[5 + p_cnt])
        if not re.fullmatch(r"[a-z]{3,12}", lemma):
            continue
        cands.append((-tagged, lemma, f[6 + p_cnt]))
    cands.sort()
    synsets = {}
    for line in open(os.path.join(WN, "data.noun"), encoding="latin-1"):
        if not line.startswith(" "):
            synsets[line[:8]] = line
    rows = []
    for _, lemma, off in cands:
        s = synsets.get(off)
        if not s or int(s.split()[1]) not in CONCRETE:
            continue
        d = short_gloss(s.split(" | ", 1)[1].strip())
        if not d:
            continue
        if d.split()[0] not in ("a", "an", "the", "any", "one", "someone", "something", "anything", "either"):
            d = "%s %s" % (article(d), d)
        ans = "%s %s is %s." % (article(lemma).capitalize(), lemma, d)
        if len(rows) < n_nouns or lemma == DEMO:
            rows.append((lemma, ans))
        if len(rows) >= n_nouns and any(r[0] == DEMO for r in rows):
            break
    rng = random.Random(4)
    # held out: n_held distinct words (not the demo's), one phrasing each
    held_words = set(rng.sample([r[0] for r in rows if r[0] != DEMO], n_held))
    train, held = [], []
    for lemma, ans in rows:
        hk = rng.randrange(len(TEMPLATES)) if lemma in held_words else -1
        for k, t in enumerate(TEMPLATES):
            q = t.format(a=article(lemma), w=lemma, W=lemma.capitalize())
            e = {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": ans}]}
            (held if k == hk else train).append(e)
    rng.shuffle(train)
    with open(os.path.join(out, "train.jsonl"), "w") as f, open(os.path.join(out, "corpus.txt"), "w") as c:
        for e in train:
            f.write(json.dumps(e) + "\n")
            c.write(e["messages"][0]["content"] + "\n" + e["messages"][1]["content"] + "\n")
    with open(os.path.join(out, "eval.jsonl"), "w") as f, open(os.path.join(out, "heldout.txt"), "w") as h:
        for e in held:
            f.write(json.dumps(e) + "\n")
            h.write(e["messages"][0]["content"] + "\n")
    print("%d nouns, %d training pairs, %d held-out (noun, phrasing) pairs" % (len(rows), len(train), len(held)))


if __name__ == "__main__":
    main()
