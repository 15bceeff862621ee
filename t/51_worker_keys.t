#!/usr/bin/perl

# aihub-worker key and account commands: the key is printed once and kept
# only as a hash; Redis gets the full key record; revocation, plan changes,
# overrides and suspension rewrite the records and publish invalidations.

use strict;
use warnings;

use Test::More;
use JSON::PP;
use Digest::SHA qw(sha256_hex);
use IO::Select;
use Time::Local qw(timegm);
use Time::HiRes qw(time sleep);

use lib 't/lib';
use Aihub;

plan skip_all => 'aihub-worker not built' unless Aihub::have_worker();

my $t = Aihub->new(redis => 1, mariadb => 1);
$t->migrate;

# a subscriber on the invalidation channel

my $sub = $t->redis_connect;
my $subbuf = '';
print $sub Aihub::resp_encode('SUBSCRIBE', 'aihub:invalidate');
Aihub::resp_read($sub, \$subbuf);

sub next_invalidation {
    return undef unless length $subbuf
                        || IO::Select->new($sub)->can_read(2);
    my $m = Aihub::resp_read($sub, \$subbuf);
    return $m->[2];
}

# --- key create ------------------------------------------------------------

my ($rc, $out, $err) = $t->worker('key', 'create', '--account', 'acme',
                                  '--plan', 'pro', '--label', 'ci key');
is($rc, 0, 'key create exits 0') or diag($err);
my @lines = split /\n/, $out;
is(scalar @lines, 1, 'stdout is the key alone');
my $key = $lines[0];
like($key, qr/^ai-hub-[0-9A-Za-z]{38}$/, 'key has the ai-hub- format');
ok(Aihub::make_key(substr($key, 7, 32)) eq $key, 'checksum matches');
unlike($err, qr/\Q$key\E/, 'the key is not repeated on stderr');

my $hash = sha256_hex($key);
my $prefix = substr($key, 0, 15);

is($t->sql_value("SELECT COUNT(*) FROM api_keys WHERE key_hash = '$hash' "
                 . "AND prefix = '$prefix'"), 1,
   'MySQL has the hash and the prefix');
is($t->sql_value("SELECT COUNT(*) FROM api_keys WHERE key_hash LIKE "
                 . "'%$key%' OR prefix = '$key' OR label LIKE '%$key%'"), 0,
   'MySQL does not have the key itself');

my $acct = $t->sql_value("SELECT id FROM accounts WHERE name = 'acme'");
ok($acct, 'account created');
is($t->sql_value("SELECT p.name FROM subscriptions s JOIN plans p ON "
                 . "p.id = s.plan WHERE s.account = $acct AND "
                 . "s.ended_at IS NULL"), 'pro', 'subscribed to pro');

my %rec = @{ $t->redis('HGETALL', "aihub:key:$hash") };
is_deeply({ map { $_ => $rec{$_} } qw(account account_name prefix plan status
                                     scopes expires rpm tpm included overage
                                     spend_cap max_tokens models) },
          { account => $acct, account_name => 'acme', prefix => $prefix,
            plan => 'pro', status => 'active', scopes => 'chat',
            expires => 0, rpm => 600, tpm => 1000000, included => 10000,
            overage => 1, spend_cap => 0, max_tokens => 0, models => '*' },
          'Redis key record for a pro key');
my @g = gmtime;
is($rec{anchor}, timegm(0, 0, 0, 1, $g[4], $g[5]),
   'anchor: the first second of the subscription month (UTC)');
is($rec{label}, 'ci key', 'label in the record');
ok(abs($rec{created} - time) < 60, 'created in the record');
is($t->redis('HGET', "aihub:account-keys:$acct", $prefix), $hash,
   'account-keys maps the prefix to the hash');

# a free key: basic models only, listed

my $free = $t->create_key(account => 'tiny', plan => 'free',
                          scopes => 'chat,admin');
my %frec = @{ $t->redis('HGETALL', 'aihub:key:' . sha256_hex($free)) };
is($frec{plan}, 'free', 'free plan');
is($frec{scopes}, 'chat,admin', 'admin scope');
is($frec{included}, 1000, 'free includes 1000 calls');
is($frec{overage}, 0, 'free has no overage');
is($frec{models}, 'tier:basic', 'free: basic models only');

# --- bad arguments ----------------------------------------------------------

