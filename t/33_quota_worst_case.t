#!/usr/bin/perl

# Budgets reserved before forwarding (issue 10): a call of an account with
# a tokens-per-minute limit holds its worst case of tokens (the prompt
# estimate plus its bound on the answer, at most the whole limit) before
# it is forwarded, and settles to the actual usage, so concurrent calls
# cannot pass the limit together.  Before, the limit only looked at what
# was already settled: 20 concurrent calls of 1,000 tokens all passed a
# TPM of 100.  The same for a spend cap: a call beyond the included ones
# holds its worst-case cost in Redis with its lease.

use strict;
use warnings;

use Test::More;

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);

plan(skip_all => 'module not built') unless Aihub::have_module();

my $t = Aihub->new(redis => 1, mock => 1);

seed_models($t);
my $probe = seed_full_key($t, account => 3300);

# a node; and one with the requests' limit global (in Redis): the tokens'
# stays the node's, held and charged the same way (before: not applied at
# all)
for my $node ([ 'nginx', '' ], [ 'global', 'aihub_rate_limit global;' ]) {
    my ($name, $extra) = @$node;

    $t->nginx(<<"END", name => $name);
    aihub_redis %%REDIS%%;
    aihub_redis_timeout 2s;
    aihub_cache_zone aihub:8m;
    aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
    aihub_pass_request_header x-mock-*;    # the mock's test controls
    $extra

    server {
        listen 127.0.0.1:%%PORT%%;

        location /v1/ {
            aihub on;
            proxy_pass \$aihub_proxy_url;
            proxy_set_header Host \$aihub_provider_host;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
END
    worker_processes($t, 2, $name);
    $t->start_nginx($name);
    ok(wait_ready($t, $probe, name => $name), "$name: catalog loaded");
}

my $PERIOD = period_id();

sub statuses { my %n; $n{ $_->{status} }++ for @_; %n }


# --- TPM 100, 20 concurrent calls of 1,000 tokens -----------------------------

# no bound on the answer: each holds the whole limit, so one passes
for my $round (1 .. 3) {
    my $account = 3300 + $round;
    my $key = seed_full_key($t, account => $account, tpm => 100);
    my @res = parallel_chat($t, 20, $key, headers => {
        'x-mock-completion-tokens' => 1000, 'x-mock-delay-ms' => 300 });
    my %st = statuses(@res);
    is($st{200} // 0, 1,
       "round $round: TPM 100, 20 concurrent 1,000-token calls: one passes")
        or diag(explain(\%st));
    is(($st{200} // 0) + ($st{429} // 0), 20, "round $round: the rest 429");
    is(scalar(grep { ($_->{code} // '') eq 'rate_limit_exceeded' } @res),
       $st{429} // 0, "round $round: 429 rate_limit_exceeded");
    calls_settle($t, $account, $st{200} // 0,
                 "round $round: only the answered call counted");
}

{
    my $account = 3320;
    my $key = seed_full_key($t, account => $account, tpm => 100);
    my @res = parallel_chat($t, 20, $key, names => [ 'global' ], headers => {
        'x-mock-completion-tokens' => 1000, 'x-mock-delay-ms' => 300 });
    my %st = statuses(@res);
    is($st{200} // 0, 1, 'aihub_rate_limit global: TPM 100, 20 concurrent '
                         . '1,000-token calls: one passes')
        or diag(explain(\%st));
    is(($st{200} // 0) + ($st{429} // 0), 20,
       'aihub_rate_limit global: the rest 429');
    calls_settle($t, $account, $st{200} // 0,
                 'aihub_rate_limit global: only the answered call counted');
}


# --- TPM 1,000, the plan bounds the answer at 100 tokens ------------------------

# each call holds 2 (prompt "hello") + 100 tokens: at most 9 fit in 1,000
# (10 if the bucket drained a little meanwhile); before: all 20 passed
my $k = seed_full_key($t, account => 3310, tpm => 1000, max_tokens => 100);
my @res = parallel_chat($t, 20, $k, headers => {
    'x-mock-completion-tokens' => 100, 'x-mock-delay-ms' => 300 });
my %st = statuses(@res);
cmp_ok($st{200} // 0, '>=', 1, 'TPM 1,000, bound 100: some calls pass');
cmp_ok($st{200} // 0, '<=', 10, 'TPM 1,000, bound 100: at most what fits')
    or diag(explain(\%st));
is(($st{200} // 0) + ($st{429} // 0), 20, 'TPM 1,000: the rest 429');

diag("TPM 1,000, bound 100: " . ($st{200} // 0) . " of 20 passed");



# --- spend cap 1 micro-dollar, 20 concurrent calls -------------------------------

# every call is beyond the included ones (0): the first holds its worst
# case (2 + 4,096 tokens at the model's prices) against the cap, so the
# others are refused; before, all 20 passed and the overage was 20 times
# the cap or more
for my $round (1 .. 3) {
    my $account = 3320 + $round;
    my $key = seed_full_key($t, account => $account, included => 0,
                            overage => 1, spend_cap => 1);
    my @res = parallel_chat($t, 20, $key,
                            headers => { 'x-mock-delay-ms' => 300 });
    my %st = statuses(@res);
    is($st{200} // 0, 1, "spend cap round $round: one of 20 passes")
        or diag(explain(\%st));
    is(scalar(grep { ($_->{code} // '') eq 'insufficient_quota' } @res),
       19, "spend cap round $round: 19 insufficient_quota");
    my $h = "aihub:period:$account:$PERIOD";
    ok($t->wait_for(sub {
           ($t->redis('HGET', $h, 'leased_cost') // 0) == 0 }, timeout => 10),
       "spend cap round $round: nothing held once settled");
    cmp_ok($t->redis('HGET', $h, 'overage') // 0, '>', 0,
           "spend cap round $round: the call's cost is the overage");
    is($t->chat($key, model => 'test-basic')->{status}, 429,
       "spend cap round $round: the cap is reached, the next call 429");
}

my $r = $t->chat($probe, model => 'test-basic');
is($r->{status}, 200, 'an account without TPM is not affected');


# --- a client gone while its call waits for its grant -------------------------

# TPM 100: a call holds the whole limit.  The key is cached (a model list
# takes no tokens) and Redis paused, so the call waits for its grant
# holding the tokens; its client hangs up.  The tokens go back, as a
# refused call's do; before, they stayed held for the minute and the
# account's next call got 429.
{
    my $account = 3330;
    my $key = seed_full_key($t, account => $account, tpm => 100);
    is($t->http(GET => '/v1/models', key => $key)->{status}, 200,
       'gone: the key is cached');

    $t->redis('CLIENT', 'PAUSE', 1500, 'WRITE');
    my $s = raw_chat($t, $key);
    select(undef, undef, undef, 0.4);
    close $s;
    select(undef, undef, undef, 1.5);    # the pause ends

    $r = $t->chat($key, model => 'test-basic');
    is($r->{status}, 200, 'gone while waiting for its grant: its held '
                          . 'tokens went back, the next call passes')
        or diag($r->{content});
}

$t->done;
