#!/usr/bin/perl

# POST /v1/responses for models whose provider speaks only chat completions
# (catalog api "chat", the default): the request is translated into a chat
# completion (input, instructions, max_output_tokens, temperature, function
# tools) and sent to the provider's /chat/completions; the answer comes
# back as the Responses API, JSON or as its stream of events.
#   - metered exactly as the chat completion the provider answered (its
#     usage chunk, asked for on the client's behalf), and the client's
#     usage says the same: input = prompt, total = total, output = total -
#     input (Gemini's thinking tokens included, as reasoning tokens);
#   - stopped at max_tokens: status incomplete / response.incomplete;
#   - what cannot be translated: 400, never forwarded, never billed;
#   - a client that hangs up mid-stream: billed for what was delivered,
#     flagged aborted;
#   - a provider failing mid-stream: response.failed.

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
    'test-gemini' => { provider => 'gem', upstream => 'gemini-2.0-flash',
                       tier => 'basic', price_in => 1000000,
                       price_out => 2000000 },
    # Gemini 3 checks the thought signatures of the calls passed back
    'test-gemini3' => { provider => 'gem',
                        upstream => 'gemini-3-flash-preview',
                        tier => 'basic', price_in => 1000000,
                        price_out => 2000000 },
);
seed_models($t, %models);
my $M = $models{'test-basic'};

my $ACCOUNT = 4001;
my $key = seed_full_key($t, account => $ACCOUNT, plan => 'free');

