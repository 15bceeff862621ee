#!/usr/bin/perl

# Fault: the connections to Redis broken (a proxy, an idle timeout, a
# failover in between), and the new ones slow to be made.  The module
# makes a connection that had worked again at once, and a call that needs
# Redis meanwhile waits for it, within aihub_redis_timeout, instead of
# failing: here every key lookup needs Redis (the key cache is not trusted
# while the subscription's connection is down), and every call made while
# the module had no connection is answered 200 once it has one.  If the
# connection is not made within the timeout, the waiting calls fail (503,
# fail closed) and the next calls after it are answered again.
#
# Redis is reached through a proxy in this test.  Told to cut, it closes
# every connection it relays and stops accepting, its accept queue filled:
# the module's new connections' SYNs are dropped, and TCP sends them again
# 1, 3, 7 ... s later.  No timed assertion: every wait is a poll, and the test
# checks that its calls were made before the module was connected again.

use strict;
use warnings;

use Test::More;
use IO::Select;
use IO::Socket::IP;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);

plan(skip_all => 'module not built') unless Aihub::have_module();

my $t = Aihub->new(redis => 1);

seed_models($t);
my $probe = seed_full_key($t, account => 7400, included => 1000000);

my $CUT = $t->dir . '/cut';             # exists: cut, hold for its seconds
my $CUT_DONE = $t->dir . '/cut.done';   # when the cut was made
my $BACK = $t->dir . '/back';           # when the module was accepted again


# --- the proxy ---------------------------------------------------------------

# a file the other process acts on as soon as it exists: whole or not at
# all (written in place, a loaded machine let the proxy read the cut's
# file empty, and it held nothing)
sub publish {
    my ($file, $text) = @_;

    Aihub::write_file("$file.tmp", $text);
    rename "$file.tmp", $file or die "$file: $!\n";
}


sub proxy {
    my ($listen, $redis_port) = @_;
    my $sel = IO::Select->new($listen);
    my (%peer, %dummy, @dummies);
    my ($hold_until, $cut_at) = (0, 0);

    for ( ;; ) {
        if (-e $CUT) {
            my $hold = (Aihub::read_file($CUT) =~ /([\d.]+)/)[0];
            unlink $CUT;
            unlink $BACK;

            my @all = values %peer;
            %peer = ();
            for (@all) {
                $sel->remove($_);
                close $_;
            }

            # the listener not read and its queue full of our own
            # connections: the kernel drops the module's SYNs
            $sel->remove($listen);
            for (1 .. 4) {
                my $d = IO::Socket::IP->new(PeerHost => '127.0.0.1',
                                            PeerPort => $listen->sockport,
                                            Blocking => 0) or next;
                $dummy{ $d->sockport } = 1;
                push @dummies, $d;
            }

            $hold_until = time + $hold;
            $cut_at = time;
            publish($CUT_DONE, "$cut_at\n");
        }

        if ($hold_until && time >= $hold_until) {
            $hold_until = 0;
            $sel->add($listen);
        }

        for my $s ($sel->can_read(0.01)) {
            if ($s == $listen) {
                my $c = $listen->accept or next;
                if (delete $dummy{ $c->peerport }) {
                    close $c;
                    next;
                }
                publish($BACK, time . "\n")
                    if $cut_at && !-e $BACK;
                my $r = IO::Socket::IP->new(PeerHost => '127.0.0.1',
                                            PeerPort => $redis_port)
                    or do { close $c; next };
                @peer{ $c, $r } = ($r, $c);
                $sel->add($c, $r);
                next;
            }

            next unless defined fileno($s);     # closed with its peer

            my $n = sysread($s, my $buf, 65536);
            my $to = $peer{$s};

            if (!$n || !$to || !defined syswrite($to, $buf)) {
                for ($s, $to) {
                    next unless $_;
                    delete $peer{$_};
                    $sel->remove($_);
                    close $_;
                }
            }
        }
    }
}

my ($PROXY, $proxy_pid) = fork_proxy($t, 1, \&proxy);

