#!/usr/bin/perl

# A graceful reload while requests wait on Redis: the old worker process
# waits for their replies (or their timeout) instead of exiting at once,
# so every request gets a whole answer and no "open socket left" alert is
# logged.

use strict;
use warnings;

use Test::More;
use IO::Socket::IP;
use Time::HiRes qw(sleep time);

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);
use AihubStream qw(:all);

my $t = Aihub->new;
$t->skip_unless_built;
$t->start_redis;
$t->start_mock;

seed_models($t);

my $key = seed_full_key($t, account => 3001, models => '*');

$t->nginx(<<'END');
    aihub_redis %%REDIS%%;
    aihub_redis_timeout 3s;
    aihub_cache_zone aihub:8m;
    aihub_cache_ttl 1s;
    aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;

    server {
        listen 127.0.0.1:%%PORT%%;

        location /v1/ {
            aihub on;
            proxy_pass $aihub_proxy_url;
            proxy_set_header Host $aihub_provider_host;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
END
$t->start_nginx;
ok(wait_ready($t, $key), 'gateway ready');

my $body = JSON::PP->new->encode(chat_body());
my @socks;

# Redis stalls for 1.5 s; three calls wait on their quota reservation
$t->redis_nowait('DEBUG', 'SLEEP', '1.5');
sleep 0.1;

for (1 .. 3) {
    my $s = IO::Socket::IP->new(PeerHost => '127.0.0.1',
                                PeerPort => $t->port)
        or die "connect: $!";
    print $s "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"
           . "Connection: close\r\nAuthorization: Bearer $key\r\n"
           . "Content-Type: application/json\r\n"
           . "Content-Length: " . length($body) . "\r\n\r\n$body";
    push @socks, $s;
}

sleep 0.3;
my $t0 = time;
$t->reload_nginx;
diag(sprintf 'reload took %.2f s', time - $t0);

my $i = 0;

for my $s (@socks) {
    $i++;
    local $/;
    my $answer = <$s> // '';
    my ($status) = $answer =~ m{^HTTP/1\.1 (\d+)};

    is($status, 200, "request $i waiting on Redis during the reload: 200");
    like($answer, qr/"chat\.completion"/, "request $i: a whole answer");
}

is(scalar(() = $t->error_log =~ /open socket .* left in connection/g), 0,
   'no socket left open by the old worker');

$t->done;
