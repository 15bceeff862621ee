#!/usr/bin/perl

# The gateway forwards exactly what it checked and meters exactly what the
# provider answered, and nothing private crosses from one side to the
# other.  The mock provider behaves as the real ones do: it compresses
# when the request asks, and sends its own organization, project, cookie,
# rate-limit and tracing headers.
#
# - a body with a member twice (plain, or its name escaped), a \u0000, a
#   NUL byte or a \u without four hex digits, or a member that routes or
#   bills at the provider: 400, nothing forwarded;
#   what is forwarded holds each top-level member once and equals what
#   was checked;
# - the client's Accept-Encoding (every Node SDK sends gzip, deflate) does
#   not reach the provider, which is asked for "identity", so usage is read
#   exactly; a provider that compresses all the same (gzip, deflate) is
#   inflated and metered exactly, and one in a coding the gateway cannot
#   read (br) refused;
# - only allow-listed headers cross, either way; the provider's
#   credential reaches the provider and nothing else (not the request's
#   headers: not a log, not a mirror); the client's key is logged as its
#   display prefix only.

use strict;
use warnings;

use Test::More;
use Encode ();
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

my $ACCOUNT = 2601;
my $key = seed_full_key($t, account => $ACCOUNT, models => '*',
                        max_tokens => 1000);
my $secret = $t->mock_key;

# The configuration under test: the aihub locations as an operator writes
# them, an access log that shows the request's Authorization, and a
# mirror that sees the request's headers as the main request does.
$t->nginx(<<'END');
    aihub_redis %%REDIS%%;
    aihub_redis_timeout 300ms;
    aihub_cache_zone aihub:8m;
    aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
    aihub_pass_request_header x-mock-*;    # the mock's test controls

    log_format auth '$status "$http_authorization" "$http_x_api_key"';

    server {
        listen 127.0.0.1:%%PORT%%;

        location /v1/ {
            aihub on;
            aihub_failure_mode closed;
            access_log %%DIR%%/auth.log auth;
            mirror /mirror;
            proxy_pass $aihub_proxy_url;
            proxy_set_header Host $aihub_provider_host;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }

        location = /mirror {
            internal;
            return 204;
            access_log %%DIR%%/mirror.log auth;
        }

        location = /internal-secret {
            internal;
            return 200 "the operator's internal page\n";
        }
    }
END
$t->start_nginx;
ok(wait_ready($t, $key), 'gateway ready');

my $JSON = JSON::PP->new->utf8->canonical;

sub last_mock { my @l = $t->mock_log; $l[-1] }

# the call's event, by its id (an earlier call's may come later: a log phase
# runs when its connection is done with), against the provider's usage
sub call_event {
    my ($r) = @_;
    my $id = $r->{headers}{'x-request-id'} // '-';
    my $mine = sub { (grep { $_->{id} eq $id } usage_events($t))[0] };
    $t->wait_for($mine, timeout => 5);
    return $mine->() // {};
}

sub metered_as_counted {
    my ($r, $what) = @_;
    my $e = call_event($r);
    my $usage = last_mock()->{usage};

    ok(!$e->{estimated}, "$what: the usage was read, not estimated");
    is($e->{prompt_tokens}, $usage->{prompt_tokens},
       "$what: prompt tokens as the provider counted");
    is($e->{completion_tokens}, $usage->{completion_tokens},
       "$what: completion tokens as the provider counted");
}

sub send_raw_body {
    my ($body, %h) = @_;

    my $n0 = mock_count($t);
    my $r = $t->http(POST => '/v1/chat/completions', key => $key,
                     headers => { 'content-type' => 'application/json', %h },
                     body => $body);
    return ($r, mock_count($t) - $n0);
}


# --- what is checked is what is forwarded ------------------------------------

