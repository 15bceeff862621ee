#!/usr/bin/perl

# nginx reloaded while Redis does not answer (README, "aihub_exit_flush_
# timeout").  Calls admitted from the node's lease with a cached key are
# answered while Redis is stopped (SIGSTOP); their usage events wait in the
# worker process's buffer.  The reload replaces the process: the old one
# keeps trying to hand its events to Redis for aihub_exit_flush_timeout
# (60 s by default), as it would keep serving a long call, and once Redis
# answers again every event is in the stream.  Before, the old process gave
# up after a fixed 5 s and the events of the calls it had answered were
# lost, never billed: a node configured with a timeout shorter than the
# outage shows that loss, logged.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);
use AihubStream qw(usage_events);

plan(skip_all => 'module not built') unless Aihub::have_module();

my $t = Aihub->new(redis => 1);

seed_models($t);
my $stub = canned_stub($t);

# distinct ids: a batch sent again after a lost connection may be in the
# stream twice (the worker stores it once)
sub events_of {
    my ($account) = @_;
    my %ids = map { $_->{id} => 1 }
              grep { $_->{account} == $account } usage_events($t);
    return scalar keys %ids;
}

# one node: warm its key and lease, stop Redis, calls, reload, Redis back
# after $away seconds; returns (calls answered while Redis was stopped,
# events of the account in the stream once the old process is gone)
sub reload_while_away {
    my ($name, $account, $timeout, $away) = @_;

    my $extra = 'aihub_lease_time 60s;';
    $extra .= " aihub_exit_flush_timeout $timeout;" if $timeout;
    $t->nginx(gateway_conf(stub => $stub, redis_timeout => '200ms',
                           extra => $extra), name => $name);
    worker_processes($t, 1, $name);
    $t->start_nginx($name);

    my $key = seed_full_key($t, account => $account, included => 1000000);
    ok(wait_ready($t, $key, name => $name), "$name: ready");

    is($t->chat($key, model => 'test-basic', name => $name)->{status}, 200,
       "$name: call $_ before") for 1 .. 3;
    ok($t->wait_for(sub { events_of($account) == 3 }, timeout => 10),
       "$name: their 3 events in the stream");

    my %old = map { $_ => 1 } $t->nginx_worker_pids($name);
    my $redis = $t->{procs}{redis}{pid};
    kill 'STOP', $redis;

    my $answered = grep {
        $t->chat($key, model => 'test-basic', name => $name,
                 timeout => 5)->{status} == 200
    } 1 .. 20;

    kill 'HUP', $t->{procs}{"nginx:$name"}{pid};
    sleep $away;
    kill 'CONT', $redis;

    ok($t->wait_for(sub {
           !grep { $old{$_} } $t->nginx_worker_pids($name)
       }, timeout => 30), "$name: the old worker process exited");

    # the new process's batches, if any, are in the stream by now too
    $t->wait_for(sub { events_of($account) >= 3 + $answered },
                 timeout => 5);

    return ($answered, events_of($account));
}


my ($answered, $events) = reload_while_away('n1', 8901, undef, 7);
is($answered, 20, 'the 20 calls made while Redis was stopped were '
                  . 'answered, from the lease');
is($events, 23, 'every event in the stream: the old process waited 7 s '
                . 'for Redis, beyond the 5 s it gave up after before');
unlike($t->error_log('n1'), qr/gave up flushing/, 'n1 gave up nothing');

($answered, $events) = reload_while_away('n2', 8902, '2s', 4);
is($answered, 20, 'n2: the 20 calls answered too');
# (a batch sent before Redis stopped runs when it answers again: its
# events reach the stream though the process counted them lost)
cmp_ok($events, '<', 23, 'n2, aihub_exit_flush_timeout 2s and Redis away '
                         . "4 s: calls' events were lost (" . (23 - $events)
                         . ' of 20)');
like($t->error_log('n2'), qr/gave up flushing \d+ usage events at exit/,
     'n2 says it gave up');
like($t->error_log('n2'), qr/exiting with 20 usage events and \d+ settles not confirmed/,
     'and how many events it could not hand over');

$t->done;
