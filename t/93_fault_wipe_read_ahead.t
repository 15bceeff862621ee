#!/usr/bin/perl

# Fault: Redis loses its data while the worker holds a round it read
# ahead.  The worker reads the next round while MariaDB stores the one
# before; those calls were counted in the counters Redis lost, and the
# module does not send them again.  So the round read ahead must be in the
# ledger before the restore reads it: stored after, its calls would be
# missing from the restored counters for the rest of the month (a hard
# quota passed by as many calls).  MariaDB is held up with a table lock
# so the wipe falls between the read ahead and its store.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use Aihub;
use AihubFixtures qw(period_id usage_event_json lock_table);

sub usage_rows { AihubFixtures::usage_rows(@_) }

plan(skip_all => 'aihub-worker not built') unless Aihub::have_worker();

my $t = Aihub->new(redis => 1, mariadb => 1);
$t->migrate;

$t->create_key(account => 'ahead', plan => 'pro');
my $acct = $t->sql_value("SELECT id FROM accounts WHERE name = 'ahead'");
my $pk = "aihub:period:$acct:" . period_id();

sub event { usage_event_json($_[0], account => $acct + 0) }

$t->start_worker('--consumer', 'w1', '--batch', 50, '--block-ms', 100);
$t->redis('XADD', 'aihub:usage', '*', 'event', event(1));
ok($t->wait_for(sub { usage_rows($t) == 1 }, timeout => 10),
   'the drain runs');

# MariaDB held up: the next round's INSERT waits for the lock

my ($lock, $locked) = lock_table($t, 'usage_events');
ok($locked, 'usage_events locked');

# 100 events at once: a round of 50 waits for MariaDB, the next 50 are
# read ahead meanwhile

$t->redis('EVAL', "for i = 1, #ARGV do redis.call('XADD', KEYS[1], '*', "
                  . "'event', ARGV[i]) end return #ARGV", 1, 'aihub:usage',
          map { event($_) } 2 .. 101);
ok($t->wait_for(sub {
    ($t->redis('XPENDING', 'aihub:usage', 'aihub-drain')->[0] // 0) == 100
}, timeout => 10), 'a round waits for MariaDB, the next is read ahead');

$t->redis('FLUSHALL');
print $lock "UNLOCK TABLES;\n";
close $lock;

ok($t->wait_for(sub {
    eval { $t->redis('EXISTS', 'aihub:epoch') } && usage_rows($t) == 101
}, timeout => 20), 'Redis restored, every event stored');
sleep 0.5;
is($t->redis('HGET', $pk, 'calls') // 0, 101,
   'the restored counter counts the round read ahead')
    or diag('ledger ' . usage_rows($t));

$t->done;
