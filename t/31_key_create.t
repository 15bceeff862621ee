#!/usr/bin/perl

# Creating a key through the developer API (issue 11, "Key creation"):
#
# - the script that creates the key re-reads the caller's record in Redis
#   and refuses (401 invalid_api_key, nothing created) a caller that is
#   revoked, suspended, expired or without the admin scope, even while
#   this node's cache still holds the caller as a valid admin key;
# - a created key expires when its creator does, at the latest, and the
#   expiry travels on the admin stream for the worker;
# - an account holds at most aihub_max_keys_per_account active keys:
#   beyond, 409 key_limit_reached, nothing created;
# - a body that arrives in several pieces (chunked) is read whole: its
#   label and scopes are honoured (the label cut to 200 bytes on a
#   character boundary, UTF-8 only); one in a temporary file is refused
#   (413), not ignored.

use strict;
use warnings;

use Test::More;
use IO::Select;
use JSON::PP;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);

my $t = Aihub->new;
$t->skip_unless_built;
$t->start_redis;
$t->start_mock;

seed_models($t);

my $JSON = JSON::PP->new;

# a long cache: records changed in Redis behind the module's back (no
# invalidation published) stay cached for the whole test
$t->nginx(<<'END');
    aihub_redis %%REDIS%%;
    aihub_redis_timeout 300ms;
    aihub_cache_zone aihub:8m;
    aihub_cache_ttl 600s;
    aihub_max_keys_per_account 4;
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
            # bodies between 16k and 4m go to a temporary file
            aihub_body_max 16k;
            client_body_buffer_size 16k;
            client_max_body_size 4m;
            proxy_pass $aihub_proxy_url;
            proxy_set_header Host $aihub_provider_host;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
END

$t->start_nginx;

my $PATH = '/api/v1/developer/api-keys';

sub create {
    my ($key, $body) = @_;

    return $t->http(POST => $PATH, key => $key,
                    (defined $body ? (body => $body) : ()));
}

sub admin_events { scalar @{ $t->redis('XRANGE', 'aihub:admin', '-', '+') } }

sub last_admin_event {
    my $ev = $t->redis('XRANGE', 'aihub:admin', '-', '+');
    my %f = @{ $ev->[-1][1] };
    return $JSON->decode($f{event});
}

sub account_keys {
    my ($account) = @_;
    return scalar @{ $t->redis('HKEYS', "aihub:account-keys:$account") };
}

my $probe = seed_full_key($t, account => 3100, scopes => 'chat,admin');
ok(wait_ready($t, $probe), 'catalog loaded');

# The cases below need the gateway to trust its cache: it does once its
# subscription has heard its own heartbeat (README, aihub_cache_ttl).
# Trusted: a record changed in Redis without an invalidation is still
# served from the cache.
ok($t->wait_for(sub {
    my $h = 'aihub:key:' . Aihub::key_hash($probe);
    $t->redis('HSET', $h, 'status', 'active');
    $t->http(GET => '/v1/models', key => $probe);
    $t->redis('HSET', $h, 'status', 'suspended');
    my $st = $t->http(GET => '/v1/models', key => $probe)->{status};
    $t->redis('HSET', $h, 'status', 'active');
    return $st == 200;
}, timeout => 10), 'the gateway trusts its key cache');


# --- 1. the caller's record is re-read when the key is created --------------

# each case: an admin key that works (its record cached by a first
# request), then changed in Redis without an invalidation
my @cases = (
    [ 'revoked',      3101, status => 'revoked' ],
    [ 'suspended',    3102, status => 'suspended' ],
    [ 'expired',      3103, expires => int(time) - 10 ],
    [ 'admin scope dropped', 3104, scopes => 'chat' ],
);

for my $case (@cases) {
    my ($name, $account, @change) = @$case;

    my $admin = seed_full_key($t, account => $account,
                              scopes => 'chat,admin');
    is($t->http(GET => $PATH, key => $admin)->{status}, 200,
       "$name: the admin key works (and is cached)");

    $t->redis('HSET', 'aihub:key:' . Aihub::key_hash($admin), @change);

    my $events = admin_events();
    my $r = create($admin, { label => 'minted', scopes => [ 'admin' ] });
    is_error($r, 401, 'invalid_api_key',
             "$name caller, still cached as admin: create refused");
    ok(!defined $r->{json}{key}, "$name: no key in the answer");
    is(account_keys($account), 1, "$name: no key added to the account");
    is(admin_events(), $events, "$name: nothing on the admin stream");
}


