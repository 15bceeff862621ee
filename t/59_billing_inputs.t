#!/usr/bin/perl

# Billing delivery and inputs (issue 12): a webhook URL without a secret is
# refused; --period is validated before it meets SQL; close never blocks on
# an unreachable webhook (bounded in total); the CSV quote-prefixes every
# field a spreadsheet would evaluate, "-2+3+cmd|..." included; the config
# file strips a trailing "# comment" and keeps a quoted value as written.

use strict;
use warnings;

use Test::More;
use IO::Socket::IP;
use JSON::PP;
use Time::HiRes qw(time);

use lib 't/lib';
use Aihub;

plan skip_all => 'aihub-worker not built' unless Aihub::have_worker();

my $t = Aihub->new(redis => 1, mariadb => 1);
$t->migrate;

my @now = gmtime;
my ($y, $m) = ($now[5] + 1900, $now[4] + 1);
$m -= 2;
while ($m < 1) { $m += 12; $y-- }
my $P = sprintf '%04d-%02d', $y, $m;

my %id;

for my $name ('-2+3+cmd|\' /C calc\'!A0', '@SUM(A1)', "=1+1", 'plain') {
    $t->create_key(account => $name, plan => 'pro');
}

$t->sql("UPDATE accounts SET created_at = '2000-01-01'");
$t->sql("UPDATE subscriptions SET started_at = '2000-01-01'");

my ($rc, $out, $err);

# --- a webhook URL needs a secret ------------------------------------------------

($rc, $out, $err) = $t->worker('invoice', 'deliver', '--webhook-url',
                               'http://127.0.0.1:9/hook');
is($rc, 2, 'a webhook URL without a secret is refused');
like($err, qr/webhook_secret is empty/, 'and says why');

# --- --period is validated everywhere -------------------------------------------

for my $bad ("nope' OR '1'='1", 'zz', '2026-13', '') {
    ($rc) = $t->worker('invoice', 'deliver', '--period', $bad,
                       '--webhook-url', 'http://127.0.0.1:9/hook',
                       '--webhook-secret', 's');
    is($rc, 2, "invoice deliver --period \"$bad\" exits 2");
    for my $cmd ([ 'invoice', 'close' ], [ 'invoice', 'show' ],
                 [ 'invoice', 'check' ], [ 'report', '--out', $t->dir ])
    {
        ($rc) = $t->worker(@$cmd, '--period', $bad);
        is($rc, 2, "@$cmd --period \"$bad\" exits 2");
    }
}
is($t->sql_value('SELECT COUNT(*) FROM webhook_deliveries'), 0,
   'nothing was delivered');

# --- close never blocks on the webhook -------------------------------------------

# a receiver that accepts connections (the kernel does) and never answers

my $hole = IO::Socket::IP->new(LocalHost => '127.0.0.1', LocalPort => 0,
                               Listen => 64, ReuseAddr => 1) or die $@;
my $url = 'http://127.0.0.1:' . $hole->sockport . '/hook';

my $t0 = time;
($rc, $out, $err) = $t->worker('invoice', 'close', '--period', $P,
                               '--force', '--webhook-url', $url,
                               '--webhook-secret', 's3cret');
my $took = time - $t0;
is($rc, 0, 'close exits 0') or diag($err);
like($out, qr/closed \Q$P\E: 4 invoices/, 'four invoices issued');
ok($took < 20, sprintf('close took %.1f s with 4 undeliverable invoices '
                       . '(bounded at 10 s of delivery)', $took));
like($out, qr/webhook: 0 invoices delivered, \d+ failed, \d+ not attempted/,
     'what was not delivered is said');
is($t->sql_value('SELECT COUNT(*) FROM webhook_deliveries WHERE '
                 . 'delivered = 1'), 0, 'nothing counted as delivered');
close $hole;

# --- the CSV formula guard -------------------------------------------------------

my $dir = $t->dir . '/report';
($rc, $out, $err) = $t->worker('report', '--period', $P, '--out', $dir);
is($rc, 0, 'report') or diag($err);
my $csv = Aihub::read_file("$dir/invoices.csv");
like($csv, qr/,"'-2\+3\+cmd\|' \/C calc'!A0",/,
     '"-2+3+cmd|..." is quote-prefixed');
like($csv, qr/,"'\@SUM\(A1\)",/, '"@SUM(A1)" is quote-prefixed');
like($csv, qr/,"'=1\+1",/, '"=1+1" is quote-prefixed');
unlike($csv, qr/,[-=+\@][^,]*\+/, 'no field starts a formula');
like($csv, qr/,plain,/, 'a plain name is written as is');

# --- the config file: comments and quotes ---------------------------------------

my $cfg = $t->dir . '/worker.conf';
my $db = $t->mysql_db;
my $sock = $t->mysql_socket;

Aihub::write_file($cfg, "# the ledger\n"
    . "mysql_socket = $sock   # local\n"
    . "mysql_user = root\n"
    . "mysql_db = $db # a trailing comment\n");
($rc, $out, $err) = $t->run_cmd([ $Aihub::WORKER,
    '--config', $cfg, 'invoice', 'show', '--period', $P ], timeout => 30);
is($rc, 0, 'a trailing "# comment" is not part of the value') or diag($err);

