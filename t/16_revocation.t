#!/usr/bin/perl

# Revocation reaches every worker process and every nginx node within one
# second: Redis pub/sub invalidation ("key:<hash>"), with the cache TTL as
# the safety net; also through "aihub-worker key revoke" when the worker is
# built.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);

plan(skip_all => 'module not built') unless Aihub::have_module();

my $t = Aihub->new(redis => 1, mock => 1);

seed_models($t);
my $probe = seed_full_key($t, account => 1600);

# two nodes, the first with two worker processes; a third with a short
# cache TTL and no pub/sub help needed
my $HTTP = <<'END';
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

$t->nginx($HTTP);
worker_processes($t, 2);
$t->nginx($HTTP, name => 'n2');
$t->nginx("    aihub_cache_ttl 300ms;\n" . $HTTP, name => 'ttl');
$t->start_nginx($_) for qw(nginx n2 ttl);
for my $n (qw(nginx n2 ttl)) {
    ok(wait_ready($t, $probe, name => $n), "$n: catalog loaded");
}


# time until every node answers 401 for $key, polling every 20 ms

my $MODEL = 'test-basic';

sub time_to_401 {
    my ($key, $start, @names) = @_;

    my %done;
    my $deadline = $start + 3;

    while (time < $deadline && keys %done < @names) {
        for my $n (grep { !$done{$_} } @names) {
            my $r = $t->chat($key, model => $MODEL, name => $n,
                             timeout => 2);
            $done{$n} = time - $start if $r->{status} == 401;
        }
        sleep 0.02;
    }

    return map { $done{$_} } @names;
}


sub warm {
    my ($key, @names) = @_;

    for my $n (@names) {
        # several requests, so both worker processes of "nginx" see it
        for (1 .. 4) {
            my $r = $t->chat($key, model => $MODEL, name => $n);
            return 0 unless $r->{status} == 200;
        }
    }
    return 1;
}


# --- pub/sub invalidation, two nodes ---------------------------------------------

my $key = seed_full_key($t, account => 1601);
ok(warm($key, qw(nginx n2)), 'the key works (and is cached) on both nodes');

my $hash = Aihub::key_hash($key);
my $start = time;
$t->redis('HSET', "aihub:key:$hash", 'status', 'revoked');
$t->redis('PUBLISH', 'aihub:invalidate', "key:$hash");

my @took = time_to_401($key, $start, qw(nginx n2));
for my $i (0, 1) {
    my $n = (qw(nginx n2))[$i];
    ok(defined $took[$i] && $took[$i] < 1,
       sprintf("revoked + published: 401 on %s within 1 s (%s)", $n,
               defined $took[$i] ? sprintf('%.3f s', $took[$i]) : 'never'));
}

my $r = $t->chat($key, model => 'test-basic');
is_error($r, 401, 'invalid_api_key', 'revoked key');
like($r->{json}{error}{message}, qr/revoked/, 'the message says revoked');

# several requests: whichever worker process takes them, all are 401
my @st = map { $t->chat($key, model => 'test-basic')->{status} } 1 .. 6;
is_deeply(\@st, [ (401) x 6 ], 'every worker process refuses it');

# an account-wide invalidation ("account:<id>"): a plan change
my $acct = seed_full_key($t, account => 1602, models => 'tier:basic');
ok(warm($acct, 'nginx'), 'account key warm');
is($t->chat($acct, model => 'test-premium')->{status}, 403,
   'free: premium refused');
$t->redis('HSET', 'aihub:key:' . Aihub::key_hash($acct), 'models', '*',
          'plan', 'pro');
$t->redis('PUBLISH', 'aihub:invalidate', 'account:1602');
ok($t->wait_for(sub {
    $t->chat($acct, model => 'test-premium')->{status} == 200
}, timeout => 1), 'account invalidation: the plan change applies within 1 s');

# --- without a publish: the TTL is the safety net ----------------------------------

