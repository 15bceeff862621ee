#!/usr/bin/perl

# The developer endpoints the module serves itself: usage of the current
# period, the chat alias, and API key management with an admin key (create
# once, list masked, revoke within 1 s), each change queued on the admin
# stream for the worker.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);

plan(skip_all => 'module not built') unless Aihub::have_module();

my $t = Aihub->new(redis => 1, mock => 1);

seed_models($t);
my $admin = seed_full_key($t, account => 1801, plan => 'pro', models => '*',
                          scopes => 'chat,admin', included => 100,
                          overage => 1, rpm => 60, tpm => 50000,
                          max_tokens => 4096, spend_cap => 5000000);
my $chat_only = seed_full_key($t, account => 1801, plan => 'pro',
                              models => '*', scopes => 'chat');
my $other = seed_full_key($t, account => 1802, scopes => 'chat,admin');

# two nodes with the same configuration
my $HTTP = <<'END';
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

$t->nginx($HTTP)->start_nginx;
$t->nginx($HTTP, name => 'n2')->start_nginx('n2');
ok(wait_ready($t, $admin), 'catalog loaded');
ok(wait_ready($t, $admin, name => 'n2'), 'n2: catalog loaded');


# --- usage ----------------------------------------------------------------------

my $u = $t->http(GET => '/api/v1/developer/usage', key => $admin);
is($u->{status}, 200, 'usage: 200 before any call');
is($u->{json}{calls}{used}, 0, 'usage: 0 calls');
is($u->{json}{calls}{included}, 100, 'usage: 100 included');

# three calls with known token counts; the mock counts
# prompt = ceil(chars / 4) + 3 per message
my @calls = (
    [ 'test-basic',   'abcd',     3 ],    # prompt 4, completion 3
    [ 'test-basic',   'abcdefgh', 5 ],    # prompt 5, completion 5
    [ 'test-premium', 'abcd',     10 ],   # prompt 4, completion 10
);
my ($p, $c, $cost) = (0, 0, 0);

for my $call (@calls) {
    my ($model, $text, $n) = @$call;
    my $r = $t->chat($admin, model => $model, content => $text,
                     headers => { 'x-mock-completion-tokens' => $n });
    is($r->{status}, 200, "call $model/$n: 200");
    $p += $r->{json}{usage}{prompt_tokens};
    $c += $r->{json}{usage}{completion_tokens};
    my $m = $MODELS{$model};
    $cost += $r->{json}{usage}{prompt_tokens} * $m->{price_in} / 1e6
             + $r->{json}{usage}{completion_tokens} * $m->{price_out} / 1e6;
}
is_deeply([ $p, $c ], [ 13, 18 ], 'the mock counted 13 prompt, 18 '
                                  . 'completion tokens');

