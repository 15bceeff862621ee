#!/usr/bin/perl

# The month's end with calls running on their leases: a grant of the old
# month that reaches Redis after that month ended (a request checked at
# 23:59:59.99, a grant sent again, a node whose clock is behind) must not
# take back the leases of the calls still running, or the hard quota is
# passed by as many calls.
#
# Two nodes on one Redis, their clocks apart (aihub_time_offset): B's month
# ends 10 s before A's.  An account with 10 calls: 8 long calls on B just
# before B's month ends, then, after it has ended on B, 5 calls on A, still
# in that month.  At most 2 of them may pass, and the month counts 10 calls
# at most.  Before, a lease's life in Redis ended at the month's end on
# the node that took it: A's first grant took B's leases back, and all 5
# passed (13 calls in a month of 10).

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);
use Time::Local qw(timegm);

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);
use AihubStream qw(usage_events);

plan(skip_all => 'module not built') unless Aihub::have_module();

# the end of this calendar month (UTC); too close to it, the nodes' clocks
# could not be set before it
my @g = gmtime;
my ($y, $m) = ($g[5] + 1900, $g[4] + 1);
($y, $m) = $m == 12 ? ($y + 1, 1) : ($y, $m + 1);
my $END = timegm(0, 0, 0, 1, $m - 1, $y);
plan(skip_all => 'within 5 minutes of the month\'s end') if $END - time < 300;

my $t = Aihub->new(redis => 1, mock => 1);

seed_models($t);
my $probe = seed_full_key($t, account => 9800);

# B's month ends 20 s from now (its two nodes start in a second or two),
# A's 10 s after
my $offB = int($END - time) - 20;
my $offA = $offB - 10;
my $TB = $END - $offB;

my $HTTP = gateway_conf(url => '%%MOCK_URL%%', redis_timeout => '2s',
                        extra => 'aihub_pass_request_header x-mock-*;');

$t->nginx("    aihub_time_offset $offB;\n" . $HTTP, name => 'b');
$t->start_nginx('b');
$t->nginx("    aihub_time_offset $offA;\n" . $HTTP, name => 'a');
$t->start_nginx('a');
ok(wait_ready($t, $probe, name => 'b'), 'b: catalog loaded');
ok(wait_ready($t, $probe, name => 'a'), 'a: catalog loaded');

my $key = seed_full_key($t, account => 9801, included => 10);

sub wait_until { my $at = shift; my $d = $at - time; sleep $d if $d > 0 }

# 8 calls of 9 s on B, 4 s before its month ends: its leases of the month
ok(time < $TB - 6, 'the nodes started in time') or diag($TB - time);
wait_until($TB - 4);

my @long = map { raw_chat($t, $key, -name => 'b', 'x-mock-delay-ms' => 9000) }
            1 .. 8;

# B's month has ended; A is 8 s from the end of the same month
wait_until($TB + 2);

my @res = parallel_chat($t, 5, $key, names => [ 'a' ]);
my $passed = grep { $_->{status} == 200 } @res;
cmp_ok($passed, '<=', 2,
       'after the month ended on B, A still in it: at most the 2 calls left '
       . 'pass (8 running on their leases)')
    or diag(join ' ', map { $_->{status} } @res);
is(scalar(grep { $_->{status} == 429 } @res), 5 - $passed,
   'the others 429');

my $long_ok = 0;

for my $s (@long) {
    local $/;
    my $answer = <$s> // '';
    $long_ok++ if $answer =~ m{^HTTP/1\.1 200 };
}
is($long_ok, 8, 'the 8 long calls on B were answered');

# the month's counter: every call counted once, within the quota
my $pk = 'aihub:period:9801:' . period_id();
ok($t->wait_for(sub {
       ($t->redis('HGET', $pk, 'leased_calls') // 0) == 0
       && ($t->redis('HGET', $pk, 'calls') // 0) == 8 + $passed
   }, timeout => 20), 'settled: the month counts the 8 and what A passed')
    or diag(explain($t->redis('HGETALL', $pk)));
cmp_ok($t->redis('HGET', $pk, 'calls'), '<=', 10,
       'the month counts at most its 10 calls');

$t->done;
