#!/usr/bin/perl

# Streaming through the gateway: SSE events pass one by one with no added
# delay; the usage chunk is asked for on the client's behalf and removed
# again (the stream otherwise byte-identical to what the provider sent);
# "choices": null; a client that hangs up mid-stream and a provider that
# cuts the stream are metered with estimated tokens.

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

my $ACCOUNT = 20;
my $key = seed_full_key($t, account => $ACCOUNT);
my $m = $MODELS{'test-basic'};

$t->nginx(<<'END')->start_nginx;
    aihub_redis %%REDIS%%;
    aihub_redis_timeout 300ms;
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

ok(wait_ready($t, $key), 'gateway ready');

my @workers = $t->nginx_worker_pids;
my $nev = 0;                       # usage events so far

# the mock's own stream for a request, straight from it (include_usage)

sub direct_stream {
    my (%h) = @_;

    my $r = raw_request($t, port => $t->mock_port, key => $t->mock_key,
                        body => chat_body(model => 'mock-basic', stream => 1,
                                          include_usage => 1),
                        headers => \%h);
    return $r;
}

sub last_event {
    my @ev = wait_usage($t, $nev + 1);
    is(scalar @ev, $nev + 1, 'one more usage event') or return {};
    $nev = @ev;
    return $ev[-1];
}


# --- chunk by chunk, no added delay -----------------------------------------

