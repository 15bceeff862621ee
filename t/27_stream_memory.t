#!/usr/bin/perl

# Streams of any length: a 50 MB stream whose client did not ask for the
# usage chunk (the SDKs' default, so the gateway asks for it and strips
# it) passes whole while the nginx worker's memory stays flat; and a
# location left with nginx's default "proxy_buffering on" (and Debian's
# "sendfile on") still relays every byte and meters exactly: the module
# relays aihub answers unbuffered whatever the location says.

use strict;
use warnings;

use Test::More;
use IO::Socket::IP;
use JSON::PP;

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);
use AihubStream qw(:all);

my $t = Aihub->new;
$t->skip_unless_built;
$t->start_redis;
$t->start_mock;

seed_models($t);

my $key = seed_full_key($t, account => 2701, models => '*');

$t->nginx(<<'END');
    aihub_redis %%REDIS%%;
    aihub_redis_timeout 300ms;
    aihub_cache_zone aihub:8m;
    aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
    aihub_pass_request_header x-mock-*;    # the mock's test controls

    sendfile on;

    server {
        listen 127.0.0.1:%%PORT%%;

        # as an operator writes it, with nginx's default buffering left on
        # and small buffers, so a large answer would go to temporary files
        location /v1/ {
            aihub on;
            proxy_pass $aihub_proxy_url;
            proxy_set_header Host $aihub_provider_host;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering on;
            proxy_buffers 4 4k;
            proxy_max_temp_file_size 1024m;
        }
    }
END
$t->start_nginx;
ok(wait_ready($t, $key), 'gateway ready');

sub rss_kb {
    my $kb = 0;

    for my $pid ($t->nginx_worker_pids) {
        my $s = Aihub::read_file("/proc/$pid/status") // '';
        $kb += $1 if $s =~ /^VmRSS:\s+(\d+)/m;
    }

    return $kb;
}

