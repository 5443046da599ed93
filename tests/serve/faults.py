# Faults and bad input against a running gemma4c serve (tests/sh/serve_faults.sh):
# a wrong type for every field the OpenAI and Ollama routes read (400 naming
# the field), invalid UTF-8, n too large, headers one byte a second (cut off
# after --timeout), and the server still serving after each. Prints ok/FAIL
# lines and "RESULT passed failed".
#   python3 faults.py BASE_URL TIMEOUT_S
import json, socket, sys, time, urllib.request

B, TIMEOUT = sys.argv[1], int(sys.argv[2])
host, port = B.split('//')[1].split(':')
passed = failed = 0


def check(name, cond, info=''):
    global passed, failed
    if cond:
        passed += 1
        print('ok   ' + name)
    else:
        failed += 1
        print('FAIL %s: %s' % (name, str(info)[:300]))


def post(path, body):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(B + path, data=data, headers={'Content-Type': 'application/json'})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def serving():
    st, b = post('/v1/chat/completions', {'messages': [{'role': 'user', 'content': 'hi'}], 'max_tokens': 2})
    return st == 200 and json.loads(b)['usage']['completion_tokens'] >= 1


MSG = [{'role': 'user', 'content': 'hi'}]
# OpenAI: every field, a wrong type -> 400 with "param" the field
OPENAI = {'model': 5, 'messages': 'x', 'max_tokens': 'a', 'max_completion_tokens': 1.5, 'temperature': 'hot',
          'top_p': [], 'top_k': 'k', 'min_p': {}, 'presence_penalty': 'p', 'frequency_penalty': 'f',
          'repeat_penalty': 'r', 'repeat_last_n': 'n', 'seed': 's', 'stop': 5, 'n': '2', 'stream': 1,
          'stream_options': 3, 'logit_bias': [1], 'response_format': 'json', 'tools': 't', 'tool_choice': 5,
          'reasoning_effort': 3, 'chat_template_kwargs': 'x'}
bad = []
for k, v in OPENAI.items():
    body = {'messages': MSG, 'max_tokens': 2}
    body[k] = v
    st, b = post('/v1/chat/completions', body)
    try:
        e = json.loads(b)['error']
    except Exception:
        e = {}
    if st != 400 or e.get('param') != k:
        bad.append((k, st, b[:120]))
check('OpenAI: a wrong type in each of %d fields -> 400 with param naming it' % len(OPENAI), not bad, bad)
st, b = post('/v1/completions', {'prompt': 'x', 'max_tokens': 'many'})
check('/v1/completions: a wrong type -> 400 naming it', st == 400 and json.loads(b)['error']['param'] == 'max_tokens', b)
st, b = post('/v1/chat/completions', {'messages': MSG, 'n': 99})
check('n too large (n = 99; at most --parallel, 8) -> 400 naming "n"', st == 400 and json.loads(b)['error']['param'] == 'n', b)
st, b = post('/v1/chat/completions', {'messages': MSG, 'logit_bias': {'999999': 1}})
check('logit_bias: a token outside the vocabulary -> 400', st == 400 and json.loads(b)['error']['param'] == 'logit_bias', b)

# Ollama: every field -> 400 {"error"} naming it
OLLAMA_CHAT = {'model': 5, 'messages': 'x', 'stream': 'yes', 'think': 5, 'format': 'xml', 'tools': {},
               'options': [], 'keep_alive': [], 'logit_bias': 3, 'tool_choice': 5}
OPTIONS = {'num_predict': 'a', 'num_ctx': -1, 'temperature': 't', 'top_k': 'k', 'top_p': 'p', 'seed': 's',
           'stop': 5, 'min_p': 'm', 'repeat_penalty': 'r', 'repeat_last_n': 'n', 'presence_penalty': 'p',
           'frequency_penalty': 'f'}
GENERATE = {'prompt': 5, 'system': 5, 'raw': 'y', 'suffix': 'x', 'template': 't', 'images': 'a', 'context': 'c'}
MESSAGES = [({'role': 5}, 'messages[0].role'), ({'role': 'user', 'content': 5}, 'messages[0].content'),
            ({'role': 'user', 'thinking': 5}, 'messages[0].thinking'),
            ({'role': 'user', 'tool_name': 5}, 'messages[0].tool_name'),
            ({'role': 'user', 'images': 'x'}, 'messages[0].images'),
            ({'role': 'user', 'images': ['x']}, 'messages[0].images[0]'),
            ({'role': 'assistant', 'tool_calls': 'x'}, 'messages[0].tool_calls'),
            ({'role': 'assistant', 'tool_calls': [{'function': {'name': 5}}]}, 'messages[0].tool_calls[0]'),
            (5, 'messages[0]')]
cases = []
for k, v in OLLAMA_CHAT.items():
    b = {'messages': MSG, 'stream': False, 'options': {'num_predict': 2}}
    b[k] = v
    cases.append(('/api/chat', b, k))
for k, v in OPTIONS.items():
    b = {'messages': MSG, 'stream': False, 'options': {'num_predict': 2}}
    b['options'][k] = v
    cases.append(('/api/chat', b, 'options.' + k))
for k, v in GENERATE.items():
    b = {'prompt': 'hi', 'stream': False, 'options': {'num_predict': 2}}
    b[k] = v
    cases.append(('/api/generate', b, k))
for m, name in MESSAGES:
    cases.append(('/api/chat', {'messages': [m], 'stream': False}, name))
bad = []
for path, body, name in cases:
    st, b = post(path, body)
    try:
        e = json.loads(b)
    except Exception:
        e = {}
    if st != 400 or set(e) != {'error'} or '"%s"' % name not in e['error']:
        bad.append((path, name, st, b[:120]))
check('Ollama: a wrong type in each of %d fields -> 400 {"error"} naming it' % len(cases), not bad, bad)

st, b = post('/v1/chat/completions', b'{"messages":[{"role":"user","content":"\xff\xfe bad"}]}')
check('invalid UTF-8 (OpenAI) -> 400 naming the body', st == 400 and json.loads(b)['error']['param'] == 'body', b)
st, b = post('/api/chat', b'{"messages":[{"role":"user","content":"\xc3\x28"}]}')
check('invalid UTF-8 (Ollama) -> 400 {"error"}', st == 400 and 'not valid JSON' in json.loads(b)['error'], b)
check('... the server still serves', serving())

# slowloris: headers one byte a second; the server cuts the connection once
# --timeout seconds pass without a whole request (while other clients are served)
s = socket.create_connection((host, int(port)))
head = b'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n'
t0, closed, sent = time.time(), False, 0
s.settimeout(1.0)
while time.time() - t0 < TIMEOUT + 6 and sent < len(head):
    try:
        s.send(head[sent:sent + 1])
        sent += 1
        if s.recv(1024) == b'':
            closed = True
            break
    except socket.timeout:
        continue
    except OSError:
        closed = True
        break
el = time.time() - t0
check('headers at one byte a second: the connection is cut after --timeout %d s (%.1f s, %d bytes sent)' % (TIMEOUT, el, sent),
      closed and TIMEOUT - 0.5 <= el <= TIMEOUT + 3, (closed, el, sent))
s.close()
check('... the server still serves', serving())
print('RESULT %d %d' % (passed, failed))
