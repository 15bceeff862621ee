#!/usr/bin/perl

# Fault: a key is revoked ("aihub-worker key revoke") while two nginx nodes
# (two worker processes each) carry a steady load and the key itself is in
# use on both.  Measured on both nodes: no call with the key started more
# than 1 s after the revocation was answered 200, and every later call got
# 401; the other keys go on unharmed.  Every call is one row, none twice,
# and the period counters equal the ledger.

use strict;
use warnings;

use List::Util qw(max min);
use Test::More;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);

plan(skip_all => 'module or worker not built')
    unless Aihub::have_module() && Aihub::have_worker();

my $t = Aihub->new(redis => 1, mariadb => 1, mock => 1);
$t->migrate;

my @keys = fault_keys($t, 'rev');
my $victim = $t->create_key(account => 'rev1', plan => 'pro');

fault_nodes($t, $keys[0]);

# --- the fault ----------------------------------------------------------------

my $load = AihubFixtures::load_start($t, keys => \@keys, names => [qw(n1 n2)],
                                     clients => 3, seconds => 30, max => 400,
                                     pause => 0.02);
my $probe = AihubFixtures::load_start($t, keys => [ $victim ],
                                      names => [qw(n1 n2)], clients => 2,
                                      seconds => 30, max => 1000,
                                      pause => 0.01);
sleep 3;

# the revocation runs in the background; its moment is when the key
# record in Redis stops saying "active" (the invalidation is published
# right after)
my $record = 'aihub:key:' . Aihub::key_hash($victim);
my $t0 = time;
$t->spawn('revoke', [ $Aihub::WORKER, $t->worker_flags,
                      'key', 'revoke', Aihub::key_prefix($victim) ]);
ok($t->wait_for(sub {
    ($t->redis('HGET', $record, 'status') // '') ne 'active'
}, timeout => 20, interval => 0.005), 'the key record changed in Redis');
my $t1 = time;
ok($t->wait_for(sub { !$t->alive('revoke') }, timeout => 20),
   'key revoke finished');
is($t->{procs}{revoke}{status}, 0, 'key revoke exited 0')
    or diag(Aihub::read_file($t->dir . '/revoke.out'));
my $t2 = time;

sleep 2.5;
my @vres = AihubFixtures::load_stop($t, $probe);
my @res = AihubFixtures::load_stop($t, $load);
my %st = AihubFixtures::status_counts(@res, @vres);

# --- what clients saw --------------------------------------------------------

for my $n (qw(n1 n2)) {
    my @v = grep { $_->{node} eq $n } @vres;
    my @ok = grep { $_->{status} == 200 } @v;
    my @refused = grep { $_->{status} == 401 } @v;
    my $last_ok = @ok ? max(map { $_->{start} } @ok) - $t1 : -1;
    my $first_401 = @refused ? min(map { $_->{start} } @refused) - $t1
                             : 99;

    diag(sprintf '%s: the record changed %.3f s after the revoke command '
         . 'started, which ended %.3f s later; from the change, the last '
         . '200 started at %+.3f s, the first call refused 401 started at '
         . '%+.3f s; %d calls with the key, %d answered 200, %d refused 401',
         $n, $t1 - $t0, $t2 - $t1, $last_ok, $first_401, scalar @v,
         scalar @ok, scalar @refused);

    ok((grep { $_->{start} < $t0 } @ok) >= 2,
       "$n: the key worked before the revocation");
    cmp_ok($last_ok, '<=', 1, "$n: no 200 for a call started > 1 s after "
                              . 'the revocation reached Redis');
    cmp_ok($first_401, '<=', 1, "$n: refused 401 within 1 s");
    my @late = grep { $_->{start} > $t1 + 1 } @v;
    ok(@late >= 5 && !grep({ $_->{status} != 401
                             || $_->{code} ne 'invalid_api_key' } @late),
       "$n: every later call got 401 invalid_api_key (" . @late . ')')
        or diag(join ', ', map { "$_->{status} $_->{code}" } @late);
}

is(scalar(grep { $_->{status} != 200 } @res), 0,
   'the other keys were answered 200 throughout (' . @res . ' calls)');

# --- what was stored ---------------------------------------------------------

ok(AihubFixtures::wait_drained($t), 'drained');
my $calls = AihubFixtures::chat_calls($t);
is(AihubFixtures::usage_rows($t), $calls,
   "one row per call that reached the provider ($calls)");
is($t->sql_value('SELECT COUNT(DISTINCT event_id) FROM usage_events'),
   AihubFixtures::usage_rows($t), 'no event stored twice');
is($t->sql_value('SELECT COUNT(*) FROM usage_events WHERE status = 200'),
   $st{200} // 0, 'the 200 rows are the 200s clients saw');
is($t->redis('XLEN', 'aihub:usage:dead'), 0, 'no dead letters');

my $c = AihubFixtures::ledger_counters($t);
is_deeply({ map { $_ => $c->{$_}[0] } keys %$c },
          { map { $_ => $c->{$_}[1] } keys %$c },
          'period counters equal the ledger');

$t->done;
