#!/usr/bin/perl

# HTTP/2 clients (nginx's "listen ... http2", as operators turn it on in
# front of the API): the same answers, metering and limits as HTTP/1.1, on
# streams that share one connection.
#
# - a call, a stream (SSE), a bad key (401 in the OpenAI shape);
# - a body sent in several DATA frames with pauses and no content-length:
#   read whole before it is checked;
# - 20 calls at once on one connection: 20 answers, 20 events, 20 counted;
# - a stream reset by the client (RST_STREAM CANCEL) mid-answer: the call
#   is metered as aborted (delivered tokens, estimated) and counted once,
#   as a TCP hang-up is over HTTP/1.1; reset after the call reached the
#   provider but before its answer began: status 499, its prompt billed;
# - a stream reset while its call waits for its lease from a stalled
#   Redis: the lease, granted once Redis answers, goes back; nothing is
#   counted for a call that was never answered.
#
# Every call here waits for its own lease (aihub_lease_calls 1), so the
# last case has a grant in flight.  Node's own http2 module is the client
# (t/node/h2_client.mjs).

use strict;
use warnings;

use JSON::PP;
use Test::More;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);
use AihubStream qw(:all);

my $node = `node --version 2>/dev/null`;
plan skip_all => 'node 20 is not installed'
    unless $node && $node =~ /^v(\d+)/ && $1 >= 20;

my $t = Aihub->new;
$t->skip_unless_built;
$t->start_redis;
$t->start_mock;

seed_models($t);

my $ACCOUNT = 82;
my $key = seed_full_key($t, account => $ACCOUNT);

