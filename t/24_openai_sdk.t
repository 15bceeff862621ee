#!/usr/bin/perl

# The official OpenAI Node SDK (npm "openai" 6.x, pinned in
# t/node/package-lock.json; installed with "npm ci" in t/node) pointed at
# the gateway with baseURL and an ai-hub key works unchanged: a chat
# completion, a stream read with "for await", and the SDK's own error
# classes for our 401, 403, 404 and 429.

use strict;
use warnings;

use Test::More;
use JSON::PP;

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);

my $node_dir = Aihub->root . '/t/node';

my $node = `node --version 2>/dev/null`;
plan skip_all => 'node is not installed (Node 20 runs the OpenAI SDK test)'
    unless $node && $node =~ /^v(\d+)/ && $1 >= 20;
plan skip_all => "the OpenAI SDK is not installed: run "
                 . "\"npm ci --prefix t/node\""
    unless -f "$node_dir/node_modules/openai/package.json";

my $t = Aihub->new;
$t->skip_unless_built;
$t->start_redis;
$t->start_mock;

seed_models($t);
my $key = seed_full_key($t, account => 24, plan => 'pro', models => '*');
my $free = seed_full_key($t, account => 25, plan => 'free');
my $spent = seed_full_key($t, account => 26, plan => 'free', included => 0);

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
            aihub_failure_mode closed;
            proxy_pass $aihub_proxy_url;
            proxy_set_header Host $aihub_provider_host;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }

        location /api/v1/developer/ {
            aihub on;
            aihub_failure_mode closed;
            proxy_pass $aihub_proxy_url;
            proxy_set_header Host $aihub_provider_host;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }

        location = /plain {
            return 200 "plain\n";
        }
    }
END

ok(wait_ready($t, $key), 'gateway ready');

my ($rc, $out, $err) = $t->run_cmd(
    [ 'node', "$node_dir/sdk_check.mjs" ],
    env => { AIHUB_BASE_URL  => 'http://127.0.0.1:' . $t->port . '/v1',
             AIHUB_KEY       => $key,
             AIHUB_FREE_KEY  => $free,
             AIHUB_SPENT_KEY => $spent },
    timeout => 60);

is($rc, 0, 'sdk_check.mjs ran') or diag($err);

my $res = eval { decode_json((split /\n/, $out)[-1] // '') } // {};
like($res->{version} // '', qr/^6\./, "openai SDK 6.x ($res->{version})");

my $tokens = join ' ', ('tok') x 7;

is($res->{chat}{content}, $tokens, 'chat: the completion');
is($res->{chat}{usage}{completion_tokens}, 7, 'chat: its usage');
like($res->{chat}{request_id} // '', qr/^[0-9a-f]{32}$/,
     'chat: one x-request-id, ours');

is($res->{stream}{content}, $tokens, 'stream: for await, the content');
is($res->{stream}{usage_chunks}, 0, 'stream: no usage chunk unasked');
is($res->{stream}{chunks}, 8, 'stream: 8 chunks (7 words, stop)');

is($res->{stream_usage}{content}, $tokens, 'stream with usage: content');
is($res->{stream_usage}{usage}{completion_tokens}, 7,
   'stream with usage: the usage chunk');

my %want = (
    unauthorized => [ 'AuthenticationError', 401, 'invalid_api_key' ],
    forbidden    => [ 'PermissionDeniedError', 403, 'model_not_allowed' ],
    not_found    => [ 'NotFoundError', 404, 'model_not_found' ],
    provider_429 => [ 'RateLimitError', 429, 'rate_limit_exceeded' ],
    quota_429    => [ 'RateLimitError', 429, 'insufficient_quota' ],
);

for my $case (sort keys %want) {
    my ($class, $status, $code) = @{ $want{$case} };
    my $e = $res->{$case} // {};

    is($e->{error}, $class, "$case: the SDK raises $class");
    is($e->{status}, $status, "$case: status $status");
    is($e->{code}, $code, "$case: code $code");
}

is_deeply($res->{models}, [ sort keys %MODELS ],
          'models.list(): the catalog');

$t->done;
