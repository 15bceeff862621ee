#!/usr/bin/perl

# The drain never stalls on an event MySQL refuses after the insert (issue
# 12): a rollup out of range is a data error, not a lost connection, so
# the batch is stored row by row and the bad event dead-lettered; with a
# poisoned event in every 1,000 every good event is stored once and every
# bad one dead-lettered.  And the stream is trimmed behind the ACKs: after
# a long drain XLEN is back to 0, not the number of events ever sent.

use strict;
use warnings;

use Test::More;
use JSON::PP;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use Aihub;
use AihubFixtures qw(usage_event_json);

plan skip_all => 'aihub-worker not built' unless Aihub::have_worker();

my $t = Aihub->new(redis => 1, mariadb => 1);
$t->migrate;

my $json = JSON::PP->new->canonical;
my $now = int(time * 1000);
my $day = $t->sql_value("SELECT DATE(FROM_UNIXTIME($now / 1000))");

sub event {
    my (%o) = @_;

    return usage_event_json(0, id => $o{id}, ts => $now,
                            model => $o{model} // 'mock-basic');
}

# the poison: poison-model's rollup of the day is 2 micro-dollars below
# BIGINT's maximum, so the upsert of any call of it (4 micro-dollars) is
# out of range, after the event's own INSERT succeeded

$t->sql("INSERT INTO usage_daily (account, day, model, requests, calls, "
        . "cost_micros) VALUES (1, '$day', 'poison-model', 1, 1, "
        . "9223372036854775805)");

# wave 1: 5,000 events, every 1,000th poisoned (5 poisoned, 4,995 good),
# one good event sent twice (a replay: stored once)

my @poisoned;

for my $i (1 .. 5000) {
    my $poison = $i % 1000 == 0;
    push @poisoned, sprintf('%032x', $i) if $poison;
    $t->redis('XADD', 'aihub:usage', '*', 'event',
              event(id => sprintf('%032x', $i),
                    model => $poison ? 'poison-model' : 'mock-basic'));
}
$t->redis('XADD', 'aihub:usage', '*', 'event',
          event(id => sprintf('%032x', 7)));

is($t->redis('XLEN', 'aihub:usage'), 5001, '5,001 entries in the stream');

$t->start_worker('--consumer', 'w1', '--block-ms', 100);

ok($t->wait_for(sub {
       $t->redis('XLEN', 'aihub:usage:dead') >= 5
       && $t->sql_value('SELECT COUNT(*) FROM usage_events') >= 4995
   }, timeout => 90), 'the drain went past every poisoned event');

ok($t->wait_for(sub { $t->redis('XLEN', 'aihub:usage') == 0 },
                timeout => 10),
   'the stream is empty once everything is ACKed (XDEL after XACK)');

is($t->sql_value("SELECT COUNT(*) FROM usage_events WHERE model = "
                 . "'mock-basic'"), 4995, 'every good event stored');
is($t->sql_value('SELECT COUNT(DISTINCT event_id) FROM usage_events'),
   4995, 'each once');
is($t->sql_value("SELECT COUNT(*) FROM usage_events WHERE model = "
                 . "'poison-model'"), 0, 'no poisoned event stored');
is($t->sql_value("SELECT requests FROM usage_daily WHERE model = "
                 . "'mock-basic'"), 4995, 'the rollup counts each once');
is($t->sql_value("SELECT requests FROM usage_daily WHERE model = "
                 . "'poison-model'"), 1, 'the poisoned rollup untouched');

my $dead = $t->redis('XRANGE', 'aihub:usage:dead', '-', '+');
is(scalar @$dead, 5, 'five dead letters');
my @ids = sort map { my %f = @{ $_->[1] };
                     $json->decode($f{event})->{id} } @$dead;
is_deeply(\@ids, \@poisoned, 'exactly the poisoned events');
my %d0 = @{ $dead->[0][1] };
like($d0{reason}, qr/MySQL refused the event: .*out of range/i,
     'the reason is MySQL\'s');

# wave 2: 3 rounds of 2,000 while the worker drains; XLEN stays flat


for my $round (1 .. 3) {
    for my $i (1 .. 2000) {
        $t->redis('XADD', 'aihub:usage', '*', 'event',
                  event(id => sprintf('%016x%016x', $round, $i)));
    }
    ok($t->wait_for(sub { $t->redis('XLEN', 'aihub:usage') == 0 },
                    timeout => 30), "round $round: the stream drained to 0");
}

is($t->sql_value('SELECT COUNT(*) FROM usage_events'), 4995 + 6000,
   'every event of the long drain stored');
is($t->redis('XPENDING', 'aihub:usage', 'aihub-drain')->[0], 0,
   'nothing pending');

$t->stop_worker;
unlike($t->worker_log, qr/batch rolled back/,
       'no batch was taken for a lost connection');

# --- Redis at its maxmemory: a dead letter it refuses goes to the log ----------
#
# Redis refuses the dead letter's XADD (OOM) but takes XACK and XDEL: the
# event is written to the worker's log and the drain goes on, trimming the
# stream that keeps Redis full (before: the round was read again and
# refused again, and nothing behind it was ever deleted)

my $stored = $t->sql_value('SELECT COUNT(*) FROM usage_events');
$t->redis('XADD', 'aihub:usage', '*', 'event',
          event(id => sprintf('%032x', 900001)));
$t->redis('XADD', 'aihub:usage', '*', 'event', 'not an event 900002');
$t->redis('XADD', 'aihub:usage', '*', 'event',
          event(id => sprintf('%032x', 900003)));
$t->redis('CONFIG', 'SET', 'maxmemory-policy', 'noeviction');
$t->redis('CONFIG', 'SET', 'maxmemory', 1);
ok(!eval { $t->redis('XADD', 'aihub:usage:dead', '*', 'x', 'y'); 1 },
   'Redis refuses XADD at its maxmemory');

$t->start_worker('--consumer', 'w1', '--block-ms', 100);
ok($t->wait_for(sub { $t->redis('XLEN', 'aihub:usage') == 0 },
                timeout => 15), 'at maxmemory: the stream drained to 0');
is($t->sql_value('SELECT COUNT(*) FROM usage_events'), $stored + 2,
   'at maxmemory: both good events stored');
like($t->worker_log,
     qr/refused the dead letter of stream entry \S+ .*OOM.*the event: not an event 900002/,
     'at maxmemory: the refused event is in the log, whole');
$t->redis('CONFIG', 'SET', 'maxmemory', 0);
$t->stop_worker;

$t->done;