($rc, $out, $err) = $t->worker('key', 'create');
is($rc, 2, 'key create without --account exits 2');
like($err, qr/--account is required/, 'and says so');
($rc) = $t->worker('key', 'create', '--account', 'x', '--plan', 'gold');
is($rc, 2, 'unknown plan exits 2');
($rc) = $t->worker('key', 'create', '--account', 'x', '--expires', 'soon');
is($rc, 2, 'bad --expires exits 2');

# past 2038-01-19: MariaDB before 11.5 reads FROM_UNIXTIME() and
# UNIX_TIMESTAMP() of such a time as NULL (the insert failed: "Truncated
# incorrect unixtime value"), and a month of 2038 would close with nothing
my $Y2040 = 2208988800;    # 2040-01-01 00:00:00 UTC
($rc, $out, $err) = $t->worker('key', 'create', '--account', 'far',
                               '--plan', 'pro', '--expires', $Y2040);
is($rc, 0, 'a key expiring in 2040 is created') or diag($err);
my ($far) = $out =~ /(ai-hub-[A-Za-z0-9]+)/;
is($t->sql_value("SELECT expires_at FROM api_keys WHERE key_hash = '"
                 . sha256_hex($far // '') . "'"), '2040-01-01 00:00:00',
   'MySQL holds its expiry');
is($t->redis('HGET', 'aihub:key:' . sha256_hex($far // ''), 'expires'),
   $Y2040, 'and Redis');
($rc) = $t->worker('key', 'revoke', 'nope');
is($rc, 2, 'malformed prefix exits 2');
($rc) = $t->worker('key', 'revoke', 'ai-hub-zzzzzzzz');
is($rc, 1, 'unknown prefix exits 1');
($rc, $out) = $t->worker('key', 'create', '--help');
is($rc, 0, 'key create --help exits 0');
($rc) = $t->worker('account', 'frobnicate');
is($rc, 2, 'unknown account command exits 2');

# --- key list: masked -------------------------------------------------------

($rc, $out) = $t->worker('key', 'list', '--account', 'acme');
is($rc, 0, 'key list exits 0');
like($out, qr/\Q$prefix\E\x{e2}\x{80}\x{a6}/, 'listed masked');
unlike($out, qr/\Q$key\E/, 'the key itself is not listed');
like($out, qr/ci key/, 'label listed');

# a label with control characters: refused by key create; one stored
# before (by an older node) is shown with '?', never obeyed by the terminal
($rc, undef, $err) = $t->worker('key', 'create', '--account', 'acme',
                                '--label', "ci\e[2J");
is($rc, 2, 'key create --label with ESC: refused (exit 2)');
like($err, qr/control characters/, 'and says why');
$t->sql("UPDATE api_keys SET label = CONCAT('old', CHAR(27), '[2J', "
        . "CHAR(13), CHAR(10), 'row') WHERE prefix = '$prefix'");
($rc, $out) = $t->worker('key', 'list', '--account', 'acme');
like($out, qr/old\?\[2J\?\?row/, 'a stored label\'s controls listed as ?');
unlike($out, qr/\e|\r/, 'no ESC or CR printed');
$t->sql("UPDATE api_keys SET label = 'ci key' WHERE prefix = '$prefix'");

# --- plan change: record rewritten, account invalidated ---------------------

($rc, $out, $err) = $t->worker('account', 'plan', 'acme', '--plan', 'free');
is($rc, 0, 'account plan exits 0') or diag($err);
is(next_invalidation(), "account:$acct", 'published account:<id>');
is($t->redis('HGET', "aihub:key:$hash", 'plan'), 'free',
   'key record follows the new plan');
is($t->redis('HGET', "aihub:key:$hash", 'included'), 1000,
   'with the new plan\'s quota');
is($t->sql_value("SELECT COUNT(*) FROM subscriptions WHERE account = $acct"),
   2, 'old subscription kept, new one added');
is($t->sql_value("SELECT COUNT(*) FROM subscriptions WHERE account = $acct "
                 . "AND ended_at IS NULL"), 1, 'one open subscription');

# --- enterprise overrides ---------------------------------------------------

$t->worker('account', 'plan', 'acme', '--plan', 'enterprise');
next_invalidation();
($rc, $out, $err) = $t->worker('account', 'override', 'acme', '--rpm', 42,
                               '--included', 50000, '--models',
                               'mock-basic,mock-premium', '--spend-cap',
                               '250.50', '--base-fee', '990');
is($rc, 0, 'account override exits 0') or diag($err);
is(next_invalidation(), "account:$acct", 'override published');
%rec = @{ $t->redis('HGETALL', "aihub:key:$hash") };
is_deeply([ @rec{qw(plan rpm included models spend_cap tpm)} ],
          [ 'enterprise', 42, 50000, 'mock-basic,mock-premium', 250500000,
            10000000 ], 'overrides in the key record, plan values else');
is($t->sql_value("SELECT base_fee_cents FROM account_overrides "
                 . "WHERE account = $acct"), 99000, 'contract price in cents');

($rc) = $t->worker('account', 'override', 'acme', '--rpm', 'default');
next_invalidation();
is($t->redis('HGET', "aihub:key:$hash", 'rpm'), 3000,
   '"default" restores the plan value');

# --models takes what "plan --models" takes: catalog ids, tier:basic,
# tier:premium, *, and default; nothing else is stored

for ([ 'mock-basic, no-such-model', qr/no model "no-such-model" in the catalog/,
       'an unknown model' ],
     [ 'tier:gold', qr/tier:basic or tier:premium/, 'an unknown tier' ],
     [ 'mock-basic,,mock-premium', qr/invalid --models/, 'an empty item' ],
     [ 'mock-basic,mock-basic', qr/repeated/, 'a repeated model' ])
{
    my ($list, $says, $what) = @$_;
    ($rc, $out, $err) = $t->worker('account', 'override', 'acme', '--models',
                                   $list);
    is($rc, 2, "override --models with $what: exit 2");
    like($err, $says, '  and says so');
}
is($t->sql_value("SELECT models FROM account_overrides WHERE account = "
                 . "$acct"), 'mock-basic,mock-premium',
   'the refused lists were not stored');

($rc, $out, $err) = $t->worker('account', 'override', 'acme', '--models',
                               'mock-basic, tier:premium');
is($rc, 0, 'override --models with a tier: exit 0') or diag($err);
is($t->redis('HGET', "aihub:key:$hash", 'models'), 'mock-basic,tier:premium',
   'the key record has the list, without the spaces');
($rc, $out, $err) = $t->worker('account', 'override', 'acme', '--models',
                               '*');
is($rc, 0, 'override --models "*": exit 0') or diag($err);
is($t->redis('HGET', "aihub:key:$hash", 'models'), '*', 'every model');
$t->worker('account', 'override', 'acme', '--models',
           'mock-basic,mock-premium');
while (defined next_invalidation()) { }

# --- suspend / resume -------------------------------------------------------

($rc) = $t->worker('account', 'suspend', 'acme');
is($rc, 0, 'suspend exits 0');
is(next_invalidation(), "account:$acct", 'suspend published');
is($t->redis('HGET', "aihub:key:$hash", 'status'), 'suspended',
   'key record suspended');
($rc) = $t->worker('account', 'resume', 'acme');
next_invalidation();
is($t->redis('HGET', "aihub:key:$hash", 'status'), 'active', 'resumed');

# --- account show / list ------------------------------------------------------

($rc, $out) = $t->worker('account', 'show', 'acme');
is($rc, 0, 'account show exits 0');
like($out, qr/^plan\s+enterprise$/m, 'show names the plan');
like($out, qr/^models\s+mock-basic,mock-premium$/m,
   'show: the account\'s own models');
($rc, $out) = $t->worker('account', 'show', 'tiny');
like($out, qr/^models\s+tier:basic$/m,
   'show: a plan\'s tier as --models writes it');
($rc, $out) = $t->worker('account', 'list');
like($out, qr/acme.*enterprise/, 'list shows acme');
like($out, qr/tiny.*free/, 'list shows tiny');
($rc) = $t->worker('account', 'show', 'nobody');
is($rc, 1, 'show of an unknown account exits 1');

# --- revoke ---------------------------------------------------------------

my $t0 = time;
($rc, $out, $err) = $t->worker('key', 'revoke', $prefix);
is($rc, 0, 'revoke exits 0') or diag($err);
is(next_invalidation(), "key:$hash", 'published key:<hash>');
ok(time - $t0 < 1, 'revocation published within a second');
is($t->redis('HGET', "aihub:key:$hash", 'status'), 'revoked',
   'Redis record revoked');
is($t->sql_value("SELECT status FROM api_keys WHERE key_hash = '$hash'"),
   'revoked', 'MySQL row revoked');
ok($t->sql_value("SELECT revoked_at IS NOT NULL FROM api_keys "
                 . "WHERE key_hash = '$hash'"), 'revoked_at set');

# --- sync after Redis lost everything ---------------------------------------

$t->redis('FLUSHALL');
($rc, $out) = $t->worker('sync');
is($rc, 0, 'sync exits 0');
is($t->redis('HGET', "aihub:key:$hash", 'status'), 'revoked',
   'sync restores the revoked record');
is($t->redis('HGET', 'aihub:key:' . sha256_hex($free), 'plan'), 'free',
   'sync restores the free key');
is($t->redis('HGET', 'aihub:key:' . sha256_hex($far // ''), 'expires'),
   $Y2040, 'and an expiry past 2038 (before: 0, never)');
is($t->redis('HGET', "aihub:account-keys:$acct", $prefix), undef,
   'sync leaves the revoked key out of its account\'s index (what the '
   . 'developer API lists and counts: it grew with every key revoked)');
my $tiny_id = $t->sql_value("SELECT id FROM accounts WHERE name = 'tiny'");
is($t->redis('HGET', "aihub:account-keys:$tiny_id",
             substr($free, 0, length $prefix)), sha256_hex($free),
   'and indexes a live key');
is($t->redis('HGET', 'aihub:model:openai/gpt-4o', 'price_out'), 10000000,
   'sync restores model prices');
is(next_invalidation(), 'all', 'sync publishes "all"');

# --- keys created through the developer API keep their expiry --------------

# nginx queues key.created on the admin stream with the expiry it gave the
# key (its creator's); the worker stores it in MySQL, and the record it
# rewrites from MySQL keeps it

my $json = JSON::PP->new->canonical;
my $tiny = 0 + $t->sql_value("SELECT id FROM accounts WHERE name = "
                             . "'tiny'");    # a JSON number
my $until = int(time) + 7200;
my %api;

for my $case ([ 'expiring', $until ], [ 'never', 0 ], [ 'older nginx' ],
             [ 2040, 2208988800 ]) {
    my ($name, $exp) = @$case;
    my $k = Aihub::make_key();
    $api{$name} = sha256_hex($k);
    $t->redis('XADD', 'aihub:admin', '*', 'event', $json->encode({
        type => 'key.created', account => $tiny, hash => $api{$name},
        prefix => Aihub::key_prefix($k), scopes => 'chat', label => $name,
        ts => int(time * 1000), (expires => $exp) x!! defined $exp }));
}

my $bad = Aihub::make_key();
$t->redis('XADD', 'aihub:admin', '*', 'event', $json->encode({
    type => 'key.created', account => $tiny, hash => sha256_hex($bad),
    prefix => Aihub::key_prefix($bad), scopes => 'chat', label => 'bad',
    ts => int(time * 1000), expires => 'tomorrow' }));

# what cJSON alone would take: a label with an escaped NUL (stored cut at
# it), and two events run together on one line (the second dropped)
my ($nul, $first, $second) = map { Aihub::make_key() } 1 .. 3;
my $created = sub {
    my ($k, $label) = @_;
    return $json->encode({ type => 'key.created', account => $tiny,
        hash => sha256_hex($k), prefix => Aihub::key_prefix($k),
        scopes => 'chat', label => $label, ts => int(time * 1000) });
};
$t->redis('XADD', 'aihub:admin', '*', 'event',
          $created->($nul, "ci\0runner"));
my $together = $created->($first, 'one') . $created->($second, 'two');
$t->redis('XADD', 'aihub:admin', '*', 'event', $together);

$t->start_worker('--consumer', 'w', '--block-ms', 100);
ok($t->wait_for(sub { $t->redis('XLEN', 'aihub:usage:dead') == 3 },
                timeout => 5), 'admin events drained');

is($t->sql_value("SELECT UNIX_TIMESTAMP(expires_at) FROM api_keys WHERE "
                 . "key_hash = '$api{expiring}'"), $until,
   'API key with an expiry: MySQL keeps it');
is($t->redis('HGET', "aihub:key:$api{expiring}", 'expires'), $until,
   'and the record rewritten from MySQL keeps it');
is($t->sql_value("SELECT expires_at IS NULL FROM api_keys WHERE "
                 . "key_hash = '$api{never}'"), 1,
   'expires 0: never expires in MySQL');
is($t->sql_value("SELECT expires_at FROM api_keys WHERE key_hash = "
                 . "'$api{2040}'"), '2040-01-01 00:00:00',
   'an API key expiring in 2040: MySQL keeps it');
is($t->redis('HGET', "aihub:key:$api{2040}", 'expires'), 2208988800,
   'and Redis');
is($t->redis('HGET', "aihub:key:$api{never}", 'expires'), 0,
   'nor in Redis');
is($t->sql_value("SELECT expires_at IS NULL FROM api_keys WHERE "
                 . "key_hash = '$api{'older nginx'}'"), 1,
   'an event without expires (older module): never expires');
is($t->sql_value("SELECT COUNT(*) FROM api_keys WHERE key_hash = '"
                 . sha256_hex($bad) . "'"), 0,
   'an expiry that is not a number: not stored');
my $dead = $t->redis('XRANGE', 'aihub:usage:dead', '-', '+');
like({ @{ $dead->[0][1] // [] } }->{reason} // '', qr/expires/,
     'dead-lettered, the reason names the expiry');
for my $case ([ 'a label holding \\u0000', $nul, 1, qr/NUL/ ],
              [ 'two events run together', $first, 2, qr/after the object/ ],
              [ 'the second of them', $second, 2, qr/after the object/ ]) {
    my ($name, $k, $i, $why) = @$case;
    is($t->sql_value("SELECT COUNT(*) FROM api_keys WHERE key_hash = '"
                     . sha256_hex($k) . "'"), 0, "$name: not stored");
    like({ @{ $dead->[$i][1] // [] } }->{reason} // '', $why,
         "$name: dead-lettered with its reason");
}
is({ @{ $dead->[2][1] // [] } }->{event}, $together,
   'the dead letter keeps the line as it came');
$t->stop_worker;

# --- a revocation through the developer API, not in MySQL yet --------------

# the module revokes the record in Redis at once and queues key.revoked on
# the admin stream for the worker (as here, by hand).  A sync before the
# worker drains it (an operator's "sync" or "account plan", the daemon
# reconnecting, the service's ExecStartPre) wrote MySQL's "active" back,
# and the revoked key worked again until the drain.
{
    my $k = $t->create_key(account => 'revoker', plan => 'pro');
    my $rec = 'aihub:key:' . sha256_hex($k);
    my $acct = 0 + $t->sql_value("SELECT id FROM accounts WHERE name = "
                                 . "'revoker'");
    $t->redis('HSET', $rec, 'status', 'revoked');
    $t->redis('XADD', 'aihub:admin', '*', 'event', $json->encode({
        type => 'key.revoked', account => $acct,
        prefix => Aihub::key_prefix($k), ts => int(time * 1000) }));

    ($rc, undef, $err) = $t->worker('sync');
    is($rc, 0, 'revoked, not drained yet: sync exits 0') or diag($err);
    is($t->redis('HGET', $rec, 'status'), 'revoked',
       'a sync before the drain leaves the revocation (before: active)');
    ($rc) = $t->worker('account', 'plan', 'revoker', '--plan', 'free');
    is($t->redis('HGET', $rec, 'status'), 'revoked',
       'so does an account change, which rewrites its keys');
    is($t->redis('HGET', $rec, 'plan'), 'free', 'the rest of it is written');

    $t->start_worker('--consumer', 'w', '--block-ms', 100);
    ok($t->wait_for(sub { $t->sql_value("SELECT status FROM api_keys WHERE "
                              . "key_hash = '" . sha256_hex($k) . "'")
                          eq 'revoked' }, timeout => 10),
       'then the worker drains it into MySQL');
    $t->stop_worker;
}

# --- a key's revocation drained before its creation -------------------------

# key.created taken by a worker that stopped (or behind), key.revoked by
# another: the revocation waits, and the key is stored revoked.  Before,
# "no such key" dead-lettered the revocation and the key was then stored
# active, and written so to Redis.
{
    my $k = Aihub::make_key();
    my $hash = sha256_hex($k);
    my $acct = 0 + $t->sql_value("SELECT id FROM accounts WHERE name = "
                                 . "'revoker'");
    my $dead0 = $t->redis('XLEN', 'aihub:usage:dead');
    $t->redis('XADD', 'aihub:admin', '*', 'event', $json->encode({
        type => 'key.revoked', account => $acct,
        prefix => Aihub::key_prefix($k), ts => int(time * 1000) }));
    $t->redis('XADD', 'aihub:admin', '*', 'event', $json->encode({
        type => 'key.created', account => $acct, hash => $hash,
        prefix => Aihub::key_prefix($k), scopes => 'chat', label => 'late',
        ts => int(time * 1000) }));

    $t->start_worker('--consumer', 'w', '--block-ms', 100);
    ok($t->wait_for(sub { $t->sql_value("SELECT COUNT(*) FROM api_keys WHERE "
                                        . "key_hash = '$hash'") == 1 },
                    timeout => 10), 'revoked before created: the key stored');
    $t->stop_worker;
    is($t->sql_value("SELECT status FROM api_keys WHERE key_hash = '$hash'"),
       'revoked', '... revoked in MySQL');
    is($t->redis('HGET', "aihub:key:$hash", 'status'), 'revoked',
       '... and in Redis');
    is($t->redis('XLEN', 'aihub:usage:dead'), $dead0,
       '... the revocation not dead-lettered');
    is($t->redis('XLEN', 'aihub:admin'), 0,
       'the admin stream holds none of the changes stored (before: every '
       . 'key change of the developer API, for good)');
}

# --- a key created through the developer API of an account suspended
# before the worker stored it ----------------------------------------------

# the suspension rewrote the account's keys from MySQL, which did not have
# this one yet: a node that served it held it "active".  Storing it now
# writes its record from MySQL (suspended) and tells the nodes, which read
# it again (before: nothing was published, and the node served the key for
# its whole cache lifetime after the drain)
{
    ($rc, undef, $err) = $t->worker('account', 'create', 'latesusp',
                                    '--plan', 'pro');
    is($rc, 0, 'account latesusp created') or diag($err);
    my $acct = 0 + $t->sql_value("SELECT id FROM accounts WHERE name = "
                                 . "'latesusp'");
    my $k = Aihub::make_key();
    my $hash = sha256_hex($k);
    $t->seed_key(key => $k, account => $acct, plan => 'pro');
    $t->redis('XADD', 'aihub:admin', '*', 'event', $json->encode({
        type => 'key.created', account => $acct, hash => $hash,
        prefix => Aihub::key_prefix($k), scopes => 'chat', label => 'susp',
        ts => int(time * 1000) }));
    ($rc) = $t->worker('account', 'suspend', 'latesusp');
    is($rc, 0, 'suspended before its API key is stored');
    is($t->redis('HGET', "aihub:key:$hash", 'status'), 'active',
       'the key\'s record, not in MySQL yet, still says active');
    while (defined next_invalidation()) { }

    $t->start_worker('--consumer', 'w', '--block-ms', 100);
    ok($t->wait_for(sub { $t->sql_value("SELECT COUNT(*) FROM api_keys WHERE "
                                        . "key_hash = '$hash'") == 1 },
                    timeout => 10), 'the worker stores the key');
    $t->stop_worker;
    is($t->redis('HGET', "aihub:key:$hash", 'status'), 'suspended',
       'its record rewritten from MySQL: suspended');
    my @inv;
    while (defined(my $m = next_invalidation())) { push @inv, $m }
    ok((grep { $_ eq "key:$hash" } @inv),
       'and the nodes told to read it again (key:<hash> published)')
        or diag("published: @inv");
}

# --- config file and environment precedence --------------------------------

Aihub::write_file($t->dir . '/w.conf', "# test\nredis = 127.0.0.1:1\n"
                  . "mysql_db = nosuchdb\n");
($rc, $out, $err) = $t->run_cmd([ $Aihub::WORKER,
    '--config', $t->dir . '/w.conf', '--mysql-socket', $t->mysql_socket,
    'account', 'list' ]);
is($rc, 1, 'config file value used (unknown database)');
like($err, qr/nosuchdb/, 'names the database from the file');
($rc, $out, $err) = $t->run_cmd([ $Aihub::WORKER,
    '--config', $t->dir . '/w.conf', '--mysql-socket', $t->mysql_socket,
    'account', 'list' ], env => { AIHUB_MYSQL_DB => 'aihub' });
is($rc, 0, 'environment beats the config file');
($rc, $out, $err) = $t->run_cmd([ $Aihub::WORKER,
    '--config', $t->dir . '/w.conf', '--mysql-socket', $t->mysql_socket,
    'account', 'list', '--mysql-db', 'aihub' ],
    env => { AIHUB_MYSQL_DB => 'nosuchdb' });
is($rc, 0, 'a flag after the command beats the environment');

$t->done;
