#!/usr/bin/perl

# Bad input of every kind gets a clear 4xx in the OpenAI error shape:
# never a 500, never a crash or a worker restart, nothing forwarded, nothing
# counted.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);

plan(skip_all => 'module not built') unless Aihub::have_module();

$SIG{PIPE} = 'IGNORE';

my $t = Aihub->new(redis => 1, mock => 1);

seed_models($t);
my $key = seed_full_key($t, account => 1701);

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
    }
END

ok(wait_ready($t, $key), 'catalog loaded');

my @pids = $t->nginx_worker_pids;
is(scalar @pids, 1, 'one worker process');

my $period = 'aihub:period:1701:' . period_id();
my $JSON = JSON::PP->new;


# a raw request: sends $head . $body (the body in pieces, reading the
# answer as it comes), returns { status, headers, body, json }

sub raw {
    my ($head, $body, %o) = @_;

    my $s = $t->connect;
    $s->blocking(0);

    my $out = $head . ($body // '');
    my $in = '';
    my $deadline = time + ($o{timeout} // 10);
    my $sel = IO::Select->new($s);

    while (time < $deadline) {
        if (length $out) {
            my $n = syswrite($s, $out, 65536);
            if (defined $n) {
                substr($out, 0, $n) = '';
            } elsif (!$!{EAGAIN}) {
                $out = '';    # the server closed its side: read the answer
            }
        }

        if ($sel->can_read(length $out ? 0 : 0.5)) {
            my $n = sysread($s, $in, 65536, length $in);
            last if defined $n && $n == 0;
            last if !defined $n && !$!{EAGAIN};
        }

        last if !length $out && $in =~ /\r\n\r\n/ && complete($in);
    }

    my ($h, $b) = split /\r\n\r\n/, $in, 2;
    my ($status) = ($h // '') =~ m{^HTTP/1\.\d (\d+)};
    my %hdr = map { /^([^:]+):\s*(.*)$/ ? (lc $1, $2) : () }
              split /\r\n/, $h // '';
    my $json = eval { $JSON->decode($b // '') };

    return { status => $status // 0, headers => \%hdr, content => $b,
             json => $json };
}

sub complete {
    my ($in) = @_;
    my ($h, $b) = split /\r\n\r\n/, $in, 2;
    return $h =~ /content-length:\s*(\d+)/i ? length($b) >= $1 : 0;
}

sub post_head {
    my (%o) = @_;
    my $h = "POST " . ($o{path} // '/v1/chat/completions') . " HTTP/1.1\r\n"
          . "Host: localhost\r\nConnection: close\r\n"
          . "Authorization: Bearer " . ($o{key} // $key) . "\r\n"
          . "Content-Type: application/json\r\n";
    $h .= "Content-Length: $o{length}\r\n" if defined $o{length};
    $h .= "$_\r\n" for @{ $o{extra} // [] };
    return "$h\r\n";
}


# --- bodies ---------------------------------------------------------------------

my @bodies = (
    [ 'empty body',            '' ],
    [ 'invalid JSON',          '{"model": "test-basic", "messages": [' ],
    [ 'not JSON at all',       'hello, world' ],
    [ 'JSON array',            '[{"model":"test-basic"}]' ],
    [ 'JSON string',           '"test-basic"' ],
    [ 'JSON null',             'null' ],
    [ 'model a number',        '{"model": 42, "messages": []}' ],
    [ 'model an object',       '{"model": {"id": "x"}, "messages": []}' ],
    [ 'model empty',           '{"model": "", "messages": []}' ],
    [ 'missing model',         '{"messages": [{"role":"user","content":"x"}]}' ],
    [ 'messages not an array', '{"model": "test-basic", "messages": "hi"}' ],
    [ 'messages missing',      '{"model": "test-basic"}' ],
    [ 'stream a string',
      '{"model": "test-basic", "messages": [], "stream": "yes"}' ],
    [ 'stream a number',
      '{"model": "test-basic", "messages": [], "stream": 1}' ],
    [ 'stream_options a string',
      '{"model":"test-basic","messages":[],"stream_options":"x"}' ],
    [ 'max_tokens a string',
      '{"model":"test-basic","messages":[],"max_tokens":"100"}' ],
    [ 'max_tokens negative',
      '{"model":"test-basic","messages":[],"max_tokens":-5}' ],
    [ 'max_tokens fractional',
      '{"model":"test-basic","messages":[],"max_tokens":1.5}' ],
    [ 'max_tokens huge',
      '{"model":"test-basic","messages":[],"max_tokens":1e300}' ],
    [ 'max_tokens bad beside a good max_completion_tokens',
      '{"model":"test-basic","messages":[],"max_completion_tokens":16,'
      . '"max_tokens":-7}' ],
    [ 'a UTF-8 byte order mark before the object',
      "\xef\xbb\xbf" . '{"model":"test-basic","messages":[]}' ],
    [ 'trailing garbage',      '{"model":"test-basic","messages":[]} x' ],
    [ 'deep nesting',          '{"model":"test-basic","messages":'
                               . ('[' x 5000) . (']' x 5000) . '}' ],
);

for my $case (@bodies) {
    my ($name, $body) = @$case;
    my $r = $t->http(POST => '/v1/chat/completions', key => $key,
                     headers => { 'content-type' => 'application/json' },
                     body => $body);
    is_error($r, 400, 'invalid_request_error', $name);
}

# a raw NUL inside a string (invalid JSON; cJSON reads the string up to
# it): a clear 4xx either way, and never the provider
{
    my $r = $t->http(POST => '/v1/chat/completions', key => $key,
                     headers => { 'content-type' => 'application/json' },
                     body => "{\"model\":\"test\0basic\",\"messages\":[]}");
    ok($r->{status} == 400 || $r->{status} == 404,
       "raw NUL inside the model string: 400 or 404 (got $r->{status})");
    like($r->{json}{error}{code} // '', qr/^(invalid_request_error|model_not_found)$/,
         'raw NUL: OpenAI error shape');
}

# a model string nobody has: 404, also when absurdly long or odd
is_error($t->chat($key, model => 'x' x 20000), 404, 'model_not_found',
         '20000-character model name');
is_error($t->chat($key, model => "\x{2603}\"\\%s%n"), 404, 'model_not_found',
         'model name with quotes, backslash, format directives, unicode');


# --- sizes -------------------------------------------------------------------------

my $ten_mb = 10 * 1024 * 1024;

# announced, not sent: refused from the header alone
my $t0 = time;
my $r = raw(post_head(length => $ten_mb), '');
is_error($r, 413, 'request_too_large',
         '10 MB announced in Content-Length, body not sent');
like($r->{headers}{'x-request-id'} // '', qr/^[0-9a-f]{32}$/,
     'nginx\'s own 413 carries a request id too');
cmp_ok(time - $t0, '<', 2, 'answered without waiting for the body');

# announced and sent
$r = raw(post_head(length => $ten_mb),
         '{"model":"test-basic","messages":[{"role":"user","content":"'
         . ('a' x ($ten_mb - 100)) . '"}]}' . (' ' x 42), timeout => 20);
is_error($r, 413, 'request_too_large', '10 MB body sent in full');

# chunked, no Content-Length: refused when the limit is passed
my $chunk = 'a' x 65536;
my $chunked = join '', map { sprintf("%x\r\n%s\r\n", length $chunk, $chunk) }
                       1 .. 32;
$r = raw(post_head(extra => [ 'Transfer-Encoding: chunked' ]),
         $chunked . "0\r\n\r\n", timeout => 20);
cmp_ok($r->{status}, '==', 413, '2 MB chunked body: 413');
is($r->{json}{error}{code}, 'request_too_large',
   'chunked: request_too_large in the OpenAI shape')
    or diag($r->{content});

# a body shorter than announced: the client times out, not us (nginx 408
# or close); a body longer than announced is simply the next request
$r = raw(post_head(length => 10) . '{"model":"', '', timeout => 2);
ok($r->{status} == 0 || $r->{status} == 408 || $r->{status} == 400,
   'short body: no answer, or a 4xx (got ' . $r->{status} . ')');

# a valid request larger than nginx's body buffer (16k) but within
# aihub_body_max (1 MB): served
my $big = $t->chat($key, model => 'test-basic', content => 'word ' x 40000);
is($big->{status}, 200, '200 kB chat body (within aihub_body_max): 200')
    or diag($big->{content});


# --- headers -------------------------------------------------------------------

my @headers = (
    [ 'Authorization with a control character',
      [ "Authorization: Bearer ai-hub-\x01" . ('A' x 37) ] ],
    [ 'Authorization with DEL and high bytes',
      [ "Authorization: Bearer \x7f\xff\xfe" ] ],
    [ 'x-api-key with a control character',
      [ "x-api-key: \x02\x03" ] ],
);

for my $case (@headers) {
    my ($name, $h) = @$case;
    my $head = "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"
             . "Connection: close\r\nContent-Type: application/json\r\n"
             . "Content-Length: 2\r\n" . join('', map { "$_\r\n" } @$h)
             . "\r\n";
    $r = raw($head, '{}');
    is_error($r, 401, 'invalid_api_key', $name);
}

# a key with a control character in an otherwise valid header, next to the
# real key: the control character one wins and is refused
$r = raw("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
         . "Connection: close\r\nAuthorization: Bearer $key\x01\r\n"
         . "Content-Length: 2\r\n\r\n", '{}');
is_error($r, 401, 'invalid_api_key', 'valid key plus a control character');

# nginx itself refuses a NUL in a header: a 400 from nginx, no crash
$r = raw("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
         . "Connection: close\r\nAuthorization: Bearer a\0b\r\n"
         . "Content-Length: 2\r\n\r\n", '{}');
is($r->{status}, 400, 'NUL in a header: 400 (nginx)');

# Authorization: Basic
is_error($t->http(POST => '/v1/chat/completions',
                  headers => { authorization => 'Basic dTpw' },
                  body => { model => 'test-basic', messages => [] }),
         401, 'invalid_api_key', 'Authorization: Basic');

# an 8 kB Authorization header
is_error($t->http(POST => '/v1/chat/completions',
                  headers => { authorization => 'Bearer ' . ('A' x 7000) },
                  body => { model => 'test-basic', messages => [] }),
         401, 'invalid_api_key', '7000-character Bearer value');


# --- methods and paths ---------------------------------------------------------

is_error($t->http(GET => '/v1/chat/completions', key => $key), 405,
         'method_not_allowed', 'GET /v1/chat/completions');
is_error($t->http(PUT => '/v1/chat/completions', key => $key, body => '{}'),
         405, 'method_not_allowed', 'PUT /v1/chat/completions');
is_error($t->http(DELETE => '/api/v1/developer/usage', key => $key), 405,
         'method_not_allowed', 'DELETE /api/v1/developer/usage');
# (the legacy completions endpoint: /v1/embeddings is served now)
is_error($t->http(POST => '/v1/completions', key => $key,
                  body => { model => 'test-basic', prompt => 'x' }),
         404, 'unknown_url', 'POST /v1/completions');
is_error($t->http(GET => '/api/v1/developer/nothing', key => $key), 404,
         'unknown_url', 'GET /api/v1/developer/nothing');
is_error($t->http(GET => '/v1/chat/completions/../../v1/models/x',
                  key => $key), 404, 'unknown_url', 'dot segments');

# without a key the path is not even looked at
is_error($t->http(POST => '/v1/completions', body => '{}'), 401,
         'invalid_api_key', 'unknown path without a key: 401 first');


# --- nothing broke, nothing was forwarded or counted ----------------------------

is(mock_count($t), 1, 'only the one valid (200 kB) request was forwarded');
is($t->redis('HGET', $period, 'calls') // 0, $big->{status} == 200 ? 1 : 0,
   'nothing rejected was counted');
is_deeply([ $t->nginx_worker_pids ], \@pids,
          'the same nginx worker process as at the start: no crash');
unlike($t->error_log, qr/exited on signal|worker process \d+ exited/,
       'no worker process exited');

$r = $t->chat($key, model => 'test-basic');
is($r->{status}, 200, 'and a good request still works');

# a valid chunked body in two chunks is read, joined and served (the
# joined buffers end with nginx's empty last buffer, whose pos is NULL:
# copying it was memcpy(dst, NULL, 0), which only ./build.sh test-asan
# (UBSan) can see)
my $doc = '{"model":"test-basic","messages":[{"role":"user","content":"hi"}]}';
my $half = int(length($doc) / 2);
$r = raw(post_head(extra => [ 'Transfer-Encoding: chunked' ]),
         sprintf("%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n",
                 $half, substr($doc, 0, $half),
                 length($doc) - $half, substr($doc, $half)),
         timeout => 20);
is($r->{status}, 200, 'a chat body in two chunks: 200')
    or diag($r->{content});

$t->done;
