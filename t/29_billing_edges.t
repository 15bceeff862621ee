#!/usr/bin/perl

# Calls the provider works on (and bills the operator for) are billed even
# when they end badly: a client that hangs up after the call reached the
# provider but before the answer began is billed its prompt, estimated and
# flagged; a provider error in the middle of a stream bills what was
# delivered, not nothing.

use strict;
use warnings;

use Test::More;
use IO::Socket::IP;
use Time::HiRes qw(sleep);

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);
use AihubStream qw(:all);

my $t = Aihub->new;
$t->skip_unless_built;
$t->start_redis;
$t->start_mock;

seed_models($t);

my $ACCOUNT = 2901;
my $key = seed_full_key($t, account => $ACCOUNT, models => '*');

$t->nginx(<<'END');
    aihub_redis %%REDIS%%;
    aihub_redis_timeout 300ms;
    aihub_cache_zone aihub:8m;
    aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
    aihub_pass_request_header x-mock-*;    # the mock's test controls

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

my $nev = () = usage_events($t);

# --- the client hangs up before the answer begins ----------------------------

{
    my $content = 'x' x 400;                  # 100 tokens, estimated
    my $body = JSON::PP->new->encode(chat_body(content => $content));
    my $n0 = mock_count($t);
    my $calls = period_calls($t, $ACCOUNT);

    my $s = IO::Socket::IP->new(PeerHost => '127.0.0.1',
                                PeerPort => $t->port)
        or die "connect: $!";
    print $s "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"
           . "Authorization: Bearer $key\r\n"
           . "Content-Type: application/json\r\n"
           . "x-mock-delay-ms: 3000\r\n"
           . "Content-Length: " . length($body) . "\r\n\r\n$body";

    # the quota call is reserved just before the call is forwarded; the
    # provider answers after 3 s: the client leaves in between
    # admitted from the node's lease, the call leaves no trace anywhere
    # before it ends (the mock logs a call when it answers): the client
    # leaves 1.5 s into the provider's 3 s
    sleep 1.5;
    close $s;                                 # before any answer

    ok($t->wait_for(sub { mock_count($t) > $n0 }, timeout => 5),
       'the call reached the provider');

    my @ev = wait_usage($t, $nev + 1, timeout => 5);
    is(scalar @ev, $nev + 1, 'aborted before the first byte: one event');
    my $e = $ev[-1];
    $nev = @ev;

    ok($e->{aborted}, "flagged aborted");
    ok($e->{estimated}, 'flagged estimated');
    is($e->{status}, 499, 'status 499 (the client closed)');
    is($e->{prompt_tokens}, ceil4(length $content),
       'the prompt is billed as estimated');
    is($e->{completion_tokens}, 0, 'nothing delivered, nothing more');
    ok($e->{cost_micros} > 0, 'it costs what the prompt costs');
    $t->wait_for(sub { period_calls($t, $ACCOUNT) == $calls + 1 },
                 timeout => 2);
    is(period_calls($t, $ACCOUNT), $calls + 1, 'it counts as a call');
}

# --- an aborted call's prompt: tools and images count ------------------------

{
    my $tools = [ { type => 'function', function => {
        name => 'lookup', description => 'd' x 2000,
        parameters => { type => 'object', properties => {} } } } ];
    my $body = JSON::PP->new->canonical->encode({
        model => 'test-basic',
        tools => $tools,
        messages => [ { role => 'user', content => [
            { type => 'text', text => 'what is this?' },
            { type => 'image_url',
              image_url => { url => 'data:image/png;base64,' . 'A' x 300000 } },
        ] } ],
    });
    my $n0 = mock_count($t);

    my $s = IO::Socket::IP->new(PeerHost => '127.0.0.1',
                                PeerPort => $t->port)
        or die "connect: $!";
    print $s "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"
           . "Authorization: Bearer $key\r\n"
           . "Content-Type: application/json\r\n"
           . "x-mock-delay-ms: 3000\r\n"
           . "Content-Length: " . length($body) . "\r\n\r\n$body";

    sleep 1.5;                                # as above
    close $s;

    my @ev = wait_usage($t, $nev + 1, timeout => 5);
    my $e = $ev[-1];
    $nev = @ev;

    my $tools_json = JSON::PP->new->canonical->encode($tools);
    my $want = ceil4(length('what is this?') + 765 * 4 + length $tools_json);

    ok(abs($e->{prompt_tokens} - $want) <= 5,
       "aborted: the prompt estimate counts the text, the tools and the "
       . "image ($e->{prompt_tokens}, about $want)");
}

# --- a provider error after content ------------------------------------------

