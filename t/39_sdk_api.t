#!/usr/bin/perl

# Real clients on the new endpoints, pinned in t/node/package-lock.json
# (installed with "npm ci" in t/node): the official OpenAI Node SDK 6.x
# runs responses.create (streamed and not, and an incomplete response; the
# first asks to store, and the provider is told to keep nothing),
# embeddings.create (the SDK's default, base64 it decodes into floats, and
# base64 asked for),
# models.retrieve (an id with a slash too, and a 404) and models.list; the
# Vercel AI SDK's default provider, createOpenAI({baseURL, apiKey})(model),
# which speaks the Responses API, runs generateText and streamText, on a
# model whose provider speaks it and on one translated into chat
# completions (as the openai SDK's responses.create does too).  Each
# call's usage event (found by its x-request-id) matches the usage the
# client saw, and every call reached the mock provider once.

use strict;
use warnings;

use Test::More;
use JSON::PP;

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);
use AihubStream qw(:all);

my $node_dir = Aihub->root . '/t/node';

my $node = `node --version 2>/dev/null`;
plan skip_all => 'node is not installed (Node 20 runs the SDK tests)'
    unless $node && $node =~ /^v(\d+)/ && $1 >= 20;
plan skip_all => "the SDKs are not installed: run \"npm ci --prefix t/node\""
    unless -f "$node_dir/node_modules/ai/package.json"
           && -f "$node_dir/node_modules/\@ai-sdk/openai/package.json";

my $t = Aihub->new;
$t->skip_unless_built;
$t->start_redis;
$t->start_mock;

my %models = (
    %MODELS,
    'test-resp'        => { provider => 'mock', upstream => 'mock-basic',
                            tier => 'basic', api => 'responses',
                            price_in => 1000000, price_out => 2000000,
                            created => 1735689600 },
    'test-embed'       => { provider => 'mock', upstream => 'mock-embed',
                            tier => 'basic', kind => 'embedding',
                            price_in => 20000, price_out => 0 },
    'org/test-slashed' => { provider => 'mock', upstream => 'mock-basic',
                            tier => 'basic', price_in => 1, price_out => 1 },
);
seed_models($t, %models);
my $key = seed_full_key($t, account => 39, plan => 'pro', models => '*');

$t->nginx(<<'END')->start_nginx;
    aihub_redis %%REDIS%%;
    aihub_redis_timeout 300ms;
    aihub_cache_zone aihub:8m;
    aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;

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

my $n = mock_count($t);
my ($rc, $out, $err) = $t->run_cmd(
    [ 'node', "$node_dir/sdk_api.mjs" ],
    env => { AIHUB_BASE_URL => 'http://127.0.0.1:' . $t->port . '/v1',
             AIHUB_KEY      => $key },
    timeout => 90);

is($rc, 0, 'sdk_api.mjs ran') or diag($err);

