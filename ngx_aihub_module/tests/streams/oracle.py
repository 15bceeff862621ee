#!/usr/bin/env python3
#
# Writes the SSE fixtures (X.sse) and, with an oracle independent of the C
# code (Python's json module), what aihub_sse must make of them: X.stripped
# (the stream with usage chunks removed) and X.expect (usage, flags, the
# delivered character count).  Run it from anywhere after editing a stream.
import json, re, os
D = os.path.dirname(os.path.abspath(__file__))

def ev(obj_text, nl='\n', prefix='data: '):
    return prefix + obj_text + nl + nl

S = {}

# 1. OpenAI with include_usage: "usage":null in every chunk, final usage chunk with choices []
base = '"id":"chatcmpl-AbC1xyz","object":"chat.completion.chunk","created":1732540000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1"'
def oa(delta, finish='null'):
    return '{' + base + ',"choices":[{"index":0,"delta":' + delta + ',"logprobs":null,"finish_reason":' + finish + '}],"usage":null}'
s = ''
s += ev(oa('{"role":"assistant","content":"","refusal":null}'))
s += ev(oa('{"content":"Hello"}'))
s += ev(oa('{"content":" \\"world\\" \u2014 na\u00efve caf\u00e9"}'))
s += ev(oa('{"content":"\\u00e9\\ud83d\\ude00 \\\\ end\\n"}'))
s += ev(oa('{"content":"\U0001F600 {\\"usage\\":{\\"prompt_tokens\\":999}}"}'))
s += ev(oa('{}', '"stop"'))
s += ev('{' + base + ',"choices":[],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}')
s += ev('[DONE]')
S['openai'] = s

# 2. OpenRouter: processing comments, usage chunk with cost and details
rb = '"id":"gen-1732540001-Q2x9","provider":"Google","model":"google/gemini-2.0-flash-001","object":"chat.completion.chunk","created":1732540001'
def orc(content, finish='null', nf='null'):
    return '{' + rb + ',"choices":[{"index":0,"delta":{"role":"assistant","content":' + content + '},"finish_reason":' + finish + ',"native_finish_reason":' + nf + ',"logprobs":null}]}'
s = ': OPENROUTER PROCESSING\n\n: OPENROUTER PROCESSING\n\n'
s += ev('{' + rb + ',"choices":[{"index":0,"delta":{"role":"assistant","content":"","reasoning":"Let me think \\u2026"},"finish_reason":null,"native_finish_reason":null,"logprobs":null}]}')
s += ev(orc('"The"'))
s += ': OPENROUTER PROCESSING\n\n'
s += ev(orc('" quick brown fox"'))
s += ev(orc('" jumps.\\n\\nDone: 100%"'))
s += ev(orc('""', '"stop"', '"STOP"'))
s += ev('{' + rb + ',"choices":[],"usage":{"prompt_tokens":14,"completion_tokens":27,"total_tokens":41,"cost":0.0000095,"is_byok":false,"prompt_tokens_details":{"cached_tokens":0},"cost_details":{"upstream_inference_cost":null},"completion_tokens_details":{"reasoning_tokens":0}}}')
s += ev('[DONE]')
S['openrouter'] = s

# 2b. DeepSeek reasoner: reasoning_content then content, usage chunk
db = '"id":"0f6c","object":"chat.completion.chunk","created":1732540003,"model":"deepseek-reasoner","system_fingerprint":"fp_7e73fd9a08"'
s = ''
s += ev('{' + db + ',"choices":[{"index":0,"delta":{"role":"assistant","content":null,"reasoning_content":""},"logprobs":null,"finish_reason":null}]}')
s += ev('{' + db + ',"choices":[{"index":0,"delta":{"content":null,"reasoning_content":"User wants 2+2."},"logprobs":null,"finish_reason":null}]}')
s += ev('{' + db + ',"choices":[{"index":0,"delta":{"content":"4","reasoning_content":null},"logprobs":null,"finish_reason":"stop"}]}')
s += ev('{' + db + ',"choices":[],"usage":{"prompt_tokens":11,"completion_tokens":18,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":15},"prompt_cache_hit_tokens":0,"prompt_cache_miss_tokens":11}}')
s += ev('[DONE]')
S['deepseek'] = s

# 3. Gemini OpenAI-compat: usage on the last content chunk, total > prompt + completion
gb = '"created":1732540002,"id":"Zm9vYmFy","model":"gemini-2.5-flash","object":"chat.completion.chunk"'
s = ''
s += ev('{"choices":[{"delta":{"content":"Sure","role":"assistant"},"index":0}],' + gb + '}')
s += ev('{"choices":[{"delta":{"content":", here it is: 2^10 = 1024.","role":"assistant"},"finish_reason":"stop","index":0}],' + gb + ',"usage":{"completion_tokens":8,"prompt_tokens":12,"total_tokens":95}}')
s += ev('[DONE]')
S['gemini'] = s

