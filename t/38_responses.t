#!/usr/bin/perl

# POST /v1/responses (and /api/v1/developer/responses) for a model whose
# provider speaks the Responses API (catalog api "responses"): forwarded to
# the provider's /responses with the same keys, plans, limits, quota and
# metering as chat.
#   - metered on response.usage: input_tokens at the input price,
#     total - input (output, reasoning included) at the output price;
#   - streamed: on the usage of response.completed, response.incomplete,
#     response.failed;
#     the stream passes through byte for byte (no [DONE], nothing taken
#     out);
#   - a client that hangs up mid-stream: billed for what was delivered,
#     estimated and flagged aborted;
#   - refused requests (bad input, max_output_tokens above the plan's cap,
#     quota, rate limit, a model of the wrong kind or API) never reach
#     the provider and are never billed.

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
my $M = $models{'test-resp'};

my $ACCOUNT = 3801;
my $key = seed_full_key($t, account => $ACCOUNT, plan => 'free',
                        max_tokens => 100);
my $spent = seed_full_key($t, account => 3802, plan => 'free',
                          included => 0);
my $slow = seed_full_key($t, account => 3803, plan => 'free', rpm => 1);

$t->nginx(<<'END')->start_nginx;
    aihub_redis %%REDIS%%;
    aihub_redis_timeout 300ms;
    aihub_cache_zone aihub:8m;
    aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
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

        location /api/v1/developer/ {
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

# the next usage event, after those already seen
sub next_event {
    my @ev = wait_usage($t, $seen + 1);
    return undef if @ev <= $seen;
    $seen = @ev;
    return $ev[-1];
}

sub resp {
    my ($k, $body, %o) = @_;

    return $t->http(POST => $o{path} // '/v1/responses', key => $k,
                    headers => $o{headers} // {},
                    body => { model => 'test-resp', input => 'hello there',
                              %$body });
}

sub billed_as {
    my ($e, $u, $what) = @_;

    is($e->{prompt_tokens}, $u->{input_tokens},
       "$what: prompt = input_tokens ($u->{input_tokens})");
    is($e->{total_tokens}, $u->{total_tokens},
       "$what: total = total_tokens ($u->{total_tokens})");
    is($e->{completion_tokens}, $u->{output_tokens},
       "$what: completion = output_tokens ($u->{output_tokens})");
    is($e->{cost_micros}, cost_of($M, $u->{input_tokens}, $u->{total_tokens}),
       "$what: cost, total - input at the output price");
    ok(!$e->{estimated}, "$what: not estimated");
}


# --- not streamed -------------------------------------------------------------

my $n = mock_count($t);
my $r = resp($key, { instructions => 'Be brief.' });

is($r->{status}, 200, 'responses: 200');
is($r->{json}{object}, 'response', '... a response object');
is($r->{json}{status}, 'completed', '... completed');
my @log = mock_since($t, $n);
is(scalar @log, 1, 'forwarded once');
is($log[0]{path}, '/v1/responses', '... to the provider\'s /responses');
is(decode_json($log[0]{body})->{model}, 'mock-basic',
   '... with its own model id');
ok(!exists decode_json($log[0]{body})->{stream_options},
   '... and nothing added');

my $e = next_event();
billed_as($e, $r->{json}{usage}, 'responses');
is($e->{model}, 'test-resp', 'event: the public model id');
ok(!$e->{streamed}, 'event: not streamed');
ok($t->wait_for(sub { period_calls($t, $ACCOUNT) == 1 }), 'a call counted');

# reasoning tokens are output tokens
$r = resp($key, {}, headers => { 'x-mock-reasoning-tokens' => 30 });
is($r->{json}{usage}{output_tokens_details}{reasoning_tokens}, 30,
   'reasoning: 30 tokens');
billed_as(next_event(), $r->{json}{usage}, 'reasoning');

# incomplete: max_output_tokens reached
$r = resp($key, { max_output_tokens => 3 });
is($r->{json}{status}, 'incomplete', 'incomplete: status');
billed_as(next_event(), $r->{json}{usage}, 'incomplete');

# the developer path
$n = mock_count($t);
$r = resp($key, {}, path => '/api/v1/developer/responses');
is($r->{status}, 200, 'developer path: 200');
is((mock_since($t, $n))[0]{path}, '/v1/responses',
   '... the provider called at its /responses');
billed_as(next_event(), $r->{json}{usage}, 'developer path');

# An answer cut before its usage is billed on an estimate: its completion
# from the characters of the output's text.  Before, a passed-through
# Responses API answer's output was not read (only chat's choices were),
# and the estimate was 0 completion tokens.
{
    my $full = resp($key, {});
    next_event();
    my $text = $full->{json}{output}[0]{content}[0]{text} // '';
    my $at = index($full->{content}, '"usage"');
    ok(length $text && $at > index($full->{content}, $text),
       'cut: the answer gives its text before its usage');

    resp($key, {}, headers => { 'x-mock-json-cut' => $at });
    my $e = next_event();
    ok($e && $e->{estimated}, 'cut before its usage: estimated');
    is($e && $e->{completion_tokens}, int((length($text) + 3) / 4),
       '... its completion from the output text ('
       . length($text) . ' characters)');
}


# --- streamed -----------------------------------------------------------------

for my $case ([ 'completed', {}, 'response.completed' ],
              [ 'incomplete', { max_output_tokens => 4 },
                'response.incomplete' ])
{
    my ($what, $extra, $last) = @$case;

    $r = raw_request($t, key => $key, path => '/v1/responses',
                     body => { model => 'test-resp', input => 'hello',
                               stream => JSON::PP::true, %$extra });
    is($r->{status}, 200, "stream $what: 200");
    like($r->{headers}{'content-type'}, qr{^text/event-stream},
         "stream $what: an event stream");

    my @data = sse_data(@{ $r->{events} });
    is($data[0]{type}, 'response.created', "stream $what: starts with "
       . 'response.created');
    is($data[-1]{type}, $last, "stream $what: ends with $last");
    ok(!(grep { !ref $_ } @data), "stream $what: no [DONE]");

    my $deltas = join '', map { $_->{delta} }
                 grep { $_->{type} eq 'response.output_text.delta' } @data;
    ok(length $deltas, "stream $what: text deltas ($deltas)");

    # byte for byte what the mock sent: each event has its "event:" line
    like($r->{body}, qr/^event: response\.created\ndata: /,
         "stream $what: the event lines pass through");

    $e = next_event();
    ok($e->{streamed}, "stream $what: event streamed");
    ok(!$e->{aborted}, "stream $what: not aborted");
    billed_as($e, $data[-1]{response}{usage}, "stream $what");
}


# response.failed: billed for the usage it reports
{
    $r = raw_request($t, key => $key, path => '/v1/responses',
                     headers => { 'x-mock-failed' => 1 },
                     body => { model => 'test-resp', input => 'hello',
                               stream => JSON::PP::true });
    my @data = sse_data(@{ $r->{events} });
    is($data[-1]{type}, 'response.failed', 'stream failed: the last event');
    ok($data[-1]{response}{error}, 'stream failed: with its error');

    $e = next_event();
    is($e->{status}, 200, 'stream failed: the call was answered (200)');
    billed_as($e, $data[-1]{response}{usage}, 'stream failed');
}


# --- the client hangs up mid-stream --------------------------------------------

{
    my $calls = period_calls($t, $ACCOUNT);

    $r = raw_request($t, key => $key, path => '/v1/responses',
                     headers => { 'x-mock-chunk-delay-ms' => 300,
                                  'x-mock-completion-tokens' => 20 },
                     body => { model => 'test-resp', input => 'hello',
                               stream => JSON::PP::true },
                     abort_after => 6);

    is(scalar @{ $r->{events} }, 6, 'abort: six events, then hung up');

    $e = next_event();
    ok($e->{aborted}, 'abort: event aborted');
    ok($e->{estimated}, 'abort: event estimated (no usage arrived)');
    is($e->{prompt_tokens}, ceil4(length 'hello'),
       'abort: prompt = ceil(input chars / 4)');

    # "tok", " tok" delivered (events 5 and 6), perhaps one more written
    # before the hang-up was seen
    ok($e->{completion_tokens} == ceil4(7)
       || $e->{completion_tokens} == ceil4(11),
       'abort: completion = ceil(delivered delta chars / 4)')
        or diag("completion_tokens $e->{completion_tokens}");
    is($e->{cost_micros}, cost_of($M, $e->{prompt_tokens},
                                  $e->{total_tokens}), 'abort: cost');
    ok($t->wait_for(sub { period_calls($t, $ACCOUNT) == $calls + 1 }),
       'abort: the call counts (delivered tokens billed)');
}


# --- refused: never forwarded, never billed -------------------------------------

$n = mock_count($t);
my $calls = period_calls($t, $ACCOUNT);

is_error(resp($key, { input => 42 }), 400, 'invalid_request_error',
         'input of the wrong type');
is_error(resp($key, { input => [ 'not an item' ] }), 400,
         'invalid_request_error', 'input items that are not objects');
is_error(resp($key, { instructions => [ 1 ] }), 400,
         'invalid_request_error', 'instructions not a string');
is_error(resp($key, { stream => 'yes' }), 400, 'invalid_request_error',
         'stream not a boolean');
is_error(resp($key, { max_output_tokens => 101 }), 400,
         'max_tokens_exceeded', 'max_output_tokens above the plan\'s cap');
is_error(resp($key, { model => 'test-premium' }), 403, 'model_not_allowed',
         'a model the plan does not allow');
is_error(resp($key, { model => 'nope' }), 404, 'model_not_found',
         'an unknown model');
is_error(resp($spent, {}), 429, 'insufficient_quota', 'the quota used up');
is_error($t->http(GET => '/v1/responses', key => $key), 405,
         'method_not_allowed', 'GET');

is(mock_count($t), $n, 'none of them reached the provider');

is(resp($slow, {})->{status}, 200, 'rate limit: the first');
is_error(resp($slow, {}), 429, 'rate_limit_exceeded', 'rate limit: the second');
is(mock_count($t), $n + 1, 'only the first reached the provider');

ok(next_event(), 'the rate-limited key\'s first call: an event');
sleep 0.3;
is(scalar(usage_events($t)), $seen, 'no other event');
is(period_calls($t, $ACCOUNT), $calls, 'the refused calls are not counted');

$t->allow_log(qr/client prematurely closed|upstream prematurely closed/);
$t->done;
