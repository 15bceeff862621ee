#!/usr/bin/perl

# The module's command connection to Redis breaks at each kind of command
# it sends, under a steady load: before and after a lease's grant (after:
# Redis granted it and the answer is lost), before a batch's MULTI and
# after its EXEC (the batch applied, its confirmation lost), before a
# sweep of expired leases, before a key's lookup, after a developer's key
# creation.  The module talks to Redis through a proxy that closes both
# ends at that command, three times each.  Each time the calls go on once
# the connection is made again (at once, the calls meanwhile waiting for
# it, and a lookup, a grant or a key's creation that the cut left without
# its reply sent again there: no call fails), no nginx process dies or
# logs an alert, and once the load stops every lease
# comes back and the account's counter equals its usage events (a batch
# whose confirmation was lost is sent again: its settles apply once, its
# events are in the stream twice and the worker stores them once, by id).

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);
use AihubStream qw(usage_events);

plan(skip_all => 'module not built') unless Aihub::have_module();
plan(skip_all => 'wrk not installed') unless -x '/usr/bin/wrk';

my $t = Aihub->new(redis => 1);

seed_models($t);
my $probe = seed_full_key($t, account => 8800, included => 1000000);

my $CUT = $t->dir . '/cut';
my $CUTS = $t->dir . '/cuts';
my ($PROXY, $proxy_pid) = fork_proxy($t, 64,
                                     cut_proxy(cut => $CUT, cuts => $CUTS));

# a command's words as RESP writes them, for a regex: "$<len>\r\n<word>\r\n"
sub resp { join '', map { '\$' . length($_) . "\\r\\n\Q$_\E\\r\\n" } @_ }

# a script call: EVALSHA, its 40 hex digits, its number of keys, the first
# key's prefix
sub evalsha {
    my ($nkeys, $key) = @_;
    return resp('EVALSHA') . '\$40\r\n[0-9a-f]{40}\r\n' . resp($nkeys)
           . '\$\d+\r\n' . quotemeta($key);
}

my $stub = canned_stub($t);
$t->nginx(gateway_conf(redis => "127.0.0.1:$PROXY", stub => $stub,
                       redis_timeout => '1s', dev => 1,
                       extra => 'aihub_lease_time 2s;'));
worker_processes($t, 2);

# a cut soon after the connection was made: the first grant after nginx
# started.  The connection is made again at once, and the calls meanwhile
# wait for it; before, a connection cut within 100 ms of being made was
# made again only after 100 ms, and the calls of those 100 ms failed
# (2,722 of wrk's here).  The grant the cut dropped is sent again (before,
# its call failed)
my $young_key = seed_full_key($t, account => 8801, included => 10000000);
my $young = 'before ' . evalsha(5, "${PREFIX}period:8801:");
Aihub::write_file($CUT, "$young\n");
$t->start_nginx;
ok(wait_ready($t, $probe), 'catalog loaded, through the proxy');
my ($young_n, $young_bad) = wrk_chat($t, key => $young_key, c => 2,
                                     seconds => 1);
unlink $CUT;
cmp_ok(proxy_cuts($CUTS, $young), '>=', 1,
       'the first grant after the start was cut');
is($young_bad, 0, "no call failed ($young_bad of $young_n)");

my @cuts = (
    [ 'before a grant',      "before " . evalsha(5, "${PREFIX}period:") ],
    [ 'after a grant',       "after " . evalsha(5, "${PREFIX}period:") ],
    [ 'before a batch',      'before ' . resp('MULTI') ],
    [ 'after a batch',       'after ' . resp('EXEC') ],
    [ 'before a sweep',      "before " . evalsha(1, "${PREFIX}leases-due") ],
    [ 'before a key lookup', "before " . evalsha(2, "${PREFIX}key:") ],
);

my $account = 8810;

for (@cuts) {
    my ($what, $line) = @$_;
    $account++;

    my $key = seed_full_key($t, account => $account, included => 10000000);
    my @fresh = map { seed_full_key($t, account => $account,
                                    included => 10000000) } 1 .. 12;

    is($t->chat($key, model => 'test-basic')->{status}, 200,
       "$what: a first call");

    Aihub::write_file($CUT, "$line\n");

    my ($answered, $bad, $runs, %status) = (0, 0, 0);
    my $until = time + 20;

    while (proxy_cuts($CUTS, $line) < 3 && time < $until) {
        my ($n, $nbad) = wrk_chat($t, key => $key, c => 2, seconds => 1);
        $answered += $n - $nbad;
        $bad += $nbad;
        $runs++;

        # keys not cached yet: each one a lookup
        for my $k (splice @fresh, 0, 4) {
            my $r = $t->chat($k, model => 'test-basic');
            $status{ $r->{status} }++;
            $answered++ if $r->{status} == 200;
        }
    }

    unlink $CUT;

    # (a cut every half second at most: one wrk run may make two)
    cmp_ok(proxy_cuts($CUTS, $line), '>=', 3,
           "$what: the proxy cut the connection 3 times or more");
    # the lookups and grants a cut left without their replies went again
    # (before, their calls failed: at most 2 a cut, 2 connections)
    is($bad, 0, "$what: no call failed");
    my @other = grep { $_ != 200 } keys %status;
    is("@other", '', "$what: the fresh keys got 200 only")
        or diag(join ', ', map { "$_ x $status{$_}" } sort keys %status);
    is($t->chat($key, model => 'test-basic')->{status}, 200,
       "$what: a call after the cuts");
    $answered += 2;

    # the leases back, the counter equal to the distinct usage events
    my ($ok, $calls) = wait_counted($t, $account, $answered);
    ok($ok, "$what: every lease back, the counter equal to the events "
            . "($calls calls counted, $answered answered)");
    # wrk stops counting with up to 2 calls in flight, which nginx answers
    cmp_ok($calls, '<=', $answered + $bad + 2 * $runs,
           "$what: no call counted beyond those answered and in flight");
    diag("$what: $answered answered, $bad not 2xx, $calls counted");
}

