#!/usr/bin/perl

# What a provider does, and bills the operator for, beyond the answer the
# gateway meters a call by, is refused before it reaches the provider:
#
# - "background": true on the Responses API: OpenAI answers at once with
#   "status": "queued" and no usage, runs the model afterwards and keeps
#   the result for GET /v1/responses/{id}, which the gateway does not
#   serve; the call would be billed the prompt and no output;
# - a tool the provider runs itself ("web_search", "file_search",
#   "code_interpreter", "image_generation", ...): priced per call or per
#   container, beyond the tokens in "usage".  "function" and "custom"
#   tools are the client's own (the model only writes their calls) and
#   pass;
# - "web_search_options" on chat completions (OpenAI's search models bill
#   each search), xAI's "search_parameters" (Live Search, billed per
#   source), and on chat too any tool but a function or custom one (xAI's
#   live_search, Groq's browser_search).
#
# And "store": with aihub_stored_objects off the provider is told to keep
# nothing ("store": false), however the request spelled or sent it.
#
# Each is tried the ways a body can slip past a check: streamed, on the
# developer path, on a provider the gateway translates for, with the name
# escaped, gzip-compressed, next to an allowed tool.  A refused call
# reaches no provider, makes no usage event and counts no call.

use strict;
use warnings;

use Test::More;
use JSON::PP;

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);
use AihubStream qw(:all);

plan(skip_all => 'module not built') unless Aihub::have_module();

my $t = Aihub->new(redis => 1, mock => 1);

my %models = (
    %MODELS,
    'test-resp' => { provider => 'mock', upstream => 'mock-basic',
                     tier => 'basic', api => 'responses',
                     price_in => 1000000, price_out => 2000000 },
);
seed_models($t, %models);

my $ACCOUNT = 8501;
my $key = seed_full_key($t, account => $ACCOUNT, models => '*');

my $conf = <<'END';
    aihub_redis %%REDIS%%;
    aihub_redis_timeout 300ms;
    aihub_cache_zone aihub:8m;
    aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;

    server {
        listen 127.0.0.1:%%PORT%%;

        %%STORED%%

        location /v1/ {
            aihub on;
            aihub_failure_mode closed;
            proxy_pass $aihub_proxy_url;
            proxy_set_header Host $aihub_provider_host;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }

        location /api/v1/developer/ {
            aihub on;
            aihub_failure_mode closed;
            proxy_pass $aihub_proxy_url;
            proxy_set_header Host $aihub_provider_host;
        }
    }
END
(my $closed = $conf) =~ s/%%STORED%%//;
(my $open = $conf) =~ s/%%STORED%%/aihub_stored_objects on;/;
$t->nginx($closed)->start_nginx;
$t->nginx($open, name => 'open')->start_nginx('open');
ok(wait_ready($t, $key), 'gateway ready');
ok(wait_ready($t, $key, name => 'open'), 'gateway with aihub_stored_objects '
                                         . 'on ready');

my $JSON = JSON::PP->new->utf8->canonical;
my $FN = { type => 'function', name => 'get_weather',
           parameters => { type => 'object', properties => {} } };

# one call: its answer, and how many requests the provider got
sub call {
    my ($path, $body, %o) = @_;

    my $n0 = mock_count($t);
    my $r = $t->http(POST => $path, key => $key,
                     headers => $o{headers} // {},
                     body => $body, name => $o{name});
    $r->{sent} = mock_count($t) - $n0;
    return $r;
}

sub resp_body { +{ model => 'test-resp', input => 'hello there', @_ } }

sub refused {
    my ($r, $what, $name) = @_;

    is_error($r, 400, 'invalid_request_error', $what);
    like($r->{json}{error}{message} // '', qr/"\Q$name\E"/,
         "$what: the message names \"$name\"");
    is($r->{sent}, 0, "$what: nothing reached the provider");
}

my $used0 = period_field($t, $ACCOUNT, 'calls') // 0;
my $events0 = usage_event_count($t);
my $answered = 0;


# --- what passes: the client's own tools, background off ---------------------

