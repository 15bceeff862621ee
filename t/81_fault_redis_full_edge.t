#!/usr/bin/perl

# Fault: Redis full (at its maxmemory, noeviction: it refuses every command
# that adds data), at the two places t/79 does not go.
#
# - A hard quota at its edge.  A free account with 3 of its 40 calls left,
#   20 concurrent calls on two worker processes while Redis refuses
#   writes, then 20 more once it takes them again: exactly 3 answered in
#   all, never a 4th (no lease can be granted on a full Redis, and what a
#   node already holds never goes beyond the quota), and the period
#   counter equals the ledger.
# - Failing open (aihub_failure_mode open) with a buffer of 20 events: the
#   calls pass (the README's promise for that mode), the buffer keeps 20
#   events and drops the rest, counted on /metrics and logged, and the 20
#   go in once Redis takes writes again.  The lines about passing failing
#   open come once, not once a call.
#
# No timed assertion: every wait is a poll.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);

plan(skip_all => 'module or worker not built')
    unless Aihub::have_module() && Aihub::have_worker();

my $t = Aihub->new(redis => 1, mariadb => 1);
$t->migrate;

my $edge = $t->create_key(account => 'edge', plan => 'free');
$t->worker('account', 'override', 'edge', '--included', 40, '--rpm', 0,
           '--tpm', 0);
my $open = $t->create_key(account => 'open', plan => 'pro');
$t->worker('account', 'override', 'open', '--rpm', 0, '--tpm', 0);

my $STUB = canned_stub($t);
$t->nginx(gateway_conf(stub => $STUB), name => 'closed');
worker_processes($t, 2, 'closed');
$t->nginx(gateway_conf(stub => $STUB, failure_mode => 'open',
                       extra => 'aihub_event_buffer 20;'), name => 'open');
worker_processes($t, 1, 'open');

$t->start_worker('--consumer', 'w1', '--batch', 50, '--block-ms', 100);
$t->start_nginx('closed')->start_nginx('open');
ok(wait_ready($t, $edge, name => 'closed', timeout => 10), 'closed: ready');
ok(wait_ready($t, $open, name => 'open', timeout => 10), 'open: ready');

$t->redis('CONFIG', 'SET', 'maxmemory-policy', 'noeviction');

sub full { $t->redis('CONFIG', 'SET', 'maxmemory', 1) }
sub room { $t->redis('CONFIG', 'SET', 'maxmemory', 0) }

sub account_rows {
    my ($name) = @_;
    return $t->sql_value('SELECT COUNT(*) FROM usage_events u JOIN accounts a'
                         . " ON a.id = u.account WHERE a.name = '$name'");
}

sub stored {
    my ($name, $want) = @_;
    return $t->wait_for(sub {
        my $p = eval { $t->redis('XPENDING', 'aihub:usage',
                                 'aihub-drain')->[0] } // -1;
        return $p == 0 && account_rows($name) >= $want;
    }, timeout => 30, interval => 0.2);
}

