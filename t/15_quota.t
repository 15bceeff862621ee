#!/usr/bin/perl

# Monthly quotas: reserved atomically in Redis, so 200 requests in flight
# never pass 50 calls left, and two nodes enforce one quota; overage goes
# on until the spend cap; a failed provider call gives its call back; a new
# period starts a fresh counter.

use strict;
use warnings;

use Test::More;
use POSIX ();
use Time::HiRes qw(time sleep);
use Time::Local qw(timegm);

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);

plan(skip_all => 'module not built') unless Aihub::have_module();

my $t = Aihub->new(redis => 1, mock => 1);

seed_models($t);
my $probe = seed_full_key($t, account => 1500, included => 1000000);

# two nodes with the same configuration, and a third living 40 days ahead
# (a Redis timeout long enough that 200 calls queued on one loaded
# worker process are all answered: this file is about exactness, t/12
# about timeouts)
my $HTTP = <<'END';
    aihub_redis %%REDIS%%;
    aihub_redis_timeout 3s;
    aihub_cache_zone aihub:8m;
    aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
    aihub_pass_request_header x-mock-*;    # the mock's test controls

    server {
        listen 127.0.0.1:%%PORT%%;

        location /v1/ {
            aihub on;
            aihub_failure_mode closed;
            proxy_pass $aihub_proxy_url;
            proxy_set_header Host $aihub_provider_host;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }

        location /api/v1/developer/ {
            aihub on;
            aihub_failure_mode closed;
            proxy_pass $aihub_proxy_url;
            proxy_set_header Host $aihub_provider_host;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }

        location = /plain {
            return 200 "plain\n";
        }
    }
END

$t->nginx($HTTP)->start_nginx;
$t->nginx($HTTP, name => 'n2')->start_nginx('n2');
$t->nginx("    aihub_time_offset 40d;\n" . $HTTP, name => 'future')
  ->start_nginx('future');

for my $n (qw(nginx n2 future)) {
    ok(wait_ready($t, $probe, name => $n), "$n: catalog loaded");
}