my $res = eval { decode_json((split /\n/, $out)[-1] // '') } // {};
like($res->{openai_version} // '', qr/^6\./,
     "openai SDK 6.x ($res->{openai_version})");
like($res->{ai_version} // '', qr/^6\./, "ai 6.x ($res->{ai_version})");
like($res->{ai_sdk_openai_version} // '', qr/^3\./,
     "\@ai-sdk/openai 3.x ($res->{ai_sdk_openai_version})");

my $tokens = join ' ', ('tok') x 7;

# the usage event of a call, by its request id
my %events;

sub event_of {
    my ($id) = @_;

    return undef unless defined $id;

    $t->wait_for(sub {
        %events = map { $_->{id} => $_ } usage_events($t);
        $events{$id};
    });

    return $events{$id};
}

# the client saw usage $u (OpenAI's names, or the AI SDK's)
sub matches {
    my ($name, $r, $prompt, $completion, $total) = @_;

    my $e = event_of($r->{request_id});

    ok($e, "$name: a usage event with the request's id")
        or return diag(encode_json($r));
    is($e->{prompt_tokens}, $prompt, "$name: event prompt = client's");
    is($e->{completion_tokens}, $completion,
       "$name: event completion = client's");
    is($e->{total_tokens}, $total, "$name: event total = client's");
    ok(!$e->{estimated}, "$name: not estimated");
}


# --- the official SDK ------------------------------------------------------

my $r = $res->{responses} // {};
is($r->{text}, $tokens, 'responses.create: output_text');
is($r->{status}, 'completed', 'responses.create: completed');
ok(defined $r->{store} && !$r->{store},
   'responses.create with store: true: the response says store false (the '
   . 'provider kept nothing)');
matches('responses.create', $r, @{ $r->{usage} // {} }{
        qw(input_tokens output_tokens total_tokens) });

$r = $res->{responses_stream} // {};
is($r->{text}, $tokens, 'responses.create stream: the deltas');
is($r->{first}, 'response.created', 'stream: response.created first');
is($r->{last}, 'response.completed', 'stream: response.completed last');
matches('responses.create stream', $r, @{ $r->{usage} // {} }{
        qw(input_tokens output_tokens total_tokens) });

$r = $res->{responses_incomplete} // {};
is($r->{status}, 'incomplete', 'responses.create incomplete: status');
matches('responses.create incomplete', $r, @{ $r->{usage} // {} }{
        qw(input_tokens output_tokens total_tokens) });

# translated for a provider that speaks chat completions only
$r = $res->{responses_translated} // {};
is($r->{text}, $tokens, 'responses.create, translated: output_text');
is($r->{status}, 'completed', 'responses.create, translated: completed');
matches('responses.create, translated', $r, @{ $r->{usage} // {} }{
        qw(input_tokens output_tokens total_tokens) });

$r = $res->{responses_translated_stream} // {};
is($r->{text}, $tokens, 'responses.create stream, translated: the deltas');
is($r->{final_text}, $tokens, '... and the final response\'s text');
is($r->{last}, 'response.completed', '... response.completed last');
matches('responses.create stream, translated', $r,
        @{ $r->{usage} // {} }{qw(input_tokens output_tokens total_tokens)});

$r = $res->{embeddings} // {};
is($r->{count}, 2, 'embeddings.create: two embeddings');
ok($r->{dims}, "embeddings.create: $r->{dims} dimensions");
matches('embeddings.create', $r, $r->{usage}{prompt_tokens}, 0,
        $r->{usage}{total_tokens});

ok($r->{floats}, 'embeddings.create: floats, decoded by the SDK');
my ($first_embed) = grep { $_->{path} eq '/v1/embeddings' }
                    mock_since($t, $n);
is(decode_json($first_embed->{body} // '{}')->{encoding_format}, 'base64',
   '... from the base64 it asked for, passed through');

$r = $res->{embeddings_base64} // {};
is($r->{type}, 'string', 'embeddings, base64 asked for: the string')
    or diag(encode_json($r));
matches('embeddings base64', $r, $r->{usage}{prompt_tokens}, 0,
        $r->{usage}{total_tokens});

is($res->{retrieve}{id}, 'test-resp', 'models.retrieve: the model');
is($res->{retrieve}{created}, 1735689600, 'models.retrieve: created');
is($res->{retrieve}{object}, 'model', 'models.retrieve: object');
is($res->{retrieve_slashed}{id}, 'org/test-slashed',
   'models.retrieve of an id with a slash');
is($res->{retrieve_unknown}{error}, 'NotFoundError',
   'models.retrieve of an unknown model: NotFoundError');
is($res->{retrieve_unknown}{status}, 404, '... 404');
is($res->{retrieve_unknown}{code}, 'model_not_found', '... model_not_found');
is_deeply([ sort @{ $res->{list} // [] } ], [ sort keys %models ],
          'models.list: every model');


# --- the Vercel AI SDK -----------------------------------------------------

$r = $res->{ai_generate} // {};
is($r->{text}, $tokens, 'AI SDK generateText: the text');
matches('AI SDK generateText', $r, @{ $r->{usage} // {} }{
        qw(inputTokens outputTokens totalTokens) });

$r = $res->{ai_stream} // {};
is($r->{text}, $tokens, 'AI SDK streamText: the text');
matches('AI SDK streamText', $r, @{ $r->{usage} // {} }{
        qw(inputTokens outputTokens totalTokens) });

$r = $res->{ai_generate_translated} // {};
is($r->{text}, $tokens, 'AI SDK generateText, translated: the text');
matches('AI SDK generateText, translated', $r, @{ $r->{usage} // {} }{
        qw(inputTokens outputTokens totalTokens) });

$r = $res->{ai_stream_translated} // {};
is($r->{text}, $tokens, 'AI SDK streamText, translated: the text');
matches('AI SDK streamText, translated', $r, @{ $r->{usage} // {} }{
        qw(inputTokens outputTokens totalTokens) });

$r = $res->{ai_generate_refused} // {};
is($r->{status}, 400, 'AI SDK on an embedding model: the gateway\'s 400')
    or diag(encode_json($r));
like($r->{message} // '', qr/embedding model/, '... with its message');


# --- each model call reached the provider once -----------------------------

my @log = mock_since($t, $n);
my %paths;
$paths{ $_->{path} }++ for @log;
is_deeply(\%paths, { '/v1/responses' => 5, '/v1/embeddings' => 2,
                     '/v1/chat/completions' => 4 },
          'the provider got 5 responses, 4 translated and 2 embeddings '
          . 'calls, nothing else (lookups and refusals are the gateway\'s)');
is(scalar(usage_events($t)), 11, 'eleven usage events');

$t->done;
