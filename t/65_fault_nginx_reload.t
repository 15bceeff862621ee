#!/usr/bin/perl

# Fault: nginx reloaded (SIGHUP) five times under a steady load, on one of
# two nodes.  Each call takes 200 ms at the provider, so calls are in
# flight at every HUP.  Clients see every call answered 200 (the listening
# socket stays open, old worker processes finish their requests and
# confirm their events before they exit); every call is one row, none
# twice, and the period counters equal the ledger.

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

my @keys = fault_keys($t, 'hup');

fault_nodes($t, $keys[0], extra => 'aihub_pass_request_header x-mock-*;');

# --- the fault ----------------------------------------------------------------

my $load = AihubFixtures::load_start($t, keys => \@keys, names => [qw(n1 n2)],
                                     clients => 4, seconds => 40, max => 400,
                                     pause => 0.02,
                                     headers => { 'x-mock-delay-ms' => 200 });
my @took;

for my $i (1 .. 5) {
    sleep 1;
    my @old = $t->nginx_worker_pids('n1');
    my $t0 = time;
    $t->reload_nginx('n1');
    push @took, sprintf '%.2f', time - $t0;
    my @new = $t->nginx_worker_pids('n1');
    is(scalar @new, 2, "reload $i: two new worker processes (@old -> @new)");
}

sleep 1;
my @res = AihubFixtures::load_stop($t, $load);
my %st = AihubFixtures::status_counts(@res);
diag("reloads took (s): @took; client statuses: "
     . join ', ', map { "$_ x $st{$_}" } sort keys %st);

# --- what clients saw, what was stored --------------------------------------

cmp_ok(scalar(grep { $_->{node} eq 'n1' } @res), '>=', 20,
       'the reloaded node had load');
is($st{200} // 0, scalar @res, 'clients saw every call answered 200')
    or diag(join "\n", map { "$_->{node} $_->{status} $_->{code}" }
                       grep { $_->{status} != 200 } @res);

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

# --- a reload that fails, then a worker process that dies -----------------
#
# A configuration with an error after "aihub_cache_zone": the reload fails
# and the old configuration serves on.  Then a worker process dies (an OOM
# kill, a crash): the master forks another with the old configuration.
# Before, the lease zone's pointer was left in the failed configuration's
# freed memory, and every worker process forked after it crashed at its
# first lease (1,300 respawns in 2 s, every call failed).
{
    my $d = $t->nginx_dir('n1');
    my $conf = Aihub::read_file("$d/nginx.conf");
    (my $bad = $conf) =~ s/(server \{)/bogus_directive on;\n    $1/;
    Aihub::write_file("$d/nginx.conf", $bad);
    my @before = $t->nginx_worker_pids('n1');

    kill 'HUP', $t->{procs}{'nginx:n1'}{pid};
    ok($t->wait_for(sub {
           $t->error_log('n1') =~ /unknown directive "bogus_directive"/
       }, timeout => 5), 'the reload failed');
    Aihub::write_file("$d/nginx.conf", $conf);
    is_deeply([ $t->nginx_worker_pids('n1') ], \@before,
              'the old worker processes serve on');

    kill 'KILL', @before;
    my %gone = map { $_ => 1 } @before;
    ok($t->wait_for(sub {
           my @now = $t->nginx_worker_pids('n1');
           @now && !grep { $gone{$_} } @now
       }, timeout => 5), 'the master forked new worker processes');
    select(undef, undef, undef, 0.5);

    my @st = map { $t->chat($keys[0], model => 'mock-basic', name => 'n1',
                            timeout => 5)->{status} } 1 .. 5;
    is_deeply(\@st, [ (200) x 5 ],
              'they answer calls (the old configuration)');
    unlike($t->error_log('n1'), qr/exited on signal 11/,
           'no worker process crashed');
    $t->allow_log(qr/bogus_directive|exited on signal 9/);
}

$t->done;
