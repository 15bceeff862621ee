#!/usr/bin/perl

# Each provider's own dialect of an answer, metered exactly.  The mock
# speaks them as the real ones do on the wire:
#
# - OpenRouter opens its streams, and keeps them alive, with SSE comments
#   (": OPENROUTER PROCESSING"), and writes "cost" (a float), "is_byok" and
#   token details into its usage, "provider" beside the choices;
# - Gemini's OpenAI-compatible endpoint puts the usage in every chunk of a
#   stream, cumulative, the full figure in the last content chunk, and no
#   separate usage chunk: a gateway that added the chunks' usage up would
#   bill several times over (a known trap of that endpoint);
# - OpenAI: the usage chunk with "choices": [] after the finish chunk;
# - DeepSeek, while its server is busy: empty lines before a JSON answer,
#   ": keep-alive" comments before a stream's first event.
#
# For each: a JSON answer, a stream the client asked usage for, one it did
# not (the usage chunk we asked for goes; Gemini's usage rides on content
# chunks, which go on untouched), a stream the provider cuts, and the
# Responses API translated over the provider's chat stream.  Every call is
# billed the provider's final figure, once, and the client gets the whole
# text.  Then tool calls, whose name and arguments are what the model wrote:
# estimated on them when cut or without usage, never as 0.

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

my %price = (price_in => 1000000, price_out => 2000000, tier => 'basic');

seed_models($t,
    'test-oai' => { provider => 'oai', upstream => 'mock-basic', %price },
    'test-or'  => { provider => 'orouter', upstream => 'mock-basic', %price },
    'test-gem' => { provider => 'gem', upstream => 'gemini-2.0-flash',
                    %price },
    'test-mis' => { provider => 'mis', upstream => 'mistral-small-latest',
                    %price },
    'test-mis-asked' => { provider => 'misasked',
                          upstream => 'mistral-small-latest', %price });

my $key = seed_full_key($t, account => 8401, models => '*');

