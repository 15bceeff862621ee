#!/usr/bin/perl

# Faults around a call's quota lease (issue 10, "Must hold"): each case
# ends with the account's period counter equal to its ledger and no lease
# outstanding, with no manual action.  The ledger here is what the worker
# would store: the usage events in the stream with a 2xx status (no
# MariaDB needed).  The accounts of the first cases have 10 calls: near
# the edge, where every call waits for its own lease of one call.
#
#   - the grant's reply comes after aihub_redis_timeout (Redis frozen):
#     the 503 gives its lease back;
#   - the client goes away before the grant's reply: given back;
#   - the nginx worker processes are killed (SIGKILL) mid-call: their
#     leases expire (aihub_lease_time 2s here) and the sweep reclaims
#     them; the same far from the edge, where the calls came out of the
#     node's block lease (the zone outlives its processes: the unused rest
#     goes back when the node is idle, the killed calls when it expires);
#   - Redis (with its AOF) restarted between the reserve and the settle of
#     a failed call and of a successful one: the settles wait in the
#     confirmed buffer and are applied once when Redis is back;
#   - period rollover with a lease outstanding: the next month's node
#     (aihub_time_offset 40d) admits its whole quota, the running call is
#     counted in its own month.
#
# No timed assertion: every wait is a poll with a generous bound.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);
use AihubStream qw(usage_events);

plan(skip_all => 'module not built') unless Aihub::have_module();

my @aof = ('--appendonly', 'yes', '--appendfsync', 'always');
my $t = Aihub->new(redis => 1, redis_args => \@aof, mock => 1);

seed_models($t);
my $probe = seed_full_key($t, account => 6900);

my $HTTP = <<'END';
    aihub_redis %%REDIS%%;
    aihub_redis_timeout 300ms;
    aihub_lease_time 2s;
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
    }
END
$t->nginx($HTTP);
worker_processes($t, 2);
$t->start_nginx;
# a node living 40 days ahead: the next billing period
$t->nginx("    aihub_time_offset 40d;\n" . $HTTP, name => 'future');
$t->start_nginx('future');
ok(wait_ready($t, $probe, name => 'future'), 'future: catalog loaded');
ok(wait_ready($t, $probe), 'catalog loaded');

my $PERIOD = period_id();

