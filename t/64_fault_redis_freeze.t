#!/usr/bin/perl

# Fault: Redis frozen (DEBUG SLEEP 3) under a steady load on two nginx
# nodes.  nginx's worker processes never block on Redis: a plain location
# keeps answering on both nodes during the freeze (the issue asks < 100 ms;
# asserted loosely, < 1 s, so a loaded 2-core machine passes, and the times
# are printed), aihub calls that need Redis get 503 service_unavailable
# after aihub_redis_timeout (those a node admits from its block lease with
# a cached key need no Redis and are answered), and every call that
# reached the provider is one row, none twice.

use strict;
use warnings;

use List::Util qw(max sum);
use Test::More;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);

plan(skip_all => 'module or worker not built')
    unless Aihub::have_module() && Aihub::have_worker();

my $t = Aihub->new(redis => 1, mariadb => 1, mock => 1);
$t->migrate;

my @keys = fault_keys($t, 'frz');

fault_nodes($t, $keys[0], redis_timeout => '300ms');

# --- the fault ----------------------------------------------------------------

my $load = AihubFixtures::load_start($t, keys => \@keys, names => [qw(n1 n2)],
                                     clients => 4, seconds => 30, max => 400,
                                     pause => 0.02);
sleep 2;

my $FREEZE = 3;
$t->redis_nowait('DEBUG', 'SLEEP', $FREEZE);
my $frozen_at = time;
sleep 0.2;

my (%plain, @bad);

while (time < $frozen_at + $FREEZE - 0.3) {
    for my $n (qw(n1 n2)) {
        my $r = $t->http(GET => '/plain', name => $n, timeout => 5);
        push @{ $plain{$n} }, $r->{elapsed};
        push @bad, "$n: $r->{status}" unless $r->{status} == 200;
    }
    sleep 0.05;
}

my $probed_until = time;
sleep $FREEZE + 2 - (time - $frozen_at);
my @res = AihubFixtures::load_stop($t, $load);
my %st = AihubFixtures::status_counts(@res);

for my $n (qw(n1 n2)) {
    my @e = sort { $a <=> $b } @{ $plain{$n} };
    diag(sprintf '%s /plain during the freeze: %d requests, median %.1f ms, '
         . 'max %.1f ms, %d of them >= 100 ms', $n, scalar @e,
         1000 * $e[@e / 2], 1000 * max(@e), scalar grep { $_ >= 0.1 } @e);
}
diag('client statuses: ' . join ', ', map { "$_ x $st{$_}" } sort keys %st);

# --- what clients saw, what was stored --------------------------------------

cmp_ok($probed_until - $frozen_at, '<', $FREEZE,
       'the probes ran while Redis was frozen');
for my $n (qw(n1 n2)) {
    cmp_ok(scalar @{ $plain{$n} }, '>=', 5, "$n: /plain probed");
    cmp_ok(max(@{ $plain{$n} }), '<', 1,
           "$n: /plain answered in < 1 s (not blocked by the $FREEZE s "
           . 'freeze)');
}
is("@bad", '', '/plain answered 200 throughout');

my @frozen = grep { $_->{start} > $frozen_at + 0.1
                    && $_->{start} < $frozen_at + $FREEZE - 1 } @res;
# a call its node can admit from a block lease with a cached key needs no
# Redis: 200; one that needs Redis (a key to read, a lease to take) gets
# 503 within the timeout
my %fst = AihubFixtures::status_counts(@frozen);
diag('calls started during the freeze: '
     . join ', ', map { "$_ x $fst{$_}" } sort keys %fst);
ok(@frozen && !grep({ $_->{status} != 503 && $_->{status} != 200 }
                    @frozen),
   'calls started during the freeze got 200 (out of a block lease) or 503 ('
   . @frozen . ')');
cmp_ok(max(map { $_->{elapsed} } @frozen), '<', 2,
       'within the 300 ms Redis timeout, not the freeze (loosely: < 2 s)')
    if @frozen;
my @other = grep { $_->{status} != 200
                   && !($_->{status} == 503
                        && $_->{code} eq 'service_unavailable') } @res;
is(scalar @other, 0, 'clients saw only 200 or 503 service_unavailable');
ok((grep { $_->{status} == 200 && $_->{start} > $frozen_at + $FREEZE + 0.5 }
    @res), 'and 200 again after the freeze');

ok(AihubFixtures::wait_drained($t), 'drained');
my $calls = AihubFixtures::chat_calls($t);
is(AihubFixtures::usage_rows($t), $calls,
   "one row per call that reached the provider ($calls)");
is($t->sql_value('SELECT COUNT(DISTINCT event_id) FROM usage_events'),
   AihubFixtures::usage_rows($t), 'no event stored twice');
is($t->sql_value('SELECT COUNT(*) FROM usage_events WHERE status = 200'),
   $st{200} // 0, 'the 200 rows are the 200s clients saw');
is($t->redis('XLEN', 'aihub:usage:dead'), 0, 'no dead letters');

my $c = AihubFixtures::ledger_counters($t);
my $over = sum(0, map { $c->{$_}[0] - $c->{$_}[1] } keys %$c);
diag("period counters minus ledger after the freeze: $over calls");
cmp_ok($over, '<=', $st{503} // 0,
       'the counters are off by at most the 503s clients got');
# a reserve whose reply came after aihub_redis_timeout is given back
# (issue 10): the 503s of the freeze are not counted
is_deeply({ map { $_ => $c->{$_}[0] } keys %$c },
          { map { $_ => $c->{$_}[1] } keys %$c },
          'period counters equal the ledger');

$t->done;
