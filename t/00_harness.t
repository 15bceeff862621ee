#!/usr/bin/perl

# The test fixtures themselves: the mock provider's wire format and
# controls, the Redis and MariaDB helpers, and the stock nginx driven by the
# harness without our module.  Needs neither the module nor the worker.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use Aihub;
use AihubStream qw(usage_events usage_event_count);

my $t = Aihub->new(redis => 1, mariadb => 1, mock => 1);
my $mock = "http://127.0.0.1:" . $t->mock_port;
my $auth = { authorization => 'Bearer ' . $t->mock_key };

sub mock {
    my (%o) = @_;

    my $body = {
        model    => $o{model} // 'mock-basic',
        messages => $o{messages} // [
            { role => 'system', content => 'You are helpful.' },  # 16 chars
            { role => 'user', content => 'hello world!!' },       # 13 chars
        ],
    };
    $body->{stream} = JSON::PP::true if $o{stream};
    $body->{stream_options} = { include_usage => JSON::PP::true }
        if $o{include_usage};

    return $t->http(POST => '/v1/chat/completions', port => $t->mock_port,
                    headers => { %{ $o{noauth} ? {} : $auth },
                                 %{ $o{headers} // {} } },
                    body => $body);
}

# prompt tokens: ceil((16 + 13) / 4) + 2 * 3 = 14

my $r = mock(model => 'some-model');
is($r->{status}, 200, 'chat: 200');
like($r->{headers}{'content-type'}, qr{^application/json}, 'chat: json');
is($r->{json}{object}, 'chat.completion', 'chat: object');
is($r->{json}{model}, 'some-model', 'chat: model echoed');
like($r->{json}{id}, qr/^chatcmpl-/, 'chat: id');
is($r->{json}{choices}[0]{message}{role}, 'assistant', 'chat: role');
is($r->{json}{choices}[0]{message}{content}, join(' ', ('tok') x 7),
   'chat: 7 words by default');
is($r->{json}{choices}[0]{finish_reason}, 'stop', 'chat: finish_reason');
is_deeply($r->{json}{usage}, { prompt_tokens => 14, completion_tokens => 7,
                               total_tokens => 21 }, 'chat: usage formula');

$r = mock(messages => [ { role => 'user', content => 'abcd' } ],
          headers => { 'x-mock-completion-tokens' => 3 });
is_deeply($r->{json}{usage}, { prompt_tokens => 4, completion_tokens => 3,
                               total_tokens => 7 },
          'chat: 4 chars, 1 message, 3 completion tokens');
is($r->{json}{choices}[0]{message}{content}, 'tok tok tok',
   'chat: completion words follow the header');

$r = mock(messages => [ { role => 'user',
                          content => [ { type => 'text', text => 'abcde' } ] }
                      ]);
is($r->{json}{usage}{prompt_tokens}, 2 + 3, 'chat: array content counted');

$r = mock(headers => { 'x-mock-total-extra' => 5 });
is($r->{json}{usage}{total_tokens}, 26, 'total-extra: total > sum');

$r = mock(headers => { 'x-mock-no-usage' => 1 });
is($r->{status}, 200, 'no-usage: 200');
ok($r->{json} && !exists $r->{json}{usage}, 'no-usage: no usage member');

$r = mock(headers => { 'x-mock-size' => 100000 });
is(length $r->{json}{choices}[0]{message}{content}, 100000,
   'size: content padded');

$r = mock(headers => { 'x-mock-garbage' => 1 });
is($r->{status}, 200, 'garbage: 200');
ok(!defined eval { JSON::PP->new->decode($r->{content}) },
   'garbage: body is not JSON');

# authentication

$r = mock(noauth => 1);
is($r->{status}, 401, 'no key: 401');
is($r->{json}{error}{code}, 'invalid_api_key', 'no key: OpenAI error');
ok(exists $r->{json}{error}{param} && exists $r->{json}{error}{type},
   'no key: error has type and param');

$r = mock(noauth => 1, headers => { authorization => 'Bearer ai-hub-x' });
is($r->{status}, 401, 'wrong key: 401');

# errors on demand

for my $status (429, 500, 503) {
    $r = mock(headers => { 'x-mock-status' => $status });
    is($r->{status}, $status, "x-mock-status $status");
    ok($r->{json}{error}{message}, "x-mock-status $status: error JSON");
}
is(mock(headers => { 'x-mock-status' => 429 })->{json}{error}{code},
   'rate_limit_exceeded', '429 code');

$r = mock(messages => [ { role => 'user', content => 'first' },
                        { role => 'assistant', content => 'mock:status=500' },
                        { role => 'user', content => 'hi mock:status=503' } ]);
is($r->{status}, 503, 'controls in the last user message');

$r = mock(messages => [ { role => 'user', content => 'mock:status=500' },
                        { role => 'user', content => 'plain' } ]);
is($r->{status}, 200, 'only the last user message counts');

# delays: the slow one does not hold up the others

my $slow = IO::Socket::IP->new(PeerHost => '127.0.0.1',
                               PeerPort => $t->mock_port) or die;
my $req = '{"model":"m","messages":[{"role":"user","content":"x"}]}';
print $slow "POST /v1/chat/completions HTTP/1.1\r\nHost: m\r\n"
    . "Authorization: Bearer " . $t->mock_key . "\r\n"
    . "x-mock-delay-ms: 600\r\nContent-Length: " . length($req)
    . "\r\n\r\n$req";
my $start = time;

$r = mock();
ok($r->{elapsed} < 0.4, 'a request is not blocked by a slow one');

my $reply = read_until_closed_or($slow, qr/"total_tokens":\d+\}\}/, 5);
ok(time - $start >= 0.55, 'delay-ms: answer after the delay');
like($reply, qr/^HTTP\/1.1 200/, 'delay-ms: then 200');

