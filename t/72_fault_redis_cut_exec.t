#!/usr/bin/perl

# A batch's transaction cut before its EXEC (issue 10: "Redis applies both
# or, if the connection breaks before EXEC, neither"; README, "Settling, in
# batches").  The module talks to Redis through a proxy that, while told
# to, forwards a batch's MULTI, XADD and EVALSHA and then closes both
# connections instead of forwarding the EXEC: Redis discards the open
# transaction, the module reconnects and sends the batch again.  Under a
# steady load with several such cuts, every call answered is counted once
# in the period hash and has exactly one usage event in the stream (no
# event lost with the discarded XADD, none twice from the resend), and
# every lease comes back; and the calls go on: the connection is made
# again at once.  No timed assertion: every wait is a poll.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);
use AihubStream qw(usage_events);

plan(skip_all => 'module not built') unless Aihub::have_module();
plan(skip_all => 'wrk not installed') unless -x '/usr/bin/wrk';

my $t = Aihub->new(redis => 1);

seed_models($t);
my $probe = seed_full_key($t, account => 7200, included => 1000000);

my $CUT = $t->dir . '/cut';             # holds the cut while cutting
my $CUTS = $t->dir . '/cuts';           # the cuts made so far

# every connection relayed to Redis; while $CUT holds it, a write carrying
# an EXEC (an event is JSON on one line: no CR LF inside) is forwarded up
# to the EXEC, and then the connection is closed (at most once every half
# second: a connection that breaks)
my $LINE = 'before \*1\r\n\$4\r\nEXEC\r\n';
my ($PROXY, $proxy_pid) = fork_proxy($t, 64,
                                     cut_proxy(cut => $CUT, cuts => $CUTS));

sub cuts { proxy_cuts($CUTS, $LINE) }


# --- the provider and the gateway -------------------------------------------

ok(proxied_gateway($t, $PROXY, 2, $probe),
   'catalog loaded, through the proxy');

sub field { period_field($t, @_) }

sub wrk { wrk_chat($t, @_) }


# --- a steady load, its batches cut before EXEC -----------------------------

my $key = seed_full_key($t, account => 7201, included => 10000000,
                        overage => 0);
is($t->chat($key, model => 'test-basic')->{status}, 200, 'a first call');

Aihub::write_file($CUT, "$LINE\n");
my ($n, $bad) = wrk(key => $key, c => 8, seconds => 4);
unlink $CUT;

cmp_ok($n, '>', 50, "load: $n calls answered");
my $cuts = cuts();
cmp_ok($cuts, '>=', 3,
       "the proxy cut $cuts transactions before their EXEC");
diag("load: $n calls, $bad non-2xx, $cuts transactions cut before EXEC");
# a broken connection is made again at once, and the key cache stays
# trusted (the subscription, on its own connection, still hears): only the
# calls that needed Redis in that moment fail, those that found their
# node's block lease empty (0 to 4,400 of some 40,000 here, 1 to 2 ms of
# calls per cut at wrk's rate).  With a 100 ms backoff and the key cache
# distrusted on every break, 93,133 of 95,165 calls failed.
cmp_ok($bad, '<=', 0.25 * $n,
       "at most a quarter of the calls failed while the connection broke "
       . "($bad)");

# a few calls after the cuts: the batches held since go out with theirs
is($t->chat($key, model => 'test-basic')->{status}, 200,
   'a call after the cuts');

# wrk stops counting with up to 8 calls in flight, which nginx answers
counted_once($t, 7201, $n + 2 - $bad, $bad + 8,
             'a discarded transaction left no XADD behind');
is(field(7201, 'cost'),
   eval { my $c = 0; $c += $_->{cost_micros} for grep { $_->{account} == 7201 }
          usage_events($t); $c },
   'the period cost is the sum of the events\' costs');

kill 'TERM', $proxy_pid;
waitpid($proxy_pid, 0);

$t->done;
