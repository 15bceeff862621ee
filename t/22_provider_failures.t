#!/usr/bin/perl

# A provider that fails: 500/503 -> 502 upstream_error, 429 -> 429 (but
# OpenAI's insufficient_quota, the operator's account out of credit: 502)
# rate_limit_exceeded, connection refused -> 502, too slow -> 504
# upstream_timeout, a provider refusing our credential -> 502; each in the
# OpenAI error shape, the quota reservation given back and nothing billed.
# A 200 that is not JSON, a status line that is not HTTP, a 204 or a
# redirect: 502, never billed.  Each provider's refusal of the operator's
# credential, in its own shape (Gemini: 400 with a JSON array): 502.  A
# provider's 400 about the request itself: 400 with its message.  A 429
# always carries Retry-After.  The provider's key never reaches the client.

use strict;
use warnings;

use Test::More;
use POSIX ();

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);
use AihubStream qw(:all);

my $t = Aihub->new;
$t->skip_unless_built;
$t->start_redis;
$t->start_mock;

my $closed = Aihub::free_port();               # nothing listens there

# a model "test-<provider>" on each provider below, mock-basic upstream
seed_models($t, %MODELS,
    map { ("test-$_" => { provider => $_, upstream => 'mock-basic',
                          tier => 'basic', price_in => 1000000,
                          price_out => 2000000 }) }
        qw(down badkey gembad gem or orbad));

my $ACCOUNT = 22;
my $key = seed_full_key($t, account => $ACCOUNT, models => '*');

# "down" on a port where nothing listens (%%CLOSED%%, filled in here);
# "badkey", "gembad" and "orbad" with a credential the mock refuses, each
# answering in its provider's shape (OpenAI, Gemini, OpenRouter)
$t->nginx(<<'END' =~ s/%%CLOSED%%/$closed/r);
    aihub_redis %%REDIS%%;
    aihub_redis_timeout 300ms;
    aihub_cache_zone aihub:8m;
    aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
    aihub_provider down url=http://127.0.0.1:%%CLOSED%%/v1 key_env=AIHUB_MOCK_KEY;
    aihub_provider badkey url=%%MOCK_URL%% key_file=%%DIR%%/bad.key;
    aihub_provider gembad url=http://%%MOCK%%/v1beta/openai kind=gemini key_file=%%DIR%%/bad.key;
    aihub_provider gem url=http://%%MOCK%%/v1beta/openai kind=gemini key_env=AIHUB_MOCK_KEY;
    aihub_provider or url=http://%%MOCK%%/api/v1 key_env=AIHUB_MOCK_KEY;
    aihub_provider orbad url=http://%%MOCK%%/api/v1 key_file=%%DIR%%/bad.key;
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
            proxy_read_timeout 1s;
        }

        location /api/v1/developer/ {
            aihub on;
            aihub_failure_mode closed;
            proxy_pass $aihub_proxy_url;
            proxy_set_header Host $aihub_provider_host;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 1s;
        }

        location = /plain {
            return 200 "plain\n";
        }
    }
END

Aihub::write_file($t->nginx_dir . '/bad.key', "not-the-mock-key\n");
$t->start_nginx;
ok(wait_ready($t, $key), 'gateway ready');

my $secret = $t->mock_key;
my $nev = () = usage_events($t);
my $period = sub { period_calls($t, $ACCOUNT) };

sub access_lines {
    my $log = eval { Aihub::read_file($t->nginx_dir . '/access.log') } // '';
    return scalar(() = $log =~ /\n/g);
}