# reads a whole answer, keeping only its head, its size and its tail
sub big_stream {
    my ($size, %o) = @_;

    my $body = JSON::PP->new->encode({
        model => 'test-basic', stream => JSON::PP::true,
        ($o{include_usage} ? (stream_options => { include_usage =>
                                                  JSON::PP::true }) : ()),
        messages => [ { role => 'user', content => 'hello' } ],
    });
    my $s = IO::Socket::IP->new(PeerHost => '127.0.0.1',
                                PeerPort => $t->port, Timeout => 60)
        or die "connect: $!";

    print $s "POST /v1/chat/completions HTTP/1.1\r\n"
           . "Host: localhost\r\nConnection: close\r\n"
           . "Authorization: Bearer $key\r\n"
           . "Content-Type: application/json\r\n"
           . "x-mock-size: $size\r\n"
           . "Content-Length: " . length($body) . "\r\n\r\n$body";

    my ($head, $n, $tail, $buf, $usage) = ('', 0, '', '', 0);

    while (sysread($s, $buf, 65536)) {
        if (length $head < 4096 && $head !~ /\r\n\r\n/) {
            $head .= $buf;
        }

        $n += length $buf;
        $tail = substr($tail . $buf, -4096);
        # the usage figures (OpenAI's "usage": null in each chunk stays)
        $usage++ if $buf =~ /"usage":\{/;
    }

    my ($status) = $head =~ m{^HTTP/1\.\d (\d+)};

    return { status => $status // 0, bytes => $n, tail => $tail,
             usage_seen => $usage };
}

my $SIZE = 50 * 1024 * 1024;

# warm: the worker's pools and buffers as after any stream
big_stream(1024 * 1024);
my $before = rss_kb();

my $n = () = usage_events($t);
my $r = big_stream($SIZE);
my $after = rss_kb();

is($r->{status}, 200, '50 MB stream without include_usage: 200');
ok($r->{bytes} > $SIZE, "every byte arrived ($r->{bytes} bytes)");
like($r->{tail}, qr/data: \[DONE\]\s*(?:0\r\n\r\n)?$/,
     'the stream ends with [DONE]');
is($r->{usage_seen}, 0, 'the usage chunk we asked for is stripped');
ok($after - $before < 8 * 1024,
   sprintf 'worker memory stays flat: %d kB before, %d kB after (+%d kB)',
           $before, $after, $after - $before);

my @ev = wait_usage($t, $n + 1, timeout => 10);
my $e = $ev[-1];
my $usage = ($t->mock_log)[-1]{usage};

ok(!$e->{estimated}, 'the 50 MB stream is metered, not estimated');
is($e->{completion_tokens}, $usage->{completion_tokens},
   'completion tokens as the provider counted');

# with include_usage, the same through the buffering location
{
    my $n = () = usage_events($t);
    my $r = big_stream(2 * 1024 * 1024, include_usage => 1);

    is($r->{status}, 200, '2 MB stream, include_usage, proxy_buffering on');
    ok($r->{bytes} > 2 * 1024 * 1024, "whole ($r->{bytes} bytes)");
    like($r->{tail}, qr/"usage"/, 'the usage chunk the client asked for');

    my @ev = wait_usage($t, $n + 1);
    ok(!$ev[-1]{estimated}, 'metered exactly');
}

# a JSON answer larger than the buffers: metered exactly
{
    my $n = () = usage_events($t);
    my $r = $t->http(POST => '/v1/chat/completions', key => $key,
                     headers => { 'x-mock-size' => 355 * 1024 },
                     body => { model => 'test-basic',
                               messages => [ { role => 'user',
                                               content => 'hi' } ] });

    is($r->{status}, 200, '355 KB JSON answer');
    is(length($r->{json}{choices}[0]{message}{content} // ''), 355 * 1024,
       'whole');

    my @ev = wait_usage($t, $n + 1);
    ok(!$ev[-1]{estimated}, 'metered exactly, not estimated');
}

# the Responses API translated from a chat stream (test-basic's provider
# speaks only chat completions): a 20 MB stream keeps the worker flat (the
# translation keeps at most 256 KiB of text, then ends the answer as failed,
# and the rest of the provider's stream is read and metered, not kept)
{
    my $n = () = usage_events($t);
    my $body = encode_json({ model => 'test-basic', input => 'hello',
                             stream => JSON::PP::true });
    my $before = rss_kb();
    my $s = IO::Socket::IP->new(PeerHost => '127.0.0.1',
                                PeerPort => $t->port, Timeout => 60)
        or die "connect: $!";

    print $s "POST /v1/responses HTTP/1.1\r\n"
           . "Host: localhost\r\nConnection: close\r\n"
           . "Authorization: Bearer $key\r\n"
           . "Content-Type: application/json\r\n"
           . "x-mock-size: " . (20 * 1024 * 1024) . "\r\n"
           . "Content-Length: " . length($body) . "\r\n\r\n$body";

    my ($all, $buf, $rest, $last) = (0, '', '', '');

    while (sysread($s, $buf, 65536)) {
        $all += length $buf;
        $rest .= $buf;
        $last = $1 while $rest =~ /^event: (\S+)$/mg;
        $rest = substr($rest, -64);
    }

    my $after = rss_kb();

    is($last, 'response.failed',
       'translated 20 MB stream: ends as failed past 256 KiB of text');
    ok($all > 256 * 1024 && $all < 4 * 1024 * 1024,
       "translated 20 MB stream: the deltas up to the limit ($all bytes)");
    SKIP: {
        # the translation allocates and frees per event (cJSON); ASan's
        # quarantine holds freed memory back, so its RSS measures nothing
        skip 'under ./build.sh test-asan the RSS of a process that frees '
             . 'memory is no measure (ASan quarantine)', 1
            if $ENV{AIHUB_ASAN_PRELOAD};

        ok($after - $before < 8 * 1024,
           sprintf 'translated: worker memory stays flat: %d kB before, '
                   . '%d kB after (+%d kB)', $before, $after,
                   $after - $before);
    }

    my @ev = wait_usage($t, $n + 1, timeout => 10);
    ok(!$ev[-1]{estimated}, 'translated: metered on the provider\'s usage');
}

is(() = glob($t->nginx_dir . '/proxy_temp/*/*/*'), 0,
   'nothing went to a temporary file');

$t->done;
