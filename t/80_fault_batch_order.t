#!/usr/bin/perl

# A batch Redis did not run, with the next batches of its process already
# behind it on the wire (README, "Settling, in batches": a batch applies
# only right after the one before it).  The module talks to Redis through
# a proxy that, while told to, renames the XADD of the first batch in a
# read that carries more than one batch ("XADX"): Redis refuses that
# command as it queues it and aborts the transaction (EXECABORT), as it
# does at its maxmemory, while the transactions behind it run.  Those must
# wait (the script refuses them: GAP) and go again after the aborted one:
# were they applied first, the aborted batch's number would count as
# applied when it came again, its events stored and its calls never
# counted.  Afterwards every call answered is counted once and has one
# event, and every lease is back.  No timed assertion: every wait is a
# poll.

use strict;
use warnings;

use Test::More;
use IO::Select;
use IO::Socket::IP;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);

plan(skip_all => 'module not built') unless Aihub::have_module();
plan(skip_all => 'wrk not installed') unless -x '/usr/bin/wrk';

my $t = Aihub->new(redis => 1);

seed_models($t);
my $probe = seed_full_key($t, account => 8000, included => 1000000);

my $ON = $t->dir . '/abort.on';         # exists: abort such batches
my $ABORTS = $t->dir . '/aborts';       # the batches aborted so far
my $XADD = "\$4\r\nXADD\r\n";
my $EXEC = "*1\r\n\$4\r\nEXEC\r\n";


# --- the proxy ---------------------------------------------------------------

sub execs_after {
    my ($buf, $from) = @_;

    my $n = 0;
    while ((my $i = index($buf, $EXEC, $from)) >= 0) {
        $n++;
        $from = $i + length $EXEC;
    }
    return $n;
}

sub proxy {
    my ($listen, $redis_port) = @_;
    my $sel = IO::Select->new($listen);
    my (%peer, %is_client);
    my ($aborts, $last) = (0, 0);

    for ( ;; ) {
        for my $s ($sel->can_read(1)) {
            if ($s == $listen) {
                relay_accept($listen, $redis_port, $sel, \%peer,
                             \%is_client);
                next;
            }

            my $n = sysread($s, my $buf, 262144);
            my $to = $peer{$s};

            if (!$n || !$to) {
                relay_drop($sel, $s, \%peer, \%is_client);
                next;
            }

            # a batch held 50 ms (Redis slow: the process's next batches
            # go out meanwhile, its calls go on), then its XADD renamed, so
            # Redis refuses it and aborts that transaction only (same
            # length: one reply as before), and the batches sent behind it
            # forwarded with it
            my $i = index($buf, $XADD);
            if ($is_client{$s} && -e $ON && $i >= 0
                && time - $last >= 0.2)
            {
                sleep 0.05;
                $s->blocking(0);
                while ((sysread($s, my $more, 262144) // 0) > 0) {
                    $buf .= $more;
                }
                $s->blocking(1);

                if (execs_after($buf, $i) >= 2) {
                    substr($buf, $i, length $XADD) = "\$4\r\nXADX\r\n";
                    $aborts++;
                    $last = time;
                    Aihub::write_file($ABORTS, "$aborts\n");
                }
            }

            syswrite($to, $buf);
        }
    }
}

my ($PROXY, $proxy_pid) = fork_proxy($t, 64, \&proxy);

sub aborts { (Aihub::read_file($ABORTS) =~ /(\d+)/)[0] // 0 }


# --- the gateway, under load -------------------------------------------------

ok(proxied_gateway($t, $PROXY, 2, $probe),
   'catalog loaded, through the proxy');

my $key = seed_full_key($t, account => 8001, included => 10000000,
                        overage => 0);
is($t->chat($key, model => 'test-basic')->{status}, 200, 'a first call');

# load until the proxy has aborted three such batches (a slow build, under
# the sanitizers, sends fewer batches behind a held one), 5 rounds at most
Aihub::write_file($ON, "1\n");
my ($n, $bad, $rounds) = (0, 0, 0);
while ($rounds < 5) {
    $rounds++;
    my ($rn, $rbad) = wrk_chat($t, key => $key, c => 16, seconds => 4);
    $n += $rn;
    $bad += $rbad;
    last if aborts() >= 3;
}
unlink $ON;

my $aborts = aborts();
diag("load: $n calls, $bad non-2xx, $aborts batches aborted with more "
     . 'behind them');
cmp_ok($aborts, '>=', 3, "the proxy aborted $aborts batches that had "
                         . 'others behind them');
is($bad, 0, 'every call answered (a batch waits; calls do not)');
like($t->error_log, qr/redis refused a batch: ERR unknown command .XADX./,
     'the module saw the aborted transactions');

is($t->chat($key, model => 'test-basic')->{status}, 200,
   'a call after the aborts');

# wrk stops each round with up to 16 calls in flight, answered uncounted
counted_once($t, 8001, $n + 2 - $bad, $bad + 16 * $rounds);

kill 'TERM', $proxy_pid;
waitpid($proxy_pid, 0);

$t->done;