$t->nginx(<<'END')->start_nginx;
    aihub_redis %%REDIS%%;
    aihub_redis_timeout 300ms;
    aihub_cache_zone aihub:8m;
    aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
    aihub_provider gem url=http://%%MOCK%%/v1beta/openai kind=gemini
                   key_env=AIHUB_MOCK_KEY;
    aihub_pass_request_header x-mock-*;    # the mock's test controls

    server {
        listen 127.0.0.1:%%PORT%%;

        location /v1/ {
            aihub on;
            proxy_pass $aihub_proxy_url;
            proxy_set_header Host $aihub_provider_host;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
END

ok(wait_ready($t, $key), 'gateway ready');

my $seen = 0;

sub next_event {
    my @ev = wait_usage($t, $seen + 1);
    return undef if @ev <= $seen;
    $seen = @ev;
    return $ev[-1];
}

sub resp {
    my ($body, %o) = @_;

    # a 4.5 MB answer from the Perl mock takes seconds on a loaded machine
    return $t->http(POST => '/v1/responses', key => $key,
                    headers => $o{headers} // {}, timeout => 60,
                    body => { model => 'test-basic', input => 'hello',
                              %$body });
}

# the event and the usage the client saw agree
sub agree {
    my ($e, $u, $what) = @_;

    ok($e, "$what: an event") or return;
    is($e->{prompt_tokens}, $u->{input_tokens},
       "$what: event prompt = input_tokens ($u->{input_tokens})");
    is($e->{total_tokens}, $u->{total_tokens},
       "$what: event total = total_tokens ($u->{total_tokens})");
    is($u->{output_tokens}, $u->{total_tokens} - $u->{input_tokens},
       "$what: output_tokens = total - input");
    ok(!$e->{estimated}, "$what: not estimated");
}


# --- JSON ---------------------------------------------------------------------

my $n = mock_count($t);
my $r = resp({ instructions => 'Be brief.', temperature => 0.2,
               max_output_tokens => 50,
               tools => [ { type => 'function', name => 'f',
                            parameters => { type => 'object' } } ] });

is($r->{status}, 200, 'translated: 200');
is($r->{json}{object}, 'response', '... a response object');
is($r->{json}{status}, 'completed', '... completed');
is($r->{json}{model}, 'test-basic', '... the model as the client named it');
like($r->{json}{id} // '', qr/^resp_[0-9a-f]{32}$/, '... resp_<request id>');
is($r->{json}{id}, 'resp_' . $r->{headers}{'x-request-id'},
   '... the request id');
my ($item) = @{ $r->{json}{output} // [] };
is($item->{type}, 'message', 'output: a message');
is($item->{content}[0]{type}, 'output_text', 'output: output_text');
is($item->{content}[0]{text}, join(' ', ('tok') x 7), 'output: the text');

my @log = mock_since($t, $n);
is(scalar @log, 1, 'forwarded once');
is($log[0]{path}, '/v1/chat/completions', '... to /chat/completions');
my $sent = decode_json($log[0]{body});
is_deeply($sent->{messages},
          [ { role => 'system', content => 'Be brief.' },
            { role => 'user', content => 'hello' } ],
          '... instructions and input as messages');
is($sent->{max_tokens}, 50, '... max_output_tokens as max_tokens');
is($sent->{temperature}, 0.2, '... temperature');
is($sent->{model}, 'mock-basic', '... the provider\'s model id');
is($sent->{tools}[0]{function}{name}, 'f', '... the tool as a function');
ok(!exists $sent->{input} && !exists $sent->{instructions},
   '... no Responses member left');

my $e = next_event();
agree($e, $r->{json}{usage}, 'JSON');
is($e->{completion_tokens}, 7, 'JSON: the chat completion\'s tokens');
ok($t->wait_for(sub { period_calls($t, $ACCOUNT) == 1 }), 'a call counted');

# message items, and max_tokens reached
$r = resp({ input => [ { role => 'developer', content => 'sys' },
                       { role => 'user', content =>
                         [ { type => 'input_text', text => 'hi' } ] } ],
            max_output_tokens => 3 });
is($r->{json}{status}, 'incomplete', 'max_output_tokens reached: incomplete');
is($r->{json}{incomplete_details}{reason}, 'max_output_tokens',
   '... max_output_tokens');
is($r->{json}{usage}{output_tokens}, 3, '... 3 output tokens');
agree(next_event(), $r->{json}{usage}, 'incomplete');

# Gemini: thinking tokens in the total only
$r = resp({ model => 'test-gemini' },
          headers => { 'x-mock-total-extra' => 20 });
is($r->{status}, 200, 'gemini: 200');
is((mock_since($t, $n))[-1]{path}, '/v1beta/openai/chat/completions',
   'gemini: its chat completions endpoint');
is($r->{json}{usage}{output_tokens_details}{reasoning_tokens}, 20,
   'gemini: the 20 thinking tokens are reasoning tokens');
agree(next_event(), $r->{json}{usage}, 'gemini');


# --- streamed -------------------------------------------------------------------

for my $case ([ 'completed', {}, 'response.completed' ],
              [ 'incomplete', { max_output_tokens => 4 },
                'response.incomplete' ])
{
    my ($what, $extra, $last) = @$case;

    $r = raw_request($t, key => $key, path => '/v1/responses',
                     body => { model => 'test-basic', input => 'hello',
                               stream => JSON::PP::true, %$extra });
    is($r->{status}, 200, "stream $what: 200");
    like($r->{headers}{'content-type'}, qr{^text/event-stream},
         "stream $what: an event stream");
    ok(!$r->{headers}{'content-length'}, "stream $what: no content-length");

    my @data = sse_data(@{ $r->{events} });
    my @types = map { ref $_ ? $_->{type} : $_ } @data;

    is_deeply([ @types[0 .. 3] ],
              [ 'response.created', 'response.in_progress',
                'response.output_item.added', 'response.content_part.added' ],
              "stream $what: the opening events");
    is($types[-1], $last, "stream $what: ends with $last");
    ok(!(grep { $_ eq '[DONE]' } @types), "stream $what: no [DONE]");
    is_deeply([ map { $_->{sequence_number} } @data ], [ 0 .. $#data ],
              "stream $what: sequence numbers");

    my $deltas = join '', map { $_->{delta} }
                 grep { $_->{type} eq 'response.output_text.delta' } @data;
    my ($done) = grep { $_->{type} eq 'response.output_text.done' } @data;
    is($deltas, $done->{text}, "stream $what: the deltas make the text");
    is($data[-1]{response}{output}[0]{content}[0]{text}, $done->{text},
       "stream $what: the final response holds it");
    like($r->{body}, qr/^event: response\.created\ndata: /,
         "stream $what: event lines");

    $e = next_event();
    ok($e->{streamed}, "stream $what: event streamed");
    agree($e, $data[-1]{response}{usage}, "stream $what");
}

# the provider fails mid-stream
$r = raw_request($t, key => $key, path => '/v1/responses',
                 headers => { 'x-mock-error-after' => 2 },
                 body => { model => 'test-basic', input => 'hello',
                           stream => JSON::PP::true });
my @data = sse_data(@{ $r->{events} });
is($data[-1]{type}, 'response.failed', 'provider error: response.failed');
like($data[-1]{response}{error}{message} // '', qr/mid-stream/,
     '... with the provider\'s message');
$e = next_event();
ok($e->{estimated}, 'provider error: billed for what was delivered, '
   . 'estimated (as chat)');

# the limits: a stream's text beyond 256 KiB, a JSON answer beyond 4 MiB
# end as a failed response (billed for what the provider produced)
$r = raw_request($t, key => $key, path => '/v1/responses',
                 headers => { 'x-mock-size' => 1_200_000 },
                 body => { model => 'test-basic', input => 'hello',
                           stream => JSON::PP::true }, timeout => 30);
@data = sse_data(@{ $r->{events} });
is($data[-1]{type}, 'response.failed', 'text over 256 KiB: response.failed');
like($data[-1]{response}{error}{message} // '', qr/too long/,
     '... the answer is too long');
$e = next_event();
ok($e && !$e->{estimated} && $e->{completion_tokens} == 7,
   'text over 256 KiB: billed on the usage the provider reported');

$r = resp({}, headers => { 'x-mock-size' => 4_500_000 });
is($r->{status}, 200, 'JSON over 4 MiB: 200');
is($r->{json}{status}, 'failed', '... a failed response');
$e = next_event();
ok($e && !$e->{estimated}, '... billed on the provider\'s usage');

$r = resp({}, headers => { 'x-mock-size' => 300_000 });
is(length($r->{json}{output}[0]{content}[0]{text} // ''), 300_000,
   'JSON of 300 kB: translated whole');
next_event();

# the client hangs up
{
    my $calls = period_calls($t, $ACCOUNT);

    $r = raw_request($t, key => $key, path => '/v1/responses',
                     headers => { 'x-mock-chunk-delay-ms' => 300,
                                  'x-mock-completion-tokens' => 20 },
                     body => { model => 'test-basic', input => 'hello',
                               stream => JSON::PP::true },
                     abort_after => 6);

    is(scalar @{ $r->{events} }, 6, 'abort: six events, then hung up');

    $e = next_event();
    ok($e->{aborted}, 'abort: event aborted');
    ok($e->{estimated}, 'abort: estimated');
    ok($e->{completion_tokens} >= 1, 'abort: the text delivered is billed');
    is($e->{cost_micros}, cost_of($M, $e->{prompt_tokens},
                                  $e->{total_tokens}), 'abort: cost');
    ok($t->wait_for(sub { period_calls($t, $ACCOUNT) == $calls + 1 }),
       'abort: the call counts');
}


# --- parallel tool calls ---------------------------------------------------------
#
# Two calls in one answer become two function_call items, each with its own
# call_id, name and arguments.  OpenAI streams them by "index" (0, then 1);
# Gemini's OpenAI-compatible endpoint streams them without "index", each
# call whole with its own id, both in one delta, and says "stop".

my %WANT = (get_weather => { location => 'Paris', unit => 'celsius' },
            get_time => { timezone => 'Europe/Paris' });
my @TOOLS = map { { type => 'function', name => $_,
                    parameters => { type => 'object' } } } sort keys %WANT;

# the function_call items: each with a call_id of its own, its name, and
# its arguments as JSON text that parses to what the model wrote
sub two_calls {
    my ($items, $what) = @_;

    my @calls = grep { ($_->{type} // '') eq 'function_call' } @$items;
    is(scalar @calls, 2, "$what: two function_call items")
        or diag(explain($items));
    is_deeply([ map { $_->{name} } @calls ], [ 'get_weather', 'get_time' ],
              "$what: their names");
    ok($calls[0]{call_id} && $calls[1]{call_id}
       && $calls[0]{call_id} ne $calls[1]{call_id},
       "$what: a call_id each");
    is_deeply([ map { eval { decode_json($_->{arguments} // '') }
                      // $_->{arguments} } @calls ],
              [ @WANT{qw(get_weather get_time)} ],
              "$what: their arguments, JSON each");

    return @calls;
}

for my $case ([ 'OpenAI', 'test-basic' ], [ 'Gemini', 'test-gemini' ]) {
    my ($p, $model) = @$case;
    my %two = ('x-mock-tool-call' => 2);

    $r = resp({ model => $model, input => 'weather and time?',
                tools => \@TOOLS }, headers => {%two});
    is($r->{status}, 200, "$p two tool calls, JSON: 200");
    is($r->{json}{status}, 'completed', "$p two tool calls, JSON: completed");
    two_calls($r->{json}{output} // [], "$p two tool calls, JSON");
    next_event();

    $r = raw_request($t, key => $key, path => '/v1/responses',
                     headers => {%two},
                     body => { model => $model, input => 'weather and time?',
                               stream => JSON::PP::true, tools => \@TOOLS });
    @data = grep { ref $_ } sse_data(@{ $r->{events} });

    my @added = grep { $_->{type} eq 'response.output_item.added'
                       && $_->{item}{type} eq 'function_call' } @data;
    is_deeply([ map { $_->{output_index} } @added ], [ 0, 1 ],
              "$p two tool calls, stream: two function_call items added, "
              . 'output_index 0 and 1');
    my @done = grep { $_->{type} eq 'response.output_item.done' } @data;
    my @calls = two_calls([ map { $_->{item} } @done ],
                          "$p two tool calls, stream: their items done");
    is_deeply([ map { $_->{item}{call_id} } @added ],
              [ map { $_->{call_id} } @calls ],
              "$p two tool calls, stream: added with the call_ids they end "
              . 'with');

    for my $k (0, 1) {
        my $id = ($added[$k] // {})->{item}{id} // '?';
        is(join('', map { $_->{delta} }
                    grep { $_->{type} eq
                           'response.function_call_arguments.delta'
                           && $_->{item_id} eq $id } @data),
           ($calls[$k] // {})->{arguments},
           "$p two tool calls, stream: call $k, its argument deltas make its "
           . 'arguments');
    }

    is($data[-1]{type}, 'response.completed',
       "$p two tool calls, stream: response.completed");
    two_calls($data[-1]{response}{output} // [],
              "$p two tool calls, stream: response.completed");
    ok(next_event()->{streamed}, "$p two tool calls, stream: billed");
}

# chat completions pass through as the provider sent them: OpenAI's calls
# with their index (0, 1) on every delta, Gemini's with none added
for my $case ([ 'OpenAI', 'test-basic', 1 ], [ 'Gemini', 'test-gemini', 0 ])
{
    my ($p, $model, $indexed) = @$case;

    $r = raw_request($t, key => $key, headers => { 'x-mock-tool-call' => 2 },
                     body => { model => $model, stream => JSON::PP::true,
                               messages => [ { role => 'user',
                                               content => 'weather?' } ],
                               tools => [ map { { type => 'function',
                                                  function => {
                                                      name => $_->{name} } } }
                                          @TOOLS ] });
    my @tc = map { @{ $_->{delta}{tool_calls} // [] } }
             map { @{ $_->{choices} // [] } }
             grep { ref $_ } sse_data(@{ $r->{events} });
    my @opened = grep { defined $_->{id} } @tc;

    is(scalar @opened, 2, "$p two tool calls, chat stream passed through: "
                          . 'two calls opened');
    is_deeply([ map { $_->{index} } grep { exists $_->{index} } @tc ],
              $indexed ? [ map { $_->{index} } @tc ] : [],
              "$p two tool calls, chat stream passed through: "
              . ($indexed ? 'an index on every delta' : 'no index added'));
    is_deeply([ map { $_->{index} } @opened ], $indexed ? [ 0, 1 ]
                                                        : [ undef, undef ],
              "$p two tool calls, chat stream passed through: "
              . ($indexed ? 'index 0, then 1' : 'as Gemini sent them'));
    next_event();
}

# --- Gemini's thought signature, there and back -----------------------------
#
# Gemini signs its function calls (extra_content.google.thought_signature)
# and Gemini 3 refuses a request whose calls of the current turn come back
# without their signature (400 "Function call is missing a
# thought_signature").  The function_call item carries the call's
# extra_content; the SDKs keep it when a response's output is passed back
# as input; the request's translation hands it back to the tool call.  A
# call passed back without one (a history the client rebuilt) gets the
# value Google documents for that, "skip_thought_signature_validator".

my $SKIP = 'skip_thought_signature_validator';

# the provider's copy of the next request: its assistant messages' calls
sub sent_calls {
    my ($n0) = @_;
    my ($sent) = mock_since($t, $n0);
    my $chat = eval { decode_json($sent->{body} // '') } // {};
    return map { $_->{tool_calls} } grep { $_->{tool_calls} }
           @{ $chat->{messages} // [] };
}

sub signature_of {
    my ($call) = @_;
    return eval { $call->{extra_content}{google}{thought_signature} };
}

for my $stream (0, 1) {
    my $how = $stream ? 'stream' : 'JSON';
    my %sign = ('x-mock-tool-call' => 2);
    my $first = { model => 'test-gemini3', input => 'weather and time?',
                  tools => \@TOOLS };
    my @output;

    if ($stream) {
        $r = raw_request($t, key => $key, path => '/v1/responses',
                         headers => {%sign},
                         body => { %$first, stream => JSON::PP::true });
        @data = grep { ref $_ } sse_data(@{ $r->{events} });
        @output = @{ $data[-1]{response}{output} // [] };
        my ($added) = grep { $_->{type} eq 'response.output_item.added'
                             && $_->{item}{type} eq 'function_call' } @data;
        is($added->{item}{extra_content}{google}{thought_signature},
           'EjQKMgEMOdbHmock',
           "signature, $how: the first call's item carries it when added");
    } else {
        $r = resp($first, headers => {%sign});
        @output = @{ $r->{json}{output} // [] };
    }
    next_event();

    my @fc = grep { $_->{type} eq 'function_call' } @output;
    is(scalar @fc, 2, "signature, $how: two calls");
    is(($fc[0] // {})->{extra_content}{google}{thought_signature},
       'EjQKMgEMOdbHmock', "signature, $how: the first call's item carries "
       . 'its extra_content');

    # the next turn: the output passed back, the calls answered
    my @input = ({ role => 'user', content => 'weather and time?' },
                 @output,
                 map { { type => 'function_call_output',
                         call_id => $_->{call_id}, output => '{"ok":1}' } }
                 @fc);
    my $n0 = mock_count($t);
    $r = resp({ model => 'test-gemini3', input => \@input,
                tools => \@TOOLS });
    is($r->{status}, 200, "signature, $how: the next turn, to Gemini 3, "
                          . 'which checks signatures: 200')
        or diag($r->{content});
    my ($calls) = sent_calls($n0);
    is(signature_of(($calls // [])->[0]), 'EjQKMgEMOdbHmock',
       "signature, $how: the provider got its own back on the tool call");
    next_event() if $r->{status} == 200;
}

# Without it: the first call of each step of the current turn gets
# Google's value, and Gemini 3 answers.  Earlier turns, the other calls of
# a step, and a Gemini that does not check are left as the client sent them.
{
    my @input = ({ role => 'user', content => 'weather?' },
                 { type => 'function_call', call_id => 'call_1',
                   name => 'get_weather', arguments => '{}' },
                 { type => 'function_call', call_id => 'call_2',
                   name => 'get_time', arguments => '{}' },
                 { type => 'function_call_output', call_id => 'call_1',
                   output => '{"ok":1}' },
                 { type => 'function_call_output', call_id => 'call_2',
                   output => '{"ok":1}' },
                 { type => 'function_call', call_id => 'call_3',
                   name => 'get_weather', arguments => '{}' },
                 { type => 'function_call_output', call_id => 'call_3',
                   output => '{"ok":1}' });
    my $n0 = mock_count($t);
    $r = resp({ model => 'test-gemini3', input => \@input,
                tools => \@TOOLS });
    is($r->{status}, 200, 'signature: calls passed back without one, to '
                          . 'Gemini 3: 200') or diag($r->{content});
    my @calls = sent_calls($n0);
    is(scalar @calls, 2, 'signature: two steps, an assistant message each');
    is(signature_of($calls[0][0]), $SKIP,
       "signature: the first step's first call got Google's value");
    ok(!exists $calls[0][1]{extra_content},
       '... its parallel call nothing (Gemini signs only the first)');
    is(signature_of($calls[1][0]), $SKIP,
       "... the second step's call got it too");
    next_event() if $r->{status} == 200;

    # an earlier turn without signatures, the current one signed: as sent
    my @turns = ({ role => 'user', content => 'weather?' },
                 { type => 'function_call', call_id => 'call_1',
                   name => 'get_weather', arguments => '{}' },
                 { type => 'function_call_output', call_id => 'call_1',
                   output => '{"ok":1}' },
                 { role => 'assistant', content => '15 C' },
                 { role => 'user', content => 'and the time?' },
                 { type => 'function_call', call_id => 'call_2',
                   name => 'get_time', arguments => '{}',
                   extra_content => { google => {
                       thought_signature => 'EjQKMgEMOdbHmock' } } },
                 { type => 'function_call_output', call_id => 'call_2',
                   output => '{"ok":1}' });
    $n0 = mock_count($t);
    $r = resp({ model => 'test-gemini3', input => \@turns,
                tools => \@TOOLS });
    is($r->{status}, 200, 'signature: an earlier turn without them: 200')
        or diag($r->{content});
    @calls = sent_calls($n0);
    ok(!exists $calls[0][0]{extra_content},
       '... the earlier turn\'s call went as it was (Gemini checks only '
       . 'the current turn)');
    is(signature_of($calls[1][0]), 'EjQKMgEMOdbHmock',
       '... the current turn\'s call kept its own signature');
    next_event() if $r->{status} == 200;

    # Gemini 2: nothing added
    $n0 = mock_count($t);
    $r = resp({ model => 'test-gemini', input => \@input, tools => \@TOOLS });
    is($r->{status}, 200, 'signature: to Gemini 2, without them: 200');
    @calls = sent_calls($n0);
    ok(!exists $calls[0][0]{extra_content},
       '... and the call went as it was');
    next_event() if $r->{status} == 200;
}

# A chat completion passed through is the client's own: a call without its
# signature reaches Gemini 3 as sent, and the developer is told why in a 400
{
    my $n0 = mock_count($t);
    $r = $t->http(POST => '/v1/chat/completions', key => $key,
                  body => { model => 'test-gemini3', messages => [
                      { role => 'user', content => 'weather?' },
                      { role => 'assistant', content => undef,
                        tool_calls => [ { id => 'call_1', type => 'function',
                                          function => {
                                              name => 'get_weather',
                                              arguments => '{}' } } ] },
                      { role => 'tool', tool_call_id => 'call_1',
                        content => '{"ok":1}' } ] });
    is_error($r, 400, 'provider_rejected_request',
             'signature: a chat completion passed back without it');
    like($r->{json}{error}{message} // '', qr/missing a thought_signature/,
         'signature: the message says so');
    my @calls = sent_calls($n0);
    ok(!exists $calls[0][0]{extra_content},
       '... the gateway sent the call as the client did');
    next_event();
}

# --- what cannot be translated ----------------------------------------------------

$n = mock_count($t);
my $calls = period_calls($t, $ACCOUNT);

for my $case (
    [ 'previous_response_id', { previous_response_id => 'resp_1' },
      qr/"previous_response_id"/ ],
    [ 'a built-in tool', { tools => [ { type => 'web_search' } ] },
      qr/"web_search"/ ],
    [ 'an item reference', { input => [ { type => 'item_reference',
                                          id => 'x' } ] },
      qr/"item_reference"/ ],
    [ 'a file input', { input => [ { role => 'user', content =>
                          [ { type => 'input_file', filename => 'a.txt',
                              file_data => 'data:text/plain;base64,aGk=' } ]
                        } ] },
      qr/"input_file"/ ],
    [ 'background', { background => JSON::PP::true }, qr/"background"/ ],
    [ 'no input', { input => undef }, qr/input parameter is required/ ],
  )
{
    my ($what, $body, $msg) = @$case;
    $r = resp($body);
    is_error($r, 400, 'invalid_request_error', "untranslatable: $what");
    like($r->{json}{error}{message} // '', $msg, "... says what");
}

is(mock_count($t), $n, 'none of them reached the provider');
sleep 0.3;
is(scalar(usage_events($t)), $seen, 'none of them has an event');
is(period_calls($t, $ACCOUNT), $calls, 'none of them is counted');

$t->allow_log(qr/client prematurely closed|upstream prematurely closed/);
$t->done;
