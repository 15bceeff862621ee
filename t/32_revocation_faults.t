#!/usr/bin/perl

# Revocation under the faults that threaten it:
# - failing open while Redis is down serves cached keys, but never one
#   that was revoked (or changed) before Redis went away;
# - a subscription that goes deaf without its connection closing (a
#   half-open socket) is noticed within seconds by the heartbeat: until it
#   hears again no cached key counts as fresh, so a revocation takes effect
#   at once instead of after the cache TTL;
# - a key lookup answered before a revocation whose message arrives first
#   (the two come on different connections) does not cache the key as
#   fresh: the next call reads it again and is refused.
# Redis is reached through a small proxy in this test that can stop
# passing what Redis sends to subscribers, as a half-open socket would, or
# hold back what it sends on the other connections for a while.

use strict;
use warnings;

use Test::More;
use IO::Select;
use IO::Socket::IP;
use POSIX qw(_exit);
use Time::HiRes qw(sleep time);

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);

my $t = Aihub->new;
$t->skip_unless_built;
$t->start_redis;
$t->start_mock;

seed_models($t);

my $deaf_flag = $t->dir . '/deaf';
my $hold_flag = $t->dir . '/hold';          # replies held while it exists
my $held_flag = $t->dir . '/held';          # made once one is held
my $proxy_port = Aihub::free_port();
my $proxy_pid = start_proxy($proxy_port, $t->redis_port);