# 4. data: without the space
s = ''
s += ev('{"id":"x1","choices":[{"index":0,"delta":{"role":"assistant","content":"no"}}]}', prefix='data:')
s += ev('{"id":"x1","choices":[{"index":0,"delta":{"content":" space"},"finish_reason":"stop"}]}', prefix='data:')
s += ev('{"id":"x1","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}', prefix='data:')
s += ev('[DONE]', prefix='data:')
S['nospace'] = s

# 5. choices: null, numbers with exponents and whitespace
s = ''
s += ev('{"id":"n1","choices":[{"index":0,"delta":{"content":"abc"}}],"usage":null}')
s += ev('{"id":"n1","choices":[{"index":0,"delta":{"content":null},"finish_reason":"length"}],"usage":null}')
s += ev('{ "id" : "n1" , "choices" : null ,\t"usage" : { "prompt_tokens" : 1.2e1 , "completion_tokens":3E0,\t "total_tokens": 150e-1 , "x" : [1,2,{"y":-1e400}] } }')
s += ev('[DONE]')
S['choices_null'] = s

# 6. CRLF everywhere, with event/id/retry lines
s = ''
s += 'retry: 3000\r\n\r\n'
s += 'event: message\r\nid: 1\r\ndata: {"id":"c1","choices":[{"index":0,"delta":{"content":"cr"}}]}\r\n\r\n'
s += 'event: message\r\nid: 2\r\ndata: {"id":"c1","choices":[{"index":0,"delta":{"content":"lf"},"finish_reason":"stop"}]}\r\n\r\n'
s += ': keep-alive\r\n\r\n'
s += 'event: message\r\nid: 3\r\ndata: {"id":"c1","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9}}\r\n\r\n'
s += 'data: [DONE]\r\n\r\n'
S['crlf'] = s

# 7. lone CR line endings
s = ''
s += 'data: {"choices":[{"delta":{"content":"mac"}}]}\r\r'
s += 'data: {"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":1,"total_tokens":5}}\r\r'
s += 'data: [DONE]\r\r'
S['cr'] = s

# 8. an error object mid-stream (OpenRouter style)
s = ''
s += ev(orc('"Partial"'))
s += ev(orc('" answer"'))
s += ev('{' + rb + ',"error":{"code":"server_error","message":"Provider disconnected \\"unexpectedly\\"\\n(upstream)"},"choices":[{"index":0,"delta":{"content":""},"finish_reason":"error"}]}')
s += ev('[DONE]')
S['error_mid'] = s

# 9. an error alone, top-level string, no choices: never stripped
s = ''
s += ev('{"error":"rate limited by upstream","usage":{"prompt_tokens":1,"completion_tokens":0,"total_tokens":1}}')
S['error_only'] = s

# 10. no usage at all
s = ''
s += ev(oa('{"role":"assistant","content":"Just"}'))
s += ev(oa('{"content":" content."}'))
s += ev(oa('{}', '"stop"'))
s += ev('[DONE]')
S['no_usage'] = s

# 11. cut stream: ends inside a JSON string, no [DONE]
s = ''
s += ev(oa('{"role":"assistant","content":"Cut"}'))
s += ev(oa('{"content":" here"}'))
s += 'data: {"id":"chatcmpl-AbC1xyz","choices":[{"index":0,"delta":{"content":"partial tex'
S['cut'] = s

# 11b. the Responses API: typed events, text deltas, usage in
#      response.completed (input/output tokens), no [DONE]
rr = '"id":"resp_1","object":"response","created_at":1732540000,"model":"gpt-4.1-mini"'
def rev(t, body):
    return 'event: ' + t + '\ndata: {"type":"' + t + '",' + body + '}\n\n'
s = ''
s += rev('response.created', '"sequence_number":0,"response":{' + rr + ',"status":"in_progress","error":null,"output":[],"usage":null}')
s += rev('response.output_text.delta', '"sequence_number":1,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"Hel"')
s += rev('response.output_text.delta', '"sequence_number":2,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"lo \\u00e9 \\"q\\""')
s += rev('response.output_text.done', '"sequence_number":3,"item_id":"msg_1","output_index":0,"content_index":0,"text":"Hello \\u00e9 \\"q\\""')
s += rev('response.completed', '"sequence_number":4,"response":{' + rr + ',"status":"completed","error":null,"output":[{"type":"message","content":[{"type":"output_text","text":"Hello"}]}],"usage":{"input_tokens":12,"input_tokens_details":{"cached_tokens":8},"output_tokens":40,"output_tokens_details":{"reasoning_tokens":32},"total_tokens":52}}')
S['responses'] = s