# --- 2. a created key expires when its creator does -------------------------

my $soon = int(time) + 3600;
my $expiring = seed_full_key($t, account => 3110, scopes => 'chat,admin',
                             expires => $soon);

my $r = create($expiring, { label => 'child', scopes => [ 'chat', 'admin' ] });
is($r->{status}, 201, 'expiring creator: 201');
my $child = $r->{json}{key} // '';
is($r->{json}{expires}, $soon, 'the answer says when the new key expires');
is($t->redis('HGET', 'aihub:key:' . Aihub::key_hash($child), 'expires'),
   $soon, 'the new key expires with its creator');
is(last_admin_event()->{expires}, $soon,
   'the admin event carries the expiry for the worker');

# and a key created by that child cannot outlive it either
$r = create($child, { label => 'grandchild' });
is($r->{status}, 201, 'the child creates a key');
is($t->redis('HGET', 'aihub:key:' . Aihub::key_hash($r->{json}{key} // ''),
             'expires'), $soon, 'the grandchild expires at the same time');

$r = create($probe, { label => 'forever' });
is($r->{status}, 201, 'a creator that never expires: 201');
is($r->{json}{expires}, 0, 'the new key never expires either (0)');
is(last_admin_event()->{expires}, 0, 'admin event: expires 0');


# --- 3. at most aihub_max_keys_per_account active keys ----------------------

my $capped = seed_full_key($t, account => 3120, scopes => 'chat,admin');
# an old key of the account, revoked, does not count
seed_full_key($t, account => 3120, status => 'revoked');
# nor one that has expired
seed_full_key($t, account => 3120, expires => int(time) - 60);

my @made;
for my $i (1 .. 3) {
    $r = create($capped, { label => "k$i" });
    is($r->{status}, 201, "key $i of 4 (the admin key is the first)");
    push @made, $r->{json}{key} // '';
}

my $events = admin_events();
$r = create($capped, { label => 'one too many' });
is_error($r, 409, 'key_limit_reached', 'the fifth active key: refused');
like($r->{json}{error}{message} // '', qr/\b4\b/, 'the message names the cap');
is($r->{headers}{'x-should-retry'}, 'false',
   'x-should-retry: false (the SDKs retry a 409 otherwise, as a lock '
   . 'timeout)');
is(account_keys(3120), 6, 'nothing added to the account index');
is(admin_events(), $events, 'nothing on the admin stream');

is($t->http(DELETE => "$PATH/" . Aihub::key_prefix($made[0]),
            key => $capped)->{status}, 200, 'one key revoked');
$r = create($capped, { label => 'room again' });
is($r->{status}, 201, 'then a key can be created again');

# other accounts are not affected
is(create($probe, { label => 'elsewhere' })->{status}, 201,
   'another account still creates keys');


# --- 4. a body in several pieces is read whole ------------------------------

sub raw_chunked {
    my ($key, @chunks) = @_;

    my $s = $t->connect;

    print $s "POST $PATH HTTP/1.1\r\nHost: localhost\r\n"
             . "Authorization: Bearer $key\r\n"
             . "Content-Type: application/json\r\n"
             . "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";

    # each chunk in its own write, apart in time: nginx reads them into
    # separate buffers
    for my $c (@chunks) {
        sleep 0.1;
        printf $s "%x\r\n%s\r\n", length $c, $c;
    }
    sleep 0.1;
    print $s "0\r\n\r\n";

    my $in = '';
    my $sel = IO::Select->new($s);
    my $deadline = time + 10;
    while (time < $deadline && $sel->can_read(1)) {
        my $n = sysread($s, $in, 65536, length $in);
        last unless $n;
    }
    close $s;

    my ($h, $b) = split /\r\n\r\n/, $in, 2;
    my ($status) = ($h // '') =~ m{^HTTP/1\.\d (\d+)};
    $b //= '';
    # the answer itself may be chunked
    if (($h // '') =~ /^transfer-encoding:\s*chunked/mi) {
        my $body = '';
        while ($b =~ s/^([0-9a-f]+)\r\n//i) {
            my $len = hex $1;
            last if $len == 0;
            $body .= substr($b, 0, $len, '');
            $b =~ s/^\r\n//;
        }
        $b = $body;
    }

    return { status => $status // 0, content => $b,
             json => eval { $JSON->decode($b) } };
}

my $multi = seed_full_key($t, account => 3130, scopes => 'chat,admin');

$r = raw_chunked($multi, '{"label":', ' "from three', ' pieces", "scopes"',
                 ': ["admin"]}');
is($r->{status}, 201, 'chunked create: 201') or diag($r->{content});
is($r->{json}{label}, 'from three pieces', 'chunked: the label is honoured');
is($r->{json}{scopes}, 'admin', 'chunked: the scopes are honoured');
is($t->redis('HGET', 'aihub:key:' . Aihub::key_hash($r->{json}{key} // ''),
             'scopes'), 'admin', 'chunked: the record has the scopes asked');

$r = raw_chunked($multi, '{"label":', ' 5}');
is($r->{status}, 400, 'chunked: a bad body in pieces is still refused');

# an empty chunked body (only the last, empty, buffer) and a body without
# a label: a chat key with an empty label; under the sanitizer build these
# are where memcpy(NULL, 0) was reported
$r = raw_chunked($multi);
is($r->{status}, 201, 'empty chunked body: 201') or diag($r->{content});
is($r->{json}{scopes}, 'chat', 'empty chunked body: a chat key');
$r = create($multi, { scopes => [ 'chat' ] });
is($r->{status}, 201, 'no label: 201');
is($r->{json}{label}, '', 'no label: an empty label');

# the label: at most 200 bytes, cut on a character boundary, and UTF-8
# only: it goes back to clients in JSON and into MySQL's utf8mb4 column
my $labels = seed_full_key($t, account => 3135, scopes => 'chat,admin');
$r = create($labels, { label => ('a' x 199) . "\x{e9}t\x{e9}" });
is($r->{status}, 201, 'a long label: 201');
is($r->{json}{label}, 'a' x 199,
   'cut before the character that byte 200 would split')
    or diag($r->{content});
$r = create($labels, { label => ('a' x 198) . "\x{e9}t" });
is($r->{json}{label}, ('a' x 198) . "\x{e9}",
   'a character that ends at byte 200 is kept') or diag($r->{content});
# (another account: each holds at most 4 keys here)
$labels = seed_full_key($t, account => 3136, scopes => 'chat,admin');
$r = create($labels, qq({"label":"ab\xffcd\xc3"}));
is($r->{status}, 201, 'a label that is not UTF-8: 201');
is($r->{json}{label}, 'ab?cd',
   'a byte that is not UTF-8 shown as "?", a character cut short dropped')
    or diag($r->{content});
is(last_admin_event()->{label}, 'ab?cd', 'and so in the key.created event');
$r = create($labels, qq({"label":"x\xed\xa0\x80y"}));
is($r->{json}{label}, 'x???y', 'a UTF-16 surrogate is not UTF-8 either')
    or diag($r->{content});

# a body nginx wrote to a temporary file (beyond client_body_buffer_size,
# within client_max_body_size) is not read: refused, not created with
# defaults
my $big = seed_full_key($t, account => 3140, scopes => 'chat,admin');
my $events_before = admin_events();
$r = create($big, { label => 'x' x 40000, scopes => [ 'admin' ] });
is_error($r, 413, 'request_too_large', 'a body in a temporary file');
is(admin_events(), $events_before, 'nothing created');


# --- the account index stays bounded ---------------------------------------

# Keys created and revoked in a loop: the account's index (what GET lists,
# and what each create counts its active keys in) holds at most twice the
# cap (4 here); the create that finds it full drops the revoked and expired
# keys from it, their records expire in 30 days, and they stay refused.
# Before, it grew without end, and each create held Redis longer (368 ms
# at 100,000 revoked keys).

{
    my $loop = seed_full_key($t, account => 3150, scopes => 'chat,admin');
    my $kept = create($loop, { label => 'kept' })->{json}{key};
    my ($expired, @revoked);

    for my $i (1 .. 12) {
        my $made = create($loop, { label => "loop $i" })->{json}{key};
        push @revoked, $made;
        $t->http(DELETE => "$PATH/" . Aihub::key_prefix($made), key => $loop);
        ok(account_keys(3150) <= 8,
           "loop $i: the index holds at most twice the cap");
    }

    $expired = create($loop, { label => 'soon' })->{json}{key};
    $t->redis('HSET', 'aihub:key:' . Aihub::key_hash($expired),
              'expires', int(time) - 1);

    # 20,000 revoked keys left by the module before this change (or by a
    # worker's restore before it): one create drops them all
    my $port = $t->redis_port;
    open(my $pipe, '|-', "redis-cli -p $port --pipe > /dev/null")
        or die "redis-cli: $!";
    for my $i (1 .. 20000) {
        my $h = sprintf '%064x', $i;
        my $pre = sprintf 'ai-hub-old%05d', $i;
        for my $cmd ([ 'HSET', "aihub:key:$h", 'account', 3150,
                       'prefix', $pre, 'status', 'revoked', 'expires', 0 ],
                     [ 'HSET', 'aihub:account-keys:3150', $pre, $h ]) {
            print $pipe '*' . @$cmd . "\r\n"
                . join('', map { '$' . length($_) . "\r\n$_\r\n" } @$cmd);
        }
    }
    close $pipe;
    is(account_keys(3150) > 20000, 1, '20,000 revoked keys in the index');

    my $r = create($loop, { label => 'after' });
    is($r->{status}, 201, 'a create with them there: 201');
    ok(account_keys(3150) <= 8, '... which dropped them from the index')
        or diag(account_keys(3150));
    my $ttl = $t->redis('TTL', 'aihub:key:' . sprintf('%064x', 7));
    ok($ttl > 29 * 86400 && $ttl <= 30 * 86400,
       '... their records expire in 30 days') or diag($ttl);

    my $list = $t->http(GET => $PATH, key => $loop);
    my %listed = map { $_->{prefix} => $_->{status} }
                 @{ $list->{json}{data} // [] };
    is($listed{ Aihub::key_prefix($kept) }, 'active',
       'the active keys are listed');
    ok(!exists $listed{ Aihub::key_prefix($expired) },
       'an expired key was dropped from the list');
    is($t->chat($kept, model => 'test-basic')->{status}, 200,
       'an active key still works');
    is_error($t->chat($_, model => 'test-basic'), 401, 'invalid_api_key',
             'a dropped revoked key is still refused')
        for @revoked[0, 11];
    is_error($t->chat($expired, model => 'test-basic'), 401,
             'invalid_api_key', 'a dropped expired key is still refused');
}


# --- at most 30 keys created a minute by an account --------------------------

# each create is a row in MySQL for good and a script over the account's
# index on the Redis every node shares: before, one admin key created (and
# revoked, so the cap of active keys never stopped it) without bound
{
    my $fast = seed_full_key($t, account => 3160, scopes => 'chat,admin');
    my @made;

    for my $i (1 .. 31) {
        my $r = create($fast, { label => "fast $i" });
        push @made, $r;
        $t->http(DELETE => "$PATH/" . Aihub::key_prefix($r->{json}{key}),
                 key => $fast) if $r->{status} == 201;
    }

    is(scalar(grep { $_->{status} == 201 } @made[0 .. 29]), 30,
       'thirty keys created (and revoked) in a minute');
    is_error($made[30], 429, 'rate_limit_exceeded',
             'the thirty-first in the minute');
    like($made[30]{headers}{'retry-after'} // '', qr/^(?:[1-9]|[1-5]\d|60)$/,
         'with the seconds left of the minute in Retry-After');
    my $other = seed_full_key($t, account => 3161, scopes => 'chat,admin');
    is(create($other, { label => 'other' })->{status}, 201,
       'another account creates meanwhile');
}


# --- the directive -------------------------------------------------------------

$t->nginx(<<'END', name => 'bad');
    aihub_redis %%REDIS%%;
    aihub_cache_zone aihub:8m;
    aihub_max_keys_per_account many;
    aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
END
my ($ok, $out) = $t->nginx_test('bad');
ok(!$ok, 'aihub_max_keys_per_account many: nginx -t fails');
like($out, qr/"aihub_max_keys_per_account" directive invalid number/,
     'and names the directive') or diag($out);

$t->done;