$t->nginx(<<"END");
    aihub_redis 127.0.0.1:$proxy_port;
    aihub_redis_timeout 2s;
    aihub_cache_zone aihub:8m;
    aihub_cache_ttl 60s;
    aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;

    server {
        listen 127.0.0.1:%%PORT%%;

        location /v1/ {
            aihub on;
            aihub_failure_mode open;
            proxy_pass \$aihub_proxy_url;
            proxy_set_header Host \$aihub_provider_host;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
END
$t->start_nginx;

my $kept = seed_full_key($t, account => 3101, models => '*');
my $revoked = seed_full_key($t, account => 3102, models => '*');
my $later = seed_full_key($t, account => 3103, models => '*');

ok(wait_ready($t, $kept), 'gateway ready');

sub models_status {
    my ($key) = @_;
    return $t->http(GET => '/v1/models', key => $key, timeout => 5)
             ->{status};
}

sub chat_status {
    my ($key) = @_;
    my $r = $t->chat($key, model => 'test-basic', timeout => 5);
    diag("chat: $r->{status} $r->{content}") if $r->{status} != 200 && $r->{status} != 401;
    return $r->{status};
}

sub revoke {
    my ($key) = @_;
    my $hash = Aihub::key_hash($key);
    $t->redis('HSET', "aihub:key:$hash", 'status', 'revoked');
    $t->redis('PUBLISH', 'aihub:invalidate', "key:$hash");
}

# --- failing open never serves a revoked key ---------------------------------

is(models_status($kept), 200, 'key A cached');
is(models_status($revoked), 200, 'key B cached');
is(models_status($later), 200, 'key C cached');

revoke($revoked);
sleep 1;                    # the invalidation arrives (README: within 1 s)

# Redis goes away before anyone asks for key B again
$t->stop_redis;
sleep 0.5;

is(models_status($kept), 200,
   'Redis down, failing open: an unchanged cached key is served');
isnt(models_status($revoked), 200,
     'Redis down, failing open: the key revoked before is not served');

$t->start_redis;                            # same port, data lost
seed_models($t);
$t->seed_key(key => $kept, account => 3101, models => '*');
$t->seed_key(key => $later, account => 3103, models => '*');
$t->wait_for(sub { models_status($kept) == 200 }, timeout => 10);

# --- a deaf subscription -----------------------------------------------------

# the subscriber is back (its resubscription makes the whole cache stale
# once; that must be over before the test, or it would do the work)
ok($t->wait_for(sub { ($t->redis('PUBLISH', 'aihub:invalidate', 'none')
                       // 0) >= 1 }, timeout => 10),
   'the subscription is back');
sleep 0.5;

is(chat_status($later), 200, 'key C cached again');

Aihub::write_file($deaf_flag, "1\n");       # subscribers hear nothing now
sleep 4.5;                                  # > 3 s without a heartbeat

revoke($later);                             # the message is not heard
my $t0 = time;
my $st = 0;

$t->wait_for(sub { ($st = chat_status($later)) == 401 }, timeout => 3);
my $took = time - $t0;

is($st, 401, 'deaf subscription: the revoked key is refused');
ok($took <= 1, sprintf 'within a second of the revocation (%.2f s)',
                       $took);
is(chat_status($kept), 200, 'other keys are still served');

unlink $deaf_flag;                          # hears again
sleep 2.5;
is(models_status($kept), 200, 'subscription back: keys served');

like($t->error_log, qr/hears nothing, reconnecting/,
     'the deaf subscriber connection was made again');

# --- a lookup's reply overtaken by the revocation's message ------------------

ok($t->wait_for(sub { ($t->redis('PUBLISH', 'aihub:invalidate', 'none')
                       // 0) >= 1 }, timeout => 10),
   'the subscription hears again');

my $raced = seed_full_key($t, account => 3104, models => '*');
my $status_file = $t->dir . '/raced.status';

Aihub::write_file($hold_flag, "1\n");
my $caller = fork // die "fork: $!";

if ($caller == 0) {
    Aihub::write_file($status_file, chat_status($raced) . "\n");
    _exit(0);
}

# Redis has answered the lookup (the key is active) and the proxy holds the
# answer; the revocation's message reaches the gateway first
my $prefix = Aihub::key_prefix($raced);
ok($t->wait_for(sub { -e $held_flag
                      && index(Aihub::read_file($held_flag), $prefix) >= 0 },
                timeout => 5),
   'the key lookup is answered and its answer held');
revoke($raced);
sleep 0.2;
unlink $hold_flag;
waitpid($caller, 0);

like(Aihub::read_file($status_file), qr/^200$/m,
     'the call in flight when the key was revoked is served');
is(chat_status($raced), 401,
   'the next call is refused: the answer older than the revocation was '
   . 'not cached as fresh');

kill 'TERM', $proxy_pid;
waitpid($proxy_pid, 0);

$t->allow_log(qr/redis|Connection refused|connect\(\) failed/i);
$t->done;


# A TCP proxy to Redis; while $deaf_flag exists, what Redis sends on a
# connection that subscribed is read and dropped; while $hold_flag exists,
# what it sends on the other connections is held (and written to
# $held_flag) and passed on once the flag is gone.
sub start_proxy {
    my ($port, $redis_port) = @_;

    my $listen = IO::Socket::IP->new(LocalHost => '127.0.0.1',
                                     LocalPort => $port, Listen => 64,
                                     ReuseAddr => 1)
        or die "proxy: $!";

    my $pid = fork // die "fork: $!";

    if ($pid) {
        close $listen;
        return $pid;
    }

    $SIG{CHLD} = 'IGNORE';
    $SIG{TERM} = sub { kill 'TERM', -$$ if 0; _exit(0) };

    while (my $c = $listen->accept) {
        my $child = fork // next;

        if ($child) {
            close $c;
            next;
        }

        close $listen;
        relay($c, $redis_port);
        _exit(0);
    }

    _exit(0);
}

sub relay {
    my ($c, $redis_port) = @_;

    my $r = IO::Socket::IP->new(PeerHost => '127.0.0.1',
                                PeerPort => $redis_port)
        or return;
    my $sel = IO::Select->new($c, $r);
    my $subscriber = 0;
    my $held = '';
    my $end = time + 120;                   # bounded

    while (time < $end) {
        if ($held ne '' && !-e $hold_flag) {
            syswrite($c, $held);
            $held = '';
        }

        for my $fh ($sel->can_read($held ne '' ? 0.01 : 0.5)) {
            my $n = sysread($fh, my $buf, 65536);
            return unless $n;

            if ($fh == $c) {
                $subscriber = 1 if $buf =~ /SUBSCRIBE/i;
                syswrite($r, $buf);

            } elsif ($subscriber) {
                syswrite($c, $buf) unless -e $deaf_flag;

            } elsif ($held ne '' || -e $hold_flag) {
                $held .= $buf;
                Aihub::write_file($held_flag, $held);

            } else {
                syswrite($c, $buf);
            }
        }
    }
}