for my $case (
    [ 'model twice', '{"model":"test-basic","messages":[{"role":"user",'
      . '"content":"hi"}],"model":"test-premium"}', 'model' ],
    [ 'model twice, escaped name', '{"model":"test-basic","messages":'
      . '[{"role":"user","content":"hi"}],"m\u006fdel":"test-premium"}',
      'model' ],
    [ 'max_tokens twice', '{"model":"test-basic","messages":[{"role":"user",'
      . '"content":"hi"}],"max_tokens":10,"max_tokens":900000}',
      'max_tokens' ],
    [ 'stream twice', '{"model":"test-basic","messages":[{"role":"user",'
      . '"content":"hi"}],"stream":false,"stream":true}', 'stream' ],
    [ 'include_usage twice', '{"model":"test-basic","messages":[{"role":'
      . '"user","content":"hi"}],"stream":true,"stream_options":'
      . '{"include_usage":true,"include_usage":false}}', 'include_usage' ],
    # below the top level too: the prompt estimate (TPM) would read the
    # first content, the provider the last
    [ 'content twice in a message', '{"model":"test-basic","messages":[{'
      . '"role":"user","content":"hi","c\u006fntent":"' . ('x' x 4000)
      . '"}]}', 'content' ],
    [ 'a NUL in model', '{"model":"test-basic\u0000premium","messages":'
      . '[{"role":"user","content":"hi"}]}', 'NUL' ],
    [ 'OpenRouter models', '{"model":"test-basic","messages":[{"role":'
      . '"user","content":"hi"}],"models":["test-premium"]}', 'models' ],
    [ 'OpenRouter route', '{"model":"test-basic","messages":[{"role":'
      . '"user","content":"hi"}],"route":"fallback"}', 'route' ],
    [ 'OpenRouter provider', '{"model":"test-basic","messages":[{"role":'
      . '"user","content":"hi"}],"provider":{"order":["x"]}}', 'provider' ],
    [ 'service_tier priority', '{"model":"test-basic","messages":[{"role":'
      . '"user","content":"hi"}],"service_tier":"priority"}',
      'service_tier' ],
    [ 'n 3', '{"model":"test-basic","messages":[{"role":"user","content":'
      . '"hi"}],"n":3}', '"n"' ],
    # cJSON ends a string at a NUL byte, and reads a \u without four hex
    # digits as one: both would check "test-basic" and forward more
    [ 'a NUL byte in model', '{"model":"test-basic' . "\0" . 'premium",'
      . '"messages":[{"role":"user","content":"hi"}]}', 'NUL' ],
    [ 'a bad \u escape in model', '{"model":"test-basic\u0zpremium",'
      . '"messages":[{"role":"user","content":"hi"}]}', 'parse' ],
) {
    my ($name, $body, $word) = @$case;
    my ($r, $sent) = send_raw_body($body);

    is_error($r, 400, 'invalid_request_error', $name);
    like($r->{json}{error}{message} // '', qr/\Q$word\E/,
         "$name: the message names $word");
    is($sent, 0, "$name: nothing forwarded");
}

{
    my $body = '{"model":"test-basic","messages":[{"role":"user",'
               . '"content":"hi \u00e9 \\\\u0000 is text"}],'
               . '"service_tier":"auto","n":1,"max_tokens":50}';
    my ($r, $sent) = send_raw_body($body);

    is($r->{status}, 200, 'a body with nothing to refuse is answered');
    is($sent, 1, 'and forwarded once');

    my $fwd = last_mock();
    my $raw = $fwd->{body};
    my %seen;
    $seen{$_}++ for $raw =~ /"([a-z_]+)":/g;
    my @twice = grep { $seen{$_} > 1 && $_ ne 'role' && $_ ne 'content' }
                keys %seen;
    is_deeply(\@twice, [], 'the forwarded body holds each member once');

    my $got = $JSON->decode(Encode::encode('UTF-8', $raw));
    my $want = $JSON->decode($body);
    $want->{model} = 'mock-basic';            # the catalog's upstream id
    is_deeply($got, $want, 'the forwarded body is what was checked (the '
                           . 'model id rewritten)');
}


# --- compressed providers: metered exactly -----------------------------------