{
    my $r = call('/v1/responses', resp_body(tools => [ $FN ]));
    is($r->{status}, 200, 'a function tool: 200') or diag($r->{content});
    is($r->{sent}, 1, 'a function tool: forwarded');
    $answered++ if $r->{status} == 200;

    $r = call('/v1/responses', resp_body(
        tools => [ { type => 'custom', name => 'run_sql',
                     description => 'runs a query' } ]));
    is($r->{status}, 200, 'a custom tool: 200') or diag($r->{content});
    $answered++ if $r->{status} == 200;

    # Codex CLI's: the client runs the command, applies the patch
    $r = call('/v1/responses', resp_body(
        tools => [ { type => 'local_shell' }, { type => 'apply_patch' } ]));
    is($r->{status}, 200, 'local_shell and apply_patch tools: 200')
        or diag($r->{content});
    $answered++ if $r->{status} == 200;

    for my $v ([ 'false', JSON::PP::false ], [ 'null', undef ]) {
        $r = call('/v1/responses', resp_body(background => $v->[1]));
        is($r->{status}, 200, "background $v->[0]: 200")
            or diag($r->{content});
        is($r->{json}{status}, 'completed',
           "background $v->[0]: the provider answered the response");
        $answered++ if $r->{status} == 200;
    }

    $r = call('/v1/responses', { model => 'test-basic', input => 'hi',
                                 background => JSON::PP::false });
    is($r->{status}, 200, 'background false, translated for a chat-only '
                          . 'provider: 200')
        or diag("$r->{status} $r->{content}");
    $answered++ if $r->{status} == 200;

    # the name written with an escape is still "function" to the provider
    $r = call('/v1/responses',
              '{"model":"test-resp","input":"hi","tools":[{"type":'
              . '"functio\u006e","name":"f","parameters":{}}]}',
              headers => { 'content-type' => 'application/json' });
    is($r->{status}, 200, 'a function tool, its type escaped: 200')
        or diag($r->{content});
    $answered++ if $r->{status} == 200;
}


# --- background --------------------------------------------------------------

{
    # the provider's side of it, asked directly: queued, no usage to bill
    my $ua = HTTP::Tiny->new(timeout => 10);
    my $d = $ua->post($t->mock_url . '/responses', {
        headers => { authorization => 'Bearer ' . $t->mock_key,
                     'content-type' => 'application/json' },
        content => $JSON->encode({ model => 'mock-basic', input => 'hi',
                                   background => JSON::PP::true }) });
    my $q = eval { $JSON->decode($d->{content}) } // {};
    is($q->{status}, 'queued', 'the provider answers a background request '
                               . '"queued"');
    ok(!defined $q->{usage}, '... with no usage: nothing a gateway could '
                             . 'bill the output on');

    refused(call('/v1/responses', resp_body(background => JSON::PP::true)),
            'background', 'background');
    refused(call('/v1/responses', resp_body(background => JSON::PP::true,
                                            stream => JSON::PP::true)),
            'background, streamed', 'background');
    refused(call('/api/v1/developer/responses',
                 resp_body(background => JSON::PP::true)),
            'background, developer path', 'background');
    refused(call('/v1/responses', resp_body(background => 'true')),
            'background "true" (a string)', 'background');
    refused(call('/v1/responses', { model => 'test-basic', input => 'hi',
                                    background => JSON::PP::true }),
            'background, translated for a chat-only provider',
            'background');
    refused(call('/v1/responses',
                 gz($JSON->encode(resp_body(background => JSON::PP::true))),
                 headers => { 'content-type' => 'application/json',
                              'content-encoding' => 'gzip' }),
            'background, gzip-compressed', 'background');
}


# --- hosted tools ------------------------------------------------------------

