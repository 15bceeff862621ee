#!/usr/bin/perl

# Fault: Redis restarts from a snapshot older than what it had (RDB
# persistence, Debian's default: no AOF).  The snapshot has the epoch
# marker, so nothing says Redis lost data, but its period counters are
# those of the snapshot: the calls since were answered, their events are
# in the ledger, and a counter left there would give them again (a free
# account at 1,000 whose snapshot said 700: 300 calls more).  The worker
# raises the counters to the ledger when its connection is made again;
# then the account gets exactly what the ledger leaves it.

use strict;
use warnings;

use Test::More;

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);

plan(skip_all => 'module or worker not built')
    unless Aihub::have_module() && Aihub::have_worker();

my $t = Aihub->new(redis => 1, mariadb => 1, mock => 1);
$t->migrate;

my $key = $t->create_key(account => 'snap', plan => 'free');
# a key of another account, first used after the restart: its lookup needs
# the node's connection to Redis made again (which meets the backoff while
# Redis is away: the node serves 503 until then, README "Failure")
my $probe = $t->create_key(account => 'probe', plan => 'free');

# 20 calls a month: 5 before the snapshot, 10 after it, 5 left
$t->worker('account', 'override', 'snap', '--included', 20, '--rpm', 0,
           '--tpm', 0);
my $acct = $t->sql_value("SELECT id FROM accounts WHERE name = 'snap'");

$t->nginx(gateway_conf(url => '%%MOCK_URL%%', redis_timeout => '1s'),
          name => 'n1');
$t->start_worker('--consumer', 'w1', '--batch', 50, '--block-ms', 100);
$t->start_nginx('n1');
ok(wait_ready($t, $key, name => 'n1', timeout => 10), 'ready');

my $pk = 'aihub:period:' . $acct . ':' . period_id();

sub hget { my $v = eval { $t->redis('HGET', $pk, $_[0]) }; $v // 0 }

sub calls {
    my ($n, $used) = @_;

    for (1 .. $n) {
        is($t->chat($key, name => 'n1')->{status}, 200, "call " . ++$used);
    }

    ok($t->wait_for(sub { hget('calls') == $used }, timeout => 10),
       "$used calls counted");
    ok($t->wait_for(sub { AihubFixtures::usage_rows($t) == $used },
                    timeout => 10), "$used calls in the ledger");
    return $used;
}

my $used = calls(5, 0);
$t->redis('SAVE');                          # the snapshot: 5 calls
$used = calls(10, $used);

# stopped without saving (no save points): it starts from the snapshot
$t->restart_redis;
diag('counter right after the restart: ' . hget('calls'));
ok(eval { $t->redis('EXISTS', 'aihub:epoch') }, 'the marker came back with '
                                                . 'the snapshot');

ok($t->wait_for(sub { hget('calls') == $used }, timeout => 15),
   "the worker raised the counter to the ledger's $used")
    or diag('counter ' . hget('calls') . ", ledger $used");
like($t->worker_log, qr/period counters at least the ledger's/,
     "the worker's log says so");

# 5 calls left in all: exactly 5 answered (15 with the snapshot's counter)
ok($t->wait_for(sub { hget('leased_calls') == 0 }, timeout => 10),
   'no lease held');
ok(wait_ready($t, $probe, name => 'n1', timeout => 10),
   'the node has its connection to Redis again');

my $ok = 0;
my $last;

for (1 .. 16) {
    $last = $t->chat($key, name => 'n1');
    last if $last->{status} != 200;
    $ok++;
}

is($ok, 5, 'exactly the 5 calls left answered');
is_error($last, 429, 'insufficient_quota', 'then');

$used += $ok;
ok($t->wait_for(sub { AihubFixtures::usage_rows($t) == $used },
                timeout => 15), 'all in the ledger');
ok($t->wait_for(sub { hget('calls') == $used }, timeout => 10),
   'the counter equals the ledger')
    or diag('calls ' . hget('calls') . ', ledger '
            . AihubFixtures::usage_rows($t));

$t->allow_log(qr/redis|Connection refused|connect\(\) failed/i);
$t->done;
