#!/usr/bin/perl

# Fault: the aihub-worker is killed with SIGKILL five times while it drains
# a steady load from two nginx nodes, and started again each time.  Clients
# see nothing; every call that reached the provider is one row in MariaDB,
# no row twice, and the period counters equal the ledger.

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

my @keys = fault_keys($t, 'kill');

my @worker = ('--consumer', 'w1', '--batch', 20, '--block-ms', 100,
              '--claim-idle-ms', 1000);
fault_nodes($t, $keys[0], worker => \@worker);

# --- the fault ----------------------------------------------------------------

# the load runs until after the last kill (load_stop): a cap on its calls
# ended it before the fourth kill once calls got quicker (1,600 rows at
# the fourth and the fifth)
my $load = AihubFixtures::load_start($t, keys => \@keys, names => [qw(n1 n2)],
                                     clients => 4, seconds => 25,
                                     max => 5000, pause => 0.01);
my @at;
srand(61);

for my $i (1 .. 5) {
    sleep 1 + rand(1);
    push @at, AihubFixtures::usage_rows($t);
    $t->stop_proc('worker', signal => 'KILL');
    sleep 0.3;
    $t->start_worker(@worker);
}

sleep 1;
my @res = AihubFixtures::load_stop($t, $load);
my %st = AihubFixtures::status_counts(@res);
diag("rows stored at each kill: @at; client statuses: "
     . join ', ', map { "$_ x $st{$_}" } sort keys %st);

# --- what clients saw, what was stored --------------------------------------

cmp_ok(scalar @res, '>=', 30, 'a steady load ran (' . @res . ' calls)');
is($st{200} // 0, scalar @res, 'clients saw every call answered 200');
ok($at[0] > 0 && !grep({ $at[$_] <= $at[$_ - 1] } 1 .. 4),
   "killed mid-drain: rows grew between kills (@at)");

ok(AihubFixtures::wait_drained($t), 'drained after the last restart');
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

my $c = AihubFixtures::ledger_counters($t);
is_deeply({ map { $_ => $c->{$_}[0] } keys %$c },
          { map { $_ => $c->{$_}[1] } keys %$c },
          'period counters equal the ledger');

$t->done;