sub counted {
    my ($account, $f) = @_;
    return ($t->redis('HGET', "aihub:period:$account:$PERIOD",
                      $f // 'calls') // 0) + 0;
}

sub held { counted($_[0], 'leased_calls') }

sub ledger {
    my ($account) = @_;
    return scalar grep { $_->{account} == $account
                         && $_->{status} >= 200 && $_->{status} < 300 }
                  usage_events($t);
}

sub healed {
    my ($account, $name) = @_;
    my $ok = $t->wait_for(sub {
        counted($account) == ledger($account) && held($account) == 0
        && ($t->redis('ZCARD', "aihub:leases:$account:$PERIOD") // 0) == 0
    }, timeout => 20, interval => 0.1);
    ok($ok, "$name: the counter equals the ledger, no lease left")
        or diag("counted " . counted($account) . ", ledger "
                . ledger($account) . ", held " . held($account));
}


# --- 1. the reserve's reply after the timeout --------------------------------

my $k1 = seed_full_key($t, account => 6901, included => 10);
is($t->chat($k1, model => 'test-basic')->{status}, 200, 'timeout: one call');

$t->redis_nowait('DEBUG', 'SLEEP', '1');
sleep 0.1;
my $r = $t->chat($k1, model => 'test-basic');
is($r->{status}, 503, 'timeout: a call while Redis is frozen gets 503');
healed(6901, 'timeout');
is(counted(6901), 1, 'timeout: one call counted, the one answered');


# --- 2. the client gone before the reply ---------------------------------------

my $k2 = seed_full_key($t, account => 6902, included => 10);
is($t->chat($k2, model => 'test-basic')->{status}, 200, 'gone: one call');

$t->redis_nowait('DEBUG', 'SLEEP', '1');
sleep 0.1;
my @gone = map { raw_chat($t, $k2) } 1 .. 3;
sleep 0.1;
close $_ for @gone;
sleep 1.2;
healed(6902, 'client gone');
is(counted(6902), 1, 'client gone: only the answered call counted');


# --- 3. the nginx worker process killed mid-call -------------------------------

my $k3 = seed_full_key($t, account => 6903, included => 10);
my @slow = map { raw_chat($t, $k3, 'x-mock-delay-ms' => 3000) } 1 .. 2;
ok($t->wait_for(sub { held(6903) == 2 }, timeout => 10),
   'kill: two calls leased and in flight');
$t->allow_log(qr/exited on signal 9/);
kill 'KILL', $t->nginx_worker_pids;
close $_ for @slow;
ok($t->wait_for(sub { scalar(() = $t->nginx_worker_pids) == 2 },
                timeout => 10), 'kill: the master started new workers');
is(held(6903), 2, 'kill: the killed calls are still leased');
is(counted(6903), 0, 'kill: and not counted');
is(ledger(6903), 0, 'kill: and in no ledger');

# after the lease time the sweep reclaims them, with no call of the
# account and no manual action
healed(6903, 'worker killed');
is(counted(6903), 0, 'kill: nothing counted once the leases expired');
ok(wait_ready($t, $probe), 'kill: serving again');
is($t->chat($k3, model => 'test-basic')->{status}, 200, 'kill: a call');
healed(6903, 'worker killed, then a call');
is(counted(6903), 1, 'kill: only that call counted');

# far from the edge: the calls come out of the node's block lease
my $k3b = seed_full_key($t, account => 6913, included => 100000);
is($t->chat($k3b, model => 'test-basic')->{status}, 200,
   'block lease: a call');
ok(held(6913) > 1, 'block lease: the node holds a block of calls');
my $m0 = mock_count($t);
@slow = map { raw_chat($t, $k3b, 'x-mock-delay-ms' => 3000) } 1 .. 2;
ok($t->wait_for(sub { mock_count($t) >= $m0 + 2 }, timeout => 10),
   'block lease: two calls at the provider');
kill 'KILL', $t->nginx_worker_pids;
close $_ for @slow;
ok($t->wait_for(sub { scalar(() = $t->nginx_worker_pids) == 2 },
                timeout => 10), 'block lease: new workers');
healed(6913, 'block lease, workers killed');
is(counted(6913), 1, 'block lease: only the answered call counted');


# --- 4. Redis restarted around the settle --------------------------------------

my $k4 = seed_full_key($t, account => 6904, included => 10);
my $fail = raw_chat($t, $k4, 'x-mock-delay-ms' => 1500,
                    'x-mock-status' => 500);
my $good = raw_chat($t, $k4, 'x-mock-delay-ms' => 1500);
ok($t->wait_for(sub { held(6904) == 2 }, timeout => 10),
   'settle: two calls leased');
$t->stop_redis;
sleep 2;    # both calls end at the provider while Redis is away
$t->start_redis(@aof);

my $answers = '';
for my $s ($fail, $good) {
    local $/;
    my $a = <$s> // '';
    $answers .= (($a =~ m{^HTTP/1\.1 (\d+)}) ? $1 : 'none') . ' ';
}
is($answers, '502 200 ',
   'settle: the provider answered 500 (the client 502) and 200');
ok($t->wait_for(sub { ledger(6904) == 1 }, timeout => 20),
   'settle: the good call\'s event stored once Redis is back');
healed(6904, 'Redis restarted around the settle');
is(counted(6904), 1, 'settle: the failed call given back, the good one kept');


# --- 5. period rollover with a lease outstanding -----------------------------------

# a call of this month still running (its lease outstanding) takes
# nothing from next month: the next period's node admits its whole quota,
# and the running call settles in its own month
my $k5 = seed_full_key($t, account => 6905, included => 2, overage => 0);
my $slow = raw_chat($t, $k5, 'x-mock-delay-ms' => 1500);
ok($t->wait_for(sub { held(6905) == 1 }, timeout => 10),
   'rollover: a call of this month in flight');
my $NEXT = period_id(time + 40 * 86400);
my @next = map { $t->chat($k5, model => 'test-basic', name => 'future')
                   ->{status} } 1 .. 3;
is("@next", '200 200 429', 'rollover: next month admits its own 2 calls');
# (the settles reach Redis in the next batch, 10 ms on at the earliest)
ok($t->wait_for(sub { ($t->redis('HGET', "aihub:period:6905:$NEXT",
                                 'calls') // 0) == 2 }, timeout => 5),
   'rollover: next month counts 2');
{
    local $/;
    my $a = <$slow> // '';
    like($a, qr{^HTTP/1\.1 200}, 'rollover: the slow call of this month 200');
}
# (settled, or reclaimed at its expiry and counted again by the settle)
ok($t->wait_for(sub {
       ($t->redis('ZCARD', "aihub:leases:6905:$PERIOD") // 0) == 0
       && counted(6905) == 1 }, timeout => 10),
   'rollover: its lease settled, the call counted in its own month');
is(ledger(6905), 3, 'rollover: three calls in the ledger, one + two');
is($t->redis('HGET', "aihub:period:6905:$NEXT", 'calls'), 2,
   'rollover: next month unchanged');

$t->done;
