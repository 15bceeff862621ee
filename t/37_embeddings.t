#!/usr/bin/perl

# POST /v1/embeddings (and /api/v1/developer/embeddings): the same keys,
# plans, model access, rate limits, quota and metering as chat.
#   - forwarded to the provider's /embeddings, the answer passed through
#     (float and base64);
#   - metered on the provider's usage.prompt_tokens at the input price,
#     0 completion tokens, not estimated, counted as a call;
#   - a chat model on embeddings, and an embedding model on chat or
#     responses: 400 invalid_request_error with a clear message;
#   - a malformed input, a model the plan does not allow, the quota used
#     up, the rate limit: refused;
# every refused request is never forwarded (the mock's log) and never
# billed (no usage event, the period's calls unchanged).

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
    'test-embed'    => { provider => 'mock', upstream => 'mock-embed',
                         tier => 'basic', kind => 'embedding',
                         price_in => 20000, price_out => 0,
                         created => 1735689600 },
    'test-embed-pro' => { provider => 'mock', upstream => 'mock-embed',
                          tier => 'premium', kind => 'embedding',
                          price_in => 130000, price_out => 0 },
);
seed_models($t, %models);

my $free = seed_full_key($t, account => 3701, plan => 'free');
my $spent = seed_full_key($t, account => 3702, plan => 'free',
                          included => 0);
my $slow = seed_full_key($t, account => 3703, plan => 'free', rpm => 1);

$t->nginx(<<'END')->start_nginx;
    aihub_redis %%REDIS%%;
    aihub_redis_timeout 300ms;
    aihub_cache_zone aihub:8m;
    aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;

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

ok(wait_ready($t, $free), 'gateway ready');

sub embed {
    my ($key, $body, %o) = @_;

    return $t->http(POST => $o{path} // '/v1/embeddings', key => $key,
                    body => { model => 'test-embed', %$body });
}


# --- forwarded and metered ---------------------------------------------------

my $n = mock_count($t);
my $r = embed($free, { input => [ 'hello world', 'a second text' ] });

is($r->{status}, 200, 'embeddings: 200');
is($r->{json}{object}, 'list', '... the provider\'s list');
is(scalar @{ $r->{json}{data} // [] }, 2, '... two embeddings');
is(ref $r->{json}{data}[0]{embedding}, 'ARRAY', '... as floats');

my @log = mock_since($t, $n);
is(scalar @log, 1, 'forwarded once');
is($log[0]{path}, '/v1/embeddings', '... to the provider\'s /embeddings');
is(decode_json($log[0]{body})->{model}, 'mock-embed',
   '... with its own model id');

my @ev = wait_usage($t, 1);
is(scalar @ev, 1, 'one usage event');
my $e = $ev[0];
my $u = $r->{json}{usage};
is($e->{model}, 'test-embed', 'event: the model');
is($e->{prompt_tokens}, $u->{prompt_tokens},
   "event: the provider's prompt_tokens ($u->{prompt_tokens})");
is($e->{completion_tokens}, 0, 'event: no completion tokens');
is($e->{total_tokens}, $u->{total_tokens}, 'event: total_tokens');
is($e->{cost_micros}, cost_of($models{'test-embed'}, $u->{prompt_tokens},
                              $u->{total_tokens}),
   'event: cost at the input price');
ok(!$e->{estimated}, 'event: not estimated');
ok(!$e->{streamed}, 'event: not streamed');
is($e->{status}, 200, 'event: status 200');
ok($t->wait_for(sub { period_calls($t, 3701) == 1 }), 'counted as a call');

# base64, and the developer path
$r = embed($free, { input => 'hello', encoding_format => 'base64' },
           path => '/api/v1/developer/embeddings');
is($r->{status}, 200, 'developer path, base64: 200');
like($r->{json}{data}[0]{embedding} // '', qr{^[A-Za-z0-9+/]+=*$},
     '... the base64 string passed through');
is((mock_since($t, $n))[-1]{path}, '/v1/embeddings',
   '... the provider called at its /embeddings');
@ev = wait_usage($t, 2);
is($ev[-1]{prompt_tokens}, $r->{json}{usage}{prompt_tokens},
   '... metered on its usage');
ok($t->wait_for(sub { period_calls($t, 3701) == 2 }), '... a second call');

# token ids
$r = embed($free, { input => [ [ 1, 2, 3 ], [ 4, 5 ] ] });
is($r->{status}, 200, 'token-id arrays: 200');
@ev = wait_usage($t, 3);
is($ev[-1]{prompt_tokens}, 5, '... 5 tokens');
ok($t->wait_for(sub { period_calls($t, 3701) == 3 }), '... a third call');


# --- refused: never forwarded, never billed ----------------------------------

$n = mock_count($t);
my $events = scalar(usage_events($t));
my $calls = period_calls($t, 3701);

is_error(embed($free, { model => 'test-basic', input => 'hi' }), 400,
         'invalid_request_error', 'a chat model on embeddings');
like(embed($free, { model => 'test-basic', input => 'hi' })
     ->{json}{error}{message}, qr/not an embedding model/,
     '... says so');
my $c = $t->chat($free, model => 'test-embed');
is_error($c, 400, 'invalid_request_error', 'an embedding model on chat');
like($c->{json}{error}{message}, qr/embedding model.*\/v1\/embeddings/,
     '... says where to call it');
is_error($t->http(POST => '/v1/responses', key => $free,
                  body => { model => 'test-embed', input => 'hi' }),
         400, 'invalid_request_error', 'an embedding model on responses');
is_error(embed($free, {}), 400, 'invalid_request_error', 'no input');
is_error(embed($free, { input => [] }), 400, 'invalid_request_error',
         'an empty input');
is_error(embed($free, { input => [ { text => 'x' } ] }), 400,
         'invalid_request_error', 'an input of objects');
is_error(embed($free, { input => 'x', model => 'test-embed-pro' }), 403,
         'model_not_allowed', 'a model the plan does not allow');
is_error(embed($free, { input => 'x', model => 'nope' }), 404,
         'model_not_found', 'an unknown model');
is_error($t->http(GET => '/v1/embeddings', key => $free), 405,
         'method_not_allowed', 'GET');
is_error(embed($spent, { input => 'x' }), 429, 'insufficient_quota',
         'the quota used up');

is(mock_count($t), $n, 'none of them reached the provider');

is(embed($slow, { input => 'x' })->{status}, 200, 'rate limit: the first');
$r = embed($slow, { input => 'x' });
is_error($r, 429, 'rate_limit_exceeded', 'rate limit: the second');
ok($r->{headers}{'retry-after'}, '... with Retry-After');
is(mock_count($t), $n + 1, 'only the first reached the provider');

@ev = wait_usage($t, $events + 1);
sleep 0.3;
is(scalar(usage_events($t)), $events + 1,
   'one usage event more: the rate-limited key\'s first call');
is(period_calls($t, 3701), $calls, 'the refused calls are not counted');

$t->done;
