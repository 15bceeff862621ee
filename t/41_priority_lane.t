#!/usr/bin/perl

# The priority lane (issue 14): a provider with capacity=4 free_share=50%,
# two worker processes counting in the one shared zone, a slow mock.
#
#   - 20 pro and 20 free calls at once: every pro call is served (most
#     after waiting), at most 2 free calls are (their share), every other
#     free call gets 429 rate_limit_exceeded with Retry-After at once; the
#     provider never has more than 4 calls at a time; nothing is billed
#     that was not served (usage events, period counters, the mock's log);
#   - plan priority: enterprise calls that arrive while pro calls wait are
#     served before them;
#   - a queued call whose client goes away leaves the queue, never reaches
#     the provider and is never billed;
#   - a place is given back on every path (an upstream that refuses
#     connections, a reload with calls in flight and queued): calls in
#     flight are 0 at the end;
#   - a provider's 429 with Retry-After: 2 saturates it: for two seconds
#     free calls get 429 at once without reaching it, pro calls wait and
#     are served after;
#   - the metrics show queue length, waits and refusals per plan.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);
use JSON::PP;
use POSIX ();

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);
use AihubStream qw(:all);

my $t = Aihub->new;
$t->skip_unless_built;
$t->start_redis;
$t->start_mock;

my $closed = Aihub::free_port();               # nothing listens there

seed_models($t, %MODELS,
    'test-down' => { provider => 'down', upstream => 'mock-basic',
                     tier => 'basic', price_in => 1000000,
                     price_out => 2000000 });

my %acct = (pro => 331, free => 332, enterprise => 333);
my %key = (
    pro        => seed_full_key($t, account => $acct{pro}, plan => 'pro',
                                priority => 1, models => '*'),
    free       => seed_full_key($t, account => $acct{free}, plan => 'free',
                                priority => 0, models => '*'),
    enterprise => seed_full_key($t, account => $acct{enterprise},
                                plan => 'enterprise', priority => 2,
                                models => '*'),
);

$t->nginx(<<'END' =~ s/%%CLOSED%%/$closed/r);
    aihub_redis %%REDIS%%;
    aihub_redis_timeout 3s;    # 40 calls at once on a loaded machine:
                               # not a test of Redis timeouts
    aihub_cache_zone aihub:8m;
    aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY capacity=4 free_share=50%;
    aihub_provider down url=http://127.0.0.1:%%CLOSED%%/v1 key_env=AIHUB_MOCK_KEY capacity=2 free_share=50%;
    aihub_pass_request_header x-mock-*;    # the mock's test controls
    aihub_lane_wait 20s;

    log_format lane '$msec $request_time $status $http_x_mock_tag';

    server {
        listen 127.0.0.1:%%PORT%%;
        access_log %%DIR%%/lane.log lane;

        location /v1/ {
            aihub on;
            proxy_pass $aihub_proxy_url;
            proxy_set_header Host $aihub_provider_host;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 30s;
        }

        location = /metrics { aihub_metrics; }
    }
END

worker_processes($t, 2);
$t->start_nginx;
ok(wait_ready($t, $key{pro}), 'gateway ready');

my $JSON = JSON::PP->new->utf8->canonical;

sub metric {
    my ($name, $label) = @_;

    my $r = $t->http(GET => '/metrics');
    return $r->{content} =~ /^\Q$name\E\{\Q$label\E\} (\d+)$/m ? $1 : undef;
}

# one child per call, all released together: [plan, delay ms, tag] each;
# results in call order: {status, code, retry_after, elapsed}
sub calls_at_once {
    my (@calls) = @_;

    my $dir = $t->dir . '/lane' . int(rand 1e9);
    mkdir $dir;
    pipe(my $go_r, my $go_w) or die "pipe: $!\n";

    my @pids;

    for my $i (0 .. $#calls) {
        my ($plan, $delay, $tag) = @{ $calls[$i] };
        my $pid = fork;
        die "fork: $!\n" unless defined $pid;

        if ($pid == 0) {
            close $go_w;
            my $buf;
            sysread($go_r, $buf, 1);

            my $start = time;
            my $r = eval {
                $t->chat($key{$plan}, model => 'test-basic', timeout => 40,
                         headers => { 'x-mock-delay-ms' => $delay,
                                      'x-mock-tag' => $tag });
            };
            my $res = {
                status      => $r ? $r->{status} : 0,
                code        => ($r && ref $r->{json} eq 'HASH'
                                && ref $r->{json}{error}
                                ? $r->{json}{error}{code} : undef),
                retry_after => $r ? $r->{headers}{'retry-after'} : undef,
                elapsed     => time - $start,
            };

            if (open my $fh, '>', "$dir/$i") {
                print $fh $JSON->encode($res);
                close $fh;
            }
            POSIX::_exit(0);
        }

        push @pids, $pid;
    }

    close $go_r;
    close $go_w;

    return sub {
        waitpid($_, 0) for @pids;

        return map {
            my $s = Aihub::read_file("$dir/$_");
            length $s ? $JSON->decode($s) : { status => 0 };
        } 0 .. $#calls;
    };
}