{
    my $r = raw_request($t, key => $key,
                        body => chat_body(stream => 1),
                        headers => { 'x-mock-error-after' => 3,
                                     'x-mock-completion-tokens' => 10 });

    is($r->{status}, 200, 'a stream that fails mid-way: 200 was sent');
    my @data = sse_data(@{ $r->{events} });
    my @content = grep { ref $_ && $_->{choices} } @data;
    is(scalar @content, 3, 'three chunks of content reached the client');

    my @ev = wait_usage($t, $nev + 1);
    my $e = $ev[-1];
    $nev = @ev;

    ok($e->{completion_tokens} > 0, 'the delivered content is billed ('
                                    . "$e->{completion_tokens} tokens)");
    is($e->{completion_tokens}, ceil4(length 'tok tok tok'),
       'as estimated from what was delivered');
    ok($e->{estimated}, 'flagged estimated');
}

{
    # an error before any content is still free
    my $r = raw_request($t, key => $key, body => chat_body(stream => 1),
                        headers => { 'x-mock-error-after' => 0 });
    my @ev = wait_usage($t, $nev + 1);
    my $e = $ev[-1];
    $nev = @ev;

    is($e->{total_tokens} + $e->{cost_micros}, 0,
       'an error in place of any content bills nothing');
    is($r->{status}, 200, '(its head went out as 200 before the error)');
    is($e->{status}, 502,
       'its event says 502, not 200: the ledger counts no call for it, as '
       . 'the quota gave it back (before: a call in the ledger and on the '
       . 'invoice, none in the counter)');
}

# --- a stream that ends without a blank line after its last event -------------

# no "[DONE]", and the last event's line break is the last byte: the event
# still counts, whether the gateway passes the stream on as it is (the
# client asked for the usage chunk) or takes the usage chunk out

for my $iu (1, 0) {
    my $how = $iu ? 'passed on' : 'usage chunk taken out';
    my $r = raw_request($t, key => $key,
                        body => chat_body(stream => 1, include_usage => $iu),
                        headers => { 'x-mock-open-end' => 1,
                                     'x-mock-total-extra' => 5 });
    is($r->{status}, 200, "open end ($how): 200");
    my @ev = wait_usage($t, $nev + 1);
    my $e = $ev[-1];
    $nev = @ev;
    is($e->{total_tokens}, $e->{prompt_tokens} + $e->{completion_tokens} + 5,
       "open end ($how): the provider's usage is billed (its total)");
    ok(!$e->{estimated}, "open end ($how): not an estimate");

    $r = raw_request($t, key => $key,
                     body => chat_body(stream => 1, include_usage => $iu),
                     headers => { 'x-mock-open-end' => 1,
                                  'x-mock-error-after' => 0 });
    @ev = wait_usage($t, $nev + 1);
    $e = $ev[-1];
    $nev = @ev;
    is($e->{total_tokens} + $e->{cost_micros}, 0,
       "open end ($how): an error in place of any content bills nothing");
    is($e->{status}, 502, "open end ($how): and its event says 502");
}

# --- a call's time is when its quota counts it --------------------------------

{
    # a body that arrives 1.5 s after the request's headers: the call is
    # counted in the period of the moment its quota is checked, and its
    # event says that moment, not when the request began (at a month's
    # end the two can be in different months: the quota's month must be
    # the one that bills the call)
    my $body = JSON::PP->new->encode(chat_body(content => 'slow body'));
    my $s = IO::Socket::IP->new(PeerHost => '127.0.0.1',
                                PeerPort => $t->port)
        or die "connect: $!";
    my $began = Time::HiRes::time();
    print $s "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"
           . "Authorization: Bearer $key\r\n"
           . "Content-Type: application/json\r\n"
           . "Content-Length: " . length($body) . "\r\n"
           . "Connection: close\r\n\r\n";
    $s->flush;
    sleep 1.5;
    my $sent = Time::HiRes::time();
    print $s $body;
    $s->flush;
    my $answer = do { local $/; <$s> } // '';
    like($answer, qr{^HTTP/1\.1 200}, 'a slow body: 200');

    my @ev = wait_usage($t, $nev + 1);
    my $e = $ev[-1];
    $nev = @ev;

    cmp_ok($e->{ts}, '>=', int($sent * 1000) - 50,
           'its ts is when the quota counted it (after the body came)')
        or diag(sprintf 'ts %d, request began %d, body sent %d', $e->{ts},
                $began * 1000, $sent * 1000);
    cmp_ok($e->{latency_ms}, '>=', 1400,
           'its latency still counts from the request\'s start');
}

$t->done;