# 11c. the Responses API: response.incomplete (max_output_tokens)
s = ''
s += rev('response.output_text.delta', '"sequence_number":1,"delta":"tok tok"')
s += rev('response.incomplete', '"sequence_number":2,"response":{' + rr + ',"status":"incomplete","incomplete_details":{"reason":"max_output_tokens"},"error":null,"usage":{"input_tokens":5,"output_tokens":3,"total_tokens":8}}')
S['responses_incomplete'] = s

# 11d. the Responses API: an error event after some text, then
#      response.failed with its error and usage
s = ''
s += rev('response.output_text.delta', '"sequence_number":1,"delta":"partial"')
s += rev('error', '"sequence_number":2,"code":"server_error","message":"The server had an error","param":null')
s += rev('response.failed', '"sequence_number":3,"response":{' + rr + ',"status":"failed","error":{"code":"server_error","message":"The server had an error"},"usage":{"input_tokens":5,"output_tokens":2,"total_tokens":7}}')
S['responses_failed'] = s

# 12. tricky: event/id fields, "usage" in strings and inside choices,
#     usage null with empty choices, multi-line data, two usage chunks (last wins)
s = ''
s += 'event: completion\nid: 7\nretry: 1000\ndata: {"choices":[{"delta":{"content":"\\"usage\\":{\\"prompt_tokens\\":999,\\"total_tokens\\":999}"},"usage":{"prompt_tokens":1000,"completion_tokens":1000,"total_tokens":2000}}]}\n\n'
s += ': comment: data: {"usage":{"prompt_tokens":5}}\n\n'
s += 'data:  {"choices":[],"usage":null}\n\n'
s += 'data: {"choices":[],\ndata: "usage":{"prompt_tokens":5,"completion_tokens":6,"total_tokens":11}}\n\n'
s += 'data: {"choices":[{"delta":{"tool_calls":[{"function":{"arguments":"{\\"a\\":[[[{}]]]}"}}],"content":"x"}}],"nested":{"usage":{"prompt_tokens":1}}}\n\n'
s += 'id: 8\ndata: {"usage":{"prompt_tokens":7,"completion_tokens":8,"total_tokens":20}}\n\n'
s += '\n\n'
s += 'data: [DONE]  \n\n'
S['tricky'] = s

# 12b. tool calls: OpenAI streams a call's name, then its arguments in
#      pieces, a second call; a refusal; the legacy function_call; all of
#      it is what the model wrote, counted as delivered
s = ''
s += ev(oa('{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_Ab1","type":"function","function":{"name":"get_weather","arguments":""}}],"refusal":null}'))
s += ev(oa('{"tool_calls":[{"index":0,"function":{"arguments":"{\\"loc"}}]}'))
s += ev(oa('{"tool_calls":[{"index":0,"function":{"arguments":"ation\\":\\"Paris \u00e9\\"}"}}]}'))
s += ev(oa('{"tool_calls":[{"index":1,"id":"call_Cd2","type":"function","function":{"name":"get_time","arguments":"{}"}}]}'))
s += ev(oa('{}', '"tool_calls"'))
s += ev(oa('{"refusal":"I can\u2019t help with that."}'))
s += ev(oa('{"function_call":{"name":"legacy","arguments":"{\\"x\\":1}"}}'))
s += ev('{' + base + ',"choices":[],"usage":{"prompt_tokens":30,"completion_tokens":22,"total_tokens":52}}')
s += ev('[DONE]')
S['tools'] = s

# 13. bad numbers: negative, absurd, fractional
s = ''
s += ev('{"choices":[{"delta":{"content":"0123456789"}}]}')
s += ev('{"choices":[],"usage":{"prompt_tokens":-5,"completion_tokens":2000000000,"total_tokens":12.5}}')
s += ev('[DONE]')
S['bad_numbers'] = s

# 14. a byte order mark at the start (the SSE spec ignores one), and a
#     first event that holds the usage: read as any other
s = '\ufeff'
s += ev('{"choices":[{"delta":{"content":"One chunk","role":"assistant"},"finish_reason":"stop","index":0}],' + gb + ',"usage":{"completion_tokens":2,"prompt_tokens":5,"total_tokens":7}}')
s += ev('[DONE]')
S['bom'] = s

