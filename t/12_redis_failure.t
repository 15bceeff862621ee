#!/usr/bin/perl

# When Redis misbehaves: the worker process never blocks, every wait is
# bounded by aihub_redis_timeout, fail-closed answers 503
# service_unavailable, fail-open serves cached keys, and the module
# reconnects by itself once Redis is back.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);

plan(skip_all => 'module not built') unless Aihub::have_module();

my $t = Aihub->new(redis => 1, mock => 1);

# "closed": the default failure mode; "open": fail open, and a short cache
# TTL so its cached records are stale when Redis is gone (the harder case)
$t->nginx(<<'END');
    aihub_redis %%REDIS%%;
    aihub_redis_timeout 300ms;
    aihub_cache_zone aihub:8m;
    aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;

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

$t->nginx(<<'END', name => 'open');
    aihub_redis %%REDIS%%;
    aihub_redis_timeout 300ms;
    aihub_cache_zone aihub:8m;
    aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
    aihub_cache_ttl 200ms;

    server {
        listen 127.0.0.1:%%PORT%%;

        location /v1/ {
            aihub on;
            aihub_failure_mode open;
            proxy_pass $aihub_proxy_url;
            proxy_set_header Host $aihub_provider_host;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }

        location /api/v1/developer/ {
            aihub on;
            aihub_failure_mode open;
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

$t->allow_log(qr/redis|Redis/);

my (%keys, @accounts);

sub seed_all {
    seed_models($t);
    for my $k (qw(a b c d)) {
        $keys{$k} = seed_full_key($t, account => 1200 + ord($k),
                                  key => $keys{$k});
    }
}

seed_all();
$t->start_nginx->start_nginx('open');
ok(wait_ready($t, $keys{a}), 'closed: catalog loaded');
ok(wait_ready($t, $keys{a}, name => 'open'), 'open: catalog loaded');

# a and c are used once, so cached; b and d never
is($t->chat($keys{a}, model => 'test-basic')->{status}, 200, 'a: warm');
is($t->chat($keys{c}, model => 'test-basic', name => 'open')->{status}, 200,
   'c: warm (open)');

my $forwarded = mock_count($t);


# --- Redis frozen ------------------------------------------------------------

# 4 s: the checks below take about 1.5 s, with room for a loaded machine
$t->redis_nowait('DEBUG', 'SLEEP', 4);
my $frozen_at = time;
sleep 0.1;

my $r = $t->http(GET => '/plain');
is($r->{status}, 200, 'frozen: plain location answers');
cmp_ok($r->{elapsed}, '<', 0.1, 'frozen: plain location in < 100 ms');

$r = $t->chat($keys{b}, model => 'test-basic');
is_error($r, 503, 'service_unavailable', 'frozen, closed, uncached key');
cmp_ok($r->{elapsed}, '<', 1, 'frozen: 503 within the 300 ms timeout '
                              . '(well under the 4 s freeze)');

# the worker is not blocked while a request waits for Redis
{
    my $s = $t->connect;
    print $s "POST /v1/chat/completions HTTP/1.0\r\nHost: x\r\n"
           . "Authorization: Bearer $keys{b}\r\n"
           . "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
    my $p = $t->http(GET => '/plain');
    cmp_ok($p->{elapsed}, '<', 0.1,
           'frozen: plain answers in < 100 ms while an aihub request waits');
    local $/;
    my $resp = <$s> // '';
    like($resp, qr{^HTTP/1\.1 503 }, 'the waiting request then gets its 503');
}

# a's warm call left its node a block lease (README, "Leases"), and its
# record is cached and trusted (the subscription was confirmed, and a
# frozen Redis publishes nothing unheard): no Redis needed.  (This asked
# for a 503 while the cache was trusted only from the first heartbeat, a
# second after the start, which is when this ran.)
$r = $t->chat($keys{a}, model => 'test-basic');
is($r->{status}, 200,
   'frozen, closed, cached key: admitted from its node\'s block lease');
cmp_ok($r->{elapsed}, '<', 1, 'frozen, cached key: timely');

$r = $t->chat($keys{c}, model => 'test-basic', name => 'open');
is($r->{status}, 200, 'frozen, open, cached key: served');
cmp_ok($r->{elapsed}, '<', 1.5, 'frozen, open: within the timeouts');

$r = $t->chat($keys{d}, model => 'test-basic', name => 'open');
is_error($r, 503, 'service_unavailable',
         'frozen, open, never-seen key: nothing to serve it from');

cmp_ok(time - $frozen_at, '<', 4, 'all of that happened while frozen');

is(mock_count($t), $forwarded + 2,
   'frozen: only the block-lease and the fail-open requests reached the '
   . 'provider');

# a burst of calls that each wait for the frozen Redis: each gets its 503,
# and the node says so once, not once a call (it said it for b above, so
# within 10 s this burst adds no line, or one when that line is older)
{
    my $late = sub { scalar(() = $t->error_log =~ /did not answer within/g) };
    my $before = $late->();
    my @res = parallel_chat($t, 20, $keys{b});
    is(scalar(grep { $_->{status} == 503 } @res), 20,
       'frozen: 20 concurrent calls of the uncached key, 20 x 503');
    cmp_ok($late->() - $before, '<=', 1,
           'frozen: the timeouts of those 20 calls written at most once');
}

# once Redis wakes up, everything works again
sleep(4.2 - (time - $frozen_at)) if time - $frozen_at < 4.2;

my $back = $t->wait_for(sub {
    $t->chat($keys{b}, model => 'test-basic')->{status} == 200
}, timeout => 5);
ok($back, 'thawed: the uncached key works on the closed node');
is($t->chat($keys{a}, model => 'test-basic')->{status}, 200,
   'thawed: the cached key works on the closed node');


# --- Redis stopped -----------------------------------------------------------

$forwarded = mock_count($t);
$t->stop_redis;
sleep 0.3;    # the open node's cached records are stale now (TTL 200 ms)

$r = $t->chat($keys{a}, model => 'test-basic');
is_error($r, 503, 'service_unavailable', 'stopped, closed, cached key');
cmp_ok($r->{elapsed}, '<', 1, 'stopped, closed: timely');

$r = $t->chat($keys{b}, model => 'test-basic');
is_error($r, 503, 'service_unavailable', 'stopped, closed, other key');

$r = $t->chat($keys{c}, model => 'test-basic', name => 'open');
is($r->{status}, 200, 'stopped, open, cached (stale) key: served');
cmp_ok($r->{elapsed}, '<', 1, 'stopped, open: timely');
is($t->chat($keys{c}, model => 'test-basic', name => 'open')->{status}, 200,
   'stopped, open: again');

$r = $t->chat($keys{d}, model => 'test-basic', name => 'open');
is_error($r, 503, 'service_unavailable',
         'stopped, open, never-seen key: 503');

is(mock_count($t), $forwarded + 2,
   'stopped: only the two fail-open requests reached the provider');

is($t->http(GET => '/plain')->{status}, 200, 'stopped: plain still fine');

like($t->error_log('open'), qr/failing open/,
     'the open node recorded that it failed open');

# said once, not once a call: 30 more calls within 10 s add no line (or one
# of each kind when the first lines are older)
{
    my $open = sub { scalar(() = $t->error_log('open') =~ /failing open/g) };
    my $before = $open->();
    my $ok = grep {
        $t->chat($keys{c}, model => 'test-basic', name => 'open')->{status}
            == 200
    } 1 .. 30;
    is($ok, 30, 'stopped, open: 30 more calls of the cached key served');
    cmp_ok($open->() - $before, '<=', 2,
           'stopped, open: those 30 calls written at most once of each kind');
    like($t->error_log('open'),
         qr/passed \(failing open\), and \d+ calls more since the last/,
         'the line says how many calls it stands for');
}


# --- Redis back (same port, empty: seeded again) ------------------------------

$t->start_redis;
seed_all();
my $t0 = time;

# (a call given up by this client while the gateway answers it would count
# too: each waits for its answer)
$back = $t->wait_for(sub {
    $t->chat($keys{b}, model => 'test-basic', timeout => 10)->{status} == 200
}, timeout => 20, interval => 0.1);
ok($back, 'restarted: the closed node reconnected and serves again');
diag(sprintf 'reconnected after %.2f s', time - $t0);

ok($t->wait_for(sub {
    $t->chat($keys{d}, model => 'test-basic', name => 'open',
             timeout => 2)->{status} == 200
}, timeout => 10, interval => 0.1), 'restarted: the open node serves a '
                                     . 'new key from Redis again');

calls_settle($t, 1200 + ord 'b', 1,
             'restarted: the quota is counted in the new Redis again');

my @pids = $t->nginx_worker_pids;
is(scalar @pids, 1, 'the closed node still has its one worker');

$t->done;