# A cached record counts as fresh only once the worker process's
# subscription has heard its own heartbeat (README, aihub_cache_ttl): wait
# until both worker processes of "nginx" serve a record changed in Redis
# without an invalidation from their cache.
my $round = 0;
ok($t->wait_for(sub {
    my $k = seed_full_key($t, account => 1690 + $round++ % 9);
    my $h = 'aihub:key:' . Aihub::key_hash($k);
    return 0 unless $t->chat($k, model => $MODEL)->{status} == 200;
    $t->redis('HSET', $h, 'status', 'suspended');
    my @st = map { $t->chat($k, model => $MODEL)->{status} } 1 .. 6;
    return !grep { $_ != 200 } @st;
}, timeout => 10), 'both worker processes trust their key cache');

my $quiet = seed_full_key($t, account => 1604);
ok(warm($quiet, qw(nginx ttl)), 'key warm on the default and the TTL node');
$start = time;
$t->redis('HSET', 'aihub:key:' . Aihub::key_hash($quiet), 'status',
          'revoked');
my ($ttl_took) = time_to_401($quiet, $start, 'ttl');
ok(defined $ttl_took && $ttl_took < 1,
   sprintf('no publish, TTL 300 ms: 401 after %s',
           defined $ttl_took ? sprintf('%.3f s', $ttl_took) : 'never'));
is($t->chat($quiet, model => 'test-basic')->{status}, 200,
   'no publish, default TTL (30 s): still served from the cache');

# "all" (after the TTL case: each worker process applies an "all" to the
# shared cache when its own subscription hears it, so a key cached just
# after one may be read again when the other process hears it)
my $all = seed_full_key($t, account => 1603);
ok(warm($all, 'nginx'), 'key warm');
$t->redis('HSET', 'aihub:key:' . Aihub::key_hash($all), 'status', 'revoked');
$t->redis('PUBLISH', 'aihub:invalidate', 'all');
ok($t->wait_for(sub {
    $t->chat($all, model => 'test-basic')->{status} == 401
}, timeout => 1), '"all" invalidation: revoked within 1 s');


# --- through aihub-worker ----------------------------------------------------------

SKIP: {
    skip 'aihub-worker not built', 7 unless Aihub::have_worker();

    $t->start_mariadb;
    $t->migrate;
    # migrate synced the SQL catalog (mock-basic, provider mock): make
    # every node load it now
    $t->redis('PUBLISH', 'aihub:invalidate', 'models');
    $MODEL = 'mock-basic';
    ok($t->wait_for(sub {
        my $r = $t->http(GET => '/v1/models', key => $probe);
        grep { $_->{id} eq 'mock-basic' } @{ $r->{json}{data} // [] };
    }), 'the SQL catalog is loaded');

    my $cli = $t->create_key(account => 'revoke-cli', plan => 'free');
    like($cli, qr/^ai-hub-[0-9A-Za-z]{38}$/, 'key create printed a key');

    ok(warm($cli, qw(nginx n2)), 'CLI key works on both nodes');

    $start = time;
    my ($rc, $out, $err) = $t->worker('key', 'revoke',
                                      Aihub::key_prefix($cli));
    is($rc, 0, 'aihub-worker key revoke exits 0') or diag($out . $err);
    my $cmd = time - $start;

    @took = time_to_401($cli, $start, qw(nginx n2));
    for my $i (0, 1) {
        my $n = (qw(nginx n2))[$i];
        ok(defined $took[$i] && $took[$i] < 1 + $cmd,
           sprintf("CLI revoke: 401 on %s within 1 s of the command "
                   . "(%s, command %.3f s)", $n,
                   defined $took[$i] ? sprintf('%.3f s', $took[$i])
                                     : 'never', $cmd));
    }

    is($t->sql_value("SELECT status FROM api_keys WHERE prefix = '"
                     . Aihub::key_prefix($cli) . "'"), 'revoked',
       'MySQL records the revocation');
}

$t->done;
