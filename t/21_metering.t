#!/usr/bin/perl

# Metering: the usage event (Redis stream aihub:usage, and usage_events rows
# through aihub-worker) exact to the token against what the mock provider
# sent, streamed and not; Gemini-style total_tokens above prompt +
# completion; the documented estimate when the provider sends no usage;
# cost in micro-dollars, rounded half up; a 2 MB answer; 1,000 sequential
# calls, 1,000 events, 1,000 rows; the access-log variables; the key never
# in a log.

use strict;
use warnings;

use Test::More;
use Digest::SHA qw(sha256_hex);
use JSON::PP;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);
use AihubStream qw(:all);

my $t = Aihub->new;
$t->skip_unless_built;
$t->start_redis;
$t->start_mariadb;
$t->start_mock;
$t->migrate;

my $key = $t->create_key(account => 'metering', plan => 'pro');
my $hash = Aihub::key_hash($key);
my $account = $t->redis('HGET', "aihub:key:$hash", 'account');
ok($account && $account =~ /^\d+$/, "the key's account id ($account)");

my %m = @{ $t->redis('HGETALL', 'aihub:model:mock-basic') };
my $MODEL = 'mock-basic';

$t->nginx(<<'END')->start_nginx;
    aihub_redis %%REDIS%%;
    aihub_redis_timeout 300ms;
    aihub_cache_zone aihub:8m;
    aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
    aihub_pass_request_header x-mock-*;    # the mock's test controls
    log_format aihub 'AIHUB acct=$aihub_account key=$aihub_key_prefix '
                     'plan=$aihub_plan model=$aihub_model '
                     'provider=$aihub_provider p=$aihub_prompt_tokens '
                     'c=$aihub_completion_tokens t=$aihub_total_tokens '
                     'cost=$aihub_cost_micros est=$aihub_estimated '
                     'id=$aihub_request_id';

    server {
        listen 127.0.0.1:%%PORT%%;

        location /v1/ {
            aihub on;
            aihub_failure_mode closed;
            proxy_pass $aihub_proxy_url;
            proxy_set_header Host $aihub_provider_host;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            access_log %%DIR%%/aihub.log aihub;
        }

        location /api/v1/developer/ {
            aihub on;
            aihub_failure_mode closed;
            proxy_pass $aihub_proxy_url;
            proxy_set_header Host $aihub_provider_host;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            access_log %%DIR%%/aihub.log aihub;
        }

        location = /plain {
            return 200 "plain\n";
        }
    }
END

ok($t->wait_for(sub { $t->chat($key, model => $MODEL)->{status} == 200 },
                timeout => 5), 'gateway ready');

# the warm-up's event is written after its answer: count it in first
$t->wait_for(sub { my @e = usage_events($t); @e >= 1 });
my $nev = () = usage_events($t);

sub next_event {
    my @ev = wait_usage($t, $nev + 1);
    is(scalar @ev, $nev + 1, 'one more usage event') or return {};
    $nev = @ev;
    return $ev[-1];
}

sub check_exact {
    my ($name, $e, $u, %o) = @_;

    is($e->{prompt_tokens}, $u->{prompt_tokens}, "$name: prompt tokens");
    is($e->{completion_tokens}, $u->{completion_tokens},
       "$name: completion tokens");
    is($e->{total_tokens}, $u->{total_tokens}, "$name: total tokens");
    is($e->{cost_micros}, cost_of(\%m, $u->{prompt_tokens},
                                  $u->{total_tokens}), "$name: cost");
    ok(!$e->{estimated}, "$name: not estimated");
    is($e->{streamed} ? 1 : 0, $o{streamed} ? 1 : 0, "$name: streamed flag");
}


# --- non-streaming, exact ---------------------------------------------------

my $content = 'The quick brown fox jumps over the lazy dog';
my ($req_id, $first_event);

