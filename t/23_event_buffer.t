#!/usr/bin/perl

# The per-worker usage event buffer: while Redis is down (failing open)
# events wait and every one arrives once Redis is back; a full buffer drops
# and logs what does not fit, never silently; a graceful reload or quit
# flushes the buffer when Redis comes back within the flush window.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);
use AihubStream qw(:all);

my $t = Aihub->new;
$t->skip_unless_built;
$t->start_redis;
$t->start_mock;

seed_models($t);
my $key = seed_full_key($t, account => 23);

# failing open; the second node keeps at most 5 usage events in memory
my $HTTP = <<'END';
    aihub_redis %%REDIS%%;
    aihub_redis_timeout 200ms;
    aihub_cache_zone aihub:8m;
    aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;

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

$t->nginx($HTTP)->start_nginx;
$t->nginx("    aihub_event_buffer 5;\n" . $HTTP, name => 'small')
  ->start_nginx('small');

ok(wait_ready($t, $key), 'gateway ready');
ok(wait_ready($t, $key, name => 'small'), 'small-buffer gateway ready');

# the key is in each shared cache now; the catalog in each worker
is($t->chat($key, model => 'test-basic')->{status}, 200, 'a first call');
is($t->chat($key, model => 'test-basic', name => 'small')->{status}, 200,
   'a first call (small)');
wait_usage($t, 2);


# calls while Redis is down: returns their request ids

sub calls_while_down {
    my ($n, %o) = @_;

    my (@ids, $ok);

    for my $i (1 .. $n) {
        my $r = $t->chat($key, model => 'test-basic', timeout => 5,
                         (stream => 1) x!! ($i % 2), %o);
        $ok++ if $r->{status} == 200;
        push @ids, $r->{headers}{'x-request-id'} // "none$i";
    }

    is($ok, $n, "$n calls answered while Redis is down (failing open)");
    return @ids;
}

# Redis restarts empty: the catalog and the key again, and a call that
# puts the key in the shared cache

# Redis came back empty: no worker runs here to restore it, so the test
# sets the epoch marker the worker writes once it has (the module holds
# its batches until then: README, "Leases")
sub restored { $t->redis('SET', 'aihub:epoch', time) }

sub reseed {
    seed_models($t);
    seed_full_key($t, account => 23, key => $key);
    ok(wait_ready($t, $key), 'ready again');
    is($t->chat($key, model => 'test-basic')->{status}, 200, 'warm call');
}

sub ids_in_stream {
    return map { $_->{id} => 1 } usage_events($t);
}


# --- Redis down, then back: every event arrives -------------------------

{
    $t->stop_redis;

    my @ids = calls_while_down(20);
    my @small = calls_while_down(8, name => 'small');

    sleep 0.5;
    $t->start_redis;                       # same port, empty
    restored();

    $t->wait_for(sub { usage_event_count($t) >= 25 },
                 timeout => 10);
    sleep 0.5;                             # nothing more must come

    my %in = ids_in_stream();
    is(scalar(grep { $in{$_} } @ids), 20,
       'all 20 buffered events arrived after Redis came back');
    is(scalar(grep { $in{$_} } @small), 5,
       'a buffer of 5 delivered 5 of 8');
    is(usage_event_count($t), 25, 'and nothing else, once');

    my $log = $t->error_log('small');
    my $full = () = $log =~ /usage event buffer full/g;
    is($full, 3, 'the 3 dropped events are logged');
    like($log, qr/3 dropped so far/, 'the drop count is kept');
    is(() = $t->error_log =~ /usage event buffer full/g, 0,
       'the big buffer dropped nothing');
}


# --- a full buffer, failing open: the TPM limit still holds ---------------

# TPM 100, each call holds the whole limit: with the buffer full and Redis
# down, 10 concurrent calls still pass one at a time (one passes); before,
# a call taken past the full buffer held no tokens, and all 10 passed
{
    reseed();
    my $tpm = seed_full_key($t, account => 2301, tpm => 100);
    is($t->http(GET => '/v1/models', key => $tpm, name => 'small')->{status},
       200, 'full buffer: the TPM key is cached');

    $t->stop_redis;
    calls_while_down(5, name => 'small');     # the buffer is full now

    my @res = parallel_chat($t, 10, $tpm, names => [ 'small' ],
                            headers => { 'x-mock-delay-ms' => 300 });
    my %st;
    $st{ $_->{status} }++ for @res;
    is($st{200} // 0, 1, 'full buffer, failing open: TPM 100, 10 '
                         . 'concurrent calls: one passes')
        or diag(explain(\%st));

    $t->start_redis;
    restored();
}


# --- graceful reload with events waiting -----------------------------------

{
    reseed();
    $t->stop_redis;

    my @ids = calls_while_down(6);

    my $master = $t->{procs}{'nginx:nginx'}{pid};
    my @old = $t->nginx_worker_pids;
    kill 'HUP', $master;
    sleep 1;                               # the old worker is exiting

    $t->start_redis;
    restored();

    my $ok = $t->wait_for(sub {
        my %in = ids_in_stream();
        return !grep { !$in{$_} } @ids;
    }, timeout => 10);
    ok($ok, 'reload: the old worker flushed its events once Redis was back');

    ok($t->wait_for(sub {
        my %now = map { $_ => 1 } $t->nginx_worker_pids;
        return !grep { $now{$_} } @old;
    }, timeout => 10), 'reload: the old worker exited');
}


# --- graceful quit with events waiting ---------------------------------------

{
    reseed();
    $t->stop_redis;

    my @ids = calls_while_down(6);

    my $master = $t->{procs}{'nginx:nginx'}{pid};
    kill 'QUIT', $master;
    sleep 1;

    $t->start_redis;
    restored();

    my $ok = $t->wait_for(sub {
        my %in = ids_in_stream();
        return !grep { !$in{$_} } @ids;
    }, timeout => 10);
    ok($ok, 'quit: the exiting worker flushed its events');

    ok($t->wait_for(sub { !$t->alive('nginx:nginx') }, timeout => 10),
       'quit: nginx exited');
}

$t->allow_log(qr/redis|failing open/i);

$t->done;
