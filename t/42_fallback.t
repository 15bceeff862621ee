#!/usr/bin/perl

# Fallback routes (issue 14): a model whose route fails before the first
# byte reached the client is served by its catalog fallback, through
# nginx's own machinery (proxy_intercept_errors + error_page to a named
# "aihub on" location).
#
#   - the primary refuses connections / answers 500 / times out / answers
#     429: served by the fallback, billed once at the fallback's model and
#     price; the answer's model and x-aihub-route say which route;
#   - a stream whose first byte reached the client is not retried;
#   - all routes down: 502 after the bounded attempts (attempts=3: a
#     fourth route that is up is never tried), nothing billed;
#   - the circuit breaker: after 3 failures in a row the primary is left
#     out, calls go straight to the fallback;
#   - a provider's 429 with Retry-After: 2 on a provider with a lane: for
#     two seconds paid calls take the fallback, free calls get 429 at once
#     without reaching any provider; after it, the primary serves again.
#
# The mock provider reads its controls from request headers, and both
# routes get the client's: the primary location turns x-mock-primary-*
# into the mock's controls with proxy_set_header, the fallback location
# does not, so only the primary fails.

use strict;
use warnings;

use Test::More;
use POSIX ();
use Time::HiRes qw(time sleep);

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);
use AihubStream qw(:all);

my $t = Aihub->new;
$t->skip_unless_built;
$t->start_redis;
$t->start_mock;

my $closed = Aihub::free_port();               # nothing listens there

my %m = (
    'fb-main'   => { provider => 'primary', upstream => 'mock-basic',
                     tier => 'basic', price_in => 1000000,
                     price_out => 2000000, fallbacks => 'fb-backup' },
    'fb-backup' => { provider => 'backup', upstream => 'mock-premium',
                     tier => 'basic', price_in => 3000000,
                     price_out => 5000000 },
    'fb-refused' => { provider => 'down-a', upstream => 'mock-basic',
                      tier => 'basic', price_in => 1000000,
                      price_out => 2000000, fallbacks => 'fb-backup' },
    'fb-down'   => { provider => 'down-b', upstream => 'mock-basic',
                     tier => 'basic', price_in => 1000000,
                     price_out => 2000000,
                     fallbacks => 'fb-down-c, fb-down-d,fb-backup' },
    'fb-down-c' => { provider => 'down-c', upstream => 'mock-basic',
                     tier => 'basic', price_in => 1000000,
                     price_out => 2000000 },
    'fb-down-d' => { provider => 'down-d', upstream => 'mock-basic',
                     tier => 'basic', price_in => 1000000,
                     price_out => 2000000 },
    'fb-err200' => { provider => 'err200', upstream => 'mock-basic',
                     tier => 'basic', price_in => 1000000,
                     price_out => 2000000 },
    'fb-flaky'  => { provider => 'flaky', upstream => 'mock-basic',
                     tier => 'basic', price_in => 1000000,
                     price_out => 2000000, fallbacks => 'fb-backup' },
);

seed_models($t, %MODELS, %m);

my $ACCOUNT = 34;
my $pro = seed_full_key($t, account => $ACCOUNT, plan => 'pro',
                        priority => 1, models => '*');
my $free = seed_full_key($t, account => 35, plan => 'free', priority => 0,
                         models => '*');

my $down = "url=http://127.0.0.1:$closed/v1 key_env=AIHUB_MOCK_KEY";
my $proxy = <<'END';
            proxy_pass $aihub_proxy_url;
            proxy_set_header Host $aihub_provider_host;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_intercept_errors on;
            error_page 429 500 502 503 504 = @aihub_fallback;
END

$t->nginx(<<"END");
    aihub_redis %%REDIS%%;
    aihub_redis_timeout 3s;    # a loaded machine: not a test of Redis
                               # timeouts
    aihub_cache_zone aihub:8m;
    aihub_provider primary url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY capacity=8;
    aihub_provider backup url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
    aihub_provider down-a $down;
    aihub_provider down-b $down;
    aihub_provider down-c $down;
    aihub_provider down-d $down;
    aihub_provider flaky $down;
    aihub_provider err200 url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
    aihub_pass_request_header x-mock-*;    # the mock's test controls
    aihub_fallback attempts=3 time=20s breaker=3 breaker_time=30s;

    server {
        listen 127.0.0.1:%%PORT%%;
        recursive_error_pages on;

        location /v1/ {
            aihub on;
$proxy
            proxy_read_timeout 1s;
            proxy_set_header x-mock-status \$http_x_mock_primary_status;
            proxy_set_header x-mock-retry-after \$http_x_mock_primary_retry;
            proxy_set_header x-mock-delay-ms \$http_x_mock_primary_delay;
            proxy_set_header x-mock-cut-after \$http_x_mock_primary_cut;
        }

        location \@aihub_fallback {
            aihub on;
$proxy
            proxy_read_timeout 5s;
        }
    }
END

$t->allow_log(qr/Connection refused|connect\(\) failed|upstream timed out/);
$t->start_nginx;
ok(wait_ready($t, $pro), 'gateway ready');

