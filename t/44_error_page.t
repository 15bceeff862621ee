#!/usr/bin/perl

# A failed call sent by an error_page into a location without "aihub on"
# (nginx's own "error_page 500 502 503 504 /50x.html"): nginx clears
# every module's context on the redirect, and what the call holds must
# still be given back when it ends, found through its anchor: its place
# in the provider's priority lane, its call of the quota, its rate limit
# slot.  Before, the lane kept the place for good (in flight 1, 2, then
# every call refused at capacity until nginx restarted).

use strict;
use warnings;

use Test::More;

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);
use AihubStream qw(:all);

plan(skip_all => 'module not built') unless Aihub::have_module();

my $t = Aihub->new(redis => 1, mock => 1);
my $closed = Aihub::free_port();

seed_models($t, 'test-down' => { provider => 'down', upstream => 'mock-basic',
                                 tier => 'basic', price_in => 1000000,
                                 price_out => 2000000 });
my $key = seed_full_key($t, account => 4401, plan => 'pro', priority => 1,
                        models => '*', rpm => 8);

$t->nginx(gateway_conf(
    redis_timeout => '3s',
    providers => 'aihub_provider mock url=%%MOCK_URL%% '
                 . 'key_env=AIHUB_MOCK_KEY; aihub_provider down '
                 . "url=http://127.0.0.1:$closed/v1 key_env=AIHUB_MOCK_KEY "
                 . 'capacity=2 queue=4;',
    extra => 'aihub_lane_wait 1s;',
    server => <<'END'));
        error_page 500 502 503 504 /50x.html;

        location = /50x.html {
            default_type text/plain;
            return 200 "sorry\n";
        }
END
$t->allow_log(qr/Connection refused|connect\(\) failed/);
$t->start_nginx;
ok(wait_ready($t, $key), 'gateway ready');

my @in_flight;

for my $i (1 .. 5) {
    my $r = raw_request($t, key => $key, timeout => 5,
                        body => chat_body(model => 'test-down'));
    like($r->{body}, qr/^sorry$/m, "call $i: the error page");
    $t->wait_for(sub {
        (gateway_metrics($t)->{'aihub_lane_in_flight{provider="down"}'} // 0)
        == 0
    }, timeout => 3);
    push @in_flight,
        gateway_metrics($t)->{'aihub_lane_in_flight{provider="down"}'} // 0;
}

is_deeply(\@in_flight, [ (0) x 5 ],
          'the lane place given back after each call (capacity 2)');
is(period_calls($t, 4401), 0, 'the failed calls given back to the quota');

# the five took no slot of the key's 8 a minute: eight more are let
# through to the provider (and fail there), none refused 429
my @st = map {
    raw_request($t, key => $key, timeout => 5,
                body => chat_body(model => 'test-down'))->{body}
} 1 .. 3;
is(scalar(grep { /rate_limit_exceeded/ } @st), 0,
   'no rate limit refusal for the calls after them');

$t->done;