{
    my $n0 = mock_count($t);
    my $r = $t->chat($key, model => $MODEL, content => $content,
                     headers => { 'x-mock-completion-tokens' => 13 });
    my ($log) = mock_since($t, $n0);

    is($r->{status}, 200, 'json: 200');
    is_deeply($r->{json}{usage}, $log->{usage},
              'json: the usage passes through as the provider sent it');

    my $e = next_event();
    check_exact('json', $e, $log->{usage});
    is($e->{completion_tokens}, 13, 'json: the 13 completion tokens asked');

    is($e->{account}, $account, 'json: account');
    is($e->{key}, Aihub::key_prefix($key), 'json: key display prefix');
    is($e->{plan}, 'pro', 'json: plan');
    is($e->{model}, $MODEL, 'json: model');
    is($e->{provider}, 'mock', 'json: provider');
    is($e->{status}, 200, 'json: status');
    like($e->{id}, qr/^[0-9a-f]{32}$/, 'json: event id');
    is($r->{headers}{'x-request-id'}, $e->{id},
       'json: one x-request-id, the event id');

    $req_id = $e->{id};
    $first_event = $e;
}


# --- streaming, exact --------------------------------------------------------

{
    my $n0 = mock_count($t);
    my $r = raw_request($t, key => $key,
                        body => chat_body(model => $MODEL, stream => 1,
                                          content => $content),
                        headers => { 'x-mock-completion-tokens' => 21 });
    my ($log) = mock_since($t, $n0);

    is($r->{status}, 200, 'stream: 200');
    check_exact('stream', next_event(), $log->{usage}, streamed => 1);
}


# --- total above prompt + completion (Gemini thinking tokens) ---------------

for my $stream (0, 1) {
    my $name = $stream ? 'thinking, streamed' : 'thinking';
    my $n0 = mock_count($t);
    my $r = raw_request($t, key => $key,
                        body => chat_body(model => $MODEL, stream => $stream,
                                          content => $content),
                        headers => { 'x-mock-total-extra' => 50 });
    my ($log) = mock_since($t, $n0);
    my $u = $log->{usage};

    is($u->{total_tokens}, $u->{prompt_tokens} + $u->{completion_tokens} + 50,
       "$name: the mock reports 50 tokens more in total");

    my $e = next_event();
    check_exact($name, $e, $u, streamed => $stream);
    ok($e->{cost_micros} > cost_of(\%m, $u->{prompt_tokens},
                                   $u->{prompt_tokens}
                                   + $u->{completion_tokens}),
       "$name: the extra tokens are billed");
}


# --- no usage from the provider: the documented estimate --------------------

for my $stream (0, 1) {
    my $name = $stream ? 'no usage, streamed' : 'no usage';
    my $text = 'abcdefghij';                         # 10 characters
    my $r = raw_request($t, key => $key,
                        body => chat_body(model => $MODEL, stream => $stream,
                                          content => $text),
                        headers => { 'x-mock-no-usage' => 1,
                                     'x-mock-completion-tokens' => 5 });
    is($r->{status}, 200, "$name: 200");

    my $e = next_event();
    ok($e->{estimated}, "$name: estimated");
    is($e->{prompt_tokens}, ceil4(length $text),
       "$name: prompt = ceil(message chars / 4)");
    is($e->{completion_tokens}, ceil4(length 'tok tok tok tok tok'),
       "$name: completion = ceil(delivered chars / 4)");
    is($e->{total_tokens}, $e->{prompt_tokens} + $e->{completion_tokens},
       "$name: total");
    is($e->{cost_micros}, cost_of(\%m, $e->{prompt_tokens},
                                  $e->{total_tokens}), "$name: cost");
}

{
    # characters, not bytes: 8 characters, 24 bytes of UTF-8
    my $text = "\x{65e5}\x{672c}\x{8a9e}\x{306e}\x{30c6}\x{30ad}\x{30b9}"
               . "\x{30c8}";
    my $r = raw_request($t, key => $key,
                        body => chat_body(model => $MODEL, content => $text),
                        headers => { 'x-mock-no-usage' => 1 });
    my $e = next_event();

    is($e->{prompt_tokens}, ceil4(8),
       'no usage, UTF-8: prompt = ceil(characters / 4)');
}


# --- cost: rounding half up --------------------------------------------------

