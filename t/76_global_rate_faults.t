#!/usr/bin/perl

# The global rate limit's leased tokens under faults (issue 10): a lease
# that holds tokens of "aihub_rate_limit global" records them in Redis
# ("lease:<id>" = "calls:cost:rpm"), so whatever way the lease ends, its
# unused tokens go back to the limit, as its unused calls go back to the
# quota:
#
#   - the grant's reply comes after aihub_redis_timeout (Redis frozen):
#     the request's 503 gives the lease back, tokens included;
#   - the nginx worker process is killed while it waits for the grant:
#     nobody gives the lease back; when it expires (aihub_lease_time 2s
#     here) the sweep reclaims its calls and its tokens;
#   - Redis frozen twice under a concurrent load: the limit is never
#     passed, and once every lease is back the limit counts exactly the
#     calls answered;
#   - a lease given back after Redis reclaimed it (its node's worker
#     processes stopped meanwhile, another node's sweep reclaiming it):
#     its tokens do not go back a second time;
#   - Redis loses its data: the limit's state is not in MySQL, so the
#     limit starts full again once Redis is restored, and holds from there.
#
# Nothing here is timed: the figures come from Redis's clock, every wait
# is a poll with a generous bound.

use strict;
use warnings;

use Test::More;
use POSIX ();
use Time::HiRes qw(sleep);

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);
use AihubStream qw(usage_events);

plan(skip_all => 'module not built') unless Aihub::have_module();
plan(skip_all => 'wrk not installed') unless -x '/usr/bin/wrk';

my $t = Aihub->new(redis => 1);

seed_models($t);
my $probe = seed_full_key($t, account => 7600, included => 1000000);
my $STUB = canned_stub($t);

$t->nginx(gateway_conf(stub => $STUB, redis_timeout => '300ms',
                       extra => "aihub_lease_time 2s;\n"
                                . "    aihub_lease_calls 8;",
                       loc => 'aihub_rate_limit global;'));
worker_processes($t, 2);
$t->start_nginx;
ok(wait_ready($t, $probe), 'catalog loaded');

my $PERIOD = period_id();

sub redis_ms {
    my ($s, $us) = @{ $t->redis('TIME') };
    return $s * 1000 + $us / 1000;
}