# ---- independent oracle ----
def lines(b):
    out = []
    for m in re.finditer(r'([^\r\n]*)(\r\n|\n|\r|$)', b):
        if m.group(0) == '':
            continue
        out.append((m.group(1), m.group(2)))
    return out

def events(b):
    evs, cur = [], []
    for text, end in lines(b):
        if text == '' and end != '':
            if cur:
                cur.append((text, end)); evs.append((cur, True)); cur = []
            else:
                evs.append(([(text, end)], None))   # blank line outside events
        else:
            cur.append((text, end))
    if cur:
        evs.append((cur, False))
    return evs

def num(v):
    bad = False
    if isinstance(v, float):
        if v != int(v): bad = True
        v = int(v) if abs(v) < 1e30 else (10**30 if v > 0 else -1)
    if v < 0: return 0, True
    if v > 10**9: return 10**9, True
    return v, bad

for name, b in S.items():
    out = ''
    body = b
    if body.startswith('\ufeff'):
        # not the first field's: it passes
        out = '\ufeff'
        body = body[1:]
    exp = dict(found=0, prompt=0, completion=0, total=0, has=0, bad=0, done=0, error=0, msg='', chars=0, stripped=0)
    for evl, complete in events(body):
        raw = ''.join(t + e for t, e in evl)
        if complete is None:
            out += raw; continue
        datas = []
        for t, e in evl:
            if t.startswith('data:'):
                p = t[5:]
                if p.startswith(' '): p = p[1:]
                datas.append(p)
                if p.rstrip(' \t') == '[DONE]': exp['done'] = 1
        d = None
        if datas:
            try: d = json.loads('\n'.join(datas))
            except Exception: d = None
        strip = False
        if isinstance(d, dict):
            ch = d.get('choices')
            if isinstance(ch, list):
                for c in ch:
                    if isinstance(c, dict):
                        for k in ('delta', 'message'):
                            dd = c.get(k)
                            if isinstance(dd, dict):
                                for f in ('content', 'reasoning', 'reasoning_content', 'refusal'):
                                    if isinstance(dd.get(f), str):
                                        exp['chars'] += len(dd[f])
                                # what the model wrote as tool calls: the
                                # function's name and arguments
                                fns = [tc.get('function') for tc in dd.get('tool_calls') or []
                                       if isinstance(dd.get('tool_calls'), list) and isinstance(tc, dict)]
                                fns.append(dd.get('function_call'))
                                for fn in fns:
                                    if isinstance(fn, dict):
                                        for f in ('name', 'arguments'):
                                            if isinstance(fn.get(f), str):
                                                exp['chars'] += len(fn[f])
            # the Responses API: a top-level text delta, "response"
            # holding usage and error, an event of type "error"
            if isinstance(d.get('delta'), str):
                exp['chars'] += len(d['delta'])
            rs = d.get('response') if isinstance(d.get('response'), dict) else {}
            if d.get('type') == 'error':
                exp['error'] = 1
            for er in (d.get('error'), rs.get('error')):
                if er not in (None, False):
                    exp['error'] = 1
                    exp['msg'] = er if isinstance(er, str) else (er.get('message', '') if isinstance(er, dict) else '')
            u = d.get('usage')
            top = isinstance(u, dict)
            if not top:
                u = rs.get('usage')
            if isinstance(u, dict):
                exp['found'] = 1; exp['has'] = 0; exp['bad'] = 0
                for i, ks in enumerate((('prompt_tokens', 'input_tokens'), ('completion_tokens', 'output_tokens'), ('total_tokens',))):
                    kk = ('prompt', 'completion', 'total')[i]
                    exp[kk] = 0
                    for k in ks:
                        if isinstance(u.get(k), (int, float)) and not isinstance(u.get(k), bool):
                            v, bad = num(u[k]); exp[kk] = v; exp['has'] |= 1 << i
                            if bad: exp['bad'] |= 1 << i
                if top and (ch is None or ch == []) and d.get('error') in (None, False):
                    strip = True
        if strip:
            exp['stripped'] += 1
        else:
            out += raw
    if name == 'cut':
        exp['chars'] += len('partial tex')
    open(os.path.join(D, name + '.sse'), 'wb').write(b.encode())
    open(os.path.join(D, name + '.stripped'), 'wb').write(out.encode())
    with open(os.path.join(D, name + '.expect'), 'w') as f:
        for k in ('found', 'prompt', 'completion', 'total', 'has', 'bad', 'done', 'error', 'chars', 'stripped'):
            f.write('%s=%d\n' % (k, exp[k]))
        f.write('msg=%s\n' % exp['msg'].replace('\n', ' '))
    print(name, len(b), exp)
