#!/usr/bin/perl

# A request body in a content coding.  Clients compress large bodies
# (OpenAI's Codex CLI sends its Responses API requests in zstd; others use
# gzip); the gateway decodes gzip, x-gzip, deflate (zlib's or raw) and
# zstd before it checks anything, and the provider gets the plain body,
# without the coding, whatever the operator lets cross.
#
# - each coding, and several gzip members or zstd frames: 200, the
#   provider got the plain JSON and no Content-Encoding, the call metered
#   as the provider counted;
# - what the body check refuses is refused compressed too: a member twice,
#   a model outside the plan, max_tokens over the cap, a NUL;
# - bad data (corrupt, cut short, trailing bytes, a coding's label on
#   another's data, an empty body): 400 invalid_request_error;
# - decoded larger than aihub_body_max (a gzip or zstd bomb, a body one
#   byte over): 413 request_too_large; exactly the limit passes;
# - an unknown coding, two codings, two Content-Encoding lines: 415
#   unsupported_content_encoding with Accept-Encoding;
# - none of the refused reaches the provider or is counted.

use strict;
use warnings;

use Test::More;
use Compress::Zlib ();
use IO::Compress::RawDeflate qw(rawdeflate $RawDeflateError);
use IPC::Open3 qw(open3);
use JSON::PP;

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);
use AihubStream qw(:all);

plan(skip_all => 'module not built') unless Aihub::have_module();
plan(skip_all => 'no zstd program (apt-get install zstd)')
    unless grep { -x "$_/zstd" } split /:/, $ENV{PATH};

$SIG{PIPE} = 'IGNORE';

my $t = Aihub->new(redis => 1, mock => 1);

seed_models($t);
my $key = seed_full_key($t, account => 8301, max_tokens => 1000);

my $MAX = 65536;