# the period counters are settled in the log phase: poll briefly
ok($t->wait_for(sub {
    my $r = $t->http(GET => '/api/v1/developer/usage', key => $admin);
    ($r->{json}{tokens}{total} // 0) == 31;
}), 'usage reflects the calls');

$u = $t->http(GET => '/api/v1/developer/usage', key => $admin);
my $j = $u->{json};
is($j->{object}, 'usage', 'usage: object');
is($j->{account}, 1801, 'usage: account');
is($j->{plan}, 'pro', 'usage: plan');
is($j->{calls}{used}, 3, 'usage: 3 calls');
is($j->{calls}{remaining}, 97, 'usage: 97 remaining');
ok($j->{calls}{overage_allowed}, 'usage: overage allowed');
is($j->{tokens}{prompt}, 13, 'usage: prompt tokens as the mock counted');
is($j->{tokens}{completion}, 18, 'usage: completion tokens');
is($j->{tokens}{total}, 31, 'usage: total tokens');
# 4*1 + 3*2 + 5*1 + 5*2 + 4*10 + 10*30 = 365 micro-dollars
is($cost, 365, 'expected cost 365 micro-dollars');
is($j->{cost}{micros}, 365, 'usage: cost in micro-dollars');
is($j->{cost}{usd}, '0.000365', 'usage: cost in dollars');
is_deeply($j->{limits}, { requests_per_minute => 60,
                          tokens_per_minute => 50000, max_tokens => 4096,
                          spend_cap_micros => 5000000 }, 'usage: limits');
like($j->{period}{start}, qr/^\w{3}, 01 \w{3} \d{4} 00:00:00 GMT$/,
     'usage: period starts on the 1st');
ok($j->{period}{end_unix} > time && $j->{period}{start_unix} <= time,
   'usage: now is inside the period');
is($j->{resets_at}, $j->{period}{end}, 'usage: resets at the period end');

# the other key of the account sees the same account usage
is($t->http(GET => '/api/v1/developer/usage', key => $chat_only)
       ->{json}{calls}{used}, 3, 'usage is per account');
is($t->http(GET => '/api/v1/developer/usage', key => $other)
       ->{json}{calls}{used}, 0, 'another account: 0');


# --- /api/v1/developer/chat ----------------------------------------------------------

my $n = mock_count($t);
my $r = $t->chat($admin, model => 'test-basic',
                 path => '/api/v1/developer/chat');
is($r->{status}, 200, 'developer/chat: 200');
is($r->{json}{object}, 'chat.completion', 'developer/chat: a completion');
my ($seen) = mock_since($t, $n);
is($seen->{path}, '/v1/chat/completions',
   'developer/chat: the provider got /v1/chat/completions');
is(JSON::PP->new->decode($seen->{body})->{model}, 'mock-basic',
   'developer/chat: model rewritten');
is($seen->{authorization}, 'Bearer ' . $t->mock_key,
   'developer/chat: provider credential');
is_error($t->chat($chat_only, model => 'no-such',
                  path => '/api/v1/developer/chat'),
         404, 'model_not_found', 'developer/chat: same checks');

# an SDK whose base URL is /api/v1/developer asks for .../chat/completions
$n = mock_count($t);
$r = $t->chat($admin, model => 'test-basic',
              path => '/api/v1/developer/chat/completions');
is($r->{status}, 200, 'developer/chat/completions (an SDK\'s base URL '
                      . '/api/v1/developer): 200');
($seen) = mock_since($t, $n);
is($seen->{path}, '/v1/chat/completions',
   'developer/chat/completions: the provider got /v1/chat/completions');


# --- api-keys: scope --------------------------------------------------------------

for my $m (qw(GET POST)) {
    is_error($t->http($m => '/api/v1/developer/api-keys', key => $chat_only,
                      ($m eq 'POST' ? (body => {}) : ())),
             403, 'insufficient_scope', "$m api-keys with a chat-only key");
}
is_error($t->http(DELETE => '/api/v1/developer/api-keys/'
                            . Aihub::key_prefix($admin), key => $chat_only),
         403, 'insufficient_scope', 'DELETE api-keys with a chat-only key');

is($t->redis('XLEN', 'aihub:admin'), 0, 'nothing on the admin stream yet');


# --- create ------------------------------------------------------------------------

$r = $t->http(POST => '/api/v1/developer/api-keys', key => $admin,
              body => { label => 'ci "runner"', scopes => [ 'chat' ] });
is($r->{status}, 201, 'create: 201');
my $new = $r->{json}{key};
like($new // '', qr/^ai-hub-[0-9A-Za-z]{38}$/, 'create: the full key, once');
is($r->{json}{prefix}, Aihub::key_prefix($new // ''), 'create: its prefix');
is($r->{json}{scopes}, 'chat', 'create: scopes');
is($r->{json}{label}, 'ci "runner"', 'create: label');

my $rec = { @{ $t->redis('HGETALL', 'aihub:key:' . Aihub::key_hash($new)) } };
is($rec->{account}, 1801, 'create: same account');
is($rec->{plan}, 'pro', 'create: same plan');
is($rec->{status}, 'active', 'create: active');
ok(!grep({ /\Q$new\E/ } values %$rec), 'create: the key itself is not stored');

$r = $t->chat($new, model => 'test-premium');
is($r->{status}, 200, 'the new key works at once for chat');
is($t->chat($new, model => 'test-basic', name => 'n2')->{status}, 200,
   'and on the other node');
is_error($t->http(GET => '/api/v1/developer/api-keys', key => $new), 403,
         'insufficient_scope', 'the new chat key cannot manage keys');

my $ev = $t->redis('XRANGE', 'aihub:admin', '-', '+');
is(scalar @$ev, 1, 'create: one admin stream entry');
my %f = @{ $ev->[0][1] };
my $e = JSON::PP->new->decode($f{event});
is($e->{type}, 'key.created', 'admin event: key.created');
is($e->{account}, 1801, 'admin event: account');
is($e->{hash}, Aihub::key_hash($new), 'admin event: the hash');
is($e->{prefix}, Aihub::key_prefix($new), 'admin event: the prefix');
is($e->{label}, 'ci "runner"', 'admin event: the label, JSON-escaped');
unlike($f{event}, qr/\Q$new\E/, 'admin event: never the key');

# bad create bodies
for my $case ([ 'not JSON', 'nope' ], [ 'array', '[]' ],
              [ 'label a number', '{"label": 5}' ],
              [ 'unknown scope', '{"scopes": ["root"]}' ],
              [ 'scopes a string', '{"scopes": "chat"}' ],
              # read as the chat endpoints read bodies: before, each of
              # these was 201 (the first "scopes" won, the rest let go)
              [ 'scopes twice', '{"scopes":["chat"],"scopes":["admin"]}' ],
              [ 'label twice, escaped', '{"label":"a","l\u0061bel":"b"}' ],
              [ 'bytes after the object', '{"label":"a"} trailing {' ],
              [ 'a byte order mark', "\xef\xbb\xbf" . '{"label":"a"}' ],
              # a label with control characters, printed by the
              # operator's "key list", forged rows or cleared the screen
              [ 'a label with a line feed', '{"label":"ci\r\nai-hub-FAKE"}' ],
              [ 'a label with ESC', '{"label":"ci\u001b[2J"}' ],
              [ 'a label with DEL', '{"label":"ci\u007f"}' ]) {
    is_error($t->http(POST => '/api/v1/developer/api-keys', key => $admin,
                      headers => { 'content-type' => 'application/json' },
                      body => $case->[1]),
             400, 'invalid_request_error', "create, $case->[0]");
}
$r = $t->http(POST => '/api/v1/developer/api-keys', key => $admin,
              headers => { 'content-type' => 'application/json' },
              body => '{"label":"ci\u001b[2J"}');
like($r->{json}{error}{message} // '', qr/"label" must be printable text/,
     'create, a control character: the message says what is wrong');
is($t->redis('XLEN', 'aihub:admin'), 1, 'refused creates wrote nothing');

# an admin key with no body: a chat key
$r = $t->http(POST => '/api/v1/developer/api-keys', key => $admin);
is($r->{status}, 201, 'create without a body: 201');
my $second = $r->{json}{key};


# --- list --------------------------------------------------------------------------

# the chat-only key expired a minute ago: its record still says "active"
# (before, so did the list, of a key that gets 401)
my $expired_at = int(time) - 60;
$t->redis('HSET', 'aihub:key:' . Aihub::key_hash($chat_only), 'expires',
          $expired_at);

$r = $t->http(GET => '/api/v1/developer/api-keys', key => $admin);
is($r->{status}, 200, 'list: 200');
is($r->{json}{object}, 'list', 'list: list shape');
my %listed = map { $_->{prefix} => $_ } @{ $r->{json}{data} };
is_deeply([ sort keys %listed ],
          [ sort map { Aihub::key_prefix($_) }
                 $admin, $chat_only, $new, $second ],
          'list: exactly the four keys of the account');
for my $full ($admin, $chat_only, $new, $second, $other) {
    unlike($r->{content}, qr/\Q$full\E/, 'list: no full key');
    unlike($r->{content}, qr/\Q${\ Aihub::key_hash($full)}\E/,
           'list: no key hash');
}
like($listed{ Aihub::key_prefix($new) }{masked}, qr/^ai-hub-\w{8}\.\.\.$/,
     'list: masked form');
is($listed{ Aihub::key_prefix($new) }{label}, 'ci "runner"', 'list: label');
is($listed{ Aihub::key_prefix($admin) }{scopes}, 'chat,admin',
   'list: scopes');
is($listed{ Aihub::key_prefix($chat_only) }{status}, 'expired',
   'list: a key past its expiry says "expired"');
is($listed{ Aihub::key_prefix($chat_only) }{expires}, $expired_at,
   'list: and when');
is($listed{ Aihub::key_prefix($admin) }{status}, 'active',
   'list: a key without expiry is active');
is($listed{ Aihub::key_prefix($admin) }{expires}, 0, 'list: expires 0, never');
$t->redis('HSET', 'aihub:key:' . Aihub::key_hash($chat_only), 'expires', 0);


# --- revoke -------------------------------------------------------------------------

is_error($t->http(DELETE => '/api/v1/developer/api-keys/'
                            . Aihub::key_prefix($other), key => $admin),
         404, 'key_not_found', 'revoke a key of another account: 404');
is($t->chat($other, model => 'test-basic')->{status}, 200,
   'and that key still works');
is_error($t->http(DELETE => '/api/v1/developer/api-keys/nonsense',
                  key => $admin), 404, 'key_not_found',
         'revoke a malformed prefix');
is_error($t->http(DELETE => '/api/v1/developer/api-keys', key => $admin),
         405, 'method_not_allowed', 'DELETE without a prefix');

my $start = time;
$r = $t->http(DELETE => '/api/v1/developer/api-keys/'
                        . Aihub::key_prefix($new), key => $admin);
is($r->{status}, 200, 'revoke: 200');
is($r->{json}{status}, 'revoked', 'revoke: status revoked');

my %gone;
while (time - $start < 3 && keys %gone < 2) {
    for my $node (grep { !$gone{$_} } qw(nginx n2)) {
        $gone{$node} = time - $start
            if $t->chat($new, model => 'test-basic', name => $node)
                   ->{status} == 401;
    }
    sleep 0.02;
}
for my $node (qw(nginx n2)) {
    ok(defined $gone{$node} && $gone{$node} < 1,
       sprintf('revoked key: 401 on %s within 1 s (%s)', $node,
               defined $gone{$node} ? sprintf('%.3f s', $gone{$node})
                                    : 'never'));
}

is($t->chat($second, model => 'test-basic')->{status}, 200,
   'the other new key still works');

$ev = $t->redis('XRANGE', 'aihub:admin', '-', '+');
is(scalar @$ev, 3, 'admin stream: create, create, revoke');
%f = @{ $ev->[2][1] };
$e = JSON::PP->new->decode($f{event});
is($e->{type}, 'key.revoked', 'admin event: key.revoked');
is($e->{prefix}, Aihub::key_prefix($new), 'admin event: the prefix');
is($e->{account}, 1801, 'admin event: the account');

$r = $t->http(GET => '/api/v1/developer/api-keys', key => $admin);
%listed = map { $_->{prefix} => $_ } @{ $r->{json}{data} };
is($listed{ Aihub::key_prefix($new) }{status}, 'revoked',
   'list: the revoked key shows as revoked');

$t->done;
