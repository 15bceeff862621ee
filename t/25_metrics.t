# The metrics endpoint: Prometheus text, counters shared by the workers.
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use Aihub;
use AihubStream qw(usage_event_count);

my $t = Aihub->new(redis => 1, mock => 1);
$t->skip_unless_built;

$t->seed_model('mock-basic', provider => 'mock', upstream => 'mock-basic',
               tier => 'basic', price_in => 150000, price_out => 600000);
my $key = $t->seed_key(account => 5, models => '*');

$t->nginx(<<'END')->start_nginx;
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

        location = /metrics { aihub_metrics; }
    }
END

$t->wait_for(sub { $t->chat($key)->{status} == 200 }, timeout => 3)
    or BAIL_OUT('no 200 from the gateway');

$t->chat($key) for 1 .. 3;
$t->chat('ai-hub-not-a-key') for 1 .. 2;
$t->chat($key, model => 'no-such-model');

sub metrics {
    my $r = $t->http(GET => '/metrics');
    is($r->{status}, 200, 'metrics answered');
    like($r->{headers}{'content-type'}, qr{^text/plain; version=0\.0\.4},
         'Prometheus content type');
    my %m;
    for (split /\n/, $r->{content}) {
        next if /^#/;
        my ($name, $value) = /^(\S+) (\S+)$/ or next;
        $m{$name} = $value;
    }
    return \%m;
}

my $m;
ok($t->wait_for(sub {
    $m = metrics();
    $m->{'aihub_usage_events_total{state="confirmed"}'} >= 4
}, timeout => 3), 'events confirmed by Redis');

# the warm-up may have taken a few tries: at least 4 answers of 2xx
cmp_ok($m->{'aihub_requests_total{status="2xx"}'}, '>=', 4, '2xx counted');
is($m->{'aihub_requests_total{status="401"}'}, 2, 'two 401s');
is($m->{'aihub_requests_total{status="404"}'}, 1, 'one 404');
is($m->{'aihub_usage_events_total{state="emitted"}'},
   $m->{'aihub_usage_events_total{state="confirmed"}'},
   'every emitted event confirmed');
is($m->{'aihub_usage_events_buffered'}, 0, 'nothing buffered');
is($m->{'aihub_usage_events_total{state="dropped"}'}, 0, 'nothing dropped');
# the account's first call waited for a block lease; the next ones came
# out of it, with no Redis round trip
my ($lease, $redis) = map { $m->{"aihub_quota_calls_total{from=\"$_\"}"} }
                      qw(lease redis);
is($lease + $redis, $m->{'aihub_requests_total{status="2xx"}'},
   'each answered call admitted against the quota once');
is($redis, 1, 'the first call waited for a lease from Redis');
cmp_ok($lease, '>=', 3, 'the others came out of the node\'s lease');
is($m->{'aihub_cache_keys'}, 1, 'one key cached');
is($m->{'aihub_cache_zone_bytes'}, 8 * 1024 * 1024, 'zone size');

# the events are where the counters say
is(usage_event_count($t),
   $m->{'aihub_usage_events_total{state="confirmed"}'},
   'events in the stream match the confirmed count');

$t->done;