# The operator lets Content-Encoding cross on purpose: the decoded body
# must still go without it.
$t->nginx(<<"END")->start_nginx;
    aihub_redis %%REDIS%%;
    aihub_redis_timeout 300ms;
    aihub_cache_zone aihub:8m;
    aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
    aihub_pass_request_header Content-Encoding;

    server {
        listen 127.0.0.1:%%PORT%%;

        location /api/v1/developer/ {
            aihub on;
            aihub_failure_mode closed;
            proxy_pass \$aihub_proxy_url;
            proxy_set_header Host \$aihub_provider_host;
        }

        location /v1/ {
            aihub on;
            aihub_failure_mode closed;
            aihub_body_max $MAX;
            client_body_buffer_size $MAX;
            client_max_body_size 1m;
            proxy_pass \$aihub_proxy_url;
            proxy_set_header Host \$aihub_provider_host;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
END
ok(wait_ready($t, $key), 'gateway ready');
my $admin = seed_full_key($t, account => 8302, scopes => 'chat,admin');

my $JSON = JSON::PP->new->utf8->canonical;
my $answered = 0;


# --- codings -----------------------------------------------------------------

sub raw_deflate {
    my $out;
    my ($in) = @_;
    rawdeflate(\$in => \$out) or die $RawDeflateError;
    return $out;
}

sub zstd_of {
    my ($in) = @_;

    my $pid = open3(my $w, my $r, undef, 'zstd', '-q', '-c', '-3');
    binmode $_ for $w, $r;
    print $w $in;
    close $w;
    my $out = do { local $/; <$r> };
    waitpid($pid, 0);
    die "zstd failed\n" if $? != 0;
    return $out;
}

sub body_of {
    my (%o) = @_;

    return $JSON->encode({
        model => $o{model} // 'test-basic',
        messages => [ { role => 'user', content => $o{content} // 'hello' } ],
        %{ $o{extra} // {} },
    });
}

# one call: the coded body, its Content-Encoding (lines: an array)
sub coded_call {
    my ($coded, $encoding, %o) = @_;

    my $n0 = mock_count($t);
    my $r = $t->http(POST => $o{path} // '/v1/chat/completions', key => $key,
                     headers => { 'content-type' => 'application/json',
                                  (defined $encoding
                                   ? ('content-encoding' => $encoding) : ()) },
                     body => $coded);
    $r->{sent} = mock_count($t) - $n0;
    $answered++ if $r->{status} == 200;
    return $r;
}

# the event of a call, by its id
sub event_of {
    my ($r) = @_;

    my $id = $r->{headers}{'x-request-id'} // '-';
    my $mine = sub { (grep { $_->{id} eq $id } usage_events($t))[0] };
    $t->wait_for($mine, timeout => 5);
    return $mine->();
}

# answered, the provider got exactly $plain and no coding, metered as counted
sub passed_plain {
    my ($r, $plain, $what) = @_;

    is($r->{status}, 200, "$what: 200")
        or diag($r->{content});
    is($r->{sent}, 1, "$what: forwarded once");

    my $fwd = (mock_since($t, mock_count($t) - 1))[0];
    my $got = eval { $JSON->decode(Encode::encode('UTF-8', $fwd->{body})) };
    my $want = $JSON->decode($plain);
    $want->{model} = 'mock-basic';             # the catalog's upstream id
    $want->{max_tokens} //= 1000;              # the key's cap, when none
                                               # was asked (t/97)
    is_deeply($got, $want, "$what: the provider got the plain body");
    ok(!exists $fwd->{headers}{'content-encoding'},
       "$what: and no Content-Encoding");

    my $e = event_of($r) // {};
    ok($e->{id} && !$e->{estimated}, "$what: one usage event, read");
    is($e->{prompt_tokens}, $fwd->{usage}{prompt_tokens},
       "$what: prompt tokens as the provider counted");
}

# refused before the provider: nothing forwarded, nothing counted
sub refused {
    my ($r, $status, $code, $what) = @_;

    is_error($r, $status, $code, $what);
    is($r->{sent}, 0, "$what: nothing forwarded");
}

require Encode;

my $plain = body_of(content => 'tell me about compression ' x 20);

{
    my %coded = (
        'gzip'           => [ gz($plain), 'gzip' ],
        'x-gzip'         => [ gz($plain), 'x-gzip' ],
        'GZIP, upper'    => [ gz($plain), 'GZIP' ],
        'identity, gzip' => [ gz($plain), 'identity, gzip' ],
        'deflate (zlib)' => [ Compress::Zlib::compress($plain), 'deflate' ],
        'deflate (raw)'  => [ raw_deflate($plain), 'deflate' ],
        'zstd'           => [ zstd_of($plain), 'zstd' ],
        'identity'       => [ $plain, 'identity' ],
        'gzip members'   => [ gz(substr($plain, 0, 100))
                              . gz(substr($plain, 100)), 'gzip' ],
        'zstd frames'    => [ zstd_of(substr($plain, 0, 100))
                              . zstd_of(substr($plain, 100)), 'zstd' ],
    );

    for my $what (sort keys %coded) {
        my ($coded, $enc) = @{ $coded{$what} };
        passed_plain(coded_call($coded, $enc), $plain, $what);
    }
}

{
    # a stream asked for inside a compressed body
    my $body = body_of(extra => { stream => JSON::PP::true });
    my $r = coded_call(gz($body), 'gzip');

    is($r->{status}, 200, 'a gzip body asking for a stream: 200');
    like($r->{headers}{'content-type'} // '', qr{^text/event-stream},
         'and the answer streams');
    ok(grep({ (ref $_ ? $_->{data} // '' : $_) eq '[DONE]' }
            @{ $r->{events} // [] }),
       'to its end');
}

{
    # the Responses API in zstd, as the Codex CLI sends it
    my $body = $JSON->encode({ model => 'test-basic', input => 'hello' });
    my $r = coded_call(zstd_of($body), 'zstd', path => '/v1/responses');

    is($r->{status}, 200, 'a Responses API request in zstd: 200')
        or diag($r->{content});
    is(($r->{json} // {})->{object}, 'response', 'answered as a response');
}

{
    # chunked from the client, in gzip
    my $coded = gz($plain);
    my $n0 = mock_count($t);
    my $s = $t->connect;
    print $s "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"
             . "Authorization: Bearer $key\r\n"
             . "Content-Type: application/json\r\n"
             . "Content-Encoding: gzip\r\n"
             . "Transfer-Encoding: chunked\r\n"
             . "Connection: close\r\n\r\n";
    for my $piece (unpack('(a200)*', $coded)) {
        printf $s "%x\r\n%s\r\n", length $piece, $piece;
    }
    print $s "0\r\n\r\n";
    my $answer = do { local $/; <$s> } // '';
    like($answer, qr{^HTTP/1\.1 200 }, 'a chunked gzip body: 200')
        and $answered++;
    is(mock_count($t) - $n0, 1, 'forwarded once');
    my $fwd = (mock_since($t, mock_count($t) - 1))[0];
    my $want = $JSON->decode($plain);
    $want->{model} = 'mock-basic';
    $want->{max_tokens} //= 1000;
    is_deeply(eval { $JSON->decode(Encode::encode('UTF-8', $fwd->{body})) },
              $want, 'the provider got it plain');
}


# --- what the body check refuses, compressed -----------------------------------

{
    my $twice = '{"model":"test-basic","model":"test-premium","messages":'
                . '[{"role":"user","content":"hi"}]}';
    refused(coded_call(gz($twice), 'gzip'), 400, 'invalid_request_error',
            'gzip: the model twice');
    refused(coded_call(zstd_of($twice), 'zstd'), 400,
            'invalid_request_error', 'zstd: the model twice');

    my $escaped = '{"model":"test-basic","mod\u0065l":"test-premium",'
                  . '"messages":[{"role":"user","content":"hi"}]}';
    refused(coded_call(gz($escaped), 'gzip'), 400, 'invalid_request_error',
            'gzip: the model twice, its name escaped');

    refused(coded_call(gz(body_of(model => 'test-premium')), 'gzip'), 403,
            'model_not_allowed', 'gzip: a model outside the plan');
    refused(coded_call(Compress::Zlib::compress(
                body_of(extra => { max_tokens => 5000 })), 'deflate'),
            400, 'max_tokens_exceeded', 'deflate: max_tokens over the cap');
    refused(coded_call(gz(qq({"model":"test-basic","messages":[{"role":)
                          . qq("user","content":"a\0b"}]})), 'gzip'),
            400, 'invalid_request_error', 'gzip: a NUL byte inside');
}


# --- bad data ----------------------------------------------------------------

{
    my $g = gz($plain);
    my $corrupt = $g;
    substr($corrupt, 20, 8) = 'XXXXXXXX';

    my @bad = (
        [ 'corrupt gzip',              $corrupt,               'gzip' ],
        [ 'gzip cut short',            substr($g, 0, length($g) - 10),
                                                               'gzip' ],
        [ 'gzip and trailing bytes',   $g . 'trailing',        'gzip' ],
        [ 'plain JSON labelled gzip',  $plain,                 'gzip' ],
        [ 'gzip labelled zstd',        $g,                     'zstd' ],
        [ 'zstd cut short',            substr(zstd_of($plain), 0, 30),
                                                               'zstd' ],
        [ 'zstd labelled deflate',     zstd_of($plain),        'deflate' ],
        [ 'an empty gzip body',        '',                     'gzip' ],
    );

    for my $case (@bad) {
        my ($what, $coded, $enc) = @$case;
        my $r = coded_call($coded, $enc);
        refused($r, 400, 'invalid_request_error', $what);
    }

    my $r = coded_call($corrupt, 'gzip');
    like(($r->{json} // {})->{error}{message} // '', qr/not valid gzip data/,
         'the message says what is wrong');
}


# --- the size limit applies to the decoded body ----------------------------------

{
    # exactly aihub_body_max once decoded, then one byte more
    my $base = body_of();
    my $edge = $base . (' ' x ($MAX - length $base));
    is(length $edge, $MAX, "a body of exactly $MAX bytes");

    passed_plain(coded_call(gz($edge), 'gzip'), $edge,
                 'gzip, exactly aihub_body_max decoded');
    passed_plain(coded_call(zstd_of($edge), 'zstd'), $edge,
                 'zstd, exactly aihub_body_max decoded');

    my $over = $edge . ' ';
    refused(coded_call(gz($over), 'gzip'), 413, 'request_too_large',
            'gzip, one byte over aihub_body_max decoded');
    refused(coded_call(zstd_of($over), 'zstd'), 413, 'request_too_large',
            'zstd, one byte over');

    # bombs: bodies under the limit that decode to 50 MB
    my $huge = $base . (' ' x (50 * 1024 * 1024));
    my $gbomb = gz($huge);
    my $zbomb = zstd_of($huge);
    undef $huge;
    cmp_ok(length $gbomb, '<', $MAX, 'a gzip bomb under aihub_body_max');
    cmp_ok(length $zbomb, '<', $MAX, 'a zstd bomb under aihub_body_max');

    # nothing is decoded before the key is checked: a made-up key with a
    # bomb is a 401, not a 413
    my $r = $t->http(POST => '/v1/chat/completions',
                     key => 'ai-hub-' . ('A' x 38),
                     headers => { 'content-type' => 'application/json',
                                  'content-encoding' => 'gzip' },
                     body => $gbomb);
    is_error($r, 401, 'invalid_api_key', 'a made-up key with a gzip bomb');

    my @pids = $t->nginx_worker_pids;
    my $peak = sub {
        (sort { $b <=> $a }
         map { (Aihub::read_file("/proc/$_/status") // '')
               =~ /^VmHWM:\s+(\d+)/m } @pids)[0] // 0
    };
    my $before = $peak->();

    refused(coded_call($gbomb, 'gzip'), 413, 'request_too_large',
            'a gzip bomb');
    refused(coded_call($zbomb, 'zstd'), 413, 'request_too_large',
            'a zstd bomb');
    is_deeply([ $t->nginx_worker_pids ], \@pids,
              'the worker processes are the same: none died');

    my $grew = $peak->() - $before;
    cmp_ok($grew, '<', 16 * 1024, "decoding the bombs took no more than "
                                  . "16 MB at the peak (kB: $grew)");
}


# --- codings that are not read ----------------------------------------------------

{
    my @cases = (
        [ 'br',              'br',         gz($plain) ],
        [ 'compress',        'compress',   gz($plain) ],
        [ 'gzip twice',      'gzip, gzip', gz(gz($plain)) ],
        [ 'zstd then gzip',  'zstd, gzip', gz(zstd_of($plain)) ],
    );

    for my $case (@cases) {
        my ($what, $enc, $coded) = @$case;
        my $r = coded_call($coded, $enc);
        refused($r, 415, 'unsupported_content_encoding', $what);
        is($r->{headers}{'accept-encoding'}, 'gzip, deflate, zstd',
           "$what: Accept-Encoding names the codings read");
    }

    my $r = coded_call(gz($plain), 'br');
    like(($r->{json} // {})->{error}{message} // '', qr/"br" is not supported/,
         'the message names the coding');

    # two Content-Encoding lines are two codings
    my $n0 = mock_count($t);
    my $s = $t->connect;
    my $coded = gz($plain);
    print $s "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"
             . "Authorization: Bearer $key\r\n"
             . "Content-Type: application/json\r\n"
             . "Content-Encoding: gzip\r\nContent-Encoding: br\r\n"
             . "Content-Length: " . length($coded) . "\r\n"
             . "Connection: close\r\n\r\n$coded";
    my $answer = do { local $/; <$s> } // '';
    like($answer, qr{^HTTP/1\.1 415 .*unsupported_content_encoding}s,
         'two Content-Encoding lines: 415');
    is(mock_count($t) - $n0, 0, 'nothing forwarded');
}

# --- the developer API's key creation reads its body the same way ---------------

{
    my $path = '/api/v1/developer/api-keys';
    my $post = sub {
        my ($coded, $enc) = @_;
        return $t->http(POST => $path, key => $admin,
                        headers => { 'content-type' => 'application/json',
                                     'content-encoding' => $enc },
                        body => $coded);
    };

    my $r = $post->(gz('{"label":"made in gzip"}'), 'gzip');
    is($r->{status}, 201, 'a key created from a gzip body: 201')
        or diag($r->{content});
    is(($r->{json} // {})->{label}, 'made in gzip', 'with the label it held');

    $r = $post->(zstd_of('{"label":"made in zstd"}'), 'zstd');
    is(($r->{json} // {})->{label}, 'made in zstd', 'and from a zstd body');

    is_error($post->(gz('{"label":"x"}'), 'br'), 415,
             'unsupported_content_encoding', 'key creation in br');
    is_error($post->('not gzip', 'gzip'), 400, 'invalid_request_error',
             'key creation from bad gzip data');
}

# one usage event a call answered, none for the refused
ok($t->wait_for(sub { usage_events($t) == $answered }, timeout => 5),
   "$answered calls answered, $answered usage events")
    or diag(scalar(my @e = usage_events($t)) . ' events');

is_deeply([ $t->bad_log_lines ], [], 'no alert, crash or error in the log');

done_testing();