sub check_failure {
    my ($name, $status, $code, %o) = @_;

    my $calls = $period->();
    my $n0 = mock_count($t);
    my $logged = access_lines();
    my $r = raw_request($t, key => $key, timeout => 15,
                        body => chat_body(model => $o{model} // 'test-basic',
                                          stream => $o{stream}),
                        headers => $o{headers} // {});

    $r->{json} = eval { JSON::PP->new->decode($r->{body}) };
    is_error($r, $status, $code, $name);

    like($r->{head}, qr/^x-request-id: [0-9a-f]{32}\r?$/mi,
         "$name: our request id");
    is(index($r->{raw}, $secret), -1,
       "$name: the provider's key is not in the answer");
    unlike($r->{body}, qr/mock|The server had an error|overloaded
                          |Incorrect API key/x,
           "$name: the provider's error text is not passed on");

    if ($o{reached}) {
        ok(mock_count($t) > $n0, "$name: the provider was asked");
    }

    # the log phase (the settle, the event, the access log line) runs
    # when the connection is done with; the event then leaves in a batch
    ok($t->wait_for(sub { access_lines() > $logged }, timeout => 10),
       "$name: the log phase ran");
    $t->wait_for(sub { usage_event_count($t) > $nev }, timeout => 5)
        if $o{reached};
    sleep 0.3;                  # nothing more must come
    is($period->(), $calls, "$name: the failed call is not counted");
    my @ev = usage_events($t);
    my @new = @ev[$nev .. $#ev];
    $nev = @ev;

    my @billed = grep { $_->{total_tokens} || $_->{prompt_tokens}
                        || $_->{completion_tokens} || $_->{cost_micros} }
                 @new;
    is(scalar @billed, 0, "$name: nothing billed");

    if ($o{reached}) {
        is(scalar @new, 1, "$name: one event for the call that reached "
                           . 'the provider');
        is($new[0]{status}, $status, "$name: the event has our status")
            if @new;
    } else {
        is(scalar @new, 0, "$name: no event (the provider was not reached)");
    }

    return $r;
}


# a provider's refusal the developer is told of: 400, the provider's
# message in our words; the event of the call, not billed
sub check_rejected {
    my ($name, $message, %o) = @_;

    my $r = raw_request($t, key => $key,
                        body => chat_body(model => $o{model} // 'test-basic'),
                        headers => $o{headers});

    $r->{json} = eval { JSON::PP->new->decode($r->{body}) };
    is_error($r, 400, 'provider_rejected_request', $name);
    like($r->{json}{error}{message} // '', $message,
         "$name: its message, in our words");

    my @ev = wait_usage($t, $nev + 1);
    $nev = @ev;
    is($ev[-1]{total_tokens} // 0, 0, "$name: nothing billed");

    return $r;
}


# a failure may pass on a retry: the SDKs' own retries are left alone;
# a refusal will not: they are told not to retry (x-should-retry: false)
my %retry;
$retry{'500'} = check_failure('500', 502, 'upstream_error', reached => 1,
                              headers => { 'x-mock-status' => 500 });
$retry{'503'} = check_failure('503', 502, 'upstream_error', reached => 1,
                              headers => { 'x-mock-status' => 503 });
check_failure('500 streamed', 502, 'upstream_error', reached => 1,
              stream => 1, headers => { 'x-mock-status' => 500 });
my $r429 = check_failure('429', 429, 'rate_limit_exceeded', reached => 1,
                         headers => { 'x-mock-status' => 429 });
my %no_retry;
$no_retry{'credential refused (401)'} =
    check_failure('credential refused', 502, 'upstream_error', reached => 1,
                  model => 'test-badkey');
$retry{'connection refused'} =
    check_failure('connection refused', 502, 'upstream_error',
                  model => 'test-down');

{
    my $start = Time::HiRes::time();
    # the provider never answered: like a refused connection, no event
    # (the module records calls the provider answered)
    $retry{timeout} = check_failure('timeout', 504, 'upstream_timeout',
                                    headers => { 'x-mock-delay-ms' => 2500 });
    my $took = Time::HiRes::time() - $start;
    ok($took < 2.4, sprintf 'timeout: answered after proxy_read_timeout '
                            . '(%.1f s), not after the provider', $took);
}


# --- answers no client can use: never passed on, never billed ---------------

check_failure('200 that is not JSON', 502, 'upstream_error', reached => 1,
              headers => { 'x-mock-garbage' => 1 });
{
    my $r = check_failure('200 whose body is an error (OpenRouter)', 502,
                          'upstream_error', reached => 1,
                          headers => { 'x-mock-error-200' => 1 });
    $retry{'200 whose body is an error (its code 502)'} = $r;
    unlike($r->{body}, qr/user_id|user_2dHFtVWx2n56w6HkOperator0|Provider returned/,
           "200 with an error: the operator's account and the provider's "
           . 'error are not passed on');
}
{
    # the same after keep-alive white space (OpenRouter sends some while a
    # slow model works, which is when this failure comes): before, a first
    # buffer of white space alone sent the 200 on, and the error reached
    # the client raw, naming the operator's account
    my $r = check_failure('200 whose body is an error after keep-alives', 502,
                          'upstream_error', reached => 1,
                          headers => { 'x-mock-error-200' => 1,
                                       'x-mock-keepalive' => 3 });
    unlike($r->{body}, qr/user_id|user_2dHFtVWx2n56w6HkOperator0|Provider returned/,
           "200 with an error after keep-alives: the operator's account "
           . 'and the provider\'s error are not passed on');
}
{
    # "error": null first is an answer like any other
    my $r = raw_request($t, key => $key, body => chat_body(),
                        headers => { 'x-mock-error-null' => 1 });
    is($r->{status}, 200, 'an answer that begins with "error": null: 200');
    like($r->{body}, qr/^\{"error":null,.*"choices"/s,
         'an answer that begins with "error": null: passed on');
    my @ev = wait_usage($t, $nev + 1);
    $nev = @ev;
    ok(($ev[-1]{total_tokens} // 0) > 0,
       'an answer that begins with "error": null: billed');
}
{
    # the error in the body says the request was at fault: a 400 would
    my $r = check_rejected('200 whose body is an error about the request',
        qr/^The model provider rejected the request: This endpoint's maximum context length/,
        headers => { 'x-mock-error-200' => 400 });
    unlike($r->{body}, qr/user_id|user_2dHFtVWx2n56w6HkOperator0/,
           "200 with an error about the request: the operator's account "
           . 'is not passed on');
    check_rejected('the same after keep-alives',
        qr/^The model provider rejected the request: This endpoint's maximum context length/,
        headers => { 'x-mock-error-200' => 400, 'x-mock-keepalive' => 2 });
}
# a JSON answer cut after its header, before any of its body: our 502,
# not billed.  Before, the header held for the first bytes was never sent
# (nginx flushes and ends the request when the provider goes): the client
# got no answer at all, and the call was billed as a 200 on an estimate.
check_failure('200 cut before its first byte', 502, 'upstream_error',
              reached => 1, headers => { 'x-mock-json-cut' => 0 });
check_failure('200 cut after keep-alive white space', 502, 'upstream_error',
              reached => 1, headers => { 'x-mock-json-cut' => 0,
                                         'x-mock-keepalive' => 2 });
check_failure('a status line that is not HTTP', 502, 'upstream_error',
              reached => 1, headers => { 'x-mock-raw-status' => 1 });
check_failure('204', 502, 'upstream_error', reached => 1,
              headers => { 'x-mock-status' => 204 });
{
    my $r = check_failure('302', 502, 'upstream_error', reached => 1,
                          headers => { 'x-mock-status' => 302 });
    unlike($r->{head}, qr/^location:/mi, "302: the provider's Location "
                                         . 'does not reach the client');
}

# the operator's credential refused, in each provider's own shape: Gemini
# says 400 with a JSON array, OpenRouter 401 with a numeric code
$no_retry{'Gemini refuses the credential'} =
    check_failure('Gemini refuses the credential (400, array)', 502,
                  'upstream_error', reached => 1, model => 'test-gembad');
$no_retry{'OpenRouter refuses the credential'} =
    check_failure('OpenRouter refuses the credential', 502, 'upstream_error',
                  reached => 1, model => 'test-orbad');
{
    # OpenAI's 400 naming the operator's key: never shown, never retried
    my $r = check_failure("provider 400 about the operator's API key", 502,
        'upstream_error', reached => 1,
        headers => { 'x-mock-status' => 400,
                     'x-mock-message' => 'Incorrect API key provided: '
                         . 'sk-proj-ab************xyz. You can find your API '
                         . 'key at https://platform.openai.com/account/'
                         . 'api-keys.' });
    unlike($r->{body}, qr/sk-proj|Incorrect/,
           "provider 400 about the operator's API key: not shown");
    $no_retry{"provider 400 about the operator's API key"} = $r;
}


# --- the developer's own mistake, as the provider saw it ---------------------

{
    my $calls = $period->();
    check_rejected('provider 400 about the request',
                   qr/^The model provider rejected the request: Invalid request/,
                   headers => { 'x-mock-status' => 400 });

    # a structured output schema OpenAI refuses: its message speaks of a
    # "key" and names a field "author", and is the developer's all the same
    my $r = check_rejected('provider 400 about a JSON schema',
        qr/^The model provider rejected the request: Invalid schema .*every key in properties\. Missing 'author'\.$/,
        headers => { 'x-mock-status' => 400,
                     'x-mock-message' => "Invalid schema for response_format "
                         . "'answer': In context=(), 'required' is required "
                         . "to be supplied and to be an array including "
                         . "every key in properties. Missing 'author'." });
    unlike($r->{head}, qr/^x-should-retry:/mi,
           'provider 400 about a JSON schema: a 400, which no SDK retries');
    $t->wait_for(sub { $period->() == $calls }, timeout => 1);
    is($period->(), $calls, 'provider 400: not counted as a call');
}

# Gemini answers every error in a JSON array of one: a request it refuses
# is the developer's to see all the same, not a 502 the SDK retries
check_rejected("Gemini's 400 about the request ([{\"error\": ...}])",
               qr/^The model provider rejected the request: Invalid request/,
               model => 'test-gem', headers => { 'x-mock-status' => 400 });

# ... and one that lists 100 fields at fault in its details (some 20 KB,
# as Google's answers to a schema with many unknown names are): read whole
check_rejected("Gemini's 400 with 100 fieldViolations (20 KB)",
               qr/^The model provider rejected the request: Invalid request/,
               model => 'test-gem',
               headers => { 'x-mock-status' => 400,
                            'x-mock-violations' => 100 });


# OpenRouter's moderation flagged the input (403 with its reasons): the
# developer's to know, not a failure the SDK retries; the flagged text and
# the upstream are not repeated
{
    my $r = check_rejected("OpenRouter's moderation 403",
        qr/^The model provider's moderation flagged the input: violence\.$/,
        model => 'test-or', headers => { 'x-mock-flagged' => 1 });
    unlike($r->{body}, qr/flagged text|MockUpstream|credits/,
           "OpenRouter's moderation 403: no more of the provider's body");
}
$no_retry{'403 of another kind'} =
    check_failure('403 of another kind', 502, 'upstream_error', reached => 1,
                  headers => { 'x-mock-status' => 403 });


# --- 429: Retry-After always ---------------------------------------------------

like($r429->{head}, qr/^retry-after: 1\r?$/mi,
     'provider 429 without Retry-After: ours says 1 s');
{
    my $r = check_failure('429 with Retry-After', 429, 'rate_limit_exceeded',
                          reached => 1,
                          headers => { 'x-mock-status' => 429,
                                       'x-mock-retry-after' => 7 });
    like($r->{head}, qr/^retry-after: 7\r?$/mi,
         "provider 429: the provider's Retry-After passed on");
    is(() = $r->{head} =~ /^retry-after:/mgi, 1, 'one Retry-After');
}
{
    # Retry-After may be an HTTP-date (RFC 9110): the seconds until it
    my $date = POSIX::strftime('%a, %d %b %Y %H:%M:%S GMT',
                               gmtime(time + 30));
    my $r = check_failure('429 with Retry-After as a date', 429,
                          'rate_limit_exceeded', reached => 1,
                          headers => { 'x-mock-status' => 429,
                                       'x-mock-retry-after' => $date });
    my ($s) = $r->{head} =~ /^retry-after: (\d+)\r?$/mi;
    ok(defined $s && $s >= 25 && $s <= 31,
       "provider 429: an HTTP-date Retry-After becomes its seconds ("
       . ($s // 'none') . ')');
}

# OpenAI's 429 for the operator's account out of credit: the operator's
# problem, which no retry mends: 502, no Retry-After, logged
{
    my $r = check_failure('429 insufficient_quota', 502, 'upstream_error',
                          reached => 1,
                          headers => { 'x-mock-status' => 429,
                                       'x-mock-no-credit' => 1,
                                       'x-mock-retry-after' => 7 });
    unlike($r->{head}, qr/^retry-after:/mi,
           '429 insufficient_quota: no Retry-After for the developer');
    unlike($r->{body}, qr/quota|billing/i,
           "429 insufficient_quota: the operator's billing is not shown");
    like($t->error_log, qr/says the operator's account has no credit left/,
         '429 insufficient_quota: logged for the operator');
    $no_retry{'429 insufficient_quota'} = $r;
}

for my $name (sort keys %no_retry) {
    like($no_retry{$name}{head}, qr/^x-should-retry: false\r?$/mi,
         "$name: x-should-retry: false (asked again, it refuses again)");
}
for my $name (sort keys %retry) {
    unlike($retry{$name}{head}, qr/^x-should-retry:/mi,
           "$name: no x-should-retry (a retry may pass)");
}


# --- nothing crashed, a good call still works --------------------------------

{
    my $r = $t->chat($key, model => 'test-basic');
    is($r->{status}, 200, 'a good call after the failures');
    is(index(join('', %{ $r->{headers} }, $r->{content}), $secret), -1,
       "a good call: the provider's key is not in the answer");
}

$t->allow_log(qr/upstream timed out|Connection refused|connect\(\) failed
                |upstream sent no valid HTTP/x);

$t->done;