# keep-alive and a chunked request body on one connection

print $slow "POST /v1/chat/completions HTTP/1.1\r\nHost: m\r\n"
    . "Authorization: Bearer " . $t->mock_key . "\r\n"
    . "Transfer-Encoding: chunked\r\n\r\n"
    . sprintf("%x\r\n%s\r\n", 10, substr($req, 0, 10))
    . sprintf("%x\r\n%s\r\n0\r\n\r\n", length($req) - 10, substr($req, 10));
$reply = read_until_closed_or($slow, qr/"total_tokens":\d+\}\}/, 5);
like($reply, qr/^HTTP\/1.1 200.*"prompt_tokens":4,/s,
     'keep-alive: second request with a chunked body');
close $slow;

# streaming

$r = mock(stream => 1);
like($r->{headers}{'content-type'}, qr{^text/event-stream},
     'stream: content type');
my @ev = @{ $r->{events} };
is(scalar @ev, 7 + 1 + 1, 'stream: 7 words, final chunk, [DONE]');
is($ev[-1], '[DONE]', 'stream: ends with [DONE]');
is($ev[0]{object}, 'chat.completion.chunk', 'stream: chunk object');
is(join('', map { ref $_ ? $_->{choices}[0]{delta}{content} // '' : '' }
                @ev), join(' ', ('tok') x 7), 'stream: content');
is($ev[-2]{choices}[0]{finish_reason}, 'stop', 'stream: finish_reason');
ok(!grep({ ref $_ && $_->{usage} } @ev), 'stream: no usage unless asked');

$r = mock(stream => 1, include_usage => 1);
@ev = @{ $r->{events} };
is(scalar @ev, 7 + 1 + 1 + 1, 'include_usage: one more event');
is_deeply($ev[-2]{choices}, [], 'include_usage: usage chunk, choices []');
is_deeply($ev[-2]{usage}, { prompt_tokens => 14, completion_tokens => 7,
                            total_tokens => 21 },
          'include_usage: same numbers as non-streaming');
is($ev[-1], '[DONE]', 'include_usage: then [DONE]');

$r = mock(stream => 1, include_usage => 1,
          headers => { 'x-mock-choices-null' => 1 });
ok(exists $r->{events}[-2]{choices} && !defined $r->{events}[-2]{choices},
   'choices-null: "choices": null');

$r = mock(stream => 1, include_usage => 1,
          headers => { 'x-mock-no-usage' => 1 });
ok(!grep({ ref $_ && $_->{usage} } @{ $r->{events} }),
   'no-usage: no usage chunk even if asked');

$start = time;
$r = mock(stream => 1, headers => { 'x-mock-chunk-delay-ms' => 50 });
ok(time - $start >= 0.4, 'chunk-delay-ms: 8 gaps of 50 ms');

# cut-after: N events, then the connection ends without the last chunk

my $s = IO::Socket::IP->new(PeerHost => '127.0.0.1',
                            PeerPort => $t->mock_port) or die;
$req = '{"model":"m","stream":true,"messages":[{"role":"user",'
     . '"content":"x"}]}';
print $s "POST /v1/chat/completions HTTP/1.1\r\nHost: m\r\n"
    . "Authorization: Bearer " . $t->mock_key . "\r\n"
    . "x-mock-cut-after: 2\r\nContent-Length: " . length($req)
    . "\r\n\r\n$req";
$reply = read_until_closed_or($s, qr/^(?!)/, 5);
my @data = $reply =~ /^data: /mg;
is(scalar @data, 2, 'cut-after 2: two events');
unlike($reply, qr/\[DONE\]/, 'cut-after: no [DONE]');
unlike($reply, qr/\r\n0\r\n\r\n$/, 'cut-after: no last chunk');

# models

$r = $t->http(GET => '/v1/models', port => $t->mock_port, headers => $auth);
is($r->{json}{object}, 'list', 'models: list');
ok((grep { $_->{id} eq 'mock-basic' } @{ $r->{json}{data} }),
   'models: mock-basic listed');
is($t->http(GET => '/v1/models', port => $t->mock_port)->{status}, 401,
   'models: key required');

# the log: one line per request, written before the answer

my @log = $t->mock_log;
my $n = () = grep { $_->{path} } @log;
ok($n >= 25, "log: $n entries");

my ($first) = @log;
is($first->{authorization}, 'Bearer ' . $t->mock_key,
   'log: authorization as received');
is($first->{headers}{'content-type'}, 'application/json',
   'log: lowercased headers');
like($first->{body}, qr/"model":"some-model"/, 'log: raw body');
is($first->{status}, 200, 'log: status');
is($first->{usage}{total_tokens}, 21, 'log: usage sent');
ok(!$first->{streamed}, 'log: not streamed');

my ($streamed) = grep { $_->{streamed} && $_->{usage} } @log;
ok($streamed, 'log: a streamed entry with usage');
my ($noauth) = grep { ($_->{status} // 0) == 401 } @log;
ok($noauth && !defined $noauth->{authorization},
   'log: missing authorization is null');

my $before = () = $t->mock_log;
mock();
my $after = () = $t->mock_log;
is($after, $before + 1, 'log: readable at once after the answer');

# Redis helper

is($t->redis('PING'), 'PONG', 'redis: PING');
is($t->redis('SET', 'k', "a\r\nb"), 'OK', 'redis: SET');
is($t->redis('GET', 'k'), "a\r\nb", 'redis: binary-safe GET');
is($t->redis('GET', 'nope'), undef, 'redis: nil');
is($t->redis('INCRBY', 'n', 5), 5, 'redis: integer');
$t->redis('HSET', 'h', 'a', 1, 'b', 2);
is_deeply({ @{ $t->redis('HGETALL', 'h') } }, { a => 1, b => 2 },
          'redis: array reply');
my $id = $t->redis('XADD', 's', '*', 'event', '{"x":1}');
is_deeply($t->redis('XRANGE', 's', '-', '+'),
          [ [ $id, [ 'event', '{"x":1}' ] ] ], 'redis: nested arrays');
ok(!eval { $t->redis('NOSUCHCOMMAND'); 1 }, 'redis: error reply dies');
like($@, qr/^redis: ERR/, 'redis: error message');
is($t->redis('PING'), 'PONG', 'redis: usable after an error');

# the usage events: an entry carries one or more, each its own "event"
# field or a line of an "events" field, in order; other fields are not
# events

$t->redis('XADD', 'aihub:usage', '*', 'event', '{"id":"a"}');
$t->redis('XADD', 'aihub:usage', '*', 'event', '{"id":"b"}',
          'event', '{"id":"c"}', 'note', 'x', 'event', '{"id":"d"}');
$t->redis('XADD', 'aihub:usage', '*', 'events', qq({"id":"e"}\n{"id":"f"}),
          'event', '{"id":"g"}');
is(usage_event_count($t), 7, 'usage_event_count: 7 events in 3 entries');
is_deeply([ map { $_->{id} } usage_events($t) ], [qw(a b c d e f g)],
          'usage_events: every event of every entry, in order');
is_deeply([ usage_events($t, raw => 1) ],
          [ map { qq({"id":"$_"}) } qw(a b c d e f g) ],
          'usage_events raw => 1: as written');
$t->redis('DEL', 'aihub:usage');
is(usage_event_count($t), 0, 'usage_event_count: no stream, 0');

$t->redis_nowait('DEBUG', 'SLEEP', '0.5');
sleep 0.1;
$start = time;
$t->redis('PING');
ok(time - $start >= 0.3, 'redis_nowait: DEBUG SLEEP freezes the server');

# MariaDB helper

$t->sql('CREATE TABLE t1 (id INT PRIMARY KEY, s VARCHAR(50), n INT)');
$t->sql(q{INSERT INTO t1 VALUES (1, 'tab\there', NULL), (2, 'x\ny', 7)});
is_deeply([ $t->sql('SELECT id, s, n FROM t1 ORDER BY id') ],
          [ [ 1, "tab\there", undef ], [ 2, "x\ny", 7 ] ],
          'sql: rows, escapes and NULL');
is($t->sql_value('SELECT COUNT(*) FROM t1'), 2, 'sql_value');
is($t->sql_value('SELECT id FROM t1 WHERE id = 9'), undef,
   'sql_value: no row');
ok(!eval { $t->sql('SELECT * FROM nosuch'); 1 }, 'sql: error dies');
like($@, qr/nosuch/, 'sql: error message names the table');

# nginx driven by the harness (stock nginx, without the module)

$t->nginx(<<'END', no_module => 1);
    server {
        listen 127.0.0.1:%%PORT%%;
        location = /plain { return 200 "plain\n"; }
        location /mock/ { proxy_pass %%MOCK_URL%%/; }
    }
END

my ($ok, $out) = $t->nginx_test;
ok($ok, 'nginx -t: valid config') or diag($out);

$t->start_nginx;
$r = $t->http(GET => '/plain');
is($r->{content}, "plain\n", 'nginx: plain location');
$r = $t->http(GET => '/mock/models', headers => $auth);
is($r->{json}{object}, 'list', 'nginx: proxied to the mock');

my @w1 = $t->nginx_worker_pids;
is(scalar @w1, 1, 'nginx: one worker process');
$t->reload_nginx;
my @w2 = $t->nginx_worker_pids;
ok(@w2 == 1 && $w2[0] != $w1[0], 'reload: a new worker process');
is($t->http(GET => '/plain')->{status}, 200, 'reload: still answers');

$t->nginx(<<'END', name => 'bad', no_module => 1);
    server {
        listen 127.0.0.1:%%PORT%%;
        limit_rate fast;
    }
END
($ok, $out) = $t->nginx_test('bad');
ok(!$ok, 'nginx -t: bad config refused');
like($out, qr/nginx\.conf:\d+/, 'nginx -t: names the line');

# the error log check finds alerts, and honours the whitelist

$t->nginx("", name => 'fake', no_module => 1);
open my $fh, '>>', $t->nginx_dir('fake') . '/error.log' or die;
print $fh "2026/01/01 00:00:00 [alert] 1#1: something bad\n";
print $fh "2026/01/01 00:00:00 [error] 1#1: just an error\n";
close $fh;
is_deeply([ $t->bad_log_lines('fake') ],
          [ '2026/01/01 00:00:00 [alert] 1#1: something bad' ],
          'log check: the [alert] line, not the [error] one');
$t->allow_log(qr/something bad/);
is(scalar(() = $t->bad_log_lines('fake')), 0, 'log check: whitelisted');
like(join("\n", $t->bad_log_lines('bad')), qr/\[emerg\].*limit_rate/,
     'log check: nginx -t wrote [emerg] to the log');

# helpers

is($t->wait_for(sub { 0 }, timeout => 0.2), undef, 'wait_for: times out');
my $k = 0;
is($t->wait_for(sub { ++$k >= 3 && 'yes' }), 'yes', 'wait_for: polls');

my $mock_port = $t->mock_port;
$t->stop_mock;
ok(!Aihub::port_open($mock_port), 'stop_mock: port closed');

$t->done;


sub read_until_closed_or {
    my ($sock, $re, $timeout) = @_;

    my $buf = '';
    my $sel = IO::Select->new($sock);
    my $deadline = time + $timeout;

    while (time < $deadline && $buf !~ $re) {
        last unless $sel->can_read($deadline - time);
        my $n = sysread($sock, $buf, 65536, length $buf);
        last unless $n;
    }

    return $buf;
}
