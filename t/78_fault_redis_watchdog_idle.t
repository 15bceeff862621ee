#!/usr/bin/perl

# The watchdog that drops a Redis connection which stopped answering (no
# reply for 10 x aihub_redis_timeout + 5 s while replies are awaited)
# counts the silence from the first command awaited, not from the last
# reply ever: calls admitted from leases with cached keys send nothing, so
# after a quiet spell the last reply is old, and the next command's reply
# is not late.  Before, a watchdog tick while that command waited dropped
# the connection and its callers got 503 (seen in the bench: 4 x 503 at
# the start of a run after 11 s without a lookup).  Control: a Redis that
# really stalls past the limit is still dropped and reconnected.  And an
# idle node whose connection goes silent (muted by a proxy) is dropped and
# reconnected by the watchdog with no call: its sweeps are awaited too.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);

plan(skip_all => 'module not built') unless Aihub::have_module();

my $t = Aihub->new(redis => 1, mock => 1);

# "idle": a 1.5 s timeout, so a lookup may wait 1.1 s (across a watchdog
# tick, every second) and still be answered; its limit is 20 s.
# "short": a 100 ms timeout, a limit of 6 s, for the control.
$t->nginx(gateway_conf(url => '%%MOCK_URL%%', redis_timeout => '1500ms'),
          name => 'idle');
$t->nginx(gateway_conf(url => '%%MOCK_URL%%', redis_timeout => '100ms'),
          name => 'short');

# the stalls below make the subscriptions reconnect; a call that waits
# for the stalled Redis past its timeout is refused with 503
$t->allow_log(qr/redis|Redis/);

seed_models($t);
my @keys = map { seed_full_key($t, plan => 'free') } 1 .. 3;

$t->start_nginx($_) for qw(idle short);
ok(wait_ready($t, $keys[0], name => $_), "$_: ready") for qw(idle short);

my $r = $t->chat($keys[0], model => 'test-basic', name => 'idle');
is($r->{status}, 200, 'idle: a call (its key looked up, its lease taken)');
my $last_call = time;

# --- the control: a real stall past the limit is still noticed ----------

$r = $t->chat($keys[0], model => 'test-basic', name => 'short');
is($r->{status}, 200, 'short: a call before the stall');

my $STALL = 7.5;
$t->redis_nowait('DEBUG', 'SLEEP', $STALL);
my $stalled_at = time;
sleep 0.1;

# an unknown key: its lookup waits for Redis, the call gets 503 after
# 100 ms, and the lookup stays awaited until Redis answers
$r = $t->chat($keys[1], model => 'test-basic', name => 'short',
              timeout => 5);
is_error($r, 503, 'service_unavailable', 'short: Redis stalled');

sleep 0.2 while time < $stalled_at + $STALL + 0.5;

like($t->error_log('short'),
     qr/sent nothing for 6000 ms with \d+ commands waiting, reconnecting/,
     'short: a lookup awaited for 6 s dropped the connection');

ok($t->wait_for(sub {
        $t->chat($keys[1], model => 'test-basic', name => 'short',
                 timeout => 5)->{status} == 200
    }, timeout => 10), 'short: answered again after the stall');

# --- the fault: a slow reply after a quiet spell longer than the limit --

# the idle node has sent nothing awaited since its call: 20 s and more
# of quiet (the control's stall included)
my $quiet = 21;
sleep 0.2 while time < $last_call + $quiet;

$t->redis_nowait('DEBUG', 'SLEEP', '1.3');
sleep 0.2;

# an unknown key again: its lookup waits some 1.1 s, across a watchdog
# tick (a shorter wait would show that the stall began too late)
my $t0 = time;
$r = $t->chat($keys[2], model => 'test-basic', name => 'idle', timeout => 5);
my $took = time - $t0;
is($r->{status}, 200, 'idle: the first call after the quiet spell, its '
   . 'lookup slow but within aihub_redis_timeout, is answered')
    or diag($r->{content});
cmp_ok($took, '>', 0.9, sprintf('idle: it waited for Redis (%.2f s)', $took));

unlike($t->error_log('idle'), qr/sent nothing/,
       'idle: the watchdog did not drop the connection');

