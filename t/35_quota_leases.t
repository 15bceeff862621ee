#!/usr/bin/perl

# Block leases (issue 10): far from the edge of its quota an account's
# calls are admitted from its node's lease in the shared zone, with no
# Redis round trip, and settles and usage events leave each worker
# process in batches.  A steady load (wrk, keep-alive, against a canned
# provider) is measured with Redis's INFO commandstats: the round trips
# (EVALSHA: batches and leases) and the commands Redis ran in all (the
# scripts' own included) per call are both far below one.  Afterwards the
# counters equal the calls answered and the events written, and the
# unused rest of the leases goes back when the node goes idle; small
# leases refilled ahead of need stay exact; a graceful reload under load
# gives the old worker processes' leases back; under the global rate
# limit blocks hold its tokens too; the scripts flushed under load lose
# nothing.
# Nothing here is timed.

use strict;
use warnings;

use Test::More;

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);
use AihubStream qw(usage_events);

plan(skip_all => 'module not built') unless Aihub::have_module();
plan(skip_all => 'wrk not installed') unless -x '/usr/bin/wrk';

my $t = Aihub->new(redis => 1);

seed_models($t);
my $probe = seed_full_key($t, account => 3500, included => 1000000);

# the provider: canned answers from an nginx of its own (the Perl mock
# could not keep up with wrk)
my $STUB = canned_stub($t);

sub gateway {
    my ($name, $extra, $loc) = @_;
    $loc //= '';

    $t->nginx(gateway_conf(stub => $STUB, extra => $extra, loc => $loc,
                           upstream => 1), name => $name);
    worker_processes($t, 2, $name);
    $t->start_nginx($name);
    ok(wait_ready($t, $probe, name => $name), "$name: catalog loaded");
}

gateway('nginx', '');
gateway('small', 'aihub_lease_calls 4;');
gateway('global', '', 'aihub_rate_limit global;');
gateway('single', 'aihub_lease_calls 1;');

my $PERIOD = period_id();