sub statuses {
    my %n;
    $n{ $_->{status} == 200 ? 200
        : "$_->{status} " . ($_->{code} // '') }++ for @_;
    return \%n;
}

sub tally { my $n = shift; join ', ', map { "$_ x $n->{$_}" } sort keys %$n }


# --- a hard quota at its edge -------------------------------------------------

is(scalar(grep { $t->chat($edge, model => 'mock-basic', name => 'closed')
                   ->{status} == 200 } 1 .. 37),
   37, 'edge: 37 of its 40 calls answered');
ok(stored('edge', 37), 'edge: stored');

full();
like(eval { $t->redis('SET', 'aihub:probe', 'x'); 'stored' } // $@, qr/OOM/,
     'Redis refuses writes (OOM)') or BAIL_OUT('Redis not full');

my $during = statuses(parallel_chat($t, 20, $edge, model => 'mock-basic',
                                    names => [ 'closed' ]));
diag('edge, Redis full: ' . tally($during));
my $ok_during = $during->{200} // 0;
cmp_ok($ok_during, '<=', 3, 'edge, Redis full: at most the 3 calls left');
is($ok_during + ($during->{'503 service_unavailable'} // 0)
   + ($during->{'429 insufficient_quota'} // 0), 20,
   'edge, Redis full: the others 503 service_unavailable (or 429 once the '
   . 'quota is used up)');

room();
my $after;
ok($t->wait_for(sub {
    # the 503s above were "retry shortly": retry until the quota says no
    my $r = $t->chat($edge, model => 'mock-basic', name => 'closed');
    $after->{ $r->{status} == 200 ? 200 : $r->{status} }++;
    return $r->{status} == 429;
}, timeout => 30, interval => 0.1), 'edge, Redis back: refused 429 at last');
my $burst = statuses(parallel_chat($t, 20, $edge, model => 'mock-basic',
                                   names => [ 'closed' ]));
diag('edge, Redis back: ' . tally($after) . '; then 20 at once: '
     . tally($burst));
is(($burst->{200} // 0), 0, 'edge: no call beyond the quota in a burst after');
is($ok_during + ($after->{200} // 0), 3,
   'edge: exactly the 3 calls left answered in all');

ok(stored('edge', 40), 'edge: stored');
is(account_rows('edge'), 40, 'edge: 40 rows, one a call answered');
is($t->sql_value("SELECT COUNT(*) FROM usage_events u JOIN accounts a"
                 . " ON a.id = u.account WHERE a.name = 'edge'"
                 . ' AND u.status = 200'), 40, 'edge: all of them 200');

sub counters_equal {
    my ($what) = @_;
    my $c;
    ok($t->wait_for(sub {
        $c = AihubFixtures::ledger_counters($t);
        return !grep { $c->{$_}[0] != $c->{$_}[1] } keys %$c;
    }, timeout => 30, interval => 0.2), "$what: the period counters equal "
                                         . 'the ledger')
        or diag(explain($c));
}

counters_equal('edge');


# --- failing open, a buffer of 20 --------------------------------------------

is($t->chat($open, model => 'mock-basic', name => 'open')->{status}, 200,
   'open: a call takes a block lease');
ok(stored('open', 1), 'open: stored');
my $m0 = gateway_metrics($t, 'open');

full();
my $lines0 = () = $t->error_log('open') =~ /\(failing open\), and/g;
my $passed = statuses(map { { status => $t->chat($open, model => 'mock-basic',
                                                 name => 'open')->{status} } }
                      1 .. 30);
diag('open, Redis full: ' . tally($passed));
is($passed->{200}, 30, 'open, Redis full: 30 calls pass (failing open)');

my $m = gateway_metrics($t, 'open');
is($m->{aihub_usage_events_buffered}, 20,
   'open: the buffer keeps its 20 events');
is($m->{'aihub_usage_events_total{state="dropped"}'}
   - ($m0->{'aihub_usage_events_total{state="dropped"}'} // 0), 10,
   'open: the other 10 are dropped, and counted');
is(() = $t->error_log('open') =~ /usage event buffer full/g, 10,
   'open: each dropped event logged, with its id');
my $lines = (() = $t->error_log('open') =~ /\(failing open\), and/g)
            - $lines0;
cmp_ok($lines, '<=', 1, 'open: passing failing open said once, not once a '
                        . "call ($lines lines)");

room();
ok($t->wait_for(sub { gateway_metrics($t, 'open')
                      ->{aihub_usage_events_buffered} == 0 },
                timeout => 30, interval => 0.2),
   'open, Redis back: the 20 events went in');
ok(stored('open', 21), 'open: stored');
is(account_rows('open'), 21, 'open: the first call and the 20 kept');
is($t->sql_value('SELECT COUNT(DISTINCT event_id) FROM usage_events'),
   $t->sql_value('SELECT COUNT(*) FROM usage_events'),
   'no event stored twice');

# the 10 dropped calls are in neither: what is counted is what is billed
counters_equal('open');

# calls admitted while the buffer had room that end after it filled: their
# events are dropped, and so are their calls (before: counted, never
# billed).  15 events held, then 30 calls at once on the node's lease.
full();
for (1 .. 15) { $t->chat($open, model => 'mock-basic', name => 'open') }
my @burst = parallel_chat($t, 30, $open, model => 'mock-basic',
                          names => [ 'open' ]);
diag('open, 15 held then 30 at once: '
     . tally(statuses(map { { status => $_->{status} } } @burst)));
my $dropped = gateway_metrics($t, 'open')
              ->{'aihub_usage_events_total{state="dropped"}'};
room();
ok($t->wait_for(sub { gateway_metrics($t, 'open')
                      ->{aihub_usage_events_buffered} == 0 },
                timeout => 30, interval => 0.2),
   'open, Redis back: the kept events went in');
ok(stored('open', 22), 'open: stored');
diag("dropped in all: $dropped");
counters_equal('open');

$t->allow_log(qr/redis|failing open|usage event buffer full/i);
$t->done;
