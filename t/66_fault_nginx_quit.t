#!/usr/bin/perl

# Fault: one of two nginx nodes quits gracefully (SIGQUIT) under a steady
# load of calls that take 500 ms at the provider.  The calls in flight on
# the quitting node complete with 200 and are metered (the node confirms
# their events before it exits); later clients of that node get connection
# refused, never an error from nginx.  Every call that reached the
# provider is one row, none twice, and the period counters equal the
# ledger.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);

plan(skip_all => 'module or worker not built')
    unless Aihub::have_module() && Aihub::have_worker();

my $t = Aihub->new(redis => 1, mariadb => 1, mock => 1);
$t->migrate;

my @keys = fault_keys($t, 'quit');

fault_nodes($t, $keys[0], extra => 'aihub_pass_request_header x-mock-*;');

# --- the fault ----------------------------------------------------------------

my $load = AihubFixtures::load_start($t, keys => \@keys, names => [qw(n1 n2)],
                                     clients => 6, seconds => 30, max => 200,
                                     pause => 0.02,
                                     headers => { 'x-mock-delay-ms' => 500 });
sleep 3;
my $quit_at = time;
$t->stop_proc('nginx:n2', signal => 'QUIT', grace => 20);
my $gone_at = time;
sleep 2;
my @res = AihubFixtures::load_stop($t, $load);
my %st = AihubFixtures::status_counts(@res);

my @n2 = grep { $_->{node} eq 'n2' } @res;
my @inflight = grep { $_->{start} < $quit_at
                      && $_->{start} + $_->{elapsed} > $quit_at } @n2;
my %code;
$code{"$_->{status} $_->{code}"}++ for grep { $_->{status} != 200 } @res;
diag(sprintf 'n2 took %.2f s to quit; %d calls in flight on it at SIGQUIT; '
     . 'client statuses: %s; failures: %s', $gone_at - $quit_at,
     scalar @inflight, join(', ', map { "$_ x $st{$_}" } sort keys %st),
     join(', ', map { "$_ x $code{$_}" } sort keys %code) || 'none');

# --- what clients saw, what was stored --------------------------------------

ok(!$t->alive('nginx:n2'), 'n2 exited');
cmp_ok(scalar @inflight, '>=', 1, 'calls were in flight on n2 at SIGQUIT');
is(scalar(grep { $_->{status} != 200 } @inflight), 0,
   'every call in flight on n2 completed with 200');
is(scalar(grep { $_->{status} != 200 } grep { $_->{node} eq 'n1' } @res), 0,
   'n1 answered every call 200');
my @other = grep { $_->{status} != 200
                   && !($_->{status} == 599 && $_->{code} eq 'connect') }
            @res;
is(scalar @other, 0, 'the only failures are refused connections to n2')
    or diag(join "\n", map { "$_->{node} $_->{status} $_->{code}" } @other);
ok((grep { $_->{node} eq 'n1' && $_->{status} == 200
           && $_->{start} > $gone_at } @res), 'n1 served on after n2 left');

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