{
    for my $type (qw(web_search web_search_preview file_search
                     code_interpreter image_generation computer_use_preview
                     mcp shell))
    {
        refused(call('/v1/responses',
                     resp_body(tools => [ { type => $type } ])),
                "a $type tool", $type);
    }

    refused(call('/v1/responses', resp_body(
                tools => [ $FN, { type => 'web_search' } ])),
            'a web_search tool after a function tool', 'web_search');
    refused(call('/v1/responses', resp_body(
                tools => [ $FN, { type => 'file_search' } ],
                stream => JSON::PP::true)),
            'a file_search tool, streamed', 'file_search');
    refused(call('/api/v1/developer/responses', resp_body(
                tools => [ { type => 'web_search' } ])),
            'a web_search tool, developer path', 'web_search');
    refused(call('/v1/responses',
                 '{"model":"test-resp","input":"hi","tools":[{"type":'
                 . '"web\u005fsearch"}]}',
                 headers => { 'content-type' => 'application/json' }),
            'a web_search tool, its type escaped', 'web_search');
    refused(call('/v1/responses', resp_body(
                tools => [ { type => 'Function', name => 'f' } ])),
            'a tool type that is not exactly "function"', 'Function');
    refused(call('/v1/responses', resp_body(tools => [ { name => 'f' } ])),
            'a tool without a type', '?');
    refused(call('/v1/responses',
                 gz($JSON->encode(resp_body(
                     tools => [ { type => 'code_interpreter',
                                  container => { type => 'auto' } } ]))),
                 headers => { 'content-type' => 'application/json',
                              'content-encoding' => 'gzip' }),
            'a code_interpreter tool, gzip-compressed', 'code_interpreter');

    # a member twice cannot hide one type behind the other
    my $r = call('/v1/responses',
                 '{"model":"test-resp","input":"hi","tools":[{"type":'
                 . '"function","type":"web_search","name":"f"}]}',
                 headers => { 'content-type' => 'application/json' });
    is_error($r, 400, 'invalid_request_error', 'a tool\'s type twice');
    is($r->{sent}, 0, 'a tool\'s type twice: nothing reached the provider');
}


# --- chat completions' web search --------------------------------------------

{
    my $chat = { model => 'test-basic',
                 messages => [ { role => 'user', content => 'news?' } ] };

    refused(call('/v1/chat/completions',
                 { %$chat, web_search_options => {} }),
            'web_search_options', 'web_search_options');
    refused(call('/v1/chat/completions',
                 { %$chat, web_search_options => { search_context_size =>
                                                   'high' },
                   stream => JSON::PP::true }),
            'web_search_options, streamed', 'web_search_options');
    refused(call('/api/v1/developer/chat',
                 { %$chat, web_search_options => {} }),
            'web_search_options, developer path', 'web_search_options');
    refused(call('/v1/chat/completions',
                 '{"model":"test-basic","messages":[{"role":"user",'
                 . '"content":"news?"}],"web_search_options":{}}',
                 headers => { 'content-type' => 'application/json' }),
            'web_search_options in a plain body (the one-pass check)',
            'web_search_options');

    # an OpenRouter preset: stored models, providers and server tools
    refused(call('/v1/chat/completions', { %$chat, preset => 'research' }),
            'an OpenRouter preset', 'preset');

    # xAI's Live Search, as a member and as a tool; Groq's browser search
    refused(call('/v1/chat/completions',
                 { %$chat, search_parameters => { mode => 'auto' } }),
            'search_parameters', 'search_parameters');
    refused(call('/v1/chat/completions',
                 '{"model":"test-basic","messages":[{"role":"user",'
                 . '"content":"news?"}],"search_parameters":{"mode":"on"}}',
                 headers => { 'content-type' => 'application/json' }),
            'search_parameters in a plain body (the one-pass check)',
            'search_parameters');
    for my $type (qw(live_search browser_search)) {
        refused(call('/v1/chat/completions',
                     { %$chat, tools => [ { type => 'function',
                                            function => { name => 'f' } },
                                          { type => $type } ] }),
                "a chat $type tool", $type);
    }

    my $r = call('/v1/chat/completions',
                 { %$chat, tools => [ { type => 'function',
                                        function => { name => 'f',
                                                      parameters => {} } } ] });
    is($r->{status}, 200, 'a chat function tool: 200') or diag($r->{content});
    $answered++ if $r->{status} == 200;

    $r = call('/v1/chat/completions', $chat);
    is($r->{status}, 200, 'the same chat without it: 200');
    $answered++ if $r->{status} == 200;
}


