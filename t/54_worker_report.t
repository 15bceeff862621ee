#!/usr/bin/perl

# aihub-worker report (CSV, JSON, self-contained HTML with charts), prices
# sync from an OpenRouter-format catalog (with price history), rebuild of
# Redis after a data loss (counters with the overage), and developer-API key changes persisted from
# the admin stream.

use strict;
use warnings;

use Test::More;
use Digest::SHA qw(sha256_hex);
use IO::Socket::IP;
use JSON::PP;
use Time::HiRes qw(time sleep);
use Time::Local qw(timegm);

use lib 't/lib';
use Aihub;
use AihubFixtures ();

plan skip_all => 'aihub-worker not built' unless Aihub::have_worker();

my $t = Aihub->new(redis => 1, mariadb => 1);
$t->migrate;

my $json = JSON::PP->new->canonical;
my @g = gmtime;
my ($py, $pm) = ($g[5] + 1900, $g[4]);      # last month
if ($pm == 0) { $pm = 12; $py-- }
my $P = sprintf '%04d-%02d', $py, $pm;
my $p_ms = timegm(0, 0, 12, 1, $pm - 1, $py) * 1000;

my $free = $t->create_key(account => 'acme & sons, "ltd"', plan => 'free');
my $pro = $t->create_key(account => 'globex', plan => 'pro');
my %acct = map { $_->[0] => 0 + $_->[1] } $t->sql('SELECT name, id FROM accounts');
$t->sql("UPDATE accounts SET created_at = '2000-01-01'");
$t->sql("UPDATE subscriptions SET started_at = '2000-01-01'");

# usage through the drain: days 1..3 of P

my $n = 0;
for my $day (0 .. 2) {
    for my $i (1 .. 3 + $day) {
        for my $a ([ 'globex', 'pro', 'mock-premium' ],
                   [ 'acme & sons, "ltd"', 'free', 'mock-basic' ])
        {
            $n++;
            $t->redis('XADD', 'aihub:usage', '*', 'event', $json->encode({
                v => 1, id => sprintf('%032x', $n),
                ts => $p_ms + $day * 86400000 + $i, node => 'n',
                account => $acct{ $a->[0] }, key => 'ai-hub-AbCdEfGh',
                plan => $a->[1], model => $a->[2], provider => 'mock',
                prompt_tokens => 100, completion_tokens => 50,
                total_tokens => 150, cost_micros => 10, status => 200,
                streamed => JSON::PP::false, aborted => JSON::PP::false,
                estimated => JSON::PP::false, latency_ms => 5 }));
        }
    }
}

$t->start_worker('--consumer', 'w', '--block-ms', 100);
ok($t->wait_for(sub { $t->sql_value('SELECT COUNT(*) FROM usage_events')
                      == $n }, timeout => 5), "$n events drained");

my ($rc, $out, $err) = $t->worker('invoice', 'close', '--period', $P);
is($rc, 0, "close $P") or diag($err);

# --- report -----------------------------------------------------------------

my $dir = $t->dir . '/report';
($rc, $out, $err) = $t->worker('report', '--period', $P, '--out', $dir);
is($rc, 0, 'report exits 0') or diag($err);
ok(-s "$dir/$_", "$_ written") for qw(invoices.csv report.json report.html);
unlike($err, qr/not closed/, 'a closed month: no warning');

# a month not closed has no invoice: the report says so (before, a silent
# report of $0)
my $open = AihubFixtures::months_back(0);
my ($orc, undef, $oerr) = $t->worker('report', '--period', $open, '--out',
                                     $t->dir . '/open-report');
is($orc, 0, 'a report of the month not closed yet exits 0 (a preview)');
like($oerr, qr/period \Q$open\E is not closed, so no invoice was issued/,
     'and warns that it holds no invoice');

# CSV: RFC 4180, parsed by hand (quotes, doubled quotes, commas)

sub csv_rows {
    my ($text) = @_;
    my (@rows, @f);
    while (length $text) {
        if ($text =~ s/^"((?:[^"]|"")*)"(,|\r\n|\z)//) {
            my ($v, $end) = ($1, $2);
            $v =~ s/""/"/g;
            push @f, $v;
            if ($end ne ',') { push @rows, [@f]; @f = () }
        } elsif ($text =~ s/^([^",\r\n]*)(,|\r\n|\z)//) {
            push @f, $1;
            if ($2 ne ',') { push @rows, [@f]; @f = () }
        } else {
            die "bad CSV near: " . substr($text, 0, 40) . "\n";
        }
    }
    return @rows;
}