sub period { "aihub:period:$_[0]:" . period_id($_[1]) }
sub calls  { $t->redis('HGET', period(@_), 'calls') // 0 }


# --- 50 calls left, 200 requests in flight ------------------------------------------

my $hard = seed_full_key($t, account => 1501, included => 50, overage => 0);
my $forwarded = mock_count($t);

my $t0 = time;
my @res = parallel_chat($t, 200, $hard,
                        headers => { 'x-mock-delay-ms' => 200 });
my $took = time - $t0;

my $ok = grep { $_->{status} == 200 } @res;
my $quota = grep { $_->{status} == 429
                   && ($_->{code} // '') eq 'insufficient_quota' } @res;
my %other;
$other{"$_->{status} " . ($_->{code} // '')}++
    for grep { $_->{status} != 200 && $_->{status} != 429 } @res;

is($ok, 50, '200 concurrent, 50 left: exactly 50 succeed');
is($quota, 150, 'the other 150: 429 insufficient_quota');
is_deeply(\%other, {}, 'no other outcome');
diag(sprintf '200 concurrent requests in %.1f s', $took);

ok($t->wait_for(sub { calls(1501) == 50 }), 'the period counter: 50 calls');
is(calls(1501), 50, 'period hash calls = 50');
is(mock_count($t) - $forwarded, 50, 'exactly 50 reached the provider');

my $r = $t->chat($hard, model => 'test-basic');
is_error($r, 429, 'insufficient_quota', 'used up: the next one');
is($r->{json}{error}{type}, 'insufficient_quota', 'type insufficient_quota');

my $ttl = $t->redis('TTL', period(1501));
cmp_ok($ttl, '>', 40 * 86400, 'the period hash outlives the period');
cmp_ok($ttl, '<', 72 * 86400, 'but not forever');


# --- two nodes, one quota -------------------------------------------------------------

my $two = seed_full_key($t, account => 1502, included => 10, overage => 0);
my %by;
for my $i (0 .. 29) {
    my $n = $i % 2 ? 'n2' : 'nginx';
    my $r = $t->chat($two, model => 'test-basic', name => $n);
    $by{ $r->{status} == 200 ? "ok $n" : $r->{status} }++;
}
is(($by{'ok nginx'} // 0) + ($by{'ok n2'} // 0), 10,
   'two nodes, included 10: exactly 10 succeed in total');
is($by{'ok nginx'}, 5, 'five on the first node');
is($by{'ok n2'}, 5, 'five on the second node');
is($by{429}, 20, 'the other 20: 429');
$t->wait_for(sub { calls(1502) == 10 }, timeout => 5);
is(calls(1502), 10, 'two nodes: calls = 10');

# two nodes at once
my $two_par = seed_full_key($t, account => 1503, included => 20);
@res = parallel_chat($t, 60, $two_par, names => [ 'nginx', 'n2' ],
                     headers => { 'x-mock-delay-ms' => 100 });
is(scalar(grep { $_->{status} == 200 } @res), 20,
   'two nodes, 60 at once, 20 left: exactly 20 succeed');
$t->wait_for(sub { calls(1503) == 20 }, timeout => 5);
is(calls(1503), 20, 'calls = 20');


# --- overage and the spend cap -----------------------------------------------------

my $pro = seed_full_key($t, account => 1504, plan => 'pro', models => '*',
                        included => 2, overage => 1);
my @st = map { $t->chat($pro, model => 'test-basic')->{status} } 1 .. 5;
is_deeply(\@st, [ (200) x 5 ], 'overage: calls beyond the 2 included go on');
$t->wait_for(sub { calls(1504) == 5 }, timeout => 5);
is(calls(1504), 5, 'overage: all 5 counted');

# test-basic: 5 prompt + 7 completion tokens = 5 * 1 + 7 * 2 = 19 micro-$
ok($t->wait_for(sub {
    ($t->redis('HGET', period(1504), 'cost') // 0) == 95
}), 'overage: cost 5 x 19 micro-dollars');

my $cap = seed_full_key($t, account => 1505, plan => 'pro', models => '*',
                        included => 2, overage => 1, spend_cap => 60);

# the cap limits the overage: the cost of the calls beyond the 2 included.
# 19 micro-$ a call: overage after calls 3, 4, 5, 6 is 19, 38, 57, 76, so
# call 7 is the first refused.  Each call's cost is settled in Redis after
# the answer: wait for it before the next call.
my @trace;
my $stopped;
for my $i (1 .. 10) {
    my $r = $t->chat($cap, model => 'test-basic');
    push @trace, "call $i -> $r->{status}";
    if ($r->{status} == 429) {
        is_error($r, 429, 'insufficient_quota', 'spend cap reached');
        like($r->{json}{error}{message}, qr/spend cap/i,
             'the message names the spend cap');
        $stopped = $i;
        last;
    }
    my $over = 19 * ($i > 2 ? $i - 2 : 0);
    $t->wait_for(sub {
        ($t->redis('HGET', period(1505), 'cost') // 0) == 19 * $i
    }) or diag("cost of call $i not settled");
    is($t->redis('HGET', period(1505), 'overage') // 0, $over,
       "call $i: overage $over micro-\$");
}
is($stopped, 7, 'spend cap 60: the call after the overage reached it '
                . 'is refused (overage 76 after call 6)')
    or diag(join "\n", @trace);
is(calls(1505), 6, 'the refused call was not counted');


# --- a failed provider call gives its call back ----------------------------------------

my $fail = seed_full_key($t, account => 1506, included => 3);
is($t->chat($fail, model => 'test-basic')->{status}, 200, 'one good call');
ok($t->wait_for(sub { calls(1506) == 1 }), 'calls 1');

$r = $t->chat($fail, model => 'test-basic',
              headers => { 'x-mock-status' => 500 });
is($r->{status}, 502, 'provider 500: the client gets 502');
is($r->{json}{error}{code}, 'upstream_error', '502: upstream_error')
    or diag($r->{content});
ok($t->wait_for(sub { calls(1506) == 1 }, timeout => 1),
   'provider 500: the reservation was released (calls still 1)');
sleep 0.2;
is(calls(1506), 1, 'provider 500: calls still 1 a moment later');
is($t->redis('HGET', period(1506), 'cost') // 0, 19,
   'provider 500: nothing billed');

# a provider that answers 429 is a failed call too
$r = $t->chat($fail, model => 'test-basic',
              headers => { 'x-mock-status' => 429 });
cmp_ok($r->{status}, '>=', 400, 'provider 429: an error for the client');
sleep 0.2;
is(calls(1506), 1, 'provider 429: not counted');

# the released calls can still be used: 2 more pass, then the quota is hit
@st = map { $t->chat($fail, model => 'test-basic')->{status} } 1 .. 3;
is_deeply(\@st, [ 200, 200, 429 ], 'released calls are usable again');


# --- period rollover --------------------------------------------------------------------

my $roll = seed_full_key($t, account => 1507, included => 1);
is($t->chat($roll, model => 'test-basic')->{status}, 200, 'this period: 1');
is_error($t->chat($roll, model => 'test-basic'), 429, 'insufficient_quota',
         'this period: used up');

my $next = time + 40 * 86400;
isnt(period(1507, $next), period(1507), 'the period 40 days on differs');

$r = $t->chat($roll, model => 'test-basic', name => 'future');
is($r->{status}, 200, '40 days on: quota available again');
ok($t->wait_for(sub { ($t->redis('HGET', period(1507, $next), 'calls')
                       // 0) == 1 }), '40 days on: a fresh period hash');
# (the first call's settle goes in a batch: waited for, as above)
ok($t->wait_for(sub { calls(1507) == 1 }, timeout => 5),
   'the old period counts its one call');
sleep 0.2;
is(calls(1507), 1, 'the old period is untouched');
is_error($t->chat($roll, model => 'test-basic', name => 'future'), 429,
         'insufficient_quota', '40 days on: the new period has its limit');

my $u = $t->http(GET => '/api/v1/developer/usage', key => $roll,
                 name => 'future');
is($u->{json}{calls}{used}, 1, 'usage 40 days on: 1 call');
is($u->{json}{period}{start}, do {
    my @g = gmtime $next;
    POSIX::strftime('%a, %d %b %Y 00:00:00 GMT', 0, 0, 0, 1, @g[4, 5]);
}, 'usage 40 days on: the period starts on the 1st of that month');

# an anchored subscription: the period starts on the anchor's day of month
# (the 10th, a year ago); the current period began on the last 10th
my @now = gmtime;
my ($y, $m) = ($now[5] + 1900, $now[4]);
($m, $y) = $m == 0 ? (11, $y - 1) : ($m - 1, $y) if $now[3] < 10;
my $anchor_start = timegm(0, 0, 0, 10, $m, $y);
my $anchored = seed_full_key($t, account => 1508, included => 5,
                             anchor => timegm(0, 0, 0, 10, $m, $y - 1));
is($t->chat($anchored, model => 'test-basic')->{status}, 200,
   'anchored key: 200');
my $aid = POSIX::strftime('%Y%m%d', gmtime $anchor_start);
ok($t->wait_for(sub { ($t->redis('HGET', "aihub:period:1508:$aid", 'calls')
                       // 0) == 1 }),
   "anchored key: the period hash is named for the 10th ($aid)")
    or diag(join ' ', @{ $t->redis('KEYS', 'aihub:period:1508:*') });

$t->done;