{
    my $n0 = mock_count($t);
    my $r = raw_request($t, key => $key, body => chat_body(stream => 1),
                        headers => { 'x-mock-chunk-delay-ms' => 200 },
                        timeout => 15);

    is($r->{status}, 200, 'timing: 200');
    like($r->{headers}{'content-type'} // '', qr{^text/event-stream},
         'timing: text/event-stream');

    my @ev = @{ $r->{events} };
    my @data = sse_data(@ev);

    # 7 words, the stop chunk, [DONE]: the usage chunk removed
    is(scalar @ev, 9, 'timing: 9 events reach the client');
    is($data[-1], '[DONE]', 'timing: [DONE] last');
    is(join('', map { ref $_ ? $_->{choices}[0]{delta}{content} // '' : '' }
                @data),
       join(' ', ('tok') x 7), 'timing: the content');

    my ($log) = mock_since($t, $n0);
    ok($log && $log->{ts}, 'timing: the mock logged the request');
    my $ts = $log ? $log->{ts} : $r->{sent};

    # the mock sends event i no earlier than ts + i * 200 ms (it sleeps
    # before each one but the first); the usage chunk, its event 8, is
    # stripped, so the client's event 8 ([DONE]) is the mock's event 9

    my $first = $ev[0]{t} - $ts;
    ok($first < 0.150, 'timing: first event within 150 ms of the request '
                       . 'reaching the mock')
        or diag(sprintf 'first event %.0f ms after the mock logged it',
                        $first * 1000);

    my $late = 0;
    for my $i (0 .. 7) {
        my $next_sent = $ts + ($i + 1) * 0.2;
        if ($ev[$i]{t} >= $next_sent) {
            $late++;
            diag(sprintf 'event %d arrived %.0f ms after the mock started, '
                         . 'the next was sent at %.0f ms', $i,
                         ($ev[$i]{t} - $ts) * 1000,
                         ($next_sent - $ts) * 1000);
        }
    }
    is($late, 0, 'timing: every event arrived before the next was sent');

    my @gaps = map { $ev[$_]{t} - $ev[$_ - 1]{t} } 1 .. 7;
    my @bad = grep { $_ < 0.120 || $_ > 0.400 } @gaps;
    is(scalar @bad, 0, 'timing: gaps between events about 200 ms')
        or diag('gaps (ms): ' . join ' ', map { int($_ * 1000) } @gaps);

    # injected on the client's behalf
    my $sent = $log ? eval { JSON::PP->new->decode($log->{body}) } : undef;
    ok($sent && $sent->{stream_options}
       && $sent->{stream_options}{include_usage},
       'injected: the provider was asked for the usage chunk');
    is($sent && $sent->{model}, 'mock-basic',
       'injected: the provider model id');

    my $e = last_event();
    is($e->{prompt_tokens}, $log->{usage}{prompt_tokens},
       'timing: event prompt tokens as the mock sent');
    is($e->{completion_tokens}, 7, 'timing: event completion tokens');
    ok($e->{streamed} && !$e->{aborted} && !$e->{estimated},
       'timing: streamed, not aborted, not estimated');
}


# --- stripped, otherwise byte-identical ------------------------------------

{
    my $r = raw_request($t, key => $key, body => chat_body(stream => 1));
    my $d = direct_stream();

    is($r->{status}, 200, 'strip: 200');
    like($r->{headers}{'transfer-encoding'} // '', qr/chunked/,
         'strip: the changed length goes out chunked');
    ok(!exists $r->{headers}{'content-length'}, 'strip: no content-length');
    # (OpenAI writes "usage": null into every chunk once usage is asked
    # for, as the gateway asked: that stays, the figures go)
    unlike($r->{body}, qr/"usage":\{/, 'strip: no usage chunk at the client');

    my $want = $d->{body};
    my $n = ($want =~ s/^data: \{"choices":\[\],[^\n]*"usage":\{[^\n]*\n\n//m);
    is($n, 1, 'strip: the mock stream has one usage chunk to take out');
    is(normalize_stream($r->{body}), normalize_stream($want),
       'strip: the rest is byte-identical to what the provider sends');

    my $e = last_event();
    is($e->{total_tokens}, $e->{prompt_tokens} + 7,
       'strip: metered from the stripped chunk');
    ok(!$e->{estimated}, 'strip: not estimated');
}


# --- asked for: passed on ----------------------------------------------------

{
    my $n0 = mock_count($t);
    my $r = raw_request($t, key => $key,
                        body => chat_body(stream => 1, include_usage => 1));
    my $d = direct_stream();

    my @data = sse_data(@{ $r->{events} });
    my ($u) = grep { ref $_ && $_->{usage} } @data;
    my ($log) = mock_since($t, $n0);

    ok($u, 'include_usage: the client gets the usage chunk');
    is_deeply($u && $u->{usage}, $log->{usage},
              'include_usage: the numbers the provider sent');
    is_deeply($u && $u->{choices}, [], 'include_usage: empty choices');
    is(normalize_stream($r->{body}), normalize_stream($d->{body}),
       'include_usage: byte-identical to what the provider sends');

    my $e = last_event();
    is($e->{total_tokens}, $log->{usage}{total_tokens},
       'include_usage: metered');
}


# --- choices: null ----------------------------------------------------------

{
    my $n0 = mock_count($t);
    my $r = raw_request($t, key => $key, body => chat_body(stream => 1),
                        headers => { 'x-mock-choices-null' => 1 });
    my ($log) = mock_since($t, $n0);
    my $d = direct_stream('x-mock-choices-null' => 1);

    like($d->{body}, qr/"choices":null/,
         'choices null: the mock sends choices null');
    unlike($r->{body}, qr/"usage":\{|"choices":null/,
           'choices null: the usage chunk is stripped');
    is(scalar @{ $r->{events} }, 9, 'choices null: 9 events');

    my $e = last_event();
    is($e->{prompt_tokens}, $log->{usage}{prompt_tokens},
       'choices null: prompt tokens');
    is($e->{completion_tokens}, $log->{usage}{completion_tokens},
       'choices null: completion tokens');
    ok(!$e->{estimated}, 'choices null: not estimated');

    $r = raw_request($t, key => $key,
                     body => chat_body(stream => 1, include_usage => 1),
                     headers => { 'x-mock-choices-null' => 1 });
    my ($u) = grep { ref $_ && $_->{usage} } sse_data(@{ $r->{events} });
    ok($u && exists $u->{choices} && !defined $u->{choices},
       'choices null: passed on when asked for');
    last_event();
}


# --- the client hangs up mid-stream -----------------------------------------

{
    my $calls = period_calls($t, $ACCOUNT);
    my $r = raw_request($t, key => $key, body => chat_body(stream => 1),
                        headers => { 'x-mock-chunk-delay-ms' => 300 },
                        abort_after => 2);

    is(scalar @{ $r->{events} }, 2, 'abort: two events, then hung up');

    my $e = last_event();
    ok($e->{aborted}, 'abort: event aborted');
    ok($e->{estimated}, 'abort: event estimated (no usage arrived)');
    is($e->{prompt_tokens}, ceil4(length 'hello'),
       'abort: prompt = ceil(message chars / 4)');

    # "tok" + " tok" delivered, a third event perhaps written before the
    # hang-up was seen: 7 or 11 characters
    ok($e->{completion_tokens} == ceil4(7)
       || $e->{completion_tokens} == ceil4(11),
       'abort: completion = ceil(delivered chars / 4)')
        or diag("completion_tokens $e->{completion_tokens}");
    is($e->{total_tokens}, $e->{prompt_tokens} + $e->{completion_tokens},
       'abort: total');
    is($e->{cost_micros}, cost_of($m, $e->{prompt_tokens},
                                  $e->{total_tokens}), 'abort: cost');
    $t->wait_for(sub { period_calls($t, $ACCOUNT) == $calls + 1 }, timeout => 5);
    is(period_calls($t, $ACCOUNT), $calls + 1,
       'abort: the call counts (delivered tokens billed)');
}


# --- the provider cuts the stream -------------------------------------------

{
    my $r = raw_request($t, key => $key, body => chat_body(stream => 1),
                        headers => { 'x-mock-cut-after' => 3 });

    is(scalar @{ $r->{events} }, 3, 'cut: the three events sent arrive');
    ok(!$r->{complete}, 'cut: the client sees an unterminated stream');

    my $e = last_event();
    ok($e->{estimated}, 'cut: event estimated');
    ok(!$e->{aborted}, 'cut: not a client abort');
    is($e->{prompt_tokens}, ceil4(length 'hello'), 'cut: prompt estimated');
    is($e->{completion_tokens}, ceil4(length 'tok tok tok'),
       'cut: completion = ceil(delivered chars / 4)');

    is_deeply([ $t->nginx_worker_pids ], \@workers,
              'no worker process crashed');
    my $ok = $t->chat($key, model => 'test-basic');
    is($ok->{status}, 200, 'cut: the next call works');
    last_event();
}

$t->allow_log(qr/upstream prematurely closed/);

$t->done;