sub field {
    my ($account, $f) = @_;
    return ($t->redis('HGET', "aihub:period:$account:$PERIOD", $f) // 0)
           + 0;
}

# every lease of the account back or reclaimed
sub settled {
    my ($account) = @_;
    return $t->wait_for(sub {
        field($account, 'leased_calls') == 0
        && ($t->redis('ZCARD', "aihub:leases:$account:$PERIOD") // 0) == 0
    }, timeout => 20, interval => 0.1);
}

# the tokens the limit's state holds as taken since $t0 (Redis ms): one
# interval per token taken, back one per token returned
sub tokens_taken {
    my ($account, $rpm, $t0) = @_;
    my $tat = $t->redis('GET', "aihub:rl:$account") // $t0;
    return ($tat - $t0) / (60000 / $rpm);
}

# the lease fields of an account's period: "calls:cost:rpm" each
sub lease_fields {
    my ($account) = @_;
    my %h = @{ $t->redis('HGETALL', "aihub:period:$account:$PERIOD") // [] };
    return map { $h{$_} } grep { /^lease:/ } sort keys %h;
}


# --- 1. the grant's reply after the timeout ----------------------------------
# A limit of 60 a minute.  A first call caches the key and takes a block
# of 8 calls and 8 tokens, which goes back within a second (the 7 unused
# tokens with it).  Then, with Redis frozen, the next call waits for a
# grant of its own block and gets 503; Redis runs the grant when it
# wakes, and the give-back that follows it returns the calls and the
# tokens: the limit is whole again.

# the tokens the limit holds as taken now: its state (a theoretical
# arrival time) ahead of Redis's clock, in intervals
sub held_now {
    my ($account, $rpm) = @_;
    my $tat = $t->redis('GET', "aihub:rl:$account");
    return 0 unless defined $tat;
    return ($tat - redis_ms()) / (60000 / $rpm);
}

my $k1 = seed_full_key($t, account => 7601, included => 1000000, rpm => 60);
is($t->chat($k1, model => 'test-basic')->{status}, 200, 'reply late: a call');
ok(settled(7601), 'reply late: its block went back');
$t->redis_nowait('DEBUG', 'SLEEP', '1');
sleep 0.1;
my $r = $t->chat($k1, model => 'test-basic');
is($r->{status}, 503, 'reply late: the call waiting for its grant got 503');
ok(settled(7601), 'reply late: the late lease went back');
is(field(7601, 'calls'), 1, 'reply late: one call counted, the first');
my $held = held_now(7601, 60);
ok($held < 0.5,
   sprintf('reply late: the limit holds %.3f tokens as taken: the late '
           . 'block\'s 8 went back with its calls', $held));
my @r = map { $t->chat($k1, model => 'test-basic') } 1 .. 2;
is_deeply([ map { $_->{status} } @r ], [ 200, 200 ], 'reply late: two calls');
is_deeply([ map { $_->{headers}{'x-ratelimit-remaining-requests'} } @r ],
          [ 59, 58 ], 'reply late: they see the whole limit left');


# --- 2. the worker processes killed while they wait for grants ---------------
# Nobody gives these leases back: they expire after 2 s, and the sweep (one
# worker process per node, every half lease time) reclaims their calls
# from the quota and their tokens from the limit.

my $k2 = seed_full_key($t, account => 7602, included => 1000000, rpm => 60);
is($t->chat($k2, model => 'test-basic')->{status}, 200, 'killed: a call');
ok(settled(7602), 'killed: its block went back');
$t->redis_nowait('DEBUG', 'SLEEP', '1');
sleep 0.1;
my @gone = map { raw_chat($t, $k2) } 1 .. 2;
sleep 0.1;
$t->allow_log(qr/exited on signal 9/);
kill 'KILL', $t->nginx_worker_pids;
close $_ for @gone;
ok($t->wait_for(sub { scalar(() = $t->nginx_worker_pids) == 2 },
                timeout => 10), 'killed: the master started new workers');
my @f = lease_fields(7602);
ok(@f && !grep({ !/^\d+:0:60$/ } @f),
   "killed: Redis ran the grants when it woke; each lease records its "
   . "tokens (@f)");
my $leased = 0;
$leased += (split /:/)[0] for @f;
$held = held_now(7602, 60);
ok($held > 0 && $held <= $leased + 0.001,
   sprintf('killed: the limit holds %.3f tokens as taken, at most the %d '
           . 'the leases hold', $held, $leased));
ok(settled(7602), 'killed: the leases expired and were reclaimed');
is(field(7602, 'calls'), 1, 'killed: one call counted, the first');
$held = held_now(7602, 60);
ok($held < 0.5,
   sprintf('killed: the limit holds %.3f tokens as taken: the leases\' '
           . '%d went back', $held, $leased));
ok(wait_ready($t, $probe), 'killed: serving again');


# --- 3. Redis frozen under a concurrent load ------------------------------------
# A limit of 120 a minute, 8 connections for 4 s; Redis frozen for 0.6 s
# twice meanwhile, so grants time out, requests get 503 and block leases
# are returned late.  The limit is never passed, and once every lease is
# back its state counts exactly the calls answered.

my $RPM = 120;
my $k3 = seed_full_key($t, account => 7603, included => 10000000,
                       rpm => $RPM);
my $t3 = redis_ms();
my $pid = fork // die "fork: $!\n";
if ($pid == 0) {
    my ($n, $bad) = wrk_chat($t, key => $k3, c => 8, seconds => 4);
    Aihub::write_file($t->dir . '/wrk.out', "$n $bad\n");
    POSIX::_exit(0);
}
for (1 .. 2) {
    sleep 1;
    $t->redis_nowait('DEBUG', 'SLEEP', '0.6');
}
waitpid($pid, 0);
my $t3b = redis_ms();
my ($n, $bad) = split ' ', Aihub::read_file($t->dir . '/wrk.out');

ok(settled(7603), 'stalls: every lease back');
my $calls = field(7603, 'calls');
my $refill = int(($t3b - $t3) / (60000 / $RPM));
my $taken = tokens_taken(7603, $RPM, $t3);
# a call admitted keeps its token when it then fails (README "Leases":
# only a block's unused tokens go back): wrk, stopping, may leave one of
# its 8 connections' calls in flight, its client gone, the call not
# counted.  Each admitted call has its usage event; refused ones none.
my %status;
for my $e (usage_events($t)) {
    $status{ $e->{aborted} ? 'aborted' : $e->{status} }++
        if $e->{account} == 7603;
}
diag(join ' ', map { "$_=$status{$_}" } sort keys %status);
my $admitted = 0;
$admitted += $_ for values %status;
diag(sprintf 'stalls: %d calls made, %d not 2xx; %d answered (limit %d + '
             . '%d refilled), %d admitted; the limit counts %.2f', $n,
             $bad, $calls, $RPM, $refill, $admitted, $taken);
cmp_ok($bad, '>', 0, 'stalls: some calls were refused');
cmp_ok($calls, '<=', $RPM + $refill + 1,
       "stalls: $calls answered: never more than the limit allows");
cmp_ok($calls, '>', 0, 'stalls: and some were answered');
ok($admitted >= $calls && $admitted <= $calls + 8,
   "stalls: $admitted calls admitted: the $calls answered and at most "
   . "the 8 of wrk's connections left when it stopped");
ok($taken >= $calls - 0.001 && $taken < $admitted + 1,
   sprintf('stalls: the limit counts %.3f tokens for %d calls answered '
           . 'of %d admitted: every unused token went back', $taken,
           $calls, $admitted));


# --- 4. a lease given back after it was reclaimed -------------------------------
# Node A takes a block of 8 calls and 8 tokens for one call, and its worker
# processes are stopped (SIGSTOP) before they give the 7 unused back.  The
# lease expires, and node B's sweep reclaims the 7 calls and the 7 tokens.
# Then A wakes and gives the lease back, late.  The apply script gives
# tokens back only for a lease it still holds: nothing goes back twice.
# Redis's slow log (every command, for the while) shows that A's late
# give-back did reach Redis.

$t->nginx(gateway_conf(stub => $STUB, redis_timeout => '300ms',
                       extra => "aihub_lease_time 2s;\n"
                                . "    aihub_lease_calls 8;",
                       loc => 'aihub_rate_limit global;'), name => 'b');
$t->start_nginx('b');
ok(wait_ready($t, $probe, name => 'b'), 'reclaimed: node B serving');

my $k4 = seed_full_key($t, account => 7604, included => 1000000, rpm => 60);
my $t4 = redis_ms();
is($t->chat($k4, model => 'test-basic')->{status}, 200,
   'reclaimed: a call on node A');
my $t4_end = redis_ms();
my @a_workers = $t->nginx_worker_pids;
kill 'STOP', @a_workers;

my %h4 = @{ $t->redis('HGETALL', "aihub:period:7604:$PERIOD") // [] };
my ($lease) = map { /^lease:(.+)$/ ? $1 : () } keys %h4;
ok(defined $lease && $h4{"lease:$lease"} =~ /^7:0:60$/,
   'reclaimed: node A holds a lease of 8 calls and their tokens, 7 of them unused ('
   . ($lease // 'none') . ')');
ok(settled(7604), 'reclaimed: the lease expired and node B reclaimed it');
# (its state starts from the grant's clock, between $t4 and $t4_end: a
# second a token, and the grant some milliseconds after $t4, more in a
# sanitizer build)
my $before = tokens_taken(7604, 60, $t4);
my $slack = ($t4_end - $t4) / 1000;
ok($before > 0.999 && $before < 1.001 + $slack,
   sprintf('reclaimed: the limit counts %.3f tokens taken: the one call\'s '
           . '(and up to %.3f for the time of the call)', $before, $slack));

$t->redis('CONFIG', 'SET', 'slowlog-max-len', 100000);
$t->redis('CONFIG', 'SET', 'slowlog-log-slower-than', 0);
$t->redis('SLOWLOG', 'RESET');
kill 'CONT', @a_workers;

# a batch that carries the lease's id: nothing else names it now
my $late = $t->wait_for(sub {
    for my $e (@{ $t->redis('SLOWLOG', 'GET', -1) // [] }) {
        my @args = @{ $e->[3] // [] };
        return 1 if uc($args[0] // '') eq 'EVALSHA' && grep { $_ eq $lease }
                                                            @args;
    }
    return 0;
}, timeout => 10, interval => 0.5);
$t->redis('CONFIG', 'SET', 'slowlog-log-slower-than', 10000);
$t->redis('CONFIG', 'SET', 'slowlog-max-len', 128);
$t->redis('SLOWLOG', 'RESET');
ok($late, 'reclaimed: node A woke and gave the lease back, late');
ok(settled(7604), 'reclaimed: no lease left');
my $after = tokens_taken(7604, 60, $t4);
ok(abs($after - $before) < 0.001,
   sprintf('reclaimed: the limit still counts %.3f tokens taken (before '
           . 'the late give-back: %.3f): none went back twice', $after,
           $before));
is(field(7604, 'calls'), 1, 'reclaimed: one call counted');
my @r4 = map { $t->chat($k4, model => 'test-basic') } 1 .. 2;
is_deeply([ map { $_->{status} } @r4 ], [ 200, 200 ], 'reclaimed: two calls');


# --- 5. Redis loses its data -------------------------------------------------
# A limit of 60 a minute used up by a burst: the calls after it get 429.
# Then Redis loses everything (FLUSHALL).  Until it is restored no call is
# answered (no epoch marker: no lease) and none gets 401.  It is restored
# here as aihub-worker restores it (key records, models, then the epoch
# marker); the limit's state lives only in Redis, so the limit starts full
# again, remembering nothing of the minute before, and a burst is cut at
# the limit again.

my $k5 = seed_full_key($t, account => 7605, included => 1000000, rpm => 60);

sub burst {
    my ($key, $n) = @_;
    my %s;
    $s{ $t->chat($key, model => 'test-basic')->{status} }++ for 1 .. $n;
    return \%s;
}

my $t5 = redis_ms();
my $b1 = burst($k5, 70);
$refill = int((redis_ms() - $t5) / 1000) + 1;
diag('wiped: before: ' . join ' ', map { "$_ x $b1->{$_}" } sort keys %$b1);
ok(($b1->{200} // 0) >= 60 && ($b1->{200} // 0) <= 60 + $refill
   && ($b1->{429} // 0) > 0,
   "wiped: a burst of 70: the limit's 60 answered (at most $refill more "
   . 'refilled), the rest 429');

$t->redis('FLUSHALL');
my @w = map { $t->chat($k5, model => 'test-basic')->{status} } 1 .. 3;
ok(!grep({ $_ == 200 || $_ == 401 } @w),
   "wiped: before the restore, no call answered and none 401 (@w)");

seed_models($t);
seed_full_key($t, key => $probe, account => 7600, included => 1000000);
seed_full_key($t, key => $k5, account => 7605, included => 1000000,
              rpm => 60);
ok(wait_ready($t, $probe), 'wiped: restored, serving again');

my $t6 = redis_ms();
my $r5 = $t->chat($k5, model => 'test-basic');
is($r5->{status}, 200, 'wiped: the first call after the restore');
is($r5->{headers}{'x-ratelimit-remaining-requests'}, 59,
   'wiped: it sees the whole limit left: the state starts again');

my $b2 = burst($k5, 70);
$refill = int((redis_ms() - $t6) / 1000) + 1;
diag('wiped: after: ' . join ' ', map { "$_ x $b2->{$_}" } sort keys %$b2);
# (its calls spread over two worker processes: at the limit one may hold
# up to a block of 8 tokens it has not used yet, for a second at most,
# which the other cannot have: README "Leases")
ok(($b2->{200} // 0) >= 59 - 8 && ($b2->{200} // 0) <= 59 + $refill
   && ($b2->{429} // 0) > 0,
   "wiped: a burst of 70 after it: the 59 left answered (less what the "
   . "other process's block held, at most $refill more refilled), the "
   . "rest 429: the limit holds again");
ok(settled(7605), 'wiped: every lease back');
$taken = tokens_taken(7605, 60, $t6);
ok(abs($taken - (1 + ($b2->{200} // 0))) < 0.5,
   sprintf('wiped: the limit counts %.2f tokens for the %d calls answered '
           . 'since the restore', $taken, 1 + ($b2->{200} // 0)));

$t->done;
