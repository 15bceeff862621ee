#!/usr/bin/perl

# Redis that requires credentials (README, "aihub_redis"): "requirepass",
# and a Redis 7 ACL user.  nginx reads the password from its environment
# (password_env=VAR, passed with nginx's "env" directive; nginx.conf never
# holds it) and sends AUTH first on every connection, the command one and
# the subscription; aihub-worker takes --redis-password (or
# AIHUB_REDIS_PASSWORD) and --redis-user.  Calls are answered and metered,
# revocation reaches the node, the drain stores the events.  Without the
# password, or with a wrong one, calls get 503 service_unavailable (never
# 401: the key is not at fault) and the error log says Redis refused the
# credentials; the password is never logged.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);

plan(skip_all => 'module or worker not built')
    unless Aihub::have_module() && Aihub::have_worker();

my $PW = 'pw-7f3c9e1d5b';
my $t = Aihub->new(redis => 1, redis_password => $PW, mariadb => 1,
                   mock => 1);
$t->migrate;

my $key = $t->create_key(account => 'auth1', plan => 'pro');
my $key2 = $t->create_key(account => 'auth1', plan => 'pro');

$t->redis('ACL', 'SETUSER', 'gateway', 'on', '>acl-pw-41b2', '~*', '&*',
          '+@all');

sub node {
    my ($name, $auth, $main, $timeout) = @_;

    $t->nginx(gateway_conf(redis => "%%REDIS%% $auth", url => '%%MOCK_URL%%',
                           redis_timeout => $timeout // '300ms'),
              name => $name, main => $main // '');
    $t->start_nginx($name);
}

node('pass', 'password_env=AIHUB_REDIS_PASSWORD');
node('acl', 'user=gateway password_env=AIHUB_ACL_PW',
     'env AIHUB_ACL_PW=acl-pw-41b2;');
node('none', '');
my $none_started = time;
node('wrong', 'password_env=AIHUB_WRONG_PW', 'env AIHUB_WRONG_PW=nope;');
node('late', 'password_env=AIHUB_REDIS_PASSWORD', '', '3s');

$t->start_worker('--consumer', 'w1', '--block-ms', 100);

for my $n (qw(pass acl)) {
    ok(wait_ready($t, $key, name => $n), "$n: ready");
    my $r = $t->chat($key, model => 'mock-basic', name => $n);
    is($r->{status}, 200, "$n: a call answered") or diag($r->{content});
}

for my $n (qw(none wrong)) {
    my $r = $t->chat($key, model => 'mock-basic', name => $n);
    is_error($r, 503, 'service_unavailable', "$n: Redis refuses the node");
}

like($t->error_log('none'), qr/NOAUTH/, 'none: the error log has Redis\'s '
     . 'NOAUTH');
like($t->error_log('wrong'), qr/redis refused the credentials: WRONGPASS/,
     'wrong: the error log says Redis refused the credentials');

# the subscription is authenticated too: a revoked key is refused on the
# node that had it cached
is($t->chat($key2, model => 'mock-basic', name => 'pass')->{status}, 200,
   'pass: the second key answered (cached)');
my ($prefix) = $key2 =~ /^(ai-hub-[A-Za-z0-9]{8})/;
my ($rc, $out, $err) = $t->worker('key', 'revoke', $prefix);
is($rc, 0, 'the worker revokes it through Redis with the password')
    or diag($err);
ok($t->wait_for(sub {
       $t->chat($key2, model => 'mock-basic', name => 'pass')->{status} == 401
   }, timeout => 5), 'pass: the revoked key is refused 401');

for my $n (qw(pass acl)) {
    unlike($t->error_log($n), qr/NOAUTH|refused the credentials|hears nothing/,
           "$n: both connections authenticated (the subscription heard)");
}

# the drain stores the calls' events
ok($t->wait_for(sub {
       $t->sql_value('SELECT COUNT(*) FROM usage_events') >= 3
   }, timeout => 10), 'the worker drained the events through AUTH');

# a new connection whose AUTH Redis answers late (a restarted Redis
# loading, a failover; here CLIENT PAUSE): calls meanwhile send their
# grants behind AUTH, and they must find the scripts, which a restarted
# Redis lost.  Before, SCRIPT LOAD waited for AUTH's reply, those grants
# went ahead of it and got NOSCRIPT: 503 for the calls of that round trip.
my $key3 = $t->create_key(account => 'auth2', plan => 'pro');
ok(wait_ready($t, $key3, name => 'late'), 'late: ready');

for my $round (1 .. 3) {
    my $load = AihubFixtures::load_start($t, keys => [ $key3 ],
                                         names => [ 'late' ], clients => 4,
                                         seconds => 1.5, pause => 0.02);
    select(undef, undef, undef, 0.3);
    $t->redis('MULTI');
    $t->redis('SCRIPT', 'FLUSH');
    $t->redis('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
    $t->redis('CLIENT', 'PAUSE', 400, 'ALL');
    $t->redis('EXEC');
    my @res = AihubFixtures::load_stop($t, $load);
    my %n = AihubFixtures::status_counts(@res);
    my @bad = grep { $_->{status} != 200 } @res;
    is(scalar @bad, 0, "late, round $round: every call answered while AUTH "
       . "waited (" . join(', ', map { "$_ x $n{$_}" } sort keys %n) . ')')
        or diag(join "\n", map { "$_->{status} $_->{code}" } @bad);
}

like($t->error_log('late'), qr/redis connected/, 'late: it reconnected');

# a worker with a wrong password says so and fails
($rc, $out, $err) = $t->run_cmd([ $Aihub::WORKER, '--redis', $t->redis_addr,
                                  '--redis-password', 'nope',
                                  '--mysql-socket', $t->mysql_socket,
                                  '--mysql-user', 'root',
                                  '--mysql-db', $t->mysql_db, 'sync' ]);
isnt($rc, 0, 'a worker with a wrong password fails');
like($err, qr/refused the credentials: WRONGPASS/, 'and says why');

# the node without credentials tries its subscription again with the
# backoff (0.1, 0.2, 0.4 ... s), not at once: before, its connection closed
# on NOAUTH was made again every 100-200 ms, each time logging it and
# loading the catalog (25 times in 4 s)
sleep(4 - (time - $none_started)) if time - $none_started < 4;
my $subs = () = $t->error_log('none') =~ /redis subscriber connected/g;
cmp_ok($subs, '<=', 8, "none: its subscription tried $subs times in 4 s");
# the command connection, answered NOAUTH when it loads its scripts, is
# dropped and made again with the backoff too (before: it stayed, with an
# [alert] line for each script)
my $cmds = () = $t->error_log('none') =~ /redis connected/g;
cmp_ok($cmds, '<=', 8, "none: its command connection tried $cmds times");
unlike($t->error_log('none'), qr/\[alert\]/, 'none: no alert logged');
like($t->error_log('none'),
     qr/redis requires credentials, and "aihub_redis" gives none/,
     'none: the error log says the node gives no credentials');
my $logs = join '', map { $t->error_log($_) } qw(pass acl none wrong);
$logs .= $t->worker_log . $err;
unlike($logs, qr/\Q$PW\E|acl-pw-41b2|nope/, 'no password in any log');

$t->allow_log(qr/NOAUTH|WRONGPASS|refused the credentials/);
$t->done;