sub period { $t->redis('HGETALL', "aihub:period:$_[0]:$PERIOD") // [] }

sub field { period_field($t, @_) }

# the calls of an account among the usage events in the stream: the
# answered ones, and those whose client left once the provider had them
# (wrk leaves with calls in flight; they are billed: README, "How a call
# is metered")
# (by id: a batch whose reply was lost goes again, and its events are in
# the stream twice; the worker stores an id once)
sub events {
    my ($account) = @_;
    my %id;
    $id{$_->{id}} = 1
        for grep { $_->{account} == $account
                   && ($_->{status} == 200 || $_->{aborted}) }
            usage_events($t);
    return scalar keys %id;
}

sub wrk { wrk_chat($t, @_) }

sub stats {
    my %s;
    for (split /\r?\n/, $t->redis('INFO', 'commandstats')) {
        $s{$1} = $2 if /^cmdstat_([^:]+):calls=(\d+)/;
    }
    return \%s;
}

# every lease back, nothing held, the counter equal to the events; wrk
# stops counting with up to $c calls still in flight, which nginx answers
sub settled {
    my ($account, $calls, $c, $name, $base) = @_;
    my $ok = $t->wait_for(sub {
        field($account, 'leased_calls') == 0
        && ($t->redis('ZCARD', "aihub:leases:$account:$PERIOD") // 0) == 0
        && field($account, 'calls') >= $calls
    }, timeout => 20, interval => 0.2);
    my $n = field($account, 'calls');
    ok($ok, "$name: every lease back") or diag(join ' ', @{ period($account) });
    ok($n >= $calls && $n <= $calls + $c,
       "$name: $n calls counted, for $calls answered and $c in flight");

    # the events last (the batches apply events and counters at once), and
    # once: the stream is emptied for the next case; returns their cost
    is(events($account), $n - ($base // 0),
       "$name: as many usage events (those since the stream was emptied)");
    my $cost = 0;
    $cost += $_->{cost_micros} for grep { $_->{account} == $account }
                                   usage_events($t);
    $t->redis('DEL', 'aihub:usage');
    return $cost;
}


# --- 1. a steady load far from the edge: no round trip per call --------------

my $k1 = seed_full_key($t, account => 3501, included => 10000000,
                       overage => 0);
for (1 .. 4) {
    my $r = $t->chat($k1, model => 'test-basic');
    is($r->{status}, 200, 'a first call') or diag($r->{content});
}
settled(3501, 4, 0, 'warm-up');

$t->redis('CONFIG', 'RESETSTAT');
my $m0 = gateway_metrics($t);
my ($n1, $bad1, $secs) = wrk(key => $k1, c => 16, seconds => 3);
my $s = stats();
my $m1 = gateway_metrics($t);
cmp_ok($n1, '>', 100, "load: $n1 calls answered");
is($bad1, 0, 'load: every answer 200');

my %from = map { my $k = "aihub_quota_calls_total{from=\"$_\"}";
                 ($_ => ($m1->{$k} // 0) - ($m0->{$k} // 0)) } qw(lease redis);

# what ran while the load ran: the test itself sent only CONFIG and INFO
delete $s->{$_} for grep { /^(config|info)/ } keys %$s;
my $total = 0;
$total += $_ for values %$s;
my $trips = $s->{evalsha} // 0;
my $batches = $s->{exec} // 0;
my $grants = $s->{time} // 0;
diag(sprintf 'load: %d calls in %.2f s; %d from the lease, %d waited for '
             . 'Redis; %d grants, %d batches; %d round trips (%.3f a call); '
             . '%d commands in all, the scripts\' own included (%.3f a '
             . 'call): %s',
     $n1, $secs, $from{lease}, $from{redis}, $grants, $batches, $trips,
     $trips / $n1, $total, $total / $n1,
     join(' ', map { "$_=$s->{$_}" } sort keys %$s));

# A call's path has a Redis round trip only when the node's lease cannot
# admit it: the module counts those calls.  The load starts with no lease
# (the warm-up's went back once the node was idle), so wrk's first 16
# calls may each wait; after them, on an idle machine (about 9,700 calls
# a second here) none did.  Under the whole suite's load (75 calls a
# second, 200 ms a call) a refill can come back after its block's last
# quarter ran out, and the calls in flight then wait for Redis too.
my $counted = $from{lease} + $from{redis};
ok($counted >= $n1 && $counted <= $n1 + 16,
   "load: $counted calls counted, for $n1 answered and 16 in flight");
cmp_ok($from{redis}, '<=', 16 + 0.05 * $n1,
       "load: $from{redis} of $n1 calls waited for Redis: wrk's first 16, "
       . 'then hardly any: no round trip on a call\'s path');

# The grants: one for each call that waited, and the refills, which ask
# ahead when a quarter of a block is left (one grant at a time per node):
# blocks hold 64 calls or more (what the node admits in a second), so a
# refill comes at most every 48 calls.
cmp_ok($grants, '<=', $from{redis} + 2 + $n1 / 48,
       "load: $grants grants: the calls that waited, then a refill every "
       . '48 calls at most');

# The batches (events and settles) leave a worker process at most every
# 10 ms (or once 256 events wait), whatever the rate: their number
# follows time, not calls.  At 9,700 calls a second that made 0.011 round
# trips and 0.10 commands a call; under the suite's load, with a few
# calls a batch, 0.3 and 2.8.
cmp_ok($batches, '<=', 2 * ($secs * 100 + 2) + $n1 / 256,
       "load: $batches batches in $secs s from two worker processes: at "
       . 'most one each 10 ms or 256 events');
cmp_ok($trips / $n1, '<', 1, 'load: round trips per call below 1');

# A batch costs Redis the same few commands whatever it carries (MULTI,
# XADD, EVALSHA, EXEC and the apply script's own, about 9.5; a grant about
# 10), so the commands a call fall as batches fill: below 1 once a batch
# carries 16 calls or more.  Under ASan, 1,300 calls a second made 8 a
# batch and 1.2 commands a call; at 3,800 a second, 22 and 0.43.
cmp_ok($total, '<=', 11 * $batches + 12 * $grants + 50,
       sprintf('load: %d Redis commands for %d batches and %d grants: a '
               . 'batch costs the same whatever it carries', $total,
               $batches, $grants));
SKIP: {
    skip sprintf('load: %d calls in %d batches (%.1f a batch): too slow '
                 . 'a load for batches of many calls', $n1, $batches,
                 $n1 / $batches), 1 if $n1 / $batches < 16;
    cmp_ok($total / $n1, '<', 1,
           'load: Redis commands per call, scripts included, below 1');
}
settled(3501, 4 + $n1, 16, 'load', 4);

# what makes a batch applied once is one key per nginx worker process (the
# number of its last batch), not one per batch: at 10,000 calls a second a
# key per batch kept a day was 13 million keys and over a GB of Redis
my @bkeys = @{ $t->redis('KEYS', 'aihub:batch:*') // [] };
cmp_ok(scalar @bkeys, '<=', 6,
       'load: ' . scalar(@bkeys) . ' batch keys after ' . ($s->{exec} // 0)
       . ' batches (three gateways of two worker processes)');
cmp_ok($s->{exec} // 0, '>', 6, 'load: more batches than processes');


# --- 2. small leases, refilled ahead of need: exact --------------------------

my $k2 = seed_full_key($t, account => 3502, included => 10000000,
                       overage => 0);
my ($n2, $bad2) = wrk(key => $k2, c => 8, seconds => 2,
                      name => 'small');
# (how many depends on the load of the machine: under the whole suite, with
# t/34's hundreds of concurrent calls beside it, as few as 84 in 2 s; 20
# calls are five blocks of 4 and their refills)
cmp_ok($n2, '>', 20, "small leases: $n2 calls answered");
is($bad2, 0, 'small leases: every answer 200');
settled(3502, $n2, 8, 'small leases');


# --- 3. a graceful reload with leases held -----------------------------------

my $k3 = seed_full_key($t, account => 3503, included => 10000000,
                       overage => 0);
my $pid = fork // die "fork: $!\n";
if ($pid == 0) {
    my ($n) = wrk(key => $k3, c => 8, seconds => 4);
    Aihub::write_file($t->dir . '/reload.n', $n);
    POSIX::_exit(0);
}
sleep 1.5;
ok(field(3503, 'leased_calls') > 0, 'reload: a lease held under load');
$t->reload_nginx;
waitpid($pid, 0);
my $n3 = Aihub::read_file($t->dir . '/reload.n') + 0;
cmp_ok($n3, '>', 100, "reload: $n3 calls answered across the reload");
settled(3503, $n3, 8, 'reload');


# --- 4. the Redis-global rate limit: its tokens leased with the calls -------
# A block lease also takes as many of the limit's tokens (far from the
# limit here: 600,000 a minute); t/75 has two nodes at the limit's edge.

my $k4 = seed_full_key($t, account => 3504, included => 10000000,
                       overage => 0, rpm => 600000);
my $g0 = gateway_metrics($t, 'global');
my ($n4, $bad4) = wrk(key => $k4, c => 4, seconds => 3, name => 'global');
my $g1 = gateway_metrics($t, 'global');
my $waited4 = ($g1->{'aihub_quota_calls_total{from="redis"}'} // 0)
              - ($g0->{'aihub_quota_calls_total{from="redis"}'} // 0);
cmp_ok($n4, '>', 20, "global limit: $n4 calls");
is($bad4, 0, 'global limit: every answer 200');
cmp_ok($waited4, '<=', 4 + 0.05 * $n4,
       "global limit: $waited4 of $n4 calls waited for Redis (a block "
       . 'lease holds the limit\'s tokens too)');
settled(3504, $n4, 4, 'global limit');



# --- 6. calls beyond the included ones of an account with a spend cap -------
# Far from the cap they come out of block leases too: a block holds its
# calls' worst-case cost (here about 150 micro-dollars a call: a prompt of
# some 25 tokens and max_tokens 64, at 1 and 2 micro-dollars a token),
# each call takes its own worst case out of it, and the settle replaces it
# by the actual cost.  Before, each such call waited for a lease of its
# own: a round trip per call.

my $k6 = seed_full_key($t, account => 3506, included => 0, overage => 1,
                       spend_cap => 1_000_000_000);
$t->redis('CONFIG', 'RESETSTAT');
my ($n6, $bad6) = wrk(key => $k6, c => 8, seconds => 2);
my $g6 = stats()->{time} // 0;
cmp_ok($n6, '>', 20, "spend cap, far: $n6 calls answered");
is($bad6, 0, 'spend cap, far: every answer 200');
cmp_ok($g6, '<=', 2 + 0.05 * $n6, "spend cap, far: $g6 grants for $n6 "
       . 'calls beyond the included ones: block leases, no round trip a '
       . 'call');
my $c6 = settled(3506, $n6, 8, 'spend cap, far');
is(field(3506, 'leased_cost'), 0, 'spend cap, far: no cost held once idle');
is(field(3506, 'overage'), $c6,
   "spend cap, far: the overage is the cost of the calls ($c6)");

# --- 7. ... and at the cap: blocks shrink, the cap holds ---------------------
# A cap of 40,000 micro-dollars.  One call of test-basic (worst case about
# 130 micro-dollars, actual 78) takes a block of 64 calls holding 64 such
# worst cases; then 8 connections call test-premium (worst case about
# 2,200, actual 1,050) on the same key for 2 s.  Out of that block each
# takes its own worst case, so it admits three of them, not 63 (which
# would cost 66,000: without that the overage ends at 66,228); then the
# blocks shrink to one call each.  The overage
# ends at most one call's worst case above the cap (a call alone holds its
# whole worst case while anything is left), and it is the cost of the
# calls answered.

my $k7 = seed_full_key($t, account => 3507, plan => 'pro', included => 0,
                       overage => 1, spend_cap => 40_000, models => '*');
my $r7 = $t->chat($k7, model => 'test-basic', extra => { max_tokens => 64 });
is($r7->{status}, 200, 'spend cap, edge: a first, cheap call');
my ($n7, $bad7) = wrk(key => $k7, c => 8, seconds => 2,
                      model => 'test-premium');
cmp_ok($bad7, '>', 0, "spend cap, edge: $bad7 calls refused");
cmp_ok($n7 - $bad7, '>', 10, 'spend cap, edge: ' . ($n7 - $bad7)
       . ' dear calls answered');
my $c7 = settled(3507, $n7 - $bad7 + 1, 8, 'spend cap, edge');
my $o7 = field(3507, 'overage');
cmp_ok($o7, '<=', 40_000 + 2_500,
       "spend cap, edge: overage $o7 within one call's worst case of the cap");
cmp_ok($o7, '>', 40_000 - 2_500, 'spend cap, edge: the cap was used up');
is($o7, $c7, 'spend cap, edge: the overage is the cost of the calls');
is(field(3507, 'leased_cost'), 0, 'spend cap, edge: no cost held once idle');

# --- 5. the scripts flushed under load ---------------------------------------
# SCRIPT FLUSH (an operator's slip; a Redis restart loads them on the new
# connection): a batch refused NOSCRIPT goes again once they are loaded,
# under a new number, and a grant or a key's lookup refused goes again
# behind them, once; every call is answered, nothing is lost or counted
# twice.  First one call at a time on a node whose every call takes its
# own lease (aihub_lease_calls 1), each after a flush, half of them with a
# key the node has not seen (its lookup runs a script too): before, each
# got 503.

{
    my @ok;
    for my $i (1 .. 6) {
        my $k = $i % 2 ? $probe
              : seed_full_key($t, account => 3520 + $i, included => 100);
        $t->redis('SCRIPT', 'FLUSH');
        my $r = $t->chat($k, name => 'single', model => 'test-basic');
        push @ok, $r->{status} == 200;
        diag("after flush $i: $r->{status} $r->{content}")
            if $r->{status} != 200;
    }
    is(scalar(grep { $_ } @ok), 6, 'script flush: each call right after a '
       . 'flush answered (a grant, or a lookup and a grant, sent again)');
    like($t->error_log('single'), qr/redis lost the quota scripts/,
         'script flush: the node heard NOSCRIPT');
}

my $k5 = seed_full_key($t, account => 3505, included => 10000000,
                       overage => 0);
$pid = fork // die "fork: $!\n";
if ($pid == 0) {
    my ($n, $bad) = wrk(key => $k5, c => 8, seconds => 3);
    Aihub::write_file($t->dir . '/flush.n', "$n $bad");
    POSIX::_exit(0);
}
for (1 .. 5) {
    select(undef, undef, undef, 0.4);
    $t->redis('SCRIPT', 'FLUSH');
}
waitpid($pid, 0);
my ($n5, $bad5) = split ' ', Aihub::read_file($t->dir . '/flush.n');
cmp_ok($n5, '>', 20, "script flush: $n5 calls under load");
is($bad5, 0, 'script flush: none refused');
settled(3505, $n5 - $bad5, 8, 'script flush');
my $reloads = () = $t->error_log =~ /redis lost the quota scripts/g;
cmp_ok($reloads, '>', 0, "script flush: the module heard NOSCRIPT "
       . "$reloads times and loaded the scripts again");

# --- 6. thousands of expired leases ------------------------------------------
# Nodes that died under a burst at one-call leases leave a lease a call;
# the next grant reclaims every expired one at once (Redis's Lua unpacks
# at most some 8,000 values in one call: the reclaim failed past that, and
# the period's leased calls were never given back).

{
    my $acct = 3590;
    my $k6 = seed_full_key($t, account => $acct, included => 1000000);
    my $pk = "aihub:period:$acct:$PERIOD";
    my @ids = map { sprintf 'dead%028d', $_ } 1 .. 10000;

    $t->redis('HSET', $pk, (map { ("lease:$_", '1:0') } @ids),
              'leased_calls', scalar @ids);
    $t->redis('ZADD', "aihub:leases:$acct:$PERIOD", map { (1, $_) } @ids);

    is($t->chat($k6, name => 'nginx', model => 'test-basic')->{status}, 200,
       '10,000 expired leases: a call is answered');
    cmp_ok(field($acct, 'leased_calls'), '<', 100,
           '10,000 expired leases: their calls given back');
    cmp_ok($t->redis('ZCARD', "aihub:leases:$acct:$PERIOD") // 0, '<', 10,
           '10,000 expired leases: gone from the period\'s leases');
}

$t->done;
