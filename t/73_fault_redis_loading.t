#!/usr/bin/perl

# Fault: Redis restarted under load with a dataset that takes it a while to
# load.  While it reads its AOF it accepts connections and answers every
# command with "-LOADING Redis is loading the dataset in memory".  The
# module reconnects at once after a break, so it meets that Redis: it must
# drop the connection and come back after its backoff (not log an [alert]
# and go on without its scripts), and a batch whose EXEC fails as a whole
# must go again (not be dropped with its events and settles).  Afterwards
# every answered call is counted once and has exactly one usage event id
# (twice in the stream if its batch's reply died with Redis: resent, and
# stored once by the worker), and every lease is back.  Every wait is a
# poll; one bound: served again within 1.5 s of the load's end.

use strict;
use warnings;

use Test::More;
use POSIX ();
use Time::HiRes qw(time sleep);

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);

plan(skip_all => 'module not built') unless Aihub::have_module();
plan(skip_all => 'wrk not installed') unless -x '/usr/bin/wrk';

my @aof = ('--appendonly', 'yes', '--appendfsync', 'always');
my $t = Aihub->new(redis => 1, redis_args => \@aof);

seed_models($t);
my $probe = seed_full_key($t, account => 7300, included => 1000000);
my $STUB = canned_stub($t);

$t->nginx(gateway_conf(stub => $STUB));
worker_processes($t, 2);
$t->start_nginx;
ok(wait_ready($t, $probe), 'catalog loaded');

sub loading { ($t->redis('INFO', 'persistence') =~ /^loading:(\d)/m)[0] }

# a dataset Redis takes a while to read back: 2 million keys, written to
# the AOF's RDB preamble by a rewrite
$t->redis('DEBUG', 'POPULATE', 2000000, 'filler');
$t->redis('BGREWRITEAOF');
ok($t->wait_for(sub {
    ($t->redis('INFO', 'persistence') =~ /^aof_rewrite_in_progress:0/m)
    && ($t->redis('INFO', 'persistence')
        =~ /^aof_rewrite_scheduled:0/m)
}, timeout => 60, interval => 0.2), 'the AOF holds the 2 million keys');

my $key = seed_full_key($t, account => 7301, included => 10000000,
                        overage => 0);
is($t->chat($key, model => 'test-basic')->{status}, 200, 'a first call');

# under load: Redis killed, started again on its AOF, loading meanwhile
my $wrk = fork // BAIL_OUT("fork: $!");
if ($wrk == 0) {
    my ($n, $bad) = wrk_chat($t, key => $key, c => 4, seconds => 8);
    Aihub::write_file($t->dir . '/wrk.out', "$n $bad\n");
    POSIX::_exit(0);
}

sleep 1.5;
kill 'KILL', $t->{procs}{redis}{pid};
sleep 0.2;
$t->restart_redis(@aof);
my $saw_loading = 0;
$t->wait_for(sub {
    my $l = eval { loading() };
    $saw_loading ||= ($l // 0) == 1;
    return defined $l && $l == 0;
}, timeout => 60, interval => 0.05);
ok($saw_loading, 'Redis was loading its dataset after the restart');

waitpid($wrk, 0);
my ($n, $bad) = split ' ', Aihub::read_file($t->dir . '/wrk.out');
cmp_ok($n, '>', 50, "load: $n calls, $bad of them not 2xx");
diag("load: $n calls, $bad not 2xx (503 while Redis was away or loading)");

like($t->error_log, qr/not ready \(LOADING/,
     'the module met the loading Redis, dropped the connection and came '
     . 'back');

# While Redis loads, each worker process tries it again every 100 ms (a
# backoff that grew to its 5 s kept calls refused for seconds after the
# load ended): calls get 503 until the next try finds it loaded.
my $loaded = time;
my $first;
$t->wait_for(sub {
    $first = $t->chat($key, model => 'test-basic')->{status};
    return $first == 200;
}, timeout => 10, interval => 0.05);
my $after = time - $loaded;
is($first, 200, 'a call once Redis has loaded');
diag(sprintf 'the first call answered %.0f ms after Redis had loaded',
     $after * 1000);
cmp_ok($after, '<', 1.5, 'served again within 1.5 s of the load\'s end '
                         . '(15 tries of each worker process), not after '
                         . 'a grown backoff');

my ($ok, $calls, $ids) = wait_counted($t, 7301, $n + 2 - $bad);
ok($ok, "every lease back, the counter equal to the events: $calls calls "
        . 'counted, ' . ($n + 2 - $bad) . ' answered');
cmp_ok($calls, '<=', $n + 2 + 4,
       'no call counted beyond those answered and those in flight');

# a batch whose EXEC ran just before the kill lost its reply with the
# connection and went again: its events are in the stream twice (the
# worker stores an id once, t/63), never more
my %seen;
$seen{$_}++ for @$ids;
my @twice = grep { $seen{$_} > 1 } keys %seen;
is(scalar(grep { $seen{$_} > 2 } @twice), 0,
   'an event in the stream at most twice (' . scalar(@twice)
   . ' resent with a batch whose reply the kill took)');

$t->done;