{
    # 0.5 $ per million input tokens, output free: 5 prompt tokens
    # (ceil(5 chars / 4) + 3 per message, the mock's count) cost 2.5
    # micro-dollars, billed 3
    $t->redis('HSET', 'aihub:model:half-up', provider => 'mock',
              upstream => 'mock-basic', tier => 'basic',
              price_in => 500000, price_out => 0);
    $t->redis('SADD', 'aihub:models', 'half-up');
    $t->redis('PUBLISH', 'aihub:invalidate', 'models');

    my $got = 0;
    $t->wait_for(sub {
        $got = $t->chat($key, model => 'half-up', content => 'abcde')
                 ->{status};
        return $got == 200;
    }, timeout => 5);
    is($got, 200, 'half-up: a model at 0.5 $/M input');

    my @ev = wait_usage($t, $nev + 1);
    my ($e) = grep { $_->{model} eq 'half-up' } @ev[$nev .. $#ev];
    $nev = @ev;

    is($e && $e->{prompt_tokens}, 5, 'half-up: 5 prompt tokens');
    is($e && $e->{cost_micros}, 3, 'half-up: 2.5 micro-dollars billed 3');
}


# --- 2 MB answers -------------------------------------------------------------

for my $stream (0, 1) {
    my $name = $stream ? '2 MB streamed' : '2 MB';
    my $size = 2 * 1024 * 1024;
    my $want = join(' ', ('tok') x 7);
    $want .= 'x' x ($size - length $want);

    my $n0 = mock_count($t);
    my $r = raw_request($t, key => $key, timeout => 30,
                        body => chat_body(model => $MODEL, stream => $stream),
                        headers => { 'x-mock-size' => $size });
    my ($log) = mock_since($t, $n0);

    is($r->{status}, 200, "$name: 200");

    my $got;
    if ($stream) {
        $got = join '', map { ref $_ && $_->{choices} && @{ $_->{choices} }
                              ? $_->{choices}[0]{delta}{content} // '' : '' }
                        sse_data(@{ $r->{events} });
        is(scalar(grep { $_->{data} =~ /"usage":\{/ } @{ $r->{events} }), 0,
           "$name: the usage chunk stripped");
    } else {
        my $j = eval { decode_json($r->{body}) };
        $got = $j ? $j->{choices}[0]{message}{content} : '';
    }

    is(length $got, $size, "$name: every byte of the content");
    is(sha256_hex($got), sha256_hex($want), "$name: the content intact");

    check_exact($name, next_event(), $log->{usage}, streamed => $stream);
}


# --- the access log -------------------------------------------------------

{
    my $log = Aihub::read_file($t->nginx_dir . '/aihub.log');
    my ($line) = grep { /id=$req_id/ } split /\n/, $log;
    my $e = $first_event;

    ok($line, 'access log: the first call is logged with its request id');
    $line //= '';

    my %f = $line =~ /(\w+)=(\S*)/g;
    is($f{acct}, $account, 'access log: $aihub_account');
    is($f{key}, Aihub::key_prefix($key), 'access log: $aihub_key_prefix');
    is($f{plan}, 'pro', 'access log: $aihub_plan');
    is($f{model}, $MODEL, 'access log: $aihub_model');
    is($f{provider}, 'mock', 'access log: $aihub_provider');
    is($f{p}, $e->{prompt_tokens}, 'access log: $aihub_prompt_tokens');
    is($f{c}, $e->{completion_tokens},
       'access log: $aihub_completion_tokens');
    is($f{t}, $e->{total_tokens}, 'access log: $aihub_total_tokens');
    is($f{cost}, $e->{cost_micros}, 'access log: $aihub_cost_micros');
    is($f{est}, 0, 'access log: $aihub_estimated');

    my ($est) = grep { /est=1/ } split /\n/, $log;
    ok($est, 'access log: estimated calls log est=1');
}


# --- 1,000 sequential calls: 1,000 events, 1,000 rows -------------------

{
    # rpm/tpm of the pro plan would stop 1,000 calls in a few seconds: a
    # key of the same account without limits
    my $fast = seed_full_key($t, account => $account, plan => 'pro',
                             included => 100000, overage => 1,
                             models => '*');

    # the worker starts after the stream is read: it deletes what it
    # stored (XDEL after XACK), so the stream only shows what is pending
    my $before = usage_event_count($t);
    my $ua = ka_client();
    my $url = 'http://127.0.0.1:' . $t->port . '/v1/chat/completions';
    my $body = encode_json(chat_body(model => $MODEL, content => 'count'));
    my %ids;
    my @order;
    my $ok = 0;
    my $start = time;

    for my $i (1 .. 1000) {
        my $r = $ua->request('POST', $url, {
            headers => { authorization => "Bearer $fast",
                         'content-type' => 'application/json' },
            content => $body });
        $ok++ if $r->{status} == 200;
        $ids{ $r->{headers}{'x-request-id'} // "none$i" }++;
        push @order, $r->{headers}{'x-request-id'} // '';
    }

    my $took = time - $start;
    is($ok, 1000, sprintf '1000 calls answered 200 (%.1f s)', $took);
    is(scalar keys %ids, 1000, '1000 distinct request ids');

    # an id starts with the time in milliseconds (12 hex digits), so the
    # ledger's UNIQUE index on it grows at its end; the rest is random
    my @ms = map { no warnings 'portable';
                   /^([0-9a-f]{12})[0-9a-f]{20}$/ ? hex($1) : -1 } @order;
    is(scalar(grep { $_ >= int($start * 1000) - 1000
                     && $_ <= int(time * 1000) + 1000 } @ms), 1000,
       'every request id starts with the time of its call, in ms');
    is(scalar(grep { $ms[$_] < $ms[$_ - 1] } 1 .. $#ms), 0,
       'request ids of calls made one after another come in time order');
    my %tails = map { substr($_, 12) => 1 } @order;
    is(scalar keys %tails, 1000, 'their random parts are all distinct');

    $t->wait_for(sub { usage_event_count($t) >= $before + 1000 },
                 timeout => 10);
    is(usage_event_count($t) - $before, 1000,
       'exactly 1000 events in the stream');

    my @ev = usage_events($t);
    my @mine = grep { $ids{ $_->{id} } } @ev;
    is(scalar @mine, 1000, 'the 1000 events carry the request ids');
    my %seen;
    is(scalar(grep { !$seen{ $_->{id} }++ } @ev), scalar @ev,
       'no event id twice in the stream');

    my $total = @ev;
    $t->start_worker('--consumer', 'm1', '--block-ms', '100');
    my $rows;
    $t->wait_for(sub {
        $rows = $t->sql_value('SELECT COUNT(*) FROM usage_events');
        return $rows >= $total;
    }, timeout => 30);
    is($rows, $total, "every event stored: $total rows");
    is($t->sql_value('SELECT COUNT(DISTINCT event_id) FROM usage_events'),
       $total, 'no duplicate rows');

    my $in = join ',', map { "'$_'" } keys %ids;
    is($t->sql_value("SELECT COUNT(*) FROM usage_events WHERE event_id IN "
                     . "($in)"), 1000, 'the 1000 calls are 1000 rows');

    # the first call, as a row: the same numbers as its event
    my ($row) = $t->sql("SELECT prompt_tokens, completion_tokens, "
                        . "total_tokens, cost_micros, estimated, streamed "
                        . "FROM usage_events WHERE event_id = '$req_id'");
    is_deeply($row, [ @$first_event{qw(prompt_tokens completion_tokens
                                       total_tokens cost_micros)}, 0, 0 ],
              'the row of the first call matches its event');

    $t->stop_worker;
}


# --- the key is never logged in full --------------------------------------

{
    # a revoked-looking key and an x-api-key client, for the error paths
    $t->http(POST => '/v1/chat/completions',
             headers => { 'x-api-key' => $key,
                          'content-type' => 'application/json' },
             body => encode_json(chat_body(model => $MODEL)));
    $t->chat(Aihub::make_key(), model => $MODEL);
    $t->chat($key, model => 'no-such-model');

    my $d = $t->nginx_dir;
    my $all = join '', map { Aihub::read_file("$d/$_") }
                       qw(access.log aihub.log error.log stderr.log);
    my $random = substr($key, 15);            # beyond the display prefix

    ok(length $all > 1000, 'the logs have content');
    is(index($all, $key), -1, 'the full key appears in no log');
    is(index($all, $random), -1, "the key's secret part appears in no log");
    is(index($all, $t->mock_key), -1, "the provider's key appears in no log");
}

$t->done;
