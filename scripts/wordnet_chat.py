#!/usr/bin/python3
"""Chat training data for the demo model from Debian's wordnet-base.

WordNet 3.0 (Princeton; licence in /usr/share/doc/wordnet-base/copyright:
use, copy, modify and distribute for any purpose with the notice kept) gives
each noun sense a gloss. For the most used single-word nouns (sense-tagged
counts in index.noun), the first sense becomes question/answer pairs in the
chat format:

  {"messages": [{"role": "user", "content": "What is a violin?"},
                {"role": "assistant", "content": "A violin is a bowed stringed instrument that ..."}]}

usage: wordnet_chat.py OUT_DIR [N_NOUNS] [N_HELD_OUT]
writes OUT_DIR/train.jsonl, eval.jsonl (held-out nouns, never trained on),
corpus.txt (the text the tokenizer's merges are learned from: the training
answers and questions), heldout.txt (the held-out nouns, one a line).
Deterministic: same package version, same files.
"""
import json
import os
import random
import re
import sys

WN = "/usr/share/wordnet"


def article(word):
    return "an" if word[0] in "aeiou" else "a"


def main():
    out = sys.argv[1]
    n_nouns = int(sys.argv[2]) if len(sys.argv) > 2 else 6000
    n_held = int(sys.argv[3]) if len(sys.argv) > 3 else 200
    if not os.path.isfile(os.path.join(WN, "index.noun")):
        sys.exit("wordnet_chat.py: %s/index.noun not found (apt-get install wordnet-base)" % WN)
    os.makedirs(out, exist_ok=True)
    # index.noun: lemma pos synset_cnt p_cnt [ptr...] sense_cnt tagsense_cnt offsets (most used first)
    cands = []
    for line in open(os.path.join(WN, "index.noun"), encoding="latin-1"):
        if line.startswith(" "):
            continue
        f = line.split()
        lemma, n_syn, p_cnt = f[0], int(f[2]), int(f[3])
        tagged = int(f[5 + p_cnt])
        offs = f[6 + p_cnt:]
        if not re.fullmatch(r"[a-z]{3,14}", lemma) or len(offs) != n_syn:
            continue
        cands.append((-tagged, lemma, offs[0]))
    cands.sort()
    cands = cands[:n_nouns]
    offsets = {c[2] for c in cands}
    gloss = {}
    for line in open(os.path.join(WN, "data.noun"), encoding="latin-1"):
        if line[:8] in offsets:
            g = line.split(" | ", 1)[1].strip()
            d = re.split(r'; "|;|"', g)[0].strip().rstrip(".")
            gloss[line[:8]] = d
    rows = []
    for _, lemma, off in cands:
        d = gloss.get(off)
        if not d or len(d) < 8 or not d.isascii():
            continue
        first = d.split()[0]
        if first not in ("a", "an", "the", "any", "one", "someone", "something", "anything", "either"):
            d = "%s %s" % (article(d), d)
        ans = "%s %s is %s." % (article(lemma).capitalize(), lemma, d)
        rows.append((lemma, ans))
    rng = random.Random(4)
    rng.shuffle(rows)
    held, train = rows[:n_held], rows[n_held:]
    qforms = ["What is %s %s?", "What is %s %s?", "Tell me what %s %s is.", "Define %s %s."]

    def ex(lemma, ans, k):
        q = qforms[k % len(qforms)] % (article(lemma), lemma)
        return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": ans}]}

    with open(os.path.join(out, "train.jsonl"), "w") as f, open(os.path.join(out, "corpus.txt"), "w") as c:
        for i, (lemma, ans) in enumerate(train):
            e = ex(lemma, ans, i)
            f.write(json.dumps(e) + "\n")
            c.write(e["messages"][0]["content"] + "\n" + ans + "\n")
    with open(os.path.join(out, "eval.jsonl"), "w") as f, open(os.path.join(out, "heldout.txt"), "w") as h:
        for i, (lemma, ans) in enumerate(held):
            f.write(json.dumps(ex(lemma, ans, 0)) + "\n")
            h.write(lemma + "\n")
    print("%d training pairs, %d held out" % (len(train), len(held)))


if __name__ == "__main__":
    main()