my @csv = csv_rows(Aihub::read_file("$dir/invoices.csv"));
my $head = shift @csv;
is($head->[0], 'invoice_id', 'CSV header');
my $cols = @$head;
is(scalar(grep { @$_ != $cols } @csv), 0, "every CSV row has $cols fields");
is(scalar @csv, $t->sql_value("SELECT COUNT(*) FROM invoice_lines"),
   'one CSV row per invoice line');
my %col; @col{@$head} = 0 .. $#$head;
ok((grep { $_->[ $col{account} ] eq 'acme & sons, "ltd"' } @csv),
   'account name with comma and quotes survives the CSV');
my $sum = 0;
$sum += $_->[ $col{amount_cents} ] for @csv;
is($sum, $t->sql_value('SELECT SUM(total_cents) FROM invoices'),
   'CSV amounts sum to the invoice totals');

# JSON

my $r = JSON::PP->new->decode(Aihub::read_file("$dir/report.json"));
is($r->{period}, $P, 'JSON period');
is($r->{invoice_count}, 2, 'JSON: two invoices');
is($r->{total_cents}, 1900, 'JSON: revenue $19.00');
is(scalar @{ $r->{calls_per_day} }, 3, 'JSON: three days with calls');
is_deeply([ map { $_->{calls} } @{ $r->{calls_per_day} } ], [ 6, 8, 10 ],
          'JSON: calls per day from the rollups');
my %bymodel = map { $_->{name} => $_->{total_tokens} }
              @{ $r->{usage_by_model} };
is_deeply(\%bymodel, { 'mock-basic' => 12 * 150, 'mock-premium' => 12 * 150 },
          'JSON: usage by model');

# HTML: self-contained, four charts

my $html = Aihub::read_file("$dir/report.html");
like($html, qr/<svg id="chart-$_"/, "HTML has the $_ chart")
    for qw(plans accounts models days);
is(scalar(() = $html =~ /<rect class="bar"/g), 2 + 2 + 2 + 3,
   'bars: 2 plans, 2 accounts, 2 models, 3 days');
unlike($html, qr/<(script|link|img)\b/i, 'no scripts, links or images');
unlike($html, qr/(src|href)\s*=/i, 'nothing fetched from the network');
like($html, qr/acme &amp; sons, &quot;ltd&quot;/, 'names are escaped');

