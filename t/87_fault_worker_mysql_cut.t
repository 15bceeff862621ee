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
use IO::Select;
use IO::Socket::IP;
use IO::Socket::UNIX;
use JSON::PP;
use POSIX ();
use Time::HiRes qw(time sleep);

use lib 't/lib';
use Aihub;

plan skip_all => 'aihub-worker not built' unless Aihub::have_worker();

my $t = Aihub->new(redis => 1, mariadb => 1);
$t->migrate;

my $CUT = $t->dir . '/cut';           # "before|after <statement start>"
my $CUTS = $t->dir . '/cuts';         # "<the cut's line> n" for each


# --- the proxy ---------------------------------------------------------------

# every TCP connection relayed to MariaDB's socket.  While $CUT holds
# "before TEXT", a client write carrying a COM_QUERY (byte 3) whose text
# starts with TEXT is not forwarded: both ends are closed.  "after TEXT"
# forwards it and closes both ends when the server's answer comes, instead
# of forwarding the answer.  One cut every half second at most.
sub proxy {
    my ($listen, $socket) = @_;
    my $sel = IO::Select->new($listen);
    my (%peer, %is_client, %cut_answer, %cuts);
    my $last_cut = 0;

    my $drop = sub {
        my ($s) = @_;
        my $p = delete $peer{$s};
        delete $peer{$p} if $p;
        for ($s, $p) {
            next unless $_;
            delete $is_client{$_};
            delete $cut_answer{$_};
            $sel->remove($_);
            close $_;
        }
    };

    my $count = sub {
        my ($line) = @_;
        $cuts{$line}++;
        $last_cut = time;
        Aihub::write_file($CUTS, join '', map { "$_ $cuts{$_}\n" }
                                          sort keys %cuts);
    };

    for ( ;; ) {
        for my $s ($sel->can_read(1)) {
            if ($s == $listen) {
                my $c = $listen->accept or next;
                my $m = IO::Socket::UNIX->new(Peer => $socket)
                    or do { close $c; next };
                @peer{ $c, $m } = ($m, $c);
                $is_client{$c} = 1;
                $sel->add($c, $m);
                next;
            }

            my $n = sysread($s, my $buf, 65536);
            if (!$n) {
                $drop->($s);
                next;
            }

            my $to = $peer{$s} or next;

            if ($cut_answer{$s}) {
                # the server's answer to the statement: dropped
                $count->($cut_answer{$s});
                $drop->($s);
                next;
            }

            if ($is_client{$s} && -e $CUT && time - $last_cut >= 0.5) {
                my $line = Aihub::read_file($CUT);
                $line =~ s/^\s+|\s+$//g;
                my ($when, $text) = $line =~ /^(before|after) (.+)$/;

                # a packet: 3 bytes of length, 1 of sequence, the command
                if ($when && length($buf) > 5 && ord(substr $buf, 4, 1) == 3
                    && substr($buf, 5, length $text) eq $text)
                {
                    if ($when eq 'before') {
                        $count->($line);
                        $drop->($s);
                        next;
                    }

                    $cut_answer{$to} = $line;
                    $last_cut = time;
                }
            }

            syswrite($to, $buf) // $drop->($s);
        }
    }
}

my $listen = IO::Socket::IP->new(LocalHost => '127.0.0.1', LocalPort => 0,
                                 Listen => 16, ReuseAddr => 1)
    or BAIL_OUT("proxy listen: $!");
my $PROXY = $listen->sockport;
my $proxy_pid = fork // BAIL_OUT("fork: $!");

if ($proxy_pid == 0) {
    proxy($listen, $t->mysql_socket);
    POSIX::_exit(0);
}

close $listen;

sub cuts {
    my ($line) = @_;
    my $text = -e $CUTS ? Aihub::read_file($CUTS) : '';
    return ($text =~ /^\Q$line\E (\d+)$/m)[0] // 0;
}


# --- the events --------------------------------------------------------------

my $json = JSON::PP->new->canonical;
my $now = int(time * 1000);
my $sent = 0;

sub send_events {
    my ($n) = @_;

    for (1 .. $n) {
        $sent++;
        $t->redis('XADD', 'aihub:usage', '*', 'event', $json->encode({
            v => 1, id => sprintf('%032x', $sent), ts => $now,
            node => 'test-node', account => 1 + $sent % 3,
            key => 'ai-hub-AbCdEfGh', plan => 'pro',
            model => $sent % 2 ? 'mock-basic' : 'mock-pro',
            provider => 'mock', prompt_tokens => 10 + $sent % 7,
            completion_tokens => 5, total_tokens => 15 + $sent % 7,
            cost_micros => 4 + $sent % 5, status => 200,
            streamed => JSON::PP::false, aborted => JSON::PP::false,
            estimated => JSON::PP::false, latency_ms => 12,
        }));
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

for my $cut ('before START TRANSACTION', 'before INSERT INTO usage_daily',
             'before COMMIT', 'after COMMIT')
{
    Aihub::write_file($CUT, "$cut\n");

    my $until = time + 40;
    while (cuts($cut) < 3 && time < $until && $t->alive('worker')) {
        send_events(20);
        sleep 0.2;
    }

    unlink $CUT;
    send_events(20);

    is(cuts($cut), 3, "the proxy cut the worker's connection $cut 3 times");
    ok($t->alive('worker'), "the worker lived through the cuts $cut")
        or diag(Aihub::tail($t->dir . '/worker.log', 20));
    ok($t->wait_for(\&drained, timeout => 60),
       "every event stored after the cuts $cut");
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