sub mock_tagged {
    my ($re) = @_;
    return grep { ($_->{headers}{'x-mock-tag'} // '') =~ $re } $t->mock_log;
}

sub events_of {
    my ($plan) = @_;
    return grep { $_->{account} == $acct{$plan} } usage_events($t);
}


# --- nginx -t names a bad lane or fallback parameter ---------------------------

my $x = 'aihub_provider x url=%%MOCK_URL%%';

for my $bad ([ 'capacity=0', "$x capacity=0;" ],
             [ 'capacity=abc', "$x capacity=abc;" ],
             [ 'free_share=150%', "$x capacity=4 free_share=150%;" ],
             [ 'queue=65', "$x queue=65;" ],
             [ 'attempts=0', 'aihub_fallback attempts=0;' ],
             [ 'time=soon', 'aihub_fallback time=soon;' ]) {
    my ($param, $line) = @$bad;
    my $inst = "bad-$param" =~ s/\W/_/gr;

    $t->nginx(<<"END", name => $inst);
    aihub_redis %%REDIS%%;
    aihub_cache_zone aihub:1m;
    aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
    $line
END
    my ($ok, $out) = $t->nginx_test($inst);
    ok(!$ok && $out =~ /\[emerg\].*invalid parameter "\Q$param\E"/,
       "nginx -t: \"$param\" refused") or diag $out;
}


# --- 20 pro and 20 free at once ---------------------------------------------

{
    my @calls = ((map { [ 'pro', 1500, "sat-pro-$_" ] } 1 .. 20),
                 (map { [ 'free', 1500, "sat-free-$_" ] } 1 .. 20));

    my @res = calls_at_once(@calls)->();
    my @pro = @res[0 .. 19];
    my @free = @res[20 .. 39];

    is(scalar(grep { $_->{status} == 200 } @pro), 20,
       'saturation: every pro call is served')
        or diag explain [ map { "$_->{status} " . ($_->{code} // '') } @pro ];

    ok((grep { $_->{elapsed} > 2.5 } @pro) >= 8,
       'saturation: pro calls waited for a place (five rounds of 4)');

    my @served = grep { $_->{status} == 200 } @free;
    my @refused = grep { $_->{status} == 429 } @free;

    ok(@served <= 2, 'saturation: at most the free share (2) of free calls '
                     . 'served (' . scalar(@served) . ')');
    is(@served + @refused, 20, 'saturation: every other free call refused');
    is(scalar(grep { ($_->{code} // '') eq 'rate_limit_exceeded' } @refused),
       scalar(@refused), 'saturation: refused as rate_limit_exceeded');
    is(scalar(grep { ($_->{retry_after} // '') =~ /^[1-9]\d*$/ } @refused),
       scalar(@refused), 'saturation: every refusal says Retry-After');
    # at once: by the gateway's own clock, well under the provider's 1.5 s,
    # and every refusal before the first place came free

    my @acc = map { [ split / / ] }
              split /\n/, Aihub::read_file($t->nginx_dir . '/lane.log');
    my @acc_refused = grep { $_->[2] == 429 && $_->[3] =~ /^sat-free-/ }
                      @acc;
    my ($first_pro) = sort { $a <=> $b }
                      map { $_->[0] }
                      grep { $_->[2] == 200 && $_->[3] =~ /^sat-pro-/ } @acc;

    is(scalar(@acc_refused), scalar(@refused),
       'saturation: the refusals in the access log');
    is(scalar(grep { $_->[1] < 1.5 && $_->[0] < $first_pro } @acc_refused),
       scalar(@refused), 'saturation: free calls refused at once, before '
                         . 'any place came free')
        or diag explain \@acc;

    # the provider never saw more than 4 calls at a time

    my @log = mock_tagged(qr/^sat-/);
    my $max = 0;

    for my $e (@log) {
        my $n = grep { $_->{ts} <= $e->{ts} && $e->{ts} < $_->{ts} + 1.45 }
                @log;
        $max = $n if $n > $max;
    }

    ok($max <= 4 && $max >= 3, "saturation: at most 4 calls at the "
                               . "provider at a time ($max)");
    is(scalar(mock_tagged(qr/^sat-pro-/)), 20,
       'saturation: the provider got each pro call once');
    is(scalar(mock_tagged(qr/^sat-free-/)), scalar(@served),
       'saturation: the provider got only the served free calls');

    # billed: exactly the served calls

    wait_usage($t, 20 + @served);
    my @pe = events_of('pro');
    my @fe = events_of('free');

    is(scalar(@pe), 20, 'saturation: 20 usage events for pro');
    is(scalar(grep { $_->{status} == 200 } @pe), 20,
       'saturation: each a served call');
    is(scalar(@fe), scalar(@served),
       'saturation: a usage event for each served free call only');
    $t->wait_for(sub { period_calls($t, $acct{pro}) == 20 }, timeout => 5);
    is(period_calls($t, $acct{pro}), 20, 'saturation: pro period: 20 calls');
    is(period_calls($t, $acct{free}) + 0, scalar(@served),
       'saturation: free period: the served calls only');

    ok(metric('aihub_lane_refusals_total', 'plan="free"') >= @refused,
       'metrics: refusals of the free plan counted');
    ok(metric('aihub_lane_waits_total', 'plan="pro"') >= 8,
       'metrics: waits of the pro plan counted');
    is(metric('aihub_lane_in_flight', 'provider="mock"'), 0,
       'metrics: nothing in flight afterwards');
    is(metric('aihub_lane_queued', 'provider="mock"'), 0,
       'metrics: nothing queued afterwards');
}


# --- plan priority: enterprise passes waiting pro calls ----------------------

{
    # a first round long enough for the enterprise calls to be queued
    # before it ends, even on a loaded machine
    my $pro = calls_at_once(map { [ 'pro', 2500, "prio-pro-$_" ] } 1 .. 12);

    ok($t->wait_for(sub {
           (metric('aihub_lane_queued', 'provider="mock"') // 0) == 8 },
           timeout => 5),
       'priority: 8 pro calls queued behind 4 in flight');
    is(metric('aihub_lane_plan_queued', 'plan="pro"'), 8,
       'metrics: queue length of the pro plan');

    my $ent = calls_at_once(map { [ 'enterprise', 1200, "prio-ent-$_" ] }
                            1 .. 4);

    ok($t->wait_for(sub {
           (metric('aihub_lane_waits_total', 'plan="enterprise"') // 0)
           == 4 }, timeout => 5),
       'priority: the 4 enterprise calls waited too');

    my @e = $ent->();
    my @p = $pro->();

    is(scalar(grep { $_->{status} == 200 } @e, @p), 16,
       'priority: every call served');

    my @log = mock_tagged(qr/^prio-/);
    my ($last_ent) = sort { $b <=> $a }
                     map { $_->{ts} } grep { $_->{headers}{'x-mock-tag'}
                                             =~ /ent/ } @log;
    my $pro_before = grep { $_->{headers}{'x-mock-tag'} =~ /pro/
                            && $_->{ts} < $last_ent } @log;

    is($pro_before, 4, 'priority: enterprise calls went before the 8 '
                       . 'waiting pro calls');

    # each counted once; and the next section's count starts from all of
    # them (settles travel in batches: a count read at once may lack some)
    $t->wait_for(sub { period_calls($t, $acct{pro}) == 32 }, timeout => 5);
    is(period_calls($t, $acct{pro}), 32,
       'priority: pro period: the 20 calls before and these 12');
}


# --- a queued call abandoned by its client ------------------------------------

{
    my $calls = period_calls($t, $acct{pro});
    my $busy = calls_at_once(map { [ 'pro', 2500, "aband-busy-$_" ] } 1 .. 4);

    ok($t->wait_for(sub {
           (metric('aihub_lane_in_flight', 'provider="mock"') // 0) == 4 },
           timeout => 5), 'abandon: 4 calls in flight');

    my $body = $JSON->encode(chat_body());
    my $s = $t->connect;

    print $s "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
           . "Authorization: Bearer $key{pro}\r\n"
           . "Content-Type: application/json\r\nx-mock-tag: aband-gone\r\n"
           . "Content-Length: " . length($body) . "\r\n\r\n$body";

    ok($t->wait_for(sub {
           (metric('aihub_lane_queued', 'provider="mock"') // 0) == 1 },
           timeout => 5), 'abandon: the call waits');

    close $s;

    ok($t->wait_for(sub {
           (metric('aihub_lane_queued', 'provider="mock"') // 1) == 0 },
           timeout => 5), 'abandon: it leaves the queue when its client '
                          . 'goes away');

    my @b = $busy->();
    is(scalar(grep { $_->{status} == 200 } @b), 4, 'abandon: the others '
                                                   . 'served');
    sleep 0.5;
    is(scalar(mock_tagged(qr/^aband-gone/)), 0,
       'abandon: the provider never got it');
    $t->wait_for(sub { period_calls($t, $acct{pro}) == $calls + 4 }, timeout => 5);
    is(period_calls($t, $acct{pro}), $calls + 4,
       'abandon: only the served calls counted');
    is(metric('aihub_lane_in_flight', 'provider="mock"'), 0,
       'abandon: nothing in flight afterwards');
}


# --- a call in flight whose client goes away -----------------------------------

{
    my $body = $JSON->encode(chat_body());
    my $s = $t->connect;

    print $s "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
           . "Authorization: Bearer $key{pro}\r\n"
           . "Content-Type: application/json\r\nx-mock-delay-ms: 3000\r\n"
           . "Content-Length: " . length($body) . "\r\n\r\n$body";

    ok($t->wait_for(sub {
           (metric('aihub_lane_in_flight', 'provider="mock"') // 0) == 1 },
           timeout => 5), 'client abort: the call is in flight');

    close $s;

    ok($t->wait_for(sub {
           (metric('aihub_lane_in_flight', 'provider="mock"') // 1) == 0 },
           timeout => 2.5),
       'client abort: its place given back before the provider answers');
}


# --- a place given back when the provider cannot be reached -------------------

{
    my @st = map { $t->chat($key{free}, model => 'test-down')->{status} }
             1 .. 3;

    is("@st", '502 502 502', 'down: each call 502, none refused by the '
                             . 'lane (its place was given back)');
    is(metric('aihub_lane_in_flight', 'provider="down"'), 0,
       'down: nothing in flight afterwards');
}


# --- a reload while calls are in flight and queued -----------------------------

{
    my $calls = calls_at_once(map { [ 'pro', 1500, "reload-$_" ] } 1 .. 8);

    ok($t->wait_for(sub {
           (metric('aihub_lane_queued', 'provider="mock"') // 0) == 4 },
           timeout => 5), 'reload: 4 calls in flight, 4 queued');

    $t->reload_nginx;    # returns once the old worker processes are gone

    my @r = $calls->();
    is(scalar(grep { $_->{status} == 200 } @r), 8,
       'reload: the old worker processes served their calls, queued ones '
       . 'too');
    is(metric('aihub_lane_in_flight', 'provider="mock"'), 0,
       'reload: every place given back once (nothing in flight)');
    is(metric('aihub_lane_queued', 'provider="mock"'), 0,
       'reload: nothing left queued');

    my @again = calls_at_once(map { [ 'free', 200, "reload-after-$_" ] }
                              1 .. 2)->();
    is(scalar(grep { $_->{status} == 200 } @again), 2,
       'reload: the free share is whole again');
}


# --- a provider's 429 with Retry-After: 2 --------------------------------------

{
    my $r = $t->chat($key{free}, model => 'test-basic',
                     headers => { 'x-mock-status' => 429,
                                              'x-mock-retry-after' => 2 });
    my $at = time;

    is_error($r, 429, 'rate_limit_exceeded', "provider 429: passed on");
    is(metric('aihub_lane_saturated', 'provider="mock"'), 1,
       'provider 429: the provider is saturated');

    my $n0 = mock_count($t);
    my $f = $t->chat($key{free}, model => 'test-basic');

    is_error($f, 429, 'rate_limit_exceeded', 'saturated: free refused');
    ok(($f->{headers}{'retry-after'} // 0) >= 1
       && $f->{headers}{'retry-after'} <= 2,
       'saturated: free told to retry within 2 s');
    ok($f->{elapsed} < 1, 'saturated: free refused at once');

    my $p = $t->chat($key{pro}, model => 'test-basic', timeout => 10);

    is($p->{status}, 200, 'saturated: pro served');
    ok(time - $at >= 1.7, 'saturated: pro waited for the saturation to end');
    is(mock_count($t), $n0 + 1, 'saturated: only the pro call reached the '
                                . 'provider');
}

$t->done;
