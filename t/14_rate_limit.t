#!/usr/bin/perl

# Rate limits, the account's (all its keys share them): exact requests per
# minute in shared memory, the OpenAI headers on every answer, 429
# rate_limit_exceeded with Retry-After, nothing forwarded or counted for a
# 429; "aihub_rate_limit global" shares one limit between nginx nodes
# through Redis.

use strict;
use warnings;

use Test::More;

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);

plan(skip_all => 'module not built') unless Aihub::have_module();

my $t = Aihub->new(redis => 1, mock => 1);

seed_models($t);
my $k3 = seed_full_key($t, account => 1401, rpm => 3);
my $tk = seed_full_key($t, account => 1402, rpm => 100, tpm => 10000);
my $none = seed_full_key($t, account => 1403);

# two local nodes, and two "global" nodes sharing Redis
my $LOCAL = <<'END';
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

my $GLOBAL = <<'END';
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
            aihub_rate_limit global;
        }

        location /api/v1/developer/ {
            aihub on;
            aihub_failure_mode closed;
            proxy_pass $aihub_proxy_url;
            proxy_set_header Host $aihub_provider_host;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            aihub_rate_limit global;
        }

        location = /plain {
            return 200 "plain\n";
        }
    }
END

$t->nginx($LOCAL)->start_nginx;
$t->nginx($LOCAL, name => 'l2')->start_nginx('l2');
$t->nginx($GLOBAL, name => 'g1')->start_nginx('g1');
$t->nginx($GLOBAL, name => 'g2')->start_nginx('g2');

for my $n (qw(nginx l2 g1 g2)) {
    ok(wait_ready($t, $none, name => $n), "$n: catalog loaded");
}

my $DURATION = qr/^(?:\d+(?:\.\d+)?(?:ms|s)|\d+m\d+(?:\.\d+)?s|\d+h\d+m\d+(?:\.\d+)?s)$/;

# --- rpm 3 on one node ----------------------------------------------------------

my @remaining;

for my $i (1 .. 3) {
    my $r = $t->chat($k3, model => 'test-basic');
    is($r->{status}, 200, "rpm 3: request $i passes");
    is($r->{headers}{'x-ratelimit-limit-requests'}, 3,
       "request $i: x-ratelimit-limit-requests 3");
    push @remaining, $r->{headers}{'x-ratelimit-remaining-requests'};
    like($r->{headers}{'x-ratelimit-reset-requests'} // '', $DURATION,
         "request $i: x-ratelimit-reset-requests is a duration");
    ok(!exists $r->{headers}{'x-ratelimit-limit-tokens'},
       "request $i: no token headers without a token limit");
}

is_deeply(\@remaining, [ 2, 1, 0 ], 'remaining requests: 2, 1, 0');

my $forwarded = mock_count($t);

my $r = $t->chat($k3, model => 'test-basic');
is_error($r, 429, 'rate_limit_exceeded', 'rpm 3: the fourth request');
is($r->{json}{error}{type}, 'requests', '429: type "requests" as OpenAI');
like($r->{headers}{'retry-after'} // '', qr/^[1-9]\d*$/,
     '429: Retry-After in whole seconds, at least 1');
cmp_ok($r->{headers}{'retry-after'} // 99, '<=', 20,
       '429: Retry-After no more than one emission interval (20 s)');
is($r->{headers}{'x-ratelimit-limit-requests'}, 3, '429: limit header');
is($r->{headers}{'x-ratelimit-remaining-requests'}, 0,
   '429: remaining 0');
like($r->{headers}{'x-ratelimit-reset-requests'} // '', $DURATION,
     '429: reset header');

is(mock_count($t), $forwarded, 'the 429 reached nothing');
calls_settle($t, 1401, 3, 'the 429 was not counted against the quota');

# other keys are not affected
is($t->chat($none, model => 'test-basic')->{status}, 200,
   'another key is not limited');

# a request refused before the limit step (unknown model) takes no slot
my $k1 = seed_full_key($t, account => 1404, rpm => 1);
is_error($t->chat($k1, model => 'no-such-model'), 404, 'model_not_found',
         'rpm 1: an unknown model first');
is($t->chat($k1, model => 'test-basic')->{status}, 200,
   'rpm 1: the rejected request did not use the one slot');


# --- token headers ---------------------------------------------------------------

$r = $t->chat($tk, model => 'test-basic');
is($r->{status}, 200, 'tpm key: 200');
is($r->{headers}{'x-ratelimit-limit-tokens'}, 10000, 'limit-tokens 10000');
like($r->{headers}{'x-ratelimit-remaining-tokens'} // '', qr/^\d+$/,
     'remaining-tokens present');
cmp_ok($r->{headers}{'x-ratelimit-remaining-tokens'} // 1e9, '<=', 10000,
       'remaining-tokens within the limit');
like($r->{headers}{'x-ratelimit-reset-tokens'} // '', $DURATION,
     'reset-tokens is a duration');
is($r->{headers}{'x-ratelimit-limit-requests'}, 100,
   'tpm key: request headers too');