Aihub::write_file($cfg, "mysql_socket = \"$sock\" # quoted\n"
    . "mysql_user = root\nmysql_db = \"$db\"\n"
    . "webhook_url = http://127.0.0.1:9/hook#frag\n"
    . "webhook_secret = \"s#cret \\\" x\" # a quoted secret keeps its #\n");
($rc, $out, $err) = $t->run_cmd([ $Aihub::WORKER,
    '--config', $cfg, 'invoice', 'show', '--period', $P ], timeout => 30);
is($rc, 0, 'quoted values are taken as written') or diag($err);

Aihub::write_file($cfg, "mysql_db = \"$db\n");
($rc, $out, $err) = $t->run_cmd([ $Aihub::WORKER,
    '--config', $cfg, 'invoice', 'show' ], timeout => 30);
is($rc, 2, 'an unclosed quote is refused');
like($err, qr/:1: a quoted value must end/, 'with the line');

# --- prices sync: "." is no price, a large drop needs --allow-drop ------------------

my $srv = IO::Socket::IP->new(LocalHost => '127.0.0.1', LocalPort => 0,
                              Listen => 8, ReuseAddr => 1) or die $@;
my $catalog_file = $t->dir . '/catalog.json';
my $pid = fork;
if ($pid == 0) {
    while (my $c = $srv->accept) {
        while (<$c>) { last if /^\r?\n$/ }
        my $body = Aihub::read_file($catalog_file);
        print $c "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            . "Content-Length: " . length($body) . "\r\n"
            . "Connection: close\r\n\r\n$body";
        close $c;
    }
    exit 0;
}
my $curl = 'http://127.0.0.1:' . $srv->sockport . '/api/v1/models';

sub prices_of { [ $t->sql("SELECT price_in_micros, price_out_micros FROM "
                          . "models WHERE public_id = '$_[0]'") ] }

# mock-basic is $0.15 / $0.60 per M; "." for mock-premium

Aihub::write_file($catalog_file, JSON::PP->new->encode({ data => [
    { id => 'mock-premium', pricing => { prompt => '.',
                                         completion => '.' } },
] }));
($rc, $out, $err) = $t->worker('prices', 'sync', '--url', $curl);
is($rc, 0, 'prices sync with "." prices');
like($err, qr/mock-premium: no readable prompt and completion price/,
     '"." is not a price: said, and skipped');
is_deeply(prices_of('mock-premium'), [ [ 2500000, 10000000 ] ],
          'mock-premium keeps its price (not $0)');

# a drop to $0.05 / $0.20 (to a third): refused without --allow-drop

Aihub::write_file($catalog_file, JSON::PP->new->encode({ data => [
    { id => 'mock-basic', pricing => { prompt => '0.00000005',
                                       completion => '0.0000002' } },
] }));
($rc, $out, $err) = $t->worker('prices', 'sync', '--url', $curl);
is($rc, 1, 'a drop to less than half is refused');
like($err, qr/mock-basic: .* drop to less than half; pass --allow-drop/,
     'and named');
is_deeply(prices_of('mock-basic'), [ [ 150000, 600000 ] ],
          'nothing written');
($rc, $out, $err) = $t->worker('prices', 'sync', '--url', $curl,
                               '--allow-drop');
is($rc, 0, 'with --allow-drop it is taken') or diag($err);
is_deeply(prices_of('mock-basic'), [ [ 50000, 200000 ] ], 'the new price');
kill 'TERM', $pid;
waitpid $pid, 0;

# --- a migration that failed halfway is run again ---------------------------------

# 001 stopped after its first table: the next migrate completes it

$t->sql_root('CREATE DATABASE half');
$t->sql_in('half', "CREATE TABLE plans (id INT UNSIGNED NOT NULL "
    . "AUTO_INCREMENT, name VARCHAR(32) NOT NULL, base_fee_cents BIGINT NOT "
    . "NULL DEFAULT 0, included_calls BIGINT NOT NULL DEFAULT 0, hard_quota "
    . "TINYINT(1) NOT NULL DEFAULT 1, overage TINYINT(1) NOT NULL DEFAULT 0, "
    . "rpm INT UNSIGNED NOT NULL DEFAULT 60, tpm INT UNSIGNED NOT NULL "
    . "DEFAULT 100000, max_tokens INT UNSIGNED NOT NULL DEFAULT 0, "
    . "model_tier ENUM('basic','all') NOT NULL DEFAULT 'basic', priority "
    . "TINYINT NOT NULL DEFAULT 0, PRIMARY KEY (id), UNIQUE KEY plans_name "
    . "(name))");
$t->sql_in('half', "INSERT INTO plans (name) VALUES ('free')");
($rc, $out, $err) = $t->run_cmd([ $Aihub::WORKER,
    '--mysql-socket', $t->mysql_socket, '--mysql-user', 'root',
    '--mysql-db', 'half', '--redis', $t->redis_addr, 'migrate',
    '--sql-dir', $t->root . '/sql' ], timeout => 60);
is($rc, 0, 'migrate completes a half-applied 001') or diag($err);
is($t->sql_value("SELECT COUNT(*) FROM half.schema_migrations"),
   scalar(() = glob($t->root . '/sql/[0-9][0-9][0-9]_*.sql')),
   'and records every migration');
is($t->sql_value("SELECT COUNT(*) FROM half.plans"), 3,
   'the seeds are there once');

$t->done;