my $n_events = 0;

# one call; what it got, what the mock got, the usage events it made
sub call {
    my (%o) = @_;

    my $log0 = mock_count($t);
    my $ev0 = () = usage_events($t);
    my $calls0 = period_calls($t, $o{account} // $ACCOUNT);

    my $r = raw_request($t, key => $o{key} // $pro, timeout => 15,
                        body => chat_body(model => $o{model} // 'fb-main',
                                          stream => $o{stream},
                                          include_usage => $o{stream}),
                        headers => $o{headers} // {});
    $r->{json} = eval { JSON::PP->new->decode($r->{body}) }
        unless $o{stream};

    sleep 0.3;    # the usage event and the quota settle, fire and forget

    my @ev = usage_events($t);
    $r->{events_new} = [ @ev[$ev0 .. $#ev] ];
    $r->{mock} = [ mock_since($t, $log0) ];
    $r->{calls} = period_calls($t, $o{account} // $ACCOUNT) - $calls0;
    $r->{route} = $r->{headers}{'x-aihub-route'} // '';
    $r->{log0} = $log0;

    return $r;
}

sub served_by_backup {
    my ($name, $r, $primary_tries) = @_;

    is($r->{status}, 200, "$name: served") or diag $r->{raw};
    is($r->{json}{model}, 'mock-premium',
       "$name: the answer's model is the fallback's");
    like($r->{route}, qr/^backup; model=fb-backup; attempt=2$/,
         "$name: x-aihub-route names the fallback route");
    # the mock logs a call when it answers: a primary that was too slow
    # logs after the fallback answered
    $t->wait_for(sub { mock_count($t) - $r->{log0} >= 1 + $primary_tries },
                 timeout => 4);
    $r->{mock} = [ mock_since($t, $r->{log0}) ];

    is(scalar(grep { $_->{body} =~ /mock-premium/ } @{ $r->{mock} }), 1,
       "$name: the fallback got the call once");
    is(scalar(@{ $r->{mock} }), 1 + $primary_tries,
       "$name: the provider got " . (1 + $primary_tries) . " request(s)");

    my @ev = @{ $r->{events_new} };
    is(scalar(@ev), 1, "$name: one usage event");

    my $e = $ev[0] // {};
    is($e->{model}, 'fb-backup', "$name: billed as the fallback's model");
    is($e->{provider}, 'backup', "$name: at the fallback's provider");
    is($e->{cost_micros},
       cost_of($m{'fb-backup'}, $e->{prompt_tokens} // -1,
               $e->{total_tokens} // -1),
       "$name: at the fallback's price");
    is($r->{calls}, 1, "$name: one call counted in the period");
}


# a call the primary serves: it also closes the primary's breaker count,
# so that the failures below do not add up to three in a row
sub primary_ok {
    my ($name) = @_;

    my $r = call();
    is($r->{route}, 'primary; model=fb-main; attempt=1',
       "$name: then the primary serves again");
}


# --- the primary fails before the first byte ----------------------------------

served_by_backup('primary 500',
                 call(headers => { 'x-mock-primary-status' => 500 }), 1);
primary_ok('primary 500');

served_by_backup('primary 429',
                 call(headers => { 'x-mock-primary-status' => 429,
                                   'x-mock-primary-retry' => 1 }), 1);
sleep 1.2;      # the primary's saturation (Retry-After: 1) is over
primary_ok('primary 429');

served_by_backup('primary times out',
                 call(headers => { 'x-mock-primary-delay' => 2500 }), 1);
primary_ok('primary times out');

# a call beyond the included ones of an account with a spend cap holds its
# worst case at the primary's prices: the fallback, dearer, is left out
# (before: served, past the cap by what it held too little)
{
    my $capped = seed_full_key($t, account => 36, plan => 'pro',
                               models => '*', included => 0, overage => 1,
                               spend_cap => 1000000);
    my $r = call(key => $capped, account => 36,
                 headers => { 'x-mock-primary-status' => 500 });
    is($r->{status}, 502, 'spend cap, beyond the included calls: the '
                          . 'dearer fallback is left out (502)');
    is(scalar(grep { $_->{body} =~ /mock-premium/ } @{ $r->{mock} }), 0,
       'spend cap: the fallback was not asked');
    is($r->{calls}, 0, 'spend cap: nothing counted');
    like($t->error_log, qr/fallback "fb-backup" of model "fb-main" left out/,
         'spend cap: the error log says why');
}
primary_ok('spend cap');

served_by_backup('primary refuses connections',
                 call(model => 'fb-refused'), 0);

# --- a stream falls back before its first byte, never after ------------------

{
    my $r = call(stream => 1, headers => { 'x-mock-primary-status' => 503 });

    is($r->{status}, 200, 'stream, primary 503: served');
    like($r->{route}, qr/^backup; model=fb-backup; attempt=2$/,
         'stream, primary 503: by the fallback');
    is(scalar(@{ $r->{events_new} }), 1, 'stream, primary 503: one event');
    is(($r->{events_new}[0] // {})->{model}, 'fb-backup',
       'stream, primary 503: billed as the fallback');
    primary_ok('stream, primary 503');

    $r = call(stream => 1, headers => { 'x-mock-primary-cut' => 2 });

    is($r->{status}, 200, 'stream cut after its first bytes: 200 began');
    like($r->{route}, qr/^primary; model=fb-main; attempt=1$/,
         'stream cut: from the primary');
    is(scalar(@{ $r->{mock} }), 1, 'stream cut: not retried on the fallback');
    unlike($r->{body}, qr/\[DONE\]/, 'stream cut: the client sees it cut');
}



# --- all routes down: 502 after the bounded attempts --------------------------

{
    my $err0 = () = $t->error_log =~ /connect\(\) failed/g;
    my $r = call(model => 'fb-down');

    is_error($r, 502, 'upstream_error', 'all routes down');
    is(scalar(@{ $r->{mock} }), 0,
       'all routes down: 3 attempts, the fourth route (up) never tried');
    my $err = () = $t->error_log =~ /connect\(\) failed/g;
    is($err - $err0, 3, 'all routes down: three connections tried');
    is(scalar(@{ $r->{events_new} }), 0, 'all routes down: no usage event');
    is($r->{calls}, 0, 'all routes down: the quota call given back');
}


# --- the circuit breaker ---------------------------------------------------------

{
    for my $i (1 .. 3) {
        my $r = call(model => 'fb-flaky');
        is($r->{route}, 'backup; model=fb-backup; attempt=2',
           "breaker: failure $i of the primary, served by the fallback");
    }

    my $err0 = () = $t->error_log =~ /connect\(\) failed/g;
    my $r = call(model => 'fb-flaky');

    is($r->{status}, 200, 'breaker open: served');
    is($r->{route}, 'backup; model=fb-backup; attempt=1',
       'breaker open: straight to the fallback');
    my $err = () = $t->error_log =~ /connect\(\) failed/g;
    is($err, $err0, 'breaker open: the primary was not tried');
    like($t->error_log, qr/provider "flaky" failed 3 times in a row/,
         'breaker: logged');
}


# a provider that answers 200 with an error for a body (OpenRouter once the
# model has begun): each a failure for the breaker.  Before, each counted
# a success (at the 200), and it never tripped.
{
    for my $i (1 .. 3) {
        my $r = call(model => 'fb-err200',
                     headers => { 'x-mock-error-200' => 1 });
        is($r->{status}, 502, "breaker: 200 with an error $i, 502");
    }

    like($t->error_log, qr/provider "err200" failed 3 times in a row/,
         'breaker: three 200s with an error in a row open it');
}


# --- a provider's 429 with Retry-After: 2 -------------------------------------

{
    my $r = call(headers => { 'x-mock-primary-status' => 429,
                              'x-mock-primary-retry' => 2 });
    my $at = time;

    is($r->{route}, 'backup; model=fb-backup; attempt=2',
       'provider 429: the call itself falls back');

    my $p = call();
    is($p->{status}, 200, 'saturated: pro served');
    is($p->{route}, 'backup; model=fb-backup; attempt=1',
       'saturated: pro goes straight to the fallback');
    is(scalar(@{ $p->{mock} }), 1, 'saturated: the primary not asked');

    my $f = call(key => $free, account => 35);
    is_error($f, 429, 'rate_limit_exceeded', 'saturated: free refused');
    like($f->{headers}{'retry-after'} // '', qr/^[12]$/,
         'saturated: free told when to retry');
    is(scalar(@{ $f->{mock} }), 0, 'saturated: free reached no provider');
    is(scalar(@{ $f->{events_new} }), 0, 'saturated: free not billed');

    ok(time - $at < 2, 'still within the two seconds')
        or diag('the checks above ran too slowly to mean anything');

    sleep(2.3 - (time - $at)) if time - $at < 2.3;

    my $q = call();
    is($q->{route}, 'primary; model=fb-main; attempt=1',
       'after two seconds: the primary serves again');
    my $g = call(key => $free, account => 35);
    is($g->{status}, 200, 'after two seconds: free served again');
}


# --- the same with Retry-After as an HTTP-date (RFC 9110) ---------------------

{
    my $date = POSIX::strftime('%a, %d %b %Y %H:%M:%S GMT',
                               gmtime(int(time) + 5));
    my $r = call(headers => { 'x-mock-primary-status' => 429,
                              'x-mock-primary-retry' => $date });
    is($r->{route}, 'backup; model=fb-backup; attempt=2',
       'provider 429 with an HTTP-date: the call falls back');

    my $f = call(key => $free, account => 35);
    is_error($f, 429, 'rate_limit_exceeded',
             'saturated until the date: free refused');
    my $s = $f->{headers}{'retry-after'} // 0;
    ok($s >= 3 && $s <= 5, 'saturated until the date: free told the seconds '
                           . "until it ($s), not aihub_lane_backoff's 1");
}

$t->done;