my $r2 = $t->chat($tk, model => 'test-basic');
cmp_ok($r2->{headers}{'x-ratelimit-remaining-tokens'}, '<',
       10000, 'tokens of the first call were charged to the limiter')
    or diag("remaining-tokens: $r2->{headers}{'x-ratelimit-remaining-tokens'}");

# a key with a tiny token limit is refused once it is used up
my $tiny = seed_full_key($t, account => 1405, tpm => 15);
my @st = map { $t->chat($tiny, model => 'test-basic')->{status} } 1 .. 3;
is($st[0], 200, 'tpm 15: the first call (12 tokens) passes');
ok((grep { $_ == 429 } @st), 'tpm 15: a later call is refused')
    or diag("statuses: @st");
$r = $t->chat($tiny, model => 'test-basic');
is_error($r, 429, 'rate_limit_exceeded', 'tpm exhausted');
like($r->{headers}{'retry-after'} // '', qr/^[1-9]\d*$/,
     'tpm 429: Retry-After');


# --- local vs global across two nodes ----------------------------------------------

my $kl = seed_full_key($t, account => 1406, rpm => 2);
my %ok;
for my $i (0 .. 7) {
    my $n = $i % 2 ? 'l2' : 'nginx';
    $ok{$n}++ if $t->chat($kl, model => 'test-basic', name => $n)
                   ->{status} == 200;
}
is_deeply(\%ok, { nginx => 2, l2 => 2 },
          'local limit, rpm 2: each node allows 2 of its own');

my $kg = seed_full_key($t, account => 1407, rpm => 4);
my (@gs, %gok);
for my $i (0 .. 9) {
    my $n = $i % 2 ? 'g2' : 'g1';
    my $r = $t->chat($kg, model => 'test-basic', name => $n);
    push @gs, $r;
    $gok{$n}++ if $r->{status} == 200;
}
my @statuses = map { $_->{status} } @gs;
is(scalar(grep { $_ == 200 } @statuses), 4,
   'global limit, rpm 4: exactly 4 pass across both nodes')
    or diag("statuses: @statuses");
is_deeply(\%gok, { g1 => 2, g2 => 2 }, 'global: two on each node');
is_deeply([ @statuses[4 .. 9] ], [ (429) x 6 ], 'global: the rest 429');
is_error($gs[4], 429, 'rate_limit_exceeded', 'global 429');
like($gs[4]{headers}{'retry-after'} // '', qr/^[1-9]\d*$/,
     'global 429: Retry-After');
is($gs[0]{headers}{'x-ratelimit-limit-requests'}, 4,
   'global: limit header');
is_deeply([ map { $_->{headers}{'x-ratelimit-remaining-requests'} }
            @gs[0 .. 3] ], [ 3, 2, 1, 0 ],
          'global: remaining 3, 2, 1, 0 across the nodes');
calls_settle($t, 1407, 4, 'global: the 429s were not counted');


# --- the limits are the account's, not each key's (issue 10) --------------------

# An admin key of an account at rpm 2 mints five keys through the developer
# API; the six keys share the account's 2 requests per minute, on one node
# (the local limit) and across two nodes (the global one).
for my $case ([ 'local', 1408, 'nginx', 'nginx' ],
              [ 'global', 1409, 'g1', 'g2' ]) {
    my ($mode, $account, @nodes) = @$case;

    my $admin = seed_full_key($t, account => $account, rpm => 2,
                              scopes => 'chat,admin');
    my @keys = ($admin);
    for my $i (1 .. 5) {
        my $r = $t->http(POST => '/api/v1/developer/api-keys', key => $admin,
                         name => $nodes[0], body => { label => "k$i" });
        is($r->{status}, 201, "$mode: key $i minted")
            or diag($r->{content});
        push @keys, $r->{json}{key} // '';
    }
    is(scalar(grep { length($_) } @keys), 6, "$mode: six keys of one account");

    my @st;
    for my $i (0 .. 17) {
        push @st, $t->chat($keys[$i % 6], model => 'test-basic',
                           name => $nodes[$i % 2])->{status};
    }
    is(scalar(grep { $_ == 200 } @st), 2,
       "$mode, rpm 2, six keys: 2 of 18 calls answered in total")
        or diag("statuses: @st");
    is(scalar(grep { $_ == 429 } @st), 16, "$mode: the other 16 are 429");
    calls_settle($t, $account, 2, "$mode: 2 calls counted");
}


# --- a client gone before its call reached the provider ---------------------

# rpm 2: a request takes its slot, then its client hangs up half way
# through the body.  The slot goes back, as a refused call's does: both of
# the next two calls are answered.  Before, it stayed taken for the
# minute, and the second was 429.
{
    my $kgone = seed_full_key($t, account => 1409, rpm => 2);
    my $s = $t->connect;
    print $s "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"
        . "Authorization: Bearer $kgone\r\n"
        . "Content-Type: application/json\r\nContent-Length: 200\r\n\r\n"
        . '{"model":"test-basic","messages":[';
    select(undef, undef, undef, 0.5);
    close $s;
    select(undef, undef, undef, 0.3);
    my @st = map { $t->chat($kgone, model => 'test-basic')->{status} } 1 .. 2;
    is("@st", '200 200', 'rpm 2, a client gone half way through its body: '
                         . 'its slot went back, the next 2 calls answered');
}

$t->done;