# A key's creation through the developer API whose reply a cut lost is
# sent again: the script finds the record its first run wrote (named by
# the hash of the key drawn for this request) and answers that key's
# expiry, so the developer gets the key, and the account holds it once,
# with one "key.created" for the worker.  Before, the developer got 503
# and the key existed unseen, counted against the account's cap
{
    my $line = 'after ' . resp('EVAL') . '\$\d+\r\n'
               . quotemeta("local made = redis.call('HGET'");
    my $admin = seed_full_key($t, account => 8850, scopes => 'chat,admin');
    my $stream = "${PREFIX}admin";
    my $events = scalar @{ $t->redis('XRANGE', $stream, '-', '+') };
    my (%status, @keys);

    Aihub::write_file($CUT, "$line\n");

    for my $i (1 .. 3) {
        sleep 0.6;    # the proxy cuts once a half second at most
        my $r = $t->http(POST => '/api/v1/developer/api-keys', key => $admin,
                         body => qq({"label":"cut $i"}));
        $status{ $r->{status} . ($r->{json} && $r->{json}{error}
                                 ? " $r->{json}{error}{code}" : '') }++;
        push @keys, $r->{json}{key} if $r->{status} == 201;
    }

    unlink $CUT;

    is(proxy_cuts($CUTS, $line), 3,
       'key creation: the proxy cut each reply of the script');
    is(join(', ', map { "$_ x $status{$_}" } sort keys %status), '201 x 3',
       'key creation: each creation answered with its key');
    is(scalar @{ $t->redis('HKEYS', "${PREFIX}account-keys:8850") }, 4,
       'key creation: the account holds the 3 new keys once each, and '
       . 'its admin key');
    is(scalar @{ $t->redis('XRANGE', $stream, '-', '+') } - $events, 3,
       'key creation: one key.created event each');
    is(join(' ', map { $t->chat($_, model => 'test-basic')->{status} }
                 @keys), '200 200 200', 'key creation: the new keys work');
}

# At a hard quota's edge every call takes a lease of its own (here: all
# calls, aihub_lease_calls 1), and a cut after its grant loses the reply
# of a grant Redis ran: sent again, it cancels that lease (its call, and
# its token of the global rate limit) and grants anew.  Exactly the
# included calls are answered, and the limit counts one token each: a
# grant sent again without the cancel leaves a call leased to nobody, and
# a token taken, for each cut (3 to 5 calls fewer answered in our runs);
# without being sent again, the call fails (8 x 503)
$t->nginx(gateway_conf(redis => "127.0.0.1:$PROXY", stub => $stub,
                       redis_timeout => '1s',
                       loc => 'aihub_rate_limit global;',
                       extra => 'aihub_lease_time 2s; aihub_lease_calls 1;'),
          name => 'edge');
worker_processes($t, 2, 'edge');
$t->start_nginx('edge');
ok(wait_ready($t, $probe, name => 'edge'), 'edge node: catalog loaded');

{
    my $line = "after " . evalsha(5, "${PREFIX}period:");
    my $before = proxy_cuts($CUTS, $line);
    my $edge_key = seed_full_key($t, account => 8830, included => 68,
                                 overage => 0, rpm => 120);
    my %status;

    # 8 calls first: the limit's state (half a second a token at 120 a
    # minute) then runs 4 s ahead of the clock, and stays ahead, so that it
    # moves by exactly half a second for each token taken from here on
    for (1 .. 8) {
        my $r = $t->chat($edge_key, model => 'test-basic', name => 'edge');
        $status{ $r->{status} == 200 ? 200 : "$r->{status} "
                 . ($r->{json} ? $r->{json}{error}{code} // '' : '') }++;
    }
    my $t0 = $t->redis('GET', "${PREFIX}rl:8830");

    Aihub::write_file($CUT, "$line\n");

    my $burst_ok = 0;

    for (1 .. 4) {
        for (parallel_chat($t, 20, $edge_key, names => [ 'edge' ])) {
            $burst_ok++ if $_->{status} == 200;
            $status{ $_->{status} == 200 ? 200
                     : "$_->{status} " . ($_->{code} // '') }++;
        }
        sleep 0.6;
    }

    unlink $CUT;

    cmp_ok(proxy_cuts($CUTS, $line) - $before, '>=', 3,
           'edge: the proxy cut 3 grants or more');
    is(join(', ', map { "$_ x $status{$_}" } sort keys %status),
       '200 x 68, 429 insufficient_quota x 20', 'edge: exactly the 68 included calls answered, '
       . 'the rest 429, none 503');

    my ($ok, $calls) = wait_counted($t, 8830, 68);
    ok($ok && $calls == 68, "edge: every lease back, 68 calls counted "
                            . "($calls)");

    my $taken = ($t->redis('GET', "${PREFIX}rl:8830") - $t0) / 500;
    ok(abs($taken - $burst_ok) < 0.01,
       sprintf('edge: the global rate limit counts a token for each of '
               . 'the %d calls of the bursts answered (%.3f)', $burst_ok,
               $taken));
}

kill 'TERM', $proxy_pid;
waitpid($proxy_pid, 0);

$t->done;
