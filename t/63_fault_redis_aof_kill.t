#!/usr/bin/perl

# Fault: Redis running with appendonly yes (appendfsync always, as README
# says to run it) is killed with SIGKILL under a steady load on two nginx
# nodes and started again on the same port from its AOF.  Clients see 503
# service_unavailable while it is down (fail closed), then 200 again; no
# usage event is lost (Redis confirms a batch only once its AOF write is
# fsynced, and the module resends every batch it has no answer for), none
# is stored twice, and the period counters equal the ledger.  With
# appendfsync everysec, Redis answers before the fsync and, while an fsync
# is slow, holds the AOF write itself for up to 2 s: a run under load lost
# one event of 165 to the kill (README "Redis persistence").

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);

plan(skip_all => 'module or worker not built')
    unless Aihub::have_module() && Aihub::have_worker();

my @aof = ('--appendonly', 'yes', '--appendfsync', 'always');
my $t = Aihub->new(redis => 1, redis_args => \@aof, mariadb => 1,
                   mock => 1);
$t->migrate;
is($t->redis('CONFIG', 'GET', 'appendonly')->[1], 'yes', 'Redis runs an AOF');

my @keys = fault_keys($t, 'aof');

fault_nodes($t, $keys[0]);

# --- the fault ----------------------------------------------------------------

my $load = AihubFixtures::load_start($t, keys => \@keys, names => [qw(n1 n2)],
                                     clients => 4, seconds => 40, max => 400,
                                     pause => 0.02);
sleep 3;
my $calls_at_kill = AihubFixtures::chat_calls($t);
kill 'KILL', $t->{procs}{redis}{pid};
my $killed_at = time;
sleep 1;
$t->restart_redis(@aof);
my $back_at = time;
is($t->redis('CONFIG', 'GET', 'appendonly')->[1], 'yes',
   'restarted from its AOF');
sleep 4;
my @res = AihubFixtures::load_stop($t, $load);
my %st = AihubFixtures::status_counts(@res);

my @late = grep { $_->{status} != 200 && $_->{start} > $back_at } @res;
my $resumed = @late ? $late[-1]{start} + $late[-1]{elapsed} - $back_at : 0;
diag(sprintf 'Redis down %.2f s; client statuses: %s; last failure %.2f s '
     . 'after the restart', $back_at - $killed_at,
     join(', ', map { "$_ x $st{$_}" } sort keys %st), $resumed);

# --- what clients saw, what was stored --------------------------------------

ok((grep { $_->{status} == 200 && $_->{start} < $killed_at } @res),
   'calls were answered before the kill');
my @other = grep { $_->{status} != 200
                   && !($_->{status} == 503
                        && $_->{code} eq 'service_unavailable') } @res;
is(scalar @other, 0, 'clients saw only 200 or 503 service_unavailable')
    or diag(join "\n", map { "$_->{status} $_->{code}" } @other[0 .. 4]);
ok((grep { $_->{status} == 200 && $_->{start} > $back_at + $resumed } @res),
   'and 200 again once Redis was back');
cmp_ok($resumed, '<', 10, 'service resumed within 10 s of the restart');

ok(AihubFixtures::wait_drained($t), 'drained');
my $calls = AihubFixtures::chat_calls($t);
is(AihubFixtures::usage_rows($t), $calls,
   "one row per call that reached the provider ($calls, "
   . "$calls_at_kill before the kill)");
is($t->sql_value('SELECT COUNT(DISTINCT event_id) FROM usage_events'),
   AihubFixtures::usage_rows($t), 'no event stored twice');
is($t->sql_value('SELECT COUNT(*) FROM usage_events WHERE status = 200'),
   $st{200} // 0, 'the 200 rows are the 200s clients saw');
is($t->redis('XLEN', 'aihub:usage:dead'), 0, 'no dead letters');

my $c = AihubFixtures::ledger_counters($t);
is_deeply({ map { $_ => $c->{$_}[0] } keys %$c },
          { map { $_ => $c->{$_}[1] } keys %$c },
          'period counters equal the ledger');

$t->done;