sub losses { scalar(() = $t->error_log =~ /redis connection to "[^"]+" lost/g) }

sub resets {
    scalar(() = $t->error_log
                =~ /redis connection to "[^"]+" lost: Connection reset/g)
}

# cut every connection, accept none for $hold seconds; returns once the
# module has seen its command connection go (on a loaded machine a call
# that comes first is sent on the dead connection, and lost with it)
sub cut {
    my ($hold) = @_;
    my $lost = losses();
    unlink $CUT_DONE;
    publish($CUT, "$hold\n");
    $t->wait_for(sub { -e $CUT_DONE }, timeout => 10, interval => 0.01)
        or BAIL_OUT('the proxy did not cut');
    $t->wait_for(sub { losses() > $lost }, timeout => 10, interval => 0.01)
        or BAIL_OUT('the module did not see its connection go');
}

sub back_at { -e $BACK ? (Aihub::read_file($BACK) =~ /([\d.]+)/)[0] : undef }


# --- the gateway -------------------------------------------------------------

# aihub_redis_timeout 5s
ok(proxied_gateway($t, $PROXY, 1, $probe),
   'catalog loaded, through the proxy');


# --- connections made again a second later: the calls wait ------------------

my $key = seed_full_key($t, account => 7401, included => 1000000,
                        overage => 0);
is($t->chat($key, model => 'test-basic')->{status}, 200, 'a first call');

# A connection cut within 100 ms of being made is made again after the
# backoff (a Redis that keeps dropping new connections), not at once: the
# sleep.  Held 1.2 s: the SYN and its first resend (1 s later) are
# dropped, the second (3 s after the first) is accepted, well within the
# 5 s timeout.  A trial is void when the new connection itself is reset as the proxy
# lets it in (its handshake finished while the accept queue was full: the
# kernel's doing, not the module's): the calls sent on it are lost with
# it, as calls in flight on any broken connection are.  Up to 3 trials.
sleep 0.3;
my ($sent, @r, $back);
for my $trial (1 .. 3) {
    my $reset = resets();
    cut(1.2);
    $sent = time;
    @r = parallel_chat($t, 10, $key);
    $back = back_at();
    last unless resets() > $reset
                && grep { $_->{status} != 200 } @r;
    diag("trial $trial void: the new connection was reset");
    $t->wait_for(sub {
        $t->chat($key, model => 'test-basic')->{status} == 200
    }, timeout => 15, interval => 0.2);
    sleep 0.3;
}
ok(defined $back && $back > $sent,
   'the calls were made before the module was connected again')
    or diag('back ' . ($back // 'never') . ", calls at $sent");
is(scalar(grep { $_->{status} == 200 } @r), 10,
   'every call made while the connection was being made again: 200')
    or diag(join ' ', map { "$_->{status} $_->{code}" } @r);

my ($ok, $calls) = wait_counted($t, 7401, 11);
ok($ok, "every lease back, the counter equal to the events ($calls)");


# --- a client gone while its call is held: its request ends then ----------
# The module watches the client while a request waits for Redis (as
# limit_req's delay does): one that goes away ends its request at once
# (499), and its held command is dropped, not sent on the new connection.

my $gone = 5;
my $other = 'aihub_requests_total{status="other"}';
my $before = gateway_metrics($t)->{$other} // 0;
my @pids = $t->nginx_worker_pids;
cut(1.2);
my $body = '{"model":"test-basic","messages":[{"role":"user",'
           . '"content":"hello"}]}';
my @socks = map {
    my $s = $t->connect;
    print $s "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"
             . "Authorization: Bearer $key\r\n"
             . "Content-Type: application/json\r\n"
             . 'Content-Length: ' . length($body) . "\r\n\r\n$body";
    $s;
} 1 .. $gone;
sleep 0.3;
close $_ for @socks;
my $ended = $t->wait_for(sub {
    (gateway_metrics($t)->{$other} // 0) >= $before + $gone
}, timeout => 10, interval => 0.05);
my $at = time;
$back = back_at();
ok($ended, "the $gone requests whose client went away ended (499)");
ok(!defined $back || $back > $at,
   'they ended while the module was not connected yet')
    or diag('back ' . ($back // 'never') . ", ended by $at");
ok($t->wait_for(sub { defined back_at() }, timeout => 15, interval => 0.1),
   'the proxy accepts the module again');
ok($t->wait_for(sub {
    $t->chat($key, model => 'test-basic')->{status} == 200
}, timeout => 15, interval => 0.2), 'then a call: 200');
is_deeply([ $t->nginx_worker_pids ], \@pids,
          'the worker process lived through it');
is(gateway_metrics($t)->{$other} // 0, $before + $gone,
   'no other request ended so');


# --- not made again within aihub_redis_timeout: the calls fail --------------

cut(8);
$sent = time;
my $r = $t->chat($key, model => 'test-basic', timeout => 20);
$back = back_at();
ok(!defined $back || $back > $sent,
   'the call was made before the module was connected again');
is_error($r, 503, 'service_unavailable',
         'no connection within aihub_redis_timeout');

ok($t->wait_for(sub { defined back_at() }, timeout => 15, interval => 0.1),
   'the proxy accepts the module again');
ok($t->wait_for(sub {
    $t->chat($key, model => 'test-basic')->{status} == 200
}, timeout => 15, interval => 0.2), 'a call once it is connected: 200');

like($t->error_log, qr/redis connection to "127\.0\.0\.1" lost/,
     'the module saw its connection go');

kill 'TERM', $proxy_pid;
waitpid($proxy_pid, 0);

$t->done;