$t->nginx(<<'END')->start_nginx;
    aihub_redis %%REDIS%%;
    aihub_redis_timeout 2s;
    aihub_cache_zone aihub:8m;
    aihub_lease_calls 1;
    aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
    aihub_pass_request_header x-mock-*;    # the mock's test controls

    server {
        listen 127.0.0.1:%%PORT%% http2;

        location /v1/ {
            aihub on;
            aihub_failure_mode closed;
            proxy_pass $aihub_proxy_url;
            proxy_set_header Host $aihub_provider_host;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
END

my $JSON = JSON::PP->new->utf8->canonical;

sub h2 {
    my (@requests) = @_;

    my $spec = $JSON->encode({ port => $t->port, requests => \@requests,
                               timeout_s => 20 });
    my ($rc, $out, $err) = $t->run_cmd(
        [ 'node', Aihub->root . '/t/node/h2_client.mjs', $spec ],
        timeout => 30);
    my $res = eval { $JSON->decode($out) } // {};
    diag("h2 client: rc $rc\n$out$err") if $rc || !$res->{results};
    return @{ $res->{results} // [] };
}

sub call {
    my (%o) = @_;

    my $body = $JSON->encode(chat_body(%o));
    return {
        path => '/v1/chat/completions',
        headers => { authorization => 'Bearer ' . ($o{key} // $key),
                     'content-type' => 'application/json',
                     %{ $o{headers} // {} } },
        body => $o{parts} // [ $body ],
        (gap_ms => $o{gap_ms}) x!! $o{gap_ms},
        (reset_after_bytes => $o{reset_after_bytes})
            x!! defined $o{reset_after_bytes},
        (reset_after_ms => $o{reset_after_ms}) x!! defined $o{reset_after_ms},
    };
}

sub events_of { grep { $_->{account} == $ACCOUNT } usage_events($t) }

sub wait_events {
    my ($n) = @_;
    $t->wait_for(sub { events_of() >= $n }, timeout => 5);
    return events_of();
}

my @r;

# --- a call ------------------------------------------------------------------

# (the catalog loads as the workers start: 503 until then)
ok($t->wait_for(sub { ((h2(call()))[0]{status} // 0) == 200 },
                timeout => 10, interval => 0.2),
   'the gateway answers over HTTP/2');
my $n = events_of();

@r = h2(call(content => 'hello over h2'));
is($r[0]{status}, 200, 'a call: 200');
my $j = eval { decode_json($r[0]{body}) } // {};
is($j->{object}, 'chat.completion', 'a call: the completion');
like($r[0]{headers}{'x-request-id'} // '', qr/^[0-9a-f]{32}$/,
     'a call: x-request-id');
ok(!exists $r[0]{headers}{'set-cookie'}
   && !exists $r[0]{headers}{'openai-organization'},
   "a call: the provider's cookies and organization are not passed on");
my @e = wait_events($n + 1);
is(scalar @e, $n + 1, 'a call: one usage event');
is($e[-1]{id}, $r[0]{headers}{'x-request-id'}, 'a call: the event is the call');
is($e[-1]{prompt_tokens}, ceil4(length 'hello over h2') + 3,
   'a call: the prompt tokens the provider counted');
is($e[-1]{completion_tokens}, 7, 'a call: the completion tokens');
is($e[-1]{status}, 200, 'a call: status 200');

# --- a stream -----------------------------------------------------------------

@r = h2(call(stream => 1));
is($r[0]{status}, 200, 'a stream: 200');
like($r[0]{headers}{'content-type'} // '', qr{^text/event-stream},
     'a stream: text/event-stream');
my @data = $r[0]{body} =~ /^data: (.*)$/mg;
is($data[-1], '[DONE]', 'a stream: ends with [DONE]');
ok(!grep({ /"usage":\{/ } @data), 'a stream: the usage chunk not asked for '
                                  . 'is not passed on');
@e = wait_events($n + 2);
ok($e[-1]{streamed} && !$e[-1]{aborted} && !$e[-1]{estimated},
   'a stream: metered from its usage chunk');
is($e[-1]{completion_tokens}, 7, 'a stream: the completion tokens');

# --- a bad key ----------------------------------------------------------------

@r = h2(call(key => Aihub::make_key()));
is($r[0]{status}, 401, 'a made-up key: 401');
$j = eval { decode_json($r[0]{body}) } // {};
is($j->{error}{code}, 'invalid_api_key', '... invalid_api_key');
is($j->{error}{type}, 'invalid_request_error', '... in the OpenAI shape');

# --- a body in pieces ---------------------------------------------------------

{
    my $body = $JSON->encode(chat_body(content => 'one body, four frames'));
    my $q = int(length($body) / 4);
    my @parts = (substr($body, 0, $q), substr($body, $q, $q),
                 substr($body, 2 * $q, $q), substr($body, 3 * $q));
    @r = h2(call(parts => \@parts, gap_ms => 100));
    is($r[0]{status}, 200, 'a body in 4 DATA frames, 100 ms apart, no '
                           . 'content-length: 200');
    @e = wait_events($n + 3);
    is($e[-1]{prompt_tokens}, ceil4(length 'one body, four frames') + 3,
       '... the whole body was read and forwarded');

    @r = h2(call(parts => [ substr($body, 0, 2 * $q) . '"model":"x",',
                            substr($body, 2 * $q) ], gap_ms => 50));
    is($r[0]{status}, 400, 'a body made bad in its second frame: 400');
}

# --- 20 calls at once on one connection ---------------------------------------

{
    my $calls = period_calls($t, $ACCOUNT);
    $n = events_of();
    @r = h2(map { call(content => "stream $_") } 1 .. 20);
    is(scalar(grep { $_->{status} == 200 } @r), 20,
       '20 streams of one connection: 20 × 200');
    my %ids = map { ($_->{headers}{'x-request-id'} // '') => 1 } @r;
    is(scalar(keys %ids), 20, '... 20 request ids');
    @e = wait_events($n + 20);
    is(scalar(grep { $ids{ $_->{id} } } @e), 20, '... 20 usage events');
    ok($t->wait_for(sub { period_calls($t, $ACCOUNT) == $calls + 20 },
                    timeout => 5), '... 20 calls counted');
}

# --- a stream reset by the client mid-answer ----------------------------------

{
    my $calls = period_calls($t, $ACCOUNT);
    $n = events_of();
    @r = h2(call(stream => 1, headers => { 'x-mock-chunk-delay-ms' => 300 },
                 reset_after_bytes => 1));
    ok($r[0]{reset}, 'reset mid-stream: the client cancelled the stream');
    is($r[0]{status}, 200, '... after the answer began');
    @e = wait_events($n + 1);
    is(scalar @e, $n + 1, 'reset mid-stream: one usage event');
    ok($e[-1]{aborted}, '... aborted');
    ok($e[-1]{estimated}, '... estimated (no usage arrived)');
    is($e[-1]{status}, 200, '... status 200 (the answer had begun)');
    ok($t->wait_for(sub { period_calls($t, $ACCOUNT) == $calls + 1 },
                    timeout => 5), '... counted once (tokens delivered)');
}

# --- a stream reset after the call reached the provider, before its answer ------

{
    my $calls = period_calls($t, $ACCOUNT);
    $n = events_of();
    my $sent = mock_count($t);
    @r = h2(call(headers => { 'x-mock-delay-ms' => 2000 },
                 reset_after_ms => 1000));
    ok($r[0]{reset} && !$r[0]{status},
       'reset before the answer: the client cancelled, no answer began');
    # (the mock logs a request as it answers, after its delay)
    ok($t->wait_for(sub { mock_count($t) == $sent + 1 }, timeout => 5),
       '... the call had reached the provider');
    @e = wait_events($n + 1);
    is(scalar @e, $n + 1, 'reset before the answer: one usage event');
    is($e[-1]{status}, 499, '... status 499');
    ok($e[-1]{aborted} && $e[-1]{estimated}, '... aborted, estimated');
    is($e[-1]{completion_tokens}, 0, '... its prompt billed, no completion');
    ok($t->wait_for(sub { period_calls($t, $ACCOUNT) == $calls + 1 },
                    timeout => 5), '... counted once');
}

# --- a stream reset while its call waits for Redis -----------------------------

{
    my $calls = period_calls($t, $ACCOUNT);
    $n = events_of();
    $t->redis_nowait('DEBUG', 'SLEEP', 2);
    my $at = time;
    @r = h2(call(reset_after_ms => 300));
    ok($r[0]{reset} && !$r[0]{status},
       'reset while waiting for the lease: no answer began');
    ok($t->wait_for(sub { time - $at > 2.2 && eval { $t->redis('PING') } },
                    timeout => 10), 'Redis answers again');
    # the grant ran once Redis woke; its reply found the request gone
    is((h2(call()))[0]{status}, 200, 'the next call: 200');
    @e = wait_events($n + 1);
    is(scalar @e, $n + 1, 'only that call has a usage event');
    ok($t->wait_for(sub { period_calls($t, $ACCOUNT) == $calls + 1 },
                    timeout => 5),
       'the lease of the reset call went back: one call counted')
        or diag('counted ' . (period_calls($t, $ACCOUNT) - $calls));
    my %h;
    ok($t->wait_for(sub {
        my $p = ($t->redis('KEYS', "aihub:period:$ACCOUNT:*") // [])->[0];
        %h = @{ $t->redis('HGETALL', $p) // [] };
        return !($h{leased_calls} // 0) && !grep { /^lease:/ } keys %h;
    }, timeout => 5), 'no lease left outstanding') or diag(explain(\%h));
}

my $mock = mock_count($t);
cmp_ok($mock, '>', 0, "the provider was called ($mock)");

$t->done;