SKIP: {
    my ($chromium) = grep { -x } map { "/usr/bin/$_" }
                     qw(chromium chromium-browser google-chrome);
    skip 'no headless Chromium installed', 2 unless $chromium;

    my ($crc, $dom) = $t->run_cmd([ $chromium, '--headless', '--no-sandbox',
        '--disable-gpu', '--dump-dom', "file://$dir/report.html" ],
        timeout => 60);
    is($crc, 0, 'Chromium renders the report');
    is(scalar(() = $dom =~ /<svg id="chart-/g), 4,
       'the rendered DOM has four charts');
}

# --- prices sync ---------------------------------------------------------

my $catalog = $json->encode({ data => [
    { id => 'openai/gpt-4o', pricing => { prompt => '0.000003',
                                          completion => '0.000012' } },
    { id => 'openai/gpt-4o-mini', pricing => { prompt => '0.00000015',
                                               completion => '0.0000006' } },
    { id => 'some/unknown-model', pricing => { prompt => '0.1',
                                               completion => '0.1' } },
    { id => 'broken', pricing => { prompt => 'free' } },
] });

my $srv = IO::Socket::IP->new(LocalHost => '127.0.0.1', LocalPort => 0,
                              Listen => 8, ReuseAddr => 1) or die $@;
my $port = $srv->sockport;
my $pid = fork;
if ($pid == 0) {
    while (my $c = $srv->accept) {
        my $req = <$c>;
        while (<$c>) { last if /^\r?\n$/ }
        if ($req =~ m{^GET /api/v1/models }) {
            print $c "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                . "Content-Length: " . length($catalog) . "\r\n"
                . "Connection: close\r\n\r\n$catalog";
        } else {
            print $c "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n"
                . "Connection: close\r\n\r\n";
        }
        close $c;
    }
    exit 0;
}

my $sub = $t->redis_connect;
my $subbuf = '';
print $sub Aihub::resp_encode('SUBSCRIBE', 'aihub:invalidate');
Aihub::resp_read($sub, \$subbuf);

($rc, $out, $err) = $t->worker('prices', 'sync', '--url',
                               "http://127.0.0.1:$port/api/v1/models");
is($rc, 0, 'prices sync exits 0') or diag($err);
like($out, qr/2 models matched, 1 updated/, 'one price changed');
is_deeply([ $t->sql("SELECT price_in_micros, price_out_micros FROM models "
                    . "WHERE public_id = 'openai/gpt-4o'") ],
          [ [ 3000000, 12000000 ] ], 'gpt-4o price updated');
is($t->sql_value("SELECT COUNT(*) FROM model_prices WHERE model = "
                 . "'openai/gpt-4o'"), 2, 'price history kept');
is($t->redis('HGET', 'aihub:model:openai/gpt-4o', 'price_in'), 3000000,
   'Redis has the new price');
is(Aihub::resp_read($sub, \$subbuf)->[2], 'all', 'invalidation published');

($rc, $out) = $t->worker('prices', 'sync', '--url',
                         "http://127.0.0.1:$port/api/v1/models");
like($out, qr/0 updated/, 'second sync changes nothing');
($rc) = $t->worker('prices', 'sync', '--url',
                   "http://127.0.0.1:$port/nothing");
is($rc, 1, 'HTTP 404 is a runtime failure');
($rc) = $t->worker('prices', 'sync');
is($rc, 2, 'missing --url exits 2');

kill 'TERM', $pid;
waitpid $pid, 0;

# --- developer API key changes arrive on the admin stream ------------------

my $apikey = Aihub::make_key();
my $apihash = sha256_hex($apikey);
my $apiprefix = Aihub::key_prefix($apikey);
$t->redis('XADD', 'aihub:admin', '*', 'event', $json->encode({
    type => 'key.created', account => $acct{globex}, hash => $apihash,
    prefix => $apiprefix, scopes => 'chat', label => 'from the API',
    ts => int(time * 1000) }));
ok($t->wait_for(sub { $t->sql_value("SELECT COUNT(*) FROM api_keys WHERE "
                                    . "key_hash = '$apihash'") },
                timeout => 5), 'developer API key persisted in MySQL');
is($t->sql_value("SELECT source FROM api_keys WHERE key_hash = '$apihash'"),
   'api', 'marked as created through the API');
is($t->redis('HGET', "aihub:key:$apihash", 'plan'), 'pro',
   'its Redis record rewritten from MySQL');

$t->redis('XADD', 'aihub:admin', '*', 'event', $json->encode({
    type => 'key.revoked', account => $acct{globex}, prefix => $apiprefix,
    ts => int(time * 1000) }));
ok($t->wait_for(sub { $t->sql_value("SELECT status FROM api_keys WHERE "
                                    . "key_hash = '$apihash'") eq 'revoked' },
                timeout => 5), 'developer API revocation persisted');
$t->redis('XADD', 'aihub:admin', '*', 'event', '{"type":"key.created"}');
ok($t->wait_for(sub { $t->redis('XLEN', 'aihub:usage:dead') == 1 },
                timeout => 5), 'a bad admin event is dead-lettered');
$t->stop_worker;

# --- rebuild after Redis lost everything -------------------------------------

# current-month usage for globex: 4 successful calls, 1 failed

my $now_ms = int(time * 1000);
$t->sql("INSERT INTO usage_events (event_id, ts, account, key_prefix, plan, "
        . "model, provider, prompt_tokens, completion_tokens, total_tokens, "
        . "cost_micros, status, streamed, aborted, estimated, latency_ms, "
        . "node) SELECT MD5(CONCAT('now', seq)), FROM_UNIXTIME($now_ms / 1000)"
        . ", $acct{globex}, 'p', 'pro', 'mock-basic', 'mock', 10, 5, 15, 7, "
        . "IF(seq = 5, 502, 200), 0, 0, 0, 1, 'n' FROM seq_1_to_5");

$t->restart_redis;
is($t->redis('EXISTS', 'aihub:key:' . sha256_hex($pro)), 0, 'Redis is empty');
($rc, $out, $err) = $t->worker('rebuild');
is($rc, 0, 'rebuild exits 0') or diag($err);
ok($t->redis('EXISTS', 'aihub:epoch'), 'rebuild sets the epoch marker');
is($t->redis('HGET', 'aihub:key:' . sha256_hex($pro), 'status'), 'active',
   'key records restored');
is($t->redis('HGET', 'aihub:key:' . sha256_hex($free), 'plan'), 'free',
   'free key restored');
ok($t->redis('SISMEMBER', 'aihub:models', 'mock-premium'), 'models restored');
my $pid_ = sprintf '%04d%02d01', $g[5] + 1900, $g[4] + 1;
my %c = @{ $t->redis('HGETALL', "aihub:period:$acct{globex}:$pid_") };
is_deeply(\%c, { calls => 4, prompt => 40, completion => 20, total => 60,
                 cost => 28 }, 'period counters recomputed (2xx only)');
my $ttl = $t->redis('TTL', "aihub:period:$acct{globex}:$pid_");
ok($ttl > 40 * 86400 && $ttl <= 71 * 86400,
   'the rebuilt period expires 40 days after its month, as grants make it')
    or diag("TTL $ttl");

# a live counter above MySQL's figure is not lowered

$t->redis('HSET', "aihub:period:$acct{globex}:$pid_", 'calls', 9);
$t->worker('rebuild');
is($t->redis('HGET', "aihub:period:$acct{globex}:$pid_", 'calls'), 9,
   'rebuild never lowers a live counter');

# overage: the cost of the 2xx calls beyond the allowance, in time order.
# initech may make 2 calls; its 4 successful calls were stored newest
# first (so row order is not time order), costs 1, 2, 4, 8 by time, plus
# a failed call: the overage is 4 + 8.

$t->create_key(account => 'initech', plan => 'pro');
my $initech = $t->sql_value("SELECT id FROM accounts WHERE name = 'initech'");
($rc, $out, $err) = $t->worker('account', 'override', 'initech',
                               '--included', 2);
is($rc, 0, 'override --included 2') or diag($err);
for my $s ([ 1, 8, 200 ], [ 2, 4, 200 ], [ 3, 100, 500 ], [ 4, 2, 200 ],
           [ 5, 1, 200 ])
{
    my ($ago, $cost, $status) = @$s;
    $t->sql("INSERT INTO usage_events (event_id, ts, account, key_prefix, "
            . "plan, model, provider, prompt_tokens, completion_tokens, "
            . "total_tokens, cost_micros, status, streamed, aborted, "
            . "estimated, latency_ms, node) VALUES (MD5('initech$ago'), "
            . "FROM_UNIXTIME(($now_ms - $ago) / 1000), $initech, 'p', 'pro',"
            . " 'mock-basic', 'mock', 1, 1, 2, $cost, $status, 0, 0, 0, 1, "
            . "'n')");
}
$t->restart_redis;
($rc, $out, $err) = $t->worker('rebuild');
is($rc, 0, 'rebuild exits 0 (overage)') or diag($err);
%c = @{ $t->redis('HGETALL', "aihub:period:$initech:$pid_") };
is_deeply(\%c, { calls => 4, prompt => 4, completion => 4, total => 8,
                 cost => 15, overage => 12 },
          'overage recomputed: the calls beyond the allowance, by time');
is($t->redis('HGET', "aihub:period:$acct{globex}:$pid_", 'overage'), undef,
   'no overage within the allowance');

# two calls in the same millisecond at the allowance's edge: the one beyond
# it is the one invoices take as beyond it, the later event id (the earlier
# id stored second, so storage order says the opposite)

$t->create_key(account => 'umbrella', plan => 'pro');
my $umbrella = $t->sql_value("SELECT id FROM accounts WHERE name = "
                             . "'umbrella'");
($rc, $out, $err) = $t->worker('account', 'override', 'umbrella',
                               '--included', 1);
is($rc, 0, 'override --included 1') or diag($err);
for my $s ([ 'b' x 32, 50 ], [ 'a' x 32, 900 ]) {
    my ($id, $cost) = @$s;
    $t->sql("INSERT INTO usage_events (event_id, ts, account, key_prefix, "
            . "plan, model, provider, prompt_tokens, completion_tokens, "
            . "total_tokens, cost_micros, status, streamed, aborted, "
            . "estimated, latency_ms, node) VALUES ('$id', "
            . "FROM_UNIXTIME(($now_ms - 1000) / 1000), $umbrella, 'p', "
            . "'pro', 'mock-basic', 'mock', 1, 1, 2, $cost, 200, 0, 0, 0, 1, "
            . "'n')");
}
$t->restart_redis;
($rc, $out, $err) = $t->worker('rebuild');
is($rc, 0, 'rebuild exits 0 (a tie)') or diag($err);
is($t->redis('HGET', "aihub:period:$umbrella:$pid_", 'overage'), 50,
   'a tie in time: the later event id is the one beyond the allowance');

$t->done;