# --- objects stored in the provider account --------------------------------
#
# Every developer's calls reach the provider under the operator's one
# account: a response stored there (previous_response_id), a conversation,
# a stored prompt, an uploaded file (file_id) is the account's, and naming
# it would read what another developer, or the operator, stored.  Refused
# unless the operator says otherwise (aihub_stored_objects on).

{
    my $ref = 'resp_68af4030592c81938ec0a5fbab4a3e9f05438e46b5f69a3b';
    my $file = { role => 'user', content => [
                   { type => 'input_text', text => 'summarise it' },
                   { type => 'input_file',
                     file_id => 'file-6F2ksmvXxt4VdoqmHRw6kL' } ] };
    my %stored = (
        'previous_response_id' => { previous_response_id => $ref },
        'conversation'         => { conversation => 'conv_68966790'
                                                     . '5b048191b474050162' },
        'prompt'               => { prompt => { id => 'pmpt_abc123',
                                                version => '2' } },
        'file_id'              => { input => [ $file ] },
        'item_reference'       => { input => [ { type => 'item_reference',
                                                 id => 'msg_68af40c1' } ] },
    );

    for my $name (sort keys %stored) {
        refused(call('/v1/responses', resp_body(%{ $stored{$name} })),
                "$name (Responses API)", $name);
        refused(call('/v1/responses', resp_body(%{ $stored{$name} },
                                                stream => JSON::PP::true)),
                "$name, streamed", $name);
    }

    refused(call('/api/v1/developer/responses',
                 resp_body(previous_response_id => $ref)),
            'previous_response_id, developer path', 'previous_response_id');
    refused(call('/v1/responses',
                 '{"model":"test-resp","input":"hi","previous_respons'
                 . 'e\u005fid":"' . $ref . '"}',
                 headers => { 'content-type' => 'application/json' }),
            'previous_response_id, its name escaped', 'previous_response_id');
    refused(call('/v1/responses',
                 gz($JSON->encode(resp_body(previous_response_id => $ref))),
                 headers => { 'content-type' => 'application/json',
                              'content-encoding' => 'gzip' }),
            'previous_response_id, gzip-compressed', 'previous_response_id');

    # a Gemini context cache, as the OpenAI SDKs send it (extra_body)
    refused(call('/v1/chat/completions',
                 { model => 'test-basic',
                   messages => [ { role => 'user', content => 'hi' } ],
                   extra_body => { google => {
                       cached_content => 'cachedContents/abc123' } } }),
            'a Gemini cached_content', 'cached_content');

    # Gemini's endpoint parses proto JSON, which takes a camelCase name
    # for its snake_case one: the same objects and limits under the other
    # spelling are refused as well
    refused(call('/v1/chat/completions',
                 { model => 'test-basic',
                   messages => [ { role => 'user', content => 'hi' } ],
                   google => { cachedContent => 'cachedContents/abc123' } }),
            'a Gemini cachedContent (camelCase)', 'cached_content');
    refused(call('/v1/responses', resp_body(previousResponseId => $ref)),
            'previousResponseId (camelCase)', 'previousResponseId');
    for my $camel (qw(maxTokens maxCompletionTokens streamOptions
                      serviceTier)) {
        refused(call('/v1/chat/completions',
                     { model => 'test-basic',
                       messages => [ { role => 'user', content => 'hi' } ],
                       $camel => $camel =~ /Tokens/ ? 100000
                               : $camel eq 'streamOptions'
                               ? { includeUsage => JSON::PP::false }
                               : 'flex' }),
                "$camel (camelCase of a member the check reads)", $camel);
    }
    refused(call('/v1/responses', resp_body(maxOutputTokens => 100000)),
            'maxOutputTokens (Responses API)', 'maxOutputTokens');

    my $r = call('/v1/chat/completions',
                 { model => 'test-basic',
                   messages => [ { role => 'user', content => 'hi' } ],
                   extra_body => { google => { thinking_config => {
                       thinking_budget => 0 } } } });
    is($r->{status}, 200, 'Gemini\'s extra_body without a cache: 200')
        or diag($r->{content});
    $answered++ if $r->{status} == 200;

    # chat completions' file parts, in the shape the one-pass check reads
    my $part = '{"type":"file","file":{"file_id":"file-6F2ksmvXxt4Vdoqm"}}';
    refused(call('/v1/chat/completions',
                 '{"model":"test-basic","messages":[{"role":"user",'
                 . '"content":[{"type":"text","text":"read"},' . $part
                 . ']}]}',
                 headers => { 'content-type' => 'application/json' }),
            'a chat file part with a file_id', 'file_id');

    # null names nothing; a file sent inline is the developer's own
    $r = call('/v1/responses', resp_body(previous_response_id => undef,
                                            conversation => undef));
    is($r->{status}, 200, 'previous_response_id and conversation null: 200')
        or diag($r->{content});
    $answered++ if $r->{status} == 200;

    $r = call('/v1/chat/completions',
              '{"model":"test-basic","messages":[{"role":"user","content":'
              . '[{"type":"text","text":"read"},{"type":"file","file":'
              . '{"filename":"a.txt","file_data":"data:text/plain;base64,'
              . 'aGk="}}]}]}',
              headers => { 'content-type' => 'application/json' });
    is($r->{status}, 200, 'a chat file part sent inline: 200')
        or diag($r->{content});
    $answered++ if $r->{status} == 200;

    # a function may well take a parameter called file_id
    $r = call('/v1/responses', resp_body(tools => [
        { type => 'function', name => 'get_file',
          parameters => { type => 'object', properties => {
                            file_id => { type => 'string' } } } } ]));
    is($r->{status}, 200, 'a function parameter called file_id: 200')
        or diag($r->{content});
    $answered++ if $r->{status} == 200;

    # the operator's choice: passed, and the provider answers
    for my $name (sort keys %stored) {
        $r = call('/v1/responses', resp_body(%{ $stored{$name} }),
                  name => 'open');
        is($r->{status}, 200, "$name, aihub_stored_objects on: 200")
            or diag($r->{content});
        is($r->{sent}, 1, "$name, aihub_stored_objects on: forwarded");
        $answered++ if $r->{status} == 200;
    }

    my $seen = (grep { ($_->{body} // '') =~ /"resp_/ } $t->mock_log)[-1];
    like($seen ? $seen->{body} : '', qr/"previous_response_id":\s*"\Q$ref\E"/,
         'aihub_stored_objects on: the provider got previous_response_id');
}


# --- "store": nothing kept at the provider unless the operator says so -----

# The Responses API keeps a response unless told "store": false (OpenAI:
# 30 days), and a chat completion is kept when asked ("store": true): in
# the one account every developer's calls reach, where none could name it
# again through the gateway.  With aihub_stored_objects off the provider
# gets "store": false, however the request spelled or sent it.

{
    # what the provider got last, and whether it kept a response
    my $sent = sub {
        my $e = ($t->mock_log)[-1];
        return ($JSON->decode($e->{body}), $e->{stored}, $e->{body});
    };
    my $chat = { model => 'test-basic',
                 messages => [ { role => 'user', content => 'hi' } ] };

    my %ways = (
        'no store'           => [ '/v1/responses', resp_body() ],
        'store true'         => [ '/v1/responses',
                                  resp_body(store => JSON::PP::true) ],
        'store null'         => [ '/v1/responses', resp_body(store => undef) ],
        'streamed'           => [ '/v1/responses',
                                  resp_body(stream => JSON::PP::true,
                                            store => JSON::PP::true) ],
        'the developer path' => [ '/api/v1/developer/responses',
                                  resp_body() ],
        'gzip-compressed'    => [ '/v1/responses',
                                  gz($JSON->encode(resp_body(
                                      store => JSON::PP::true))),
                                  'content-encoding' => 'gzip' ],
    );

    for my $way (sort keys %ways) {
        my ($path, $body, @h) = @{ $ways{$way} };
        my $r = call($path, $body, headers => {
                         'content-type' => 'application/json', @h });
        is($r->{status}, 200, "responses, $way: 200") or diag($r->{content});
        $answered++ if $r->{status} == 200;
        my ($got, $stored) = $sent->();
        ok(exists $got->{store} && !$got->{store},
           "responses, $way: the provider got \"store\": false");
        ok(!$stored, "responses, $way: and kept nothing");
    }

    my $r = call('/v1/responses', resp_body());
    is(ref $r->{json}{store} && !$r->{json}{store} ? 'false' : 'not false',
       'false', 'the response says "store": false to the client');
    $answered++ if $r->{status} == 200;

    # a name written with escapes: the provider reads it decoded
    $r = call('/v1/responses',
              '{"model":"test-resp","input":"hi","st\u006fre":true}',
              headers => { 'content-type' => 'application/json' });
    is($r->{status}, 200, 'responses, "store" escaped: 200');
    $answered++ if $r->{status} == 200;
    my ($got, $stored, $raw) = $sent->();
    like($raw, qr/"st\\u006fre":false/,
         'responses, "store" escaped: its value made false in place');
    unlike($raw, qr/"store"/, '... and no second "store" added');
    ok(!$stored, '... the provider kept nothing');

    # chat completions: false when asked to store, else as sent
    $r = call('/v1/chat/completions', { %$chat, store => JSON::PP::true });
    is($r->{status}, 200, 'chat, store true: 200');
    $answered++ if $r->{status} == 200;
    ($got) = $sent->();
    ok(exists $got->{store} && !$got->{store},
       'chat, store true: the provider got "store": false');
    $r = call('/v1/chat/completions', $chat);
    $answered++ if $r->{status} == 200;
    ($got) = $sent->();
    ok(!exists $got->{store}, 'chat without store: none added (its default '
                              . 'keeps nothing)');

    # the SDKs' multi-turn pattern: the last response's output passed back
    # as input.  A reasoning item without its encrypted_content names what
    # the provider kept, and it kept nothing (OpenAI: 404 "Item with id
    # 'rs_...' not found"): left out; one with its content goes on
    my @turn = (
        { role => 'user', content => 'What is 2 + 2?' },
        { type => 'reasoning', id => 'rs_0a1b2c', summary => [] },
        { type => 'reasoning', id => 'rs_3d4e5f', summary => [],
          encrypted_content => 'gAAAAABo-encrypted' },
        { type => 'message', id => 'msg_0a1b2c', role => 'assistant',
          status => 'completed',
          content => [ { type => 'output_text', text => '4',
                         annotations => [] } ] },
        { role => 'user', content => 'And times 3?' },
    );
    $r = call('/v1/responses', resp_body(input => \@turn));
    is($r->{status}, 200, 'responses, the last output passed back: 200')
        or diag($r->{content});
    $answered++ if $r->{status} == 200;
    ($got) = $sent->();
    is_deeply([ map { $_->{id} // $_->{role} } @{ $got->{input} // [] } ],
              [ 'user', 'rs_3d4e5f', 'msg_0a1b2c', 'user' ],
              'the provider got every item but the reasoning item without '
              . 'its encrypted_content');

    # the operator's choice: as sent
    $r = call('/v1/responses', resp_body(), name => 'open');
    $answered++ if $r->{status} == 200;
    ($got, $stored) = $sent->();
    ok(!exists $got->{store} && $stored,
       'aihub_stored_objects on: no store added, the provider keeps it');
    $r = call('/v1/chat/completions', { %$chat, store => JSON::PP::true },
              name => 'open');
    $answered++ if $r->{status} == 200;
    ($got) = $sent->();
    ok($got->{store}, 'aihub_stored_objects on: chat\'s store true passed');
}


# --- nothing refused was counted or billed -----------------------------------

{
    wait_usage($t, $events0 + $answered);
    sleep 1;
    is(usage_event_count($t) - $events0, $answered,
       "one usage event per answered call ($answered), none for the refused");

    $t->wait_for(sub { (period_field($t, $ACCOUNT, 'calls') // 0) - $used0
                       >= $answered }, timeout => 5);
    is((period_field($t, $ACCOUNT, 'calls') // 0) - $used0, $answered,
       'the account\'s calls: the answered ones only');
}

$t->done;
