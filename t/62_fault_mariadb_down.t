#!/usr/bin/perl

# Fault: MariaDB stopped for 15 s under a steady load on two nginx nodes,
# then started again.  Clients see nothing (nginx never talks to MariaDB);
# the events wait in the Redis stream while the worker retries, and once
# MariaDB is back every call is one row, none twice, and the period
# counters equal the ledger.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);

plan(skip_all => 'module or worker not built')
    unless Aihub::have_module() && Aihub::have_worker();

my $t = Aihub->new(redis => 1, mariadb => 1, mock => 1);
$t->migrate;

my @keys = fault_keys($t, 'db');

fault_nodes($t, $keys[0]);

# --- the fault ----------------------------------------------------------------

my $load = AihubFixtures::load_start($t, keys => \@keys, names => [qw(n1 n2)],
                                     clients => 3, seconds => 40, max => 600,
                                     pause => 0.05);
sleep 1;
my $before = AihubFixtures::usage_rows($t);
$t->stop_mariadb;
my $down_at = time;
sleep 15;

ok($t->alive('worker'), 'the worker survives 15 s without MariaDB');
my $waiting = AihubFixtures::chat_calls($t) - $before;
my $group = { @{ $t->redis('XINFO', 'GROUPS', 'aihub:usage')->[0] } };
cmp_ok($waiting, '>', 0, "calls went on while MariaDB was down ($waiting)");
cmp_ok($group->{pending} + $group->{lag}, '>', 0,
       "their events wait in the stream ($group->{pending} pending, "
       . "$group->{lag} not yet read)");

$t->start_mariadb;
my $up_at = time;
sleep 2;
my @res = AihubFixtures::load_stop($t, $load);
my %st = AihubFixtures::status_counts(@res);
my @during = grep { $_->{start} > $down_at && $_->{start} < $up_at } @res;
diag(sprintf 'MariaDB down %.1f s, %d calls during; client statuses: %s',
     $up_at - $down_at, scalar @during,
     join ', ', map { "$_ x $st{$_}" } sort keys %st);

# --- what clients saw, what was stored --------------------------------------

cmp_ok(scalar @during, '>=', 30, 'the load went on during the outage');
is($st{200} // 0, scalar @res, 'clients saw every call answered 200');

ok(AihubFixtures::wait_drained($t, timeout => 40),
   'the backlog drained once MariaDB was back');
my $calls = AihubFixtures::chat_calls($t);
is(AihubFixtures::usage_rows($t), $calls,
   "one row per call that reached the provider ($calls)");
is($t->sql_value('SELECT COUNT(DISTINCT event_id) FROM usage_events'),
   $calls, 'no event stored twice');
is($t->sql_value('SELECT COUNT(*) FROM usage_events WHERE status = 200'),
   $st{200} // 0, 'the 200 rows are the 200s clients saw');
is($t->redis('XLEN', 'aihub:usage:dead'), 0, 'no dead letters');
is($t->sql_value('SELECT SUM(requests) FROM usage_daily'), $calls,
   'the daily rollups count each event once');
like($t->worker_log, qr/nothing ACKed/, 'the worker logged the outage');

my $c = AihubFixtures::ledger_counters($t);
is_deeply({ map { $_ => $c->{$_}[0] } keys %$c },
          { map { $_ => $c->{$_}[1] } keys %$c },
          'period counters equal the ledger');


# --- MariaDB up, but refusing what is no event's fault ------------------------

# the ledger's table gone for 6 s (a migration gone wrong; the same path as
# a read-only server in a failover, a privilege taken away, a full disk):
# the events wait and are stored once it is back, none dead-lettered.
# Before, only a lost connection was retried: every event of those 6 s was
# refused one by one and dead-lettered.

$t->sql('RENAME TABLE usage_events TO usage_events_away');
my $away_from = AihubFixtures::chat_calls($t);
my $answered = 0;
for my $i (1 .. 30) {
    my $r = $t->chat($keys[$i % 3], model => 'mock-basic',
                     name => $i % 2 ? 'n1' : 'n2');
    $answered++ if $r->{status} == 200;
    sleep 0.2;
}
is($answered, 30, 'the 30 calls while the table is away were answered');
like($t->worker_log, qr/usage_events' doesn't exist/,
     'the worker logged the missing table');
$t->sql('RENAME TABLE usage_events_away TO usage_events');

ok(AihubFixtures::wait_drained($t, timeout => 40),
   'the events of those 6 s drained once the table was back');
$calls = AihubFixtures::chat_calls($t);
is($calls - $away_from, 30, 'they reached the provider');
is(AihubFixtures::usage_rows($t), $calls,
   "one row per call, those of the 6 s too ($calls)");
is($t->redis('XLEN', 'aihub:usage:dead'), 0, 'no dead letters');

$t->done;
