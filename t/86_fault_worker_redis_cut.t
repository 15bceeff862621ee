#!/usr/bin/perl

# The drain's connection to Redis breaks at each of its commands in turn
# (README, "Failure rules": "Redis down: the worker reconnects with
# backoff, re-reads its own pending entries").  The worker talks to Redis
# through a proxy that, while told to, closes both ends instead of
# forwarding one of the worker's commands: the XACK that follows a stored
# round, the XREADGROUP that reads the next, the XAUTOCLAIM that looks for
# a dead consumer's entries, the GET of the epoch marker (the chores': is
# Redis's data there?; and the one after each read).  Each time the worker must
# see the broken connection, make it again and go on: the process stays up,
# every event is stored exactly once, nothing is left pending, nothing is
# dead-lettered.  Before, a connection that broke under the XACK of the
# round before a read left the read a closed connection, and the worker
# died of it (SIGSEGV): a Redis killed at that moment (t/63 in CI) stopped
# the ledger until someone started the worker again.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use Aihub;
use AihubFixtures qw(fork_proxy cut_proxy proxy_cuts usage_event_json);

plan skip_all => 'aihub-worker not built' unless Aihub::have_worker();

my $t = Aihub->new(redis => 1, mariadb => 1);
$t->migrate;

my $CUT = $t->dir . '/cut';
my $CUTS = $t->dir . '/cuts';

# the proxy closes both ends instead of forwarding a write of the worker
# that carries the command (RESP: "$<len>\r\n<word>\r\n" for each word;
# the command may be a later one of a pipeline)
my ($PROXY, $proxy_pid) = fork_proxy($t, 16,
                                     cut_proxy(cut => $CUT, cuts => $CUTS));

sub resp { join '.*', map { '\$' . length($_) . "\\r\\n\Q$_\E\\r\\n" } @_ }


# --- the events --------------------------------------------------------------

my $sent = 0;

sub send_events {
    my ($n) = @_;

    $t->redis('XADD', 'aihub:usage', '*', 'event',
              usage_event_json(++$sent)) for 1 .. $n;
}

sub stored { $t->sql_value('SELECT COUNT(*) FROM usage_events') }

sub drained {
    my $p = eval { $t->redis('XPENDING', 'aihub:usage', 'aihub-drain')->[0] }
            // -1;
    return $p == 0 && stored() == $sent;
}

{
    # the worker's Redis is the proxy
    local $t->{redis_port} = $PROXY;
    $t->start_worker('--consumer', 'w1', '--batch', 20, '--block-ms', 100,
                     '--claim-idle-ms', 400);
}

send_events(50);
ok($t->wait_for(\&drained, timeout => 30), 'drained through the proxy');


# --- the cuts ----------------------------------------------------------------

# each command cut three times while events keep coming, 20 at a time:
# the drain's ACK, its read, its claim, and the chores' epoch check and
# read of the developer API's key changes
my @cuts = (
    [ 'XACK',                   resp('XACK') ],
    [ 'XREADGROUP aihub:usage', resp('XREADGROUP', 'aihub:usage') ],
    [ 'XAUTOCLAIM',             resp('XAUTOCLAIM') ],
    [ 'GET aihub:epoch',        resp('GET', 'aihub:epoch') ],
    [ 'XREADGROUP aihub:admin', resp('XREADGROUP', 'aihub:admin') ],
);

for (@cuts) {
    my ($cmd, $re) = @$_;
    Aihub::write_file($CUT, "before $re\n");

    my $until = time + 20;
    while (proxy_cuts($CUTS, "before $re") < 3 && time < $until
           && $t->alive('worker'))
    {
        send_events(20);
        sleep 0.1;
    }

    unlink $CUT;
    send_events(20);

    is(proxy_cuts($CUTS, "before $re"), 3,
       "the proxy cut the worker's connection at $cmd 3 times");
    ok($t->alive('worker'), "the worker lived through the cuts at $cmd")
        or diag(Aihub::tail($t->dir . '/worker.log', 20));
    ok($t->wait_for(\&drained, timeout => 30),
       "every event stored after the cuts at $cmd");
}

is(stored(), $sent, "$sent events sent, $sent stored");
is($t->sql_value('SELECT COUNT(DISTINCT event_id) FROM usage_events'),
   $sent, 'none twice');
is($t->redis('XLEN', 'aihub:usage:dead'), 0, 'none dead-lettered');
my @lost = grep { /Redis (XACK|XREADGROUP|XAUTOCLAIM|GET)|Redis: / }
           split /\n/, $t->worker_log;
cmp_ok(scalar @lost, '>=', 15, 'the worker logged each broken connection');

kill 'TERM', $proxy_pid;
waitpid($proxy_pid, 0);

$t->done;