for my $stream (0, 1) {
    my $what = $stream ? 'stream' : 'JSON';
    my $r = raw_request($t, key => $key,
                        body => chat_body(stream => $stream,
                                          include_usage => $stream,
                                          content => 'x' x 40),
                        headers => { 'accept-encoding' => 'gzip, deflate' });

    is($r->{status}, 200, "$what, client asks for gzip: 200");
    is($t->mock_log && last_mock()->{headers}{'accept-encoding'},
       'identity', "$what: the client's Accept-Encoding does not reach the "
                   . 'provider: the gateway asks for the answer plain');

    metered_as_counted($r, $what);
}

# A provider that compresses unasked (the gateway sends "Accept-Encoding:
# identity"; without it RFC 9110 lets a server pick any coding, and some
# front ends ignore it): gzip and deflate (zlib's or the raw format) are
# inflated, metered exactly and sent plain; a coding the gateway cannot
# read (br) is refused, 502, and billed nothing.

for my $coding (qw(gzip gzip-members deflate raw-deflate)) {
    for my $case ('JSON', 'stream', 'stream, usage chunk held',
                  'JSON of 300 KB') {
        my $stream = $case =~ /^stream/ ? 1 : 0;
        my $what = "$coding, $case";
        my $r = raw_request($t, key => $key,
                            body => chat_body(stream => $stream,
                                              include_usage =>
                                                  $case eq 'stream',
                                              content => 'y' x 40),
                            headers => {
                                'x-mock-encoding' => $coding,
                                ($case =~ /KB/
                                 ? ('x-mock-size' => 300_000) : ()),
                            });

        is($r->{status}, 200, "$what, compressed unasked: 200");
        is(last_mock()->{headers}{'accept-encoding'}, 'identity',
           "$what: the gateway asked for identity");
        ok(!exists $r->{headers}{'content-encoding'},
           "$what: the client gets it plain");

        if ($stream) {
            is($r->{events}[-1]{data}, '[DONE]', "$what: the stream ends");
            my $text = join '', map {
                my $c = eval { decode_json($_->{data}) };
                $c && $c->{choices} && @{ $c->{choices} }
                    ? $c->{choices}[0]{delta}{content} // '' : '';
            } @{ $r->{events} };
            is($text, 'tok tok tok tok tok tok tok',
               "$what: every event arrived plain");
            is(scalar(grep { $_->{data} =~ /"usage":\{/ }
                      @{ $r->{events} }), $case eq 'stream' ? 1 : 0,
               "$what: the usage chunk " . ($case eq 'stream'
                                            ? 'passed on, as asked'
                                            : 'held back, as not asked'));
        } else {
            my $j = eval { decode_json($r->{body}) } // {};
            is($j->{object}, 'chat.completion', "$what: the JSON answer");
            is(length($j->{choices}[0]{message}{content} // ''),
               $case =~ /KB/ ? 300_000 : length('tok tok tok tok tok tok tok'),
               "$what: all of its content");
        }

        metered_as_counted($r, $what);
    }
}

# the stream inflated event by event: the first event is not held until
# the last (each is flushed compressed by the provider, 300 ms apart)
{
    my $r = raw_request($t, key => $key, body => chat_body(stream => 1),
                        headers => { 'x-mock-encoding' => 'gzip',
                                     'x-mock-chunk-delay-ms' => 300 });
    my @ev = @{ $r->{events} };
    cmp_ok(@ev, '>=', 8, 'gzip stream, 300 ms between events: all came');
    cmp_ok($ev[-1]{t} - $ev[0]{t}, '>', 1.5,
           'gzip stream: the events came as they were sent, not at once');
}

# a gzip stream the provider cuts after three events (its coded data never
# ends): the three arrive plain, and the call is billed on what they
# delivered, as a plain stream cut there is (t/20)
{
    my $r = raw_request($t, key => $key, body => chat_body(stream => 1),
                        headers => { 'x-mock-encoding' => 'gzip',
                                     'x-mock-cut-after' => 3 });
    is(scalar @{ $r->{events} }, 3, 'gzip stream cut: the three events '
                                    . 'sent arrive, plain');
    ok(!$r->{complete}, 'gzip stream cut: unterminated, as sent');
    my $e = call_event($r);
    ok($e->{estimated} && !$e->{aborted},
       'gzip stream cut: estimated, not a client abort');
    is($e->{completion_tokens}, ceil4(length 'tok tok tok'),
       'gzip stream cut: completion = ceil(delivered chars / 4)');
}
$t->allow_log(qr/upstream prematurely closed/);

# gzip data that goes bad mid-answer (the provider's front end, or the
# network): what came plain before it arrives, the answer ends without its
# end, as a cut one does, and the call is billed on what was delivered
{
    my $r = raw_request($t, key => $key, body => chat_body(stream => 1),
                        headers => { 'x-mock-encoding' => 'gzip-corrupt' });
    is(scalar @{ $r->{events} }, 3, 'gzip stream gone bad after three '
                                    . 'events: the three arrive, plain');
    ok(!$r->{complete}, 'gzip stream gone bad: the answer ends unfinished');
    my $e = call_event($r);
    ok($e->{estimated} && !$e->{aborted},
       'gzip stream gone bad: estimated, not a client abort');
    is($e->{completion_tokens}, ceil4(length 'tok tok tok'),
       'gzip stream gone bad: completion = ceil(delivered chars / 4)');

    my $plain = raw_request($t, key => $key, body => chat_body());
    my $j = raw_request($t, key => $key, body => chat_body(),
                        headers => { 'x-mock-encoding' => 'gzip-corrupt' });
    is($j->{status}, 200, 'gzip JSON gone bad halfway: 200, as it began');
    ok(!$j->{complete}, 'gzip JSON gone bad: the answer ends unfinished');
    my $half = substr($plain->{body}, 0, 40);
    $half =~ s/chatcmpl-\w+//;
    ok(length($j->{body}) > 40 && length($j->{body}) < length($plain->{body})
       && index($j->{body} =~ s/chatcmpl-\w+//r, $half) == 0,
       'gzip JSON gone bad: the plain half came, nothing after it')
        or diag($j->{body});
    my $je = call_event($j);
    ok($je->{estimated} && !$je->{aborted},
       'gzip JSON gone bad: estimated, not a client abort');
    is($je->{status}, 200, 'gzip JSON gone bad: its event says 200');
}

# labelled gzip but not gzip from its first byte.  JSON waits for its
# first byte, so nothing reaches the client but our 502, billed nothing; a
# stream's head has gone already, so it ends unfinished with no event, as a
# plain stream the provider cuts before its first event does (t/20): its
# prompt estimated, no completion, not a client abort
{
    my $r = raw_request($t, key => $key, body => chat_body(),
                        headers => { 'x-mock-encoding' => 'gzip-garbage' });
    is($r->{status}, 502, 'not gzip from its first byte, JSON: 502');
    my $j = eval { decode_json($r->{body}) } // {};
    is($j->{error}{code}, 'upstream_error',
       'not gzip from its first byte, JSON: upstream_error');
    is(call_event($r)->{cost_micros} // 0, 0,
       'not gzip from its first byte, JSON: billed nothing');

    $r = raw_request($t, key => $key, body => chat_body(stream => 1),
                     headers => { 'x-mock-encoding' => 'gzip-garbage' });
    is(scalar @{ $r->{events} }, 0,
       'not gzip from its first byte, stream: no event reaches the client');
    ok(!$r->{complete}, 'not gzip from its first byte, stream: unfinished');
    my $e = call_event($r);
    ok($e->{estimated} && !$e->{aborted} && !$e->{completion_tokens},
       'not gzip from its first byte, stream: estimated, no completion, '
       . 'not a client abort')
        or diag(explain($e));
}
$t->allow_log(qr/could not be inflated/);

# a provider's refusal of the request itself, compressed: judged as plain
{
    my @r = map {
        raw_request($t, key => $key, body => chat_body(),
                    headers => { 'x-mock-status' => 400, %$_ })
    } {}, { 'x-mock-encoding' => 'gzip' };
    is($r[1]{status}, $r[0]{status}, 'a provider 400, gzip: the status of '
                                     . "the plain one ($r[0]{status})");
    is((eval { decode_json($r[1]{body}) } // {})->{error}{message},
       (eval { decode_json($r[0]{body}) } // {})->{error}{message},
       'a provider 400, gzip: the same message for the developer');
}

for my $stream (0, 1) {
    my $what = 'br, ' . ($stream ? 'stream' : 'JSON');
    my $r = raw_request($t, key => $key, body => chat_body(stream => $stream),
                        headers => { 'x-mock-encoding' => 'br' });
    is($r->{status}, 502, "$what: a coding the gateway cannot read: 502");
    my $j = eval { decode_json($r->{body}) } // {};
    is($j->{error}{code}, 'upstream_error', "$what: upstream_error");
    my $e = call_event($r);
    is($e->{cost_micros} // 0, 0, "$what: billed nothing");
    is($e->{status}, 502, "$what: its event says 502");
}
$t->allow_log(qr/cannot read/);


# --- headers: an allow-list each way -----------------------------------------

{
    my $r = raw_request($t, key => $key, body => chat_body(),
                        headers => {
                            'OpenAI-Organization' => 'org-client',
                            'OpenAI-Project'      => 'proj_client',
                            'Cookie'              => 'session=client',
                            'X-Forwarded-For'     => '203.0.113.9',
                            'x-stainless-os'      => 'Linux',
                            'OpenAI-Beta'         => 'assistants=v2',
                        });
    is($r->{status}, 200, 'a call with the SDK headers');

    my $h = last_mock()->{headers};
    is($h->{authorization}, "Bearer $secret",
       'the provider gets its own credential');
    is($h->{'openai-beta'}, 'assistants=v2', 'OpenAI-Beta is passed');
    for my $name (qw(openai-organization openai-project cookie
                     x-forwarded-for x-stainless-os x-api-key)) {
        ok(!exists $h->{$name}, "the client's $name does not reach the "
                                . 'provider');
    }
    unlike(join(' ', values %$h), qr/ai-hub-/,
           "the client's key does not reach the provider");

    for my $name (qw(openai-organization openai-project openai-version
                     openai-processing-ms set-cookie cf-ray)) {
        ok(!exists $r->{headers}{$name}, "the provider's $name does not "
                                         . 'reach the client');
    }
    like($r->{head}, qr/^x-request-id: [0-9a-f]{32}\r?$/mi,
         'one x-request-id, ours');
    unlike($r->{head}, qr/^x-ratelimit-/mi,
           "the provider's rate limits do not reach the client");
    is(index($r->{raw}, $secret), -1, "the provider's key is not in the "
                                      . 'answer');
}

{
    my $limited = seed_full_key($t, account => 2602, models => '*',
                                rpm => 50);
    my $r = raw_request($t, key => $limited, body => chat_body());

    is($r->{headers}{'x-ratelimit-limit-requests'}, '50',
       'our rate-limit header, alone (not merged with the provider\'s)');
    like($r->{headers}{'x-ratelimit-remaining-requests'}, qr/^\d+$/,
         'remaining requests is one number');
}

# --- what the SDKs need to stop retrying, and echoes kept short ---------------

{
    my $one = seed_full_key($t, account => 2603, models => '*',
                            included => 1);
    is($t->chat($one, model => 'test-basic')->{status}, 200,
       'quota of one call: the call');

    my $r = $t->chat($one, model => 'test-basic');
    is_error($r, 429, 'insufficient_quota', 'quota used up');
    is($r->{headers}{'x-should-retry'}, 'false',
       'insufficient_quota: x-should-retry: false (the SDKs stop)');
    like($r->{headers}{'retry-after'} // '', qr/^[1-9]\d*$/,
         'insufficient_quota: Retry-After, the seconds to the next period');
    ok(($r->{headers}{'retry-after'} // 0) <= 31 * 86400,
       'insufficient_quota: Retry-After within a month');
}

{
    my $long = 'm' x 100000 . "\xff\xfe";
    my $r = $t->http(POST => '/v1/chat/completions', key => $key,
                     body => { model => $long,
                               messages => [ { role => 'user',
                                               content => 'hi' } ] });
    is_error($r, 404, 'model_not_found', 'a 100 KB model name');
    ok(length($r->{content}) < 1024, 'the answer does not echo it whole ('
                                     . length($r->{content}) . ' bytes)');
    ok(utf8::decode(my $copy = $r->{content}), 'the answer is valid UTF-8');
}

# a provider's X-Accel-Redirect (and X-Accel-Buffering: yes) is not
# obeyed: before, the client was served the operator's internal location,
# unmetered
{
    my $r = $t->http(POST => '/v1/chat/completions', key => $key,
                     headers => { 'x-mock-accel' => '/internal-secret' },
                     body => { model => 'test-basic',
                               messages => [ { role => 'user',
                                               content => 'hi' } ] });
    is($r->{status}, 200, 'X-Accel-Redirect from the provider: 200');
    unlike($r->{content}, qr/internal page/,
           "X-Accel-Redirect: not the operator's internal location");
    like($r->{content}, qr/"choices"/, "X-Accel-Redirect: the provider's "
         . 'answer');
    ok(call_event($r)->{total_tokens}, 'X-Accel-Redirect: metered');
}

# credentials refused (or passed over) are masked in the logs too: before,
# only a key that passed the format check was, and a valid key in quotes,
# with a character too many, or in x-api-key beside a Basic credential was
# logged whole
my $basic = 'Basic ' . 'dXNlcjpzM2NyZXQtcGFzc3dvcmQ=';
my @refused = (
    [ { Authorization => qq{Bearer "$key"} }, 401, 'in quotes' ],
    [ { Authorization => "Bearer ${key}x" }, 401, 'a character too many' ],
    [ { 'x-api-key' => "${key}x" }, 401, 'x-api-key, a character too many' ],
    [ { Authorization => $basic }, 401, 'a Basic credential alone' ],
    [ { Authorization => 'Bearer sk-proj-0123456789abcdefghij' }, 401,
      "another vendor's key" ],
    [ { Authorization => $basic, 'x-api-key' => $key }, 200,
      'a Basic credential beside x-api-key: the key is read' ],
    [ { Authorization => 'Bearer', 'x-api-key' => $key }, 200,
      'an empty Bearer beside x-api-key: the key is read' ],
);

for my $c (@refused) {
    my ($h, $status, $what) = @$c;
    my $r = $t->http(POST => '/v1/chat/completions', headers => $h,
                     body => { model => 'test-basic',
                               messages => [ { role => 'user',
                                               content => 'hi' } ] });
    is($r->{status}, $status, "$what: $status") or diag($r->{content});
}

{
    $t->stop_nginx;                       # the logs are complete

    my $auth = Aihub::read_file($t->nginx_dir . '/auth.log');
    my $mirror = Aihub::read_file($t->nginx_dir . '/mirror.log');

    ok(length $auth, 'the access log was written');
    is(index($auth, $secret), -1, "the provider's key is not in the "
                                  . '$http_authorization log');
    is(index($mirror, $secret), -1, "the mirror did not see the provider's "
                                    . 'key');
    is(index($auth, $key), -1, "the client's full key is not in the log");
    like($auth, qr/"Bearer \Q${\ Aihub::key_prefix($key)}\E\.\.\."/,
         "the client's key shows as its display prefix");
    is(index($auth, substr($key, 15)), -1,
       "no part of the client's key past its display prefix is in the log");
    like($auth, qr/^401 "\Q$basic\E" "-"$/m,
         'a Basic credential is left as it came (auth_basic reads it after '
         . 'us; t/11)');
    like($auth, qr/^200 "\Q$basic\E" "\Q${\ Aihub::key_prefix($key)}\E\.\.\."$/m,
         'x-api-key beside it shows as the display prefix');
    like($auth, qr/^401 "Bearer \.\.\." "-"$/m,
         'a refused Bearer token that is not ours shows as its scheme');
    is(index($auth, 'sk-proj-0123'), -1, "and no part of it is logged");
}

$t->done;
