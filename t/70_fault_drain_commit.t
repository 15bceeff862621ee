#!/usr/bin/perl

# The drain never stalls on a COMMIT MySQL refuses with a data error (issue
# 12): the batch's COMMIT refused moves to the events in one transaction;
# that COMMIT refused too (no statement names an event) moves to one
# transaction per event, so the refused COMMIT names its event, which is
# dead-lettered, and every other event is stored once.  Before, the
# event-by-event COMMIT refused was taken for a lost connection and the
# batch retried forever.
#
# The fault: t/lib/commit_fault.c, preloaded into the worker, refuses
# (error 1180, after a real ROLLBACK) the COMMIT of any transaction that
# wrote the model "commit-poison".

use strict;
use warnings;

use Test::More;
use JSON::PP;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use Aihub;
use AihubFixtures qw(usage_event_json commit_fault_so);

plan skip_all => 'aihub-worker not built' unless Aihub::have_worker();

my $t = Aihub->new(redis => 1, mariadb => 1);
$t->migrate;

my $so = commit_fault_so($t);

my $json = JSON::PP->new->canonical;
my $now = int(time * 1000);

sub event {
    my (%o) = @_;

    return usage_event_json(0, id => $o{id}, ts => $now,
                            model => $o{model} // 'mock-basic');
}

# 3,000 events, every 1,000th one of "commit-poison" (3 poisoned, 2,997
# good)

my @poisoned;

for my $i (1 .. 3000) {
    my $poison = $i % 1000 == 0;
    push @poisoned, sprintf('%032x', $i) if $poison;
    $t->redis('XADD', 'aihub:usage', '*', 'event',
              event(id => sprintf('%032x', $i),
                    model => $poison ? 'commit-poison' : 'mock-basic'));
}

{
    local $ENV{LD_PRELOAD} = $ENV{LD_PRELOAD} ? "$ENV{LD_PRELOAD}:$so"
                                              : $so;
    $t->start_worker('--consumer', 'w1', '--block-ms', 100);
}

ok($t->wait_for(sub {
       $t->redis('XLEN', 'aihub:usage:dead') >= 3
       && $t->sql_value('SELECT COUNT(*) FROM usage_events') >= 2997
   }, timeout => 90), 'the drain went past every refused COMMIT');

is($t->sql_value("SELECT COUNT(*) FROM usage_events WHERE model = "
                 . "'mock-basic'"), 2997, 'every good event stored');
is($t->sql_value('SELECT COUNT(DISTINCT event_id) FROM usage_events'),
   2997, 'each once');
is($t->sql_value("SELECT COUNT(*) FROM usage_events WHERE model = "
                 . "'commit-poison'"), 0, 'no poisoned event stored');
is($t->sql_value("SELECT requests FROM usage_daily WHERE model = "
                 . "'mock-basic'"), 2997, 'the rollup counts each once');
is($t->sql_value("SELECT COUNT(*) FROM usage_daily WHERE model = "
                 . "'commit-poison'"), 0, 'no poisoned rollup');

my $dead = $t->redis('XRANGE', 'aihub:usage:dead', '-', '+');
is(scalar @$dead, 3, 'three dead letters');
my @ids = sort map { my %f = @{ $_->[1] };
                     $json->decode($f{event})->{id} } @$dead;
is_deeply(\@ids, \@poisoned, 'exactly the poisoned events');
my %d0 = @{ $dead->[0] ? $dead->[0][1] : [] };
like($d0{reason} // '',
     qr/MySQL refused the event at COMMIT: .*during COMMIT/,
     'the reason is MySQL\'s, at COMMIT');

ok($t->wait_for(sub { $t->redis('XLEN', 'aihub:usage') == 0 },
                timeout => 10), 'everything ACKed');
is($t->redis('XPENDING', 'aihub:usage', 'aihub-drain')->[0], 0,
   'nothing pending');

$t->stop_worker;
my $log = $t->worker_log;
unlike($log, qr/batch rolled back/,
       'no batch was taken for a lost connection');
like($log, qr/refused the COMMIT of the events/,
     'the events\' COMMIT refused moved to one transaction per event');

$t->done;