$r = $t->chat($keys[2], model => 'test-basic', name => 'idle');
is($r->{status}, 200, 'idle: and the next call');

# --- an idle node's connection gone silent: the sweep is watched --------

# A connection can go silent without closing (a proxy or a NAT that stops
# passing replies while its TCP still answers, so keepalive sees nothing).
# A node with nothing to do still sweeps expired leases (worker 0, every
# half lease time), and that command's reply is awaited like a request's:
# the watchdog drops the silent connection and makes it again before a
# call needs it.  Before, a sweep (or a lease refill) alone was not
# watched: the node noticed at its next call, which then waited out the
# limit.  The proxy mutes the connections it has when $mute appears (it
# reads Redis's replies and passes none on); those made after pass.

my $mute = $t->dir . '/mute';
my ($mproxy, $mpid) = fork_proxy($t, 16, sub {
    my ($listen, $redis_port) = @_;
    my $sel = IO::Select->new($listen);
    my (%peer, %is_client, %muted, %fresh);
    my $muting = 0;

    for ( ;; ) {
        if (!$muting && -e $mute) {
            $muting = 1;
            $muted{$_} = 1 for grep { !$is_client{$_} } values %peer;
        }

        for my $s ($sel->can_read(0.2)) {
            if ($s == $listen) {
                relay_accept($listen, $redis_port, $sel, \%peer, \%is_client);
                next;
            }

            my $n = sysread($s, my $buf, 65536);
            if (!$n) {
                relay_drop($sel, $s, \%peer, \%is_client, \%muted);
                next;
            }

            next if $muted{$s};
            my $to = $peer{$s} or next;
            syswrite($to, $buf)
                // relay_drop($sel, $s, \%peer, \%is_client, \%muted);
        }
    }
});

$t->nginx(gateway_conf(url => '%%MOCK_URL%%', redis => "127.0.0.1:$mproxy",
                       redis_timeout => '100ms',
                       extra => 'aihub_lease_time 2s;'),
          name => 'muted');
$t->start_nginx('muted');
my @mkeys = map { seed_full_key($t, account => 7800 + $_, plan => 'free') }
            1 .. 2;
ok(wait_ready($t, $mkeys[0], name => 'muted'), 'muted: ready');
is($t->chat($mkeys[0], model => 'test-basic', name => 'muted')->{status},
   200, 'muted: a call through the proxy');

# idle: its lease given back and settled (that batch would be awaited
# too), so the node's only commands from here on are its sweeps
my ($settled) = wait_counted($t, 7801, 1);
ok($settled, 'muted: the call settled, its lease back');

Aihub::write_file($mute, '1');
my $muted_at = time;

ok($t->wait_for(sub {
        $t->error_log('muted')
            =~ /sent nothing for 6000 ms with \d+ commands waiting/
    }, timeout => 20),
   'muted: with no call made, the sweep awaited alone made the watchdog '
   . 'drop the silent connection')
    or diag($t->error_log('muted'));
diag(sprintf 'muted: dropped %.1f s after the mute', time - $muted_at);

# the connection made again passes; a key not cached yet needs Redis
ok($t->wait_for(sub {
        $t->chat($mkeys[1], model => 'test-basic', name => 'muted',
                 timeout => 5)->{status} == 200
    }, timeout => 10), 'muted: a key looked up on the connection made again');
kill 'KILL', $mpid;
waitpid($mpid, 0);


# --- idle connections: TCP keepalive ------------------------------------

# every connection of the nodes to Redis (commands and the subscription)
# sends TCP keepalive probes after 15 s idle: one that a NAT or a firewall
# dropped silently is found while the node is quiet, not by its next
# calls, and the probes keep such a mapping alive
SKIP: {
    my $port = $t->redis_port;
    my $ss = `ss -tnopH state established '( dport = :$port )' 2>/dev/null`;
    skip('ss (iproute2) not installed', 2) if $?;

    my @conns = grep { /"nginx"/ } split /\n/, $ss;
    cmp_ok(scalar @conns, '>=', 4, scalar(@conns) . ' connections of the '
                                   . 'two nodes to Redis');
    is(scalar(grep { !/timer:\(keepalive,/ } @conns), 0,
       'each with TCP keepalive on') or diag($ss);
}

done_testing();
