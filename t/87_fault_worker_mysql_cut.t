#!/usr/bin/perl

# The drain's connection to MySQL breaks at each step of its transaction
# (README, "Failure rules": "MySQL down: retry with backoff, ACK
# nothing").  The worker talks to MariaDB through a proxy that, while told
# to, closes both ends at one of the drain's statements: before it reaches
# the server (START TRANSACTION, the daily rollups' upsert, COMMIT), or
# after the server has run it, with its answer dropped (COMMIT: the
# transaction is committed and the worker cannot know).  Each time the
# worker must make the connection again and store the batch again: every
# event stored exactly once, the daily rollups equal to the events they
# sum (a batch whose COMMIT answer was lost comes back as duplicates, and
# its rollups are not added twice), nothing dead-lettered, the process up.

use strict;
use warnings;

use Test::More;
use IO::Socket::UNIX;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use Aihub;
use AihubFixtures qw(fork_proxy cut_proxy proxy_cuts usage_event_json);

plan skip_all => 'aihub-worker not built' unless Aihub::have_worker();

my $t = Aihub->new(redis => 1, mariadb => 1);
$t->migrate;

my $CUT = $t->dir . '/cut';
my $CUTS = $t->dir . '/cuts';

# every TCP connection relayed to MariaDB's socket, and cut on demand at a
# COM_QUERY (a packet: 3 bytes of length, 1 of sequence, the command 3,
# the text) whose text starts with the statement's
my ($PROXY, $proxy_pid) = fork_proxy($t, 16, cut_proxy(
    cut => $CUT, cuts => $CUTS,
    connect => sub { IO::Socket::UNIX->new(Peer => $t->mysql_socket) }));

sub query { '^.{4}\\x03' . quotemeta $_[0] }


# --- the events --------------------------------------------------------------

my $sent = 0;

# three accounts, two models, varied tokens and costs: the rollups have
# something to sum
sub send_events {
    my ($n) = @_;

    for (1 .. $n) {
        $sent++;
        $t->redis('XADD', 'aihub:usage', '*', 'event', usage_event_json(
            $sent, account => 1 + $sent % 3,
            model => $sent % 2 ? 'mock-basic' : 'mock-pro',
            prompt_tokens => 10 + $sent % 7, total_tokens => 15 + $sent % 7,
            cost_micros => 4 + $sent % 5));
    }
}

sub stored { $t->sql_value('SELECT COUNT(*) FROM usage_events') }

sub drained {
    my $p = eval { $t->redis('XPENDING', 'aihub:usage', 'aihub-drain')->[0] }
            // -1;
    return $p == 0 && stored() == $sent;
}

{
    # the worker's MariaDB is the proxy, over TCP
    local $t->{mysql_socket};
    local @ENV{qw(AIHUB_MYSQL_HOST AIHUB_MYSQL_PORT AIHUB_MYSQL_USER
                  AIHUB_MYSQL_DB)} = ('127.0.0.1', $PROXY, 'root',
                                      $t->mysql_db);
    $t->start_worker('--consumer', 'w1', '--batch', 20, '--block-ms', 100);
}

send_events(50);
ok($t->wait_for(\&drained, timeout => 30), 'drained through the proxy');


# --- the cuts ----------------------------------------------------------------

for (['before', 'START TRANSACTION'], ['before', 'INSERT INTO usage_daily'],
     ['before', 'COMMIT'], ['after', 'COMMIT'])
{
    my ($when, $stmt) = @$_;
    my $line = "$when " . query($stmt);
    Aihub::write_file($CUT, "$line\n");

    my $until = time + 40;
    while (proxy_cuts($CUTS, $line) < 3 && time < $until
           && $t->alive('worker'))
    {
        send_events(20);
        sleep 0.2;
    }

    unlink $CUT;
    send_events(20);

    is(proxy_cuts($CUTS, $line), 3,
       "the proxy cut the worker's connection $when $stmt 3 times");
    ok($t->alive('worker'), "the worker lived through the cuts $when $stmt")
        or diag(Aihub::tail($t->dir . '/worker.log', 20));
    ok($t->wait_for(\&drained, timeout => 60),
       "every event stored after the cuts $when $stmt");
}

is(stored(), $sent, "$sent events sent, $sent stored");
is($t->sql_value('SELECT COUNT(DISTINCT event_id) FROM usage_events'),
   $sent, 'none twice');
is($t->redis('XLEN', 'aihub:usage:dead'), 0, 'none dead-lettered');

# the rollups sum the stored events, each once
my $sums = 'COUNT(*), SUM(prompt_tokens), SUM(completion_tokens), '
         . 'SUM(total_tokens), SUM(cost_micros)';
my @events = $t->sql("SELECT account, model, $sums FROM usage_events "
                     . 'GROUP BY account, model ORDER BY account, model');
my @daily = $t->sql('SELECT account, model, SUM(requests), '
                    . 'SUM(prompt_tokens), SUM(completion_tokens), '
                    . 'SUM(total_tokens), SUM(cost_micros) FROM usage_daily '
                    . 'GROUP BY account, model ORDER BY account, model');
is(scalar @events, 6, 'three accounts, two models');
is_deeply(\@daily, \@events,
          'the daily rollups equal the events they sum');
like($t->worker_log, qr/already stored/,
     'a batch whose COMMIT answer was lost came back as duplicates');

kill 'TERM', $proxy_pid;
waitpid($proxy_pid, 0);

$t->done;
