#!/usr/bin/perl

# The ledger is lossless and exactly-once: the worker killed with SIGKILL
# at random moments while draining 20,000 events (so also between COMMIT
# and XACK), MariaDB stopped for 10 s during a drain, and two workers in
# one consumer group: every event is stored exactly once.

use strict;
use warnings;

use Test::More;
use JSON::PP;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use Aihub;

plan skip_all => 'aihub-worker not built' unless Aihub::have_worker();

my $t = Aihub->new(redis => 1, mariadb => 1);
$t->migrate;

my $json = JSON::PP->new->canonical;
my $now = int(time * 1000);

# XADD n events (ids from $first) on one pipelined connection

sub push_events {
    my ($first, $n) = @_;

    my $s = $t->redis_connect;
    my $buf = '';
    my $out = '';

    for my $i ($first .. $first + $n - 1) {
        $out .= Aihub::resp_encode('XADD', 'aihub:usage', '*', 'event',
            $json->encode({
                v => 1, id => sprintf('%032x', $i), ts => $now + $i,
                node => 'n', account => 1 + $i % 7, key => 'ai-hub-AbCdEfGh',
                plan => 'pro', model => 'mock-basic', provider => 'mock',
                prompt_tokens => 3, completion_tokens => 2,
                total_tokens => 5, cost_micros => 1, status => 200,
                streamed => JSON::PP::false, aborted => JSON::PP::false,
                estimated => JSON::PP::false, latency_ms => 1 }));

        if (length $out > 65536) {
            print $s $out;
            $out = '';
        }
    }

    print $s $out;
    Aihub::resp_read($s, \$buf) for 1 .. $n;
    close $s;
}

sub stored { $t->sql_value('SELECT COUNT(*) FROM usage_events') }

sub check_exact {
    my ($n, $what) = @_;

    is(stored(), $n, "$what: $n rows");
    is($t->sql_value('SELECT COUNT(DISTINCT event_id) FROM usage_events'),
       $n, "$what: $n distinct event ids");
    is($t->sql_value('SELECT SUM(requests) FROM usage_daily'), $n,
       "$what: rollups count each event once");
    is($t->sql_value('SELECT SUM(total_tokens) FROM usage_daily'), 5 * $n,
       "$what: rollup tokens match");
    is($t->redis('XPENDING', 'aihub:usage', 'aihub-drain')->[0], 0,
       "$what: nothing pending");
    is($t->redis('XLEN', 'aihub:usage:dead'), 0, "$what: no dead letters");
}

# --- SIGKILL at random moments -----------------------------------------------

my $N = 20000;
push_events(1, $N);

my $kills = 0;
srand(42);

my @seen;

while (stored() < $N && $kills < 30) {
    $t->start_worker('--consumer', 'crashy', '--batch', 20,
                     '--block-ms', 100);
    sleep 0.01 + rand(0.08);
    $t->stop_proc('worker', signal => 'KILL');
    $kills++;
    push @seen, stored();
}

$t->start_worker('--consumer', 'crashy', '--batch', 200, '--block-ms', 100);
my $mid = grep { $_ > 0 && $_ < $N } @seen;
ok($mid >= 3, "killed $kills times, $mid of them mid-drain (@seen)");
ok($t->wait_for(sub { stored() == $N
                      && $t->redis('XPENDING', 'aihub:usage',
                                   'aihub-drain')->[0] == 0 },
                timeout => 60), 'drained after the kills');
$t->stop_worker;
check_exact($N, 'after SIGKILLs');

# --- MariaDB stopped for 10 s during a drain ---------------------------------

$t->start_worker('--consumer', 'crashy', '--batch', 100, '--block-ms', 100);
push_events($N + 1, 5000);
$t->wait_for(sub { stored() > $N }, timeout => 10);
$t->stop_mariadb;
push_events($N + 5001, 5000);
sleep 10;
ok($t->alive('worker'), 'worker survives MariaDB being down');
my $pending = $t->redis('XPENDING', 'aihub:usage', 'aihub-drain')->[0];
ok($pending > 0, "entries stay pending while MariaDB is down ($pending)");
$t->start_mariadb;
ok($t->wait_for(sub { stored() == $N + 10000 }, timeout => 60),
   'backlog drained after MariaDB came back');
sleep 0.3;
$t->stop_worker;
check_exact($N + 10000, 'after the MariaDB outage');
like(Aihub::read_file($t->dir . '/worker.log'), qr/nothing ACKed/,
     'the outage is logged');

# --- two workers in one group ------------------------------------------------

$t->start_worker('--consumer', 'one', '--batch', 50, '--block-ms', 100);
$t->spawn('worker2', [ $Aihub::WORKER, $t->worker_flags,
                       'run', '--consumer', 'two', '--batch', 50,
                       '--block-ms', 100 ],
          out => $t->dir . '/worker2.log');
push_events($N + 10001, 10000);
ok($t->wait_for(sub { stored() == $N + 20000 }, timeout => 60),
   'two workers drained the stream');
sleep 0.3;
$t->stop_worker;
$t->stop_proc('worker2');
check_exact($N + 20000, 'two workers');
like(Aihub::read_file($t->dir . '/worker2.log'), qr/stopping: stored [1-9]/,
     'the second worker stored a share');

# --- a dead consumer's pending entries are claimed -------------------------

push_events($N + 20001, 300);
# read them as "ghost" without ever acknowledging
$t->redis('XREADGROUP', 'GROUP', 'aihub-drain', 'ghost', 'COUNT', 300,
          'STREAMS', 'aihub:usage', '>');
$t->start_worker('--consumer', 'alive', '--claim-idle-ms', 500,
                 '--block-ms', 100);
ok($t->wait_for(sub { stored() == $N + 20300 }, timeout => 10),
   'entries pending on a dead consumer were claimed and stored');
$t->stop_worker;
check_exact($N + 20300, 'after claiming');

$t->done;