$t->nginx(<<'END')->start_nginx;
    aihub_redis %%REDIS%%;
    aihub_redis_timeout 300ms;
    aihub_cache_zone aihub:8m;
    aihub_provider oai url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
    aihub_provider orouter url=http://%%MOCK%%/api/v1 key_env=AIHUB_MOCK_KEY;
    aihub_provider gem url=http://%%MOCK%%/v1beta/openai kind=gemini key_env=AIHUB_MOCK_KEY;
    aihub_provider mis url=http://%%MOCK%%/mistral/v1 key_env=AIHUB_MOCK_KEY stream_options=off;
    aihub_provider misasked url=http://%%MOCK%%/mistral/v1 key_env=AIHUB_MOCK_KEY;
    aihub_pass_request_header x-mock-*;

    server {
        listen 127.0.0.1:%%PORT%%;

        location /v1/ {
            aihub on;
            aihub_failure_mode closed;
            proxy_pass $aihub_proxy_url;
            proxy_set_header Host $aihub_provider_host;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
END
ok(wait_ready($t, $key), 'gateway ready');

my $JSON = JSON::PP->new->utf8->canonical;
my $TEXT = join ' ', ('tok') x 7;              # the mock's answer

my %name = ('test-oai' => 'OpenAI', 'test-or' => 'OpenRouter',
            'test-gem' => 'Gemini');

# the call's event, by its id
sub event_of {
    my ($r) = @_;

    my $id = $r->{headers}{'x-request-id'} // '-';
    my $mine = sub { (grep { $_->{id} eq $id } usage_events($t))[0] };
    $t->wait_for($mine, timeout => 5);
    return $mine->() // {};
}

sub last_mock { my @l = $t->mock_log; $l[-1] }

# the text a chat stream delivered
sub stream_text {
    my ($r) = @_;

    return join '', map { ref $_ eq 'HASH'
                          ? map { $_->{delta}{content} // '' }
                                @{ $_->{choices} // [] }
                          : '' } sse_data(@{ $r->{events} });
}

# billed exactly what the provider counted last, once
sub billed_as_counted {
    my ($r, $what) = @_;

    my $e = event_of($r);
    my $u = last_mock()->{usage} // {};

    ok(!$e->{estimated}, "$what: read, not estimated");
    is($e->{prompt_tokens}, $u->{prompt_tokens}, "$what: prompt tokens");
    is($e->{completion_tokens}, $u->{completion_tokens},
       "$what: completion tokens, the final figure");
    is($e->{total_tokens}, $u->{total_tokens}, "$what: total tokens");
    is($e->{cost_micros},
       cost_of(\%price, $u->{prompt_tokens} // 0, $u->{total_tokens} // 0),
       "$what: cost at the catalog's prices");
}

for my $model (sort keys %name) {
    my $p = $name{$model};

    # --- JSON ---------------------------------------------------------------
    {
        my $r = raw_request($t, key => $key, body => chat_body(model => $model));
        is($r->{status}, 200, "$p JSON: 200");
        my $j = eval { decode_json($r->{body}) } // {};
        is($j->{choices}[0]{message}{content}, $TEXT, "$p JSON: the text");
        billed_as_counted($r, "$p JSON");
    }

    # --- a stream the client asked usage for ------------------------------------
    {
        my $r = raw_request($t, key => $key,
                            body => chat_body(model => $model, stream => 1,
                                              include_usage => 1));
        is($r->{status}, 200, "$p stream with usage: 200");
        ok($r->{complete}, "$p stream with usage: to its end");
        is(stream_text($r), $TEXT, "$p stream with usage: the whole text");
        my @usage = grep { ref $_ eq 'HASH' && $_->{usage} }
                    sse_data(@{ $r->{events} });
        ok(@usage, "$p stream with usage: the client sees the usage");
        is($usage[-1]{usage}{completion_tokens}, 7,
           "$p stream with usage: its last figure is the whole call");
        billed_as_counted($r, "$p stream with usage");

        if ($p eq 'OpenRouter') {
            like($r->{body}, qr/^: OPENROUTER PROCESSING$/m,
                 "$p stream: its keep-alive comments reach the client");
        }
        if ($p eq 'Gemini') {
            cmp_ok(scalar @usage, '>', 2,
                   "$p stream: usage in every chunk, as Gemini sends it");
        }
    }

    # --- a stream the client did not ask usage for ------------------------------
    {
        my $r = raw_request($t, key => $key,
                            body => chat_body(model => $model, stream => 1));
        is($r->{status}, 200, "$p stream without usage: 200");
        ok($r->{complete}, "$p stream without usage: to its end");
        is(stream_text($r), $TEXT, "$p stream without usage: the whole text");
        my @chunks = grep { ref $_ eq 'HASH' } sse_data(@{ $r->{events} });
        my @usage_only = grep { $_->{usage} && !@{ $_->{choices} // [] } }
                         @chunks;
        is(scalar @usage_only, 0,
           "$p stream without usage: no usage chunk of ours reaches it");
        billed_as_counted($r, "$p stream without usage");
    }

    # --- a stream the provider cuts after three events ---------------------------
    {
        my $r = raw_request($t, key => $key,
                            body => chat_body(model => $model, stream => 1),
                            headers => { 'x-mock-cut-after' => 3 });
        is(stream_text($r), 'tok tok tok', "$p stream cut: three words came");
        my $e = event_of($r);

        if ($p eq 'Gemini') {
            # its usage so far came with the words: billed as it counted
            ok(!$e->{estimated}, "$p stream cut: the usage it sent so far");
            is($e->{completion_tokens}, 3,
               "$p stream cut: completion = the three words it counted");
        } else {
            ok($e->{estimated}, "$p stream cut: no usage, estimated");
            is($e->{completion_tokens}, ceil4(length 'tok tok tok'),
               "$p stream cut: completion = ceil(delivered chars / 4)");
        }
        ok(!$e->{aborted}, "$p stream cut: not a client abort");
    }

    # --- the Responses API over the provider's chat stream ----------------------
    {
        my $r = raw_request($t, key => $key, path => '/v1/responses',
                            body => { model => $model, input => 'hello',
                                      stream => JSON::PP::true });
        is($r->{status}, 200, "$p Responses stream: 200");
        my @ev = grep { ref $_ eq 'HASH' } sse_data(@{ $r->{events} });
        my @types = map { $_->{type} // '?' } @ev;
        is(scalar(grep { $_ eq 'response.completed' } @types), 1,
           "$p Responses stream: one response.completed")
            or diag("@types");
        is($types[-1], 'response.completed',
           "$p Responses stream: and it is the last event");
        my $text = join '', map { $_->{delta} // '' }
                   grep { ($_->{type} // '') eq 'response.output_text.delta' }
                   @ev;
        is($text, $TEXT, "$p Responses stream: the whole text");
        my ($done) = grep { ($_->{type} // '') eq 'response.completed' } @ev;
        my $u = last_mock()->{usage} // {};
        is($done->{response}{usage}{output_tokens}, $u->{completion_tokens},
           "$p Responses stream: its usage is the provider's final figure");
        is($done->{response}{usage}{input_tokens}, $u->{prompt_tokens},
           "$p Responses stream: input tokens");
        billed_as_counted($r, "$p Responses stream");
    }
}


# --- DeepSeek keeps the connection alive while its server is busy -------------
#
# empty lines before a JSON answer, ": keep-alive" comments before a
# stream's first event (its API documentation): the answer is not taken
# for one that is not JSON, and is metered as counted

{
    my $r = raw_request($t, key => $key, body => chat_body(model => 'test-oai'),
                        headers => { 'x-mock-keepalive' => 3 });
    is($r->{status}, 200, 'empty lines before the JSON: 200');
    my $j = eval { decode_json($r->{body}) } // {};
    is($j->{choices}[0]{message}{content}, $TEXT,
       'empty lines before the JSON: the answer');
    like($r->{body}, qr/\A\n\n\n\{/,
         'empty lines before the JSON: passed on, each (held with the '
         . 'header until the object began)');
    billed_as_counted($r, 'empty lines before the JSON');

    $r = raw_request($t, key => $key,
                     body => chat_body(model => 'test-oai', stream => 1),
                     headers => { 'x-mock-keepalive' => 3 });
    is(stream_text($r), $TEXT, 'keep-alive comments before a stream: the text');
    like($r->{body}, qr/^: keep-alive$/m,
         'keep-alive comments before a stream: passed to the client');
    billed_as_counted($r, 'keep-alive comments before a stream');
}

# --- tool calls: what the model wrote is the function's name and arguments ---
#
# An agent's answer is often nothing but a tool call.  Cut, or without a
# usage, it is estimated on what it delivered: the name and the arguments
# (counted as content once, as a refusal and reasoning text are).

my $NAME = 'get_weather';
my $ARGS = '{"location":"Paris","unit":"celsius"}';

for my $model ('test-oai', 'test-or', 'test-gem') {
    my $p = $name{$model};
    my %tool = ('x-mock-tool-call' => 1);
    my %tools = (tools => [ { type => 'function', function => {
        name => $NAME, parameters => { type => 'object' } } } ]);

    my $r = raw_request($t, key => $key, headers => {%tool},
                        body => chat_body(model => $model, extra => \%tools));
    my $j = eval { decode_json($r->{body}) } // {};
    is($j->{choices}[0]{message}{tool_calls}[0]{function}{arguments}, $ARGS,
       "$p tool call, JSON: the arguments reach the client");
    billed_as_counted($r, "$p tool call, JSON");

    $r = raw_request($t, key => $key,
                     headers => { %tool, 'x-mock-no-usage' => 1 },
                     body => chat_body(model => $model, extra => \%tools));
    my $e = event_of($r);
    ok($e->{estimated}, "$p tool call, JSON without usage: estimated");
    is($e->{completion_tokens}, ceil4(length($NAME . $ARGS)),
       "$p tool call, JSON without usage: completion = ceil((name + "
       . 'arguments) / 4)');

    $r = raw_request($t, key => $key, headers => {%tool},
                     body => chat_body(model => $model, stream => 1,
                                       extra => \%tools));
    my $args = join '', map { ref $_ eq 'HASH'
                              ? map { map { $_->{function}{arguments} // '' }
                                      @{ $_->{delta}{tool_calls} // [] } }
                                    @{ $_->{choices} // [] }
                              : '' } sse_data(@{ $r->{events} });
    is($args, $ARGS, "$p tool call, stream: the arguments arrive whole");
    billed_as_counted($r, "$p tool call, stream");

    # the Responses API over the provider's chat: the call comes back as a
    # function_call item, JSON and streamed
    my %rtools = (tools => [ { type => 'function', name => $NAME,
                               parameters => { type => 'object' } } ]);
    $r = raw_request($t, key => $key, path => '/v1/responses',
                     headers => {%tool},
                     body => { model => $model, input => 'weather?',
                               %rtools });
    $j = eval { decode_json($r->{body}) } // {};
    my ($call) = grep { ($_->{type} // '') eq 'function_call' }
                 @{ $j->{output} // [] };
    is(($call // {})->{name}, $NAME,
       "$p tool call, Responses JSON: a function_call item")
        or diag($r->{body});
    is(($call // {})->{arguments}, $ARGS,
       "$p tool call, Responses JSON: its arguments");
    billed_as_counted($r, "$p tool call, Responses JSON");

    $r = raw_request($t, key => $key, path => '/v1/responses',
                     headers => {%tool},
                     body => { model => $model, input => 'weather?',
                               stream => JSON::PP::true, %rtools });
    my @rev = grep { ref $_ eq 'HASH' } sse_data(@{ $r->{events} });
    is(join('', map { $_->{delta} // '' }
                grep { ($_->{type} // '') eq
                       'response.function_call_arguments.delta' } @rev),
       $ARGS, "$p tool call, Responses stream: the arguments' deltas");
    my ($rdone) = grep { ($_->{type} // '') eq 'response.completed' } @rev;
    my ($ritem) = grep { ($_->{type} // '') eq 'function_call' }
                  @{ (($rdone // {})->{response} // {})->{output} // [] };
    is(($ritem // {})->{arguments}, $ARGS,
       "$p tool call, Responses stream: response.completed holds the call");
    billed_as_counted($r, "$p tool call, Responses stream");

    # cut after the name and two pieces of the arguments (8 characters each)
    $r = raw_request($t, key => $key,
                     headers => { %tool, 'x-mock-cut-after' => 3 },
                     body => chat_body(model => $model, stream => 1,
                                       extra => \%tools));
    $e = event_of($r);

    if ($p eq 'Gemini') {
        ok(!$e->{estimated}, "$p tool call cut: the usage it sent so far");
    } else {
        ok($e->{estimated}, "$p tool call cut: estimated");
        is($e->{completion_tokens}, ceil4(length($NAME) + 16),
           "$p tool call cut: completion = ceil((name + the 16 characters "
           . 'of arguments delivered) / 4), not 0');
    }
}

# --- a provider that refuses stream_options (Mistral) --------------------------
#
# Mistral's API refuses a member it does not know (422 extra_forbidden) and
# puts a stream's usage in its last chunk unasked: declared with
# stream_options=off, the gateway sends none and meters what comes

{
    my $r = raw_request($t, key => $key,
                        body => chat_body(model => 'test-mis-asked',
                                          stream => 1));
    is($r->{status}, 502, 'Mistral, stream_options added: its 422 (what '
                          . 'stream_options=off is for)');

    $r = raw_request($t, key => $key,
                     body => chat_body(model => 'test-mis', stream => 1));
    is($r->{status}, 200, 'Mistral with stream_options=off, stream: 200');
    is(stream_text($r), $TEXT, 'Mistral, stream: the text');
    ok(!exists((decode_json(last_mock()->{body}) // {})->{stream_options}),
       'Mistral, stream: no stream_options sent');
    billed_as_counted($r, 'Mistral, stream: its usage, unasked,');

    # the client's own stream_options (LangChain's stream_usage, the AI
    # SDK's provider, SDK users asking for the usage chunk) goes too:
    # before, it went on, Mistral answered 422, the client 502
    $r = raw_request($t, key => $key,
                     body => chat_body(model => 'test-mis', stream => 1,
                                       include_usage => 1));
    is($r->{status}, 200, 'Mistral, stream asking its usage chunk: 200');
    is(stream_text($r), $TEXT, 'Mistral, stream asking its usage: the text');
    ok(!exists((decode_json(last_mock()->{body}) // {})->{stream_options}),
       "Mistral, stream asking its usage: the client's stream_options not "
       . 'sent');
    my ($u) = grep { ref $_ eq 'HASH' && $_->{usage} }
              Aihub::sse_events($r->{body});
    ok($u && $u->{usage}{total_tokens},
       'Mistral, stream asking its usage: the usage reaches the client');
    billed_as_counted($r, 'Mistral, stream asking its usage,');

    $r = raw_request($t, key => $key,
                     body => chat_body(model => 'test-mis'));
    is($r->{status}, 200, 'Mistral, JSON: 200');
    billed_as_counted($r, 'Mistral, JSON');
}

$t->allow_log(qr/provider "misasked" refused the request with 422/);
is_deeply([ $t->bad_log_lines ], [], 'no alert, crash or error in the log');

done_testing();
