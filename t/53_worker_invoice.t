#!/usr/bin/perl

# aihub-worker invoice close / show / check, with totals worked out by hand:
# free under and at quota, pro under and over quota with several models and
# a price change, enterprise with a contract, a plan change mid-period, a
# late event adjusted in the next invoice, closing twice, a tampered line,
# and signed, retried, idempotent webhook delivery.

use strict;
use warnings;

use Test::More;
use Digest::SHA qw(hmac_sha256_hex);
use IO::Socket::IP;
use JSON::PP;
use POSIX qw(strftime);
use Time::HiRes qw(time sleep);

use lib 't/lib';
use Aihub;
use AihubFixtures qw(months_back ledger_events lock_table);

plan skip_all => 'aihub-worker not built' unless Aihub::have_worker();

my $t = Aihub->new(redis => 1, mariadb => 1);
$t->migrate;

# P: the month before last (ended), N: last month (ended), B: before P

my $P = months_back(2);
my $N = months_back(1);
my $B = months_back(3);

my %id;

for ([ free_under => 'free' ], [ free_at => 'free' ], [ pro_under => 'pro' ],
     [ pro_over => 'pro' ], [ ent => 'enterprise' ], [ changer => 'free' ],
     [ capped => 'pro' ])
{
    my ($name, $plan) = @$_;
    $t->create_key(account => $name, plan => $plan);
    $id{$name} = $t->sql_value("SELECT id FROM accounts WHERE name = "
                               . "'$name'");
}

# enterprise contract: $500.00 a month, 100 calls included

my ($rc, $out, $err) = $t->worker('account', 'override', 'ent',
    '--base-fee', '500', '--included', 100);
is($rc, 0, 'enterprise override set') or diag($err);

# capped: pro with a spend cap of $0.03 on overage

($rc) = $t->worker('account', 'override', 'capped', '--spend-cap', '0.03');
is($rc, 0, 'spend cap set');

# everyone existed since the middle of B, with these contracts (a change
# made after a month's end is not billed to that month: t/56)

$t->sql("UPDATE accounts SET created_at = '$B-15 00:00:00'");
$t->sql("UPDATE subscriptions SET started_at = '$B-15 00:00:00'");

# changer: free until P-10, then pro

$t->worker('account', 'plan', 'changer', '--plan', 'pro');
$t->sql("UPDATE subscriptions SET ended_at = '$P-10 12:00:00' "
        . "WHERE account = $id{changer} AND ended_at IS NOT NULL");
$t->sql("UPDATE subscriptions SET started_at = '$P-10 12:00:00' "
        . "WHERE account = $id{changer} AND ended_at IS NULL");

# mock-premium's price doubles on P-20

$t->sql("INSERT INTO model_prices (model, price_in_micros, price_out_micros,"
        . " valid_from, source) VALUES ('mock-premium', 5000000, 20000000, "
        . "'$P-20 00:00:00', 'test')");

sub events {
    my (%o) = @_;

    ledger_events($t, %o, account => $id{$o{account}});
}

# free under quota: 10 calls; free at quota: exactly 1000

events(account => 'free_under', n => 10, plan => 'free',
       model => 'mock-basic', in => 1000, out => 500, ts => "$P-02");
events(account => 'free_at', n => 1000, plan => 'free',
       model => 'mock-basic', in => 1000, out => 500, ts => "$P-02");

# pro under quota: 500 premium calls, and one whose client went away
# after it reached the provider (499, aborted: counted as the module
# counts it, billed its prompt)

events(account => 'pro_under', n => 500, model => 'mock-premium',
       in => 100000, out => 100000, ts => "$P-03");
events(account => 'pro_under', n => 1, model => 'mock-premium',
       in => 1000, out => 0, ts => "$P-04", status => 499, aborted => 1);

# pro over quota: 10,000 included calls, then 3 overage calls:
#   mock-premium at the old price (2.50/10.00 per M): 1000 in, 2000 out
#     = 2.5e9 + 2e10 = 2.25e10 micro-cents -> 2.25 cents -> 2
#   mock-premium at the new price (5/20 per M) after P-20: same tokens
#     = 5e9 + 4e10 = 4.5e10 -> 4.5 cents -> 5 (half up)
#   mock-basic (0.15/0.60 per M): 100000 in, 50000 out
#     = 1.5e10 + 3e10 = 4.5e10 -> 4.5 cents -> 5
#   a failed call (502) is neither counted nor billed
# total: 1900 + 2 + 5 + 5 = 1912

events(account => 'pro_over', n => 10000, model => 'mock-basic',
       in => 10, out => 10, ts => "$P-01");
events(account => 'pro_over', n => 1, model => 'mock-premium',
       in => 1000, out => 2000, ts => "$P-15");
events(account => 'pro_over', n => 1, model => 'mock-premium',
       in => 1000, out => 2000, ts => "$P-21");
events(account => 'pro_over', n => 1, model => 'mock-basic',
       in => 100000, out => 50000, ts => "$P-22");
events(account => 'pro_over', n => 1, model => 'mock-premium',
       in => 9999999, out => 9999999, ts => "$P-23", status => 502);

# enterprise: 101 calls of 1M prompt tokens of mock-premium at the new
# price (after P-20): one overage call = 1e6 * 5e6 = 5e12 -> 500 cents;
# total 50000 + 500 = 50500

events(account => 'ent', n => 101, model => 'mock-premium',
       in => 1000000, out => 0, ts => "$P-25");

# changer: 50 calls on free before the change, 50 on pro after:
# the plan in force at the month's end (pro) is charged once, 1900;
# allowance 10000, total 1900

events(account => 'changer', n => 50, plan => 'free', model => 'mock-basic',
       in => 10, out => 10, ts => "$P-05");
events(account => 'changer', n => 50, model => 'mock-premium',
       in => 10, out => 10, ts => "$P-15");

# capped: 10000 included + 2 premium calls of 1M prompt tokens at the old
# price: 2 * 1e6 * 2.5e6 = 5e12 -> 500 cents, capped at 3 cents:
# overage line 500, adjustment -497, total 1900 + 3 = 1903

events(account => 'capped', n => 10000, model => 'mock-basic',
       in => 1, out => 1, ts => "$P-01");
events(account => 'capped', n => 2, model => 'mock-premium',
       in => 1000000, out => 0, ts => "$P-12");

# --- the drain must have passed the period's end ----------------------------

my $p_end = $t->sql_value("SELECT UNIX_TIMESTAMP('$N-01')") * 1000;
$t->redis('XADD', 'aihub:usage', ($p_end - 5000) . '-0', 'event', '{}');

($rc, $out, $err) = $t->worker('invoice', 'close', '--period', $P);
is($rc, 1, 'close refused while usage of the period is in the stream');
like($err, qr/still in the stream/, 'and says why');
is($t->sql_value('SELECT COUNT(*) FROM invoices'), 0, 'nothing issued');

$t->start_worker('--consumer', 'w', '--block-ms', 100);
ok($t->wait_for(sub { $t->redis('XLEN', 'aihub:usage:dead') == 1 },
                timeout => 5), 'the drain took the entry (dead-lettered)');
$t->stop_worker;

# --- close P, twice at once ---------------------------------------------------

# both wait at the period's table, then race to its row: one closes, the
# other finds it closed (exit 0, as a close of a closed month)
my ($lock) = lock_table($t, 'billing_periods');

my @closers;
for my $n (1, 2) {
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        my ($crc, $cout, $cerr) = $t->worker('invoice', 'close', '--period',
                                             $P);
        Aihub::write_file($t->dir . "/close$n", "$crc\n$cout$cerr");
        POSIX::_exit(0);
    }
    push @closers, $pid;
}
sleep 1;
print $lock "UNLOCK TABLES;\n";
close $lock;
waitpid($_, 0) for @closers;

my @closed = map { Aihub::read_file($t->dir . "/close$_") } 1, 2;
is_deeply([ map { /^(\d+)/ ? $1 : -1 } @closed ], [ 0, 0 ],
          "close $P twice at once: both exit 0") or diag(explain(\@closed));
is(scalar(grep { /period \Q$P\E is already closed/ } @closed), 1,
   'one found it closed');
($out) = grep { /closed \Q$P\E: / } @closed;
$out //= '';
like($out, qr/closed \Q$P\E: 7 invoices, total \$581\.15/,
     'seven invoices, $0 + $0 + $19 + $19.12 + $505 + $19 + $19.03')
    or diag(explain(\@closed));

sub total {
    my ($name, $period) = @_;
    return $t->sql_value("SELECT total_cents FROM invoices WHERE account = "
                         . "$id{$name} AND period = '$period'");
}

is(total('free_under', $P), 0, 'free under quota: $0.00');
is(total('free_at', $P), 0, 'free at quota: $0.00');
is(total('pro_under', $P), 1900, 'pro under quota: $19.00');
is(total('pro_over', $P), 1912, 'pro over quota: $19.12');
is(total('ent', $P), 50500, 'enterprise: $505.00');
is(total('changer', $P), 1900, 'plan change free -> pro: $19.00');
is(total('capped', $P), 1903, 'spend cap: $19.00 + $0.03');
is_deeply([ $t->sql("SELECT l.kind, l.amount_cents FROM invoice_lines l "
                    . "JOIN invoices i ON i.id = l.invoice WHERE i.account "
                    . "= $id{capped} AND l.kind IN ('overage', 'adjustment')"
                    . " ORDER BY l.id") ],
          [ [ 'overage', 500 ], [ 'adjustment', -497 ] ],
          'the cap is a visible adjustment line');

my @lines = $t->sql("SELECT l.kind, l.model, l.price_in_micros, l.calls, "
    . "l.prompt_tokens, l.completion_tokens, l.amount_cents FROM "
    . "invoice_lines l JOIN invoices i ON i.id = l.invoice WHERE i.account "
    . "= $id{pro_over} AND l.kind = 'overage' ORDER BY l.model, "
    . "l.price_in_micros");
is_deeply(\@lines, [
    [ 'overage', 'mock-basic', 150000, 1, 100000, 50000, 5 ],
    [ 'overage', 'mock-premium', 2500000, 1, 1000, 2000, 2 ],
    [ 'overage', 'mock-premium', 5000000, 1, 1000, 2000, 5 ],
], 'pro overage: one line per (model, price), rounded once, half up');

is($t->sql_value("SELECT calls FROM invoices WHERE account = $id{pro_over}"),
   10003, 'failed call not counted');
is($t->sql_value("SELECT calls FROM invoices WHERE account = $id{pro_under}"),
   501, 'an aborted call (499) counted');
my ($usage) = $t->sql("SELECT l.calls, l.amount_cents FROM invoice_lines l "
    . "JOIN invoices i ON i.id = l.invoice WHERE i.account = "
    . "$id{free_at} AND l.kind = 'usage'");
is_deeply($usage, [ 1000, 0 ], 'free invoice shows its usage at $0');
is($t->sql_value("SELECT COUNT(*) FROM invoice_lines l JOIN invoices i ON "
                 . "i.id = l.invoice WHERE i.account = $id{changer} AND "
                 . "l.kind = 'base'"), 1,
   'plan change: one base line, the plan in force at the end');
is($t->sql_value("SELECT COUNT(*) FROM usage_events WHERE invoice IS NULL "
                 . "AND ts < '$N-01'"), 0, 'every event of P is billed');

# --- closing twice changes nothing ----------------------------------------

my $before = join ',', map { "@$_" } $t->sql(
    'SELECT id, total_cents FROM invoices ORDER BY id');
($rc, $out) = $t->worker('invoice', 'close', '--period', $P);
is($rc, 0, 'second close exits 0');
like($out, qr/already closed/, 'second close says so');
is(join(',', map { "@$_" } $t->sql(
       'SELECT id, total_cents FROM invoices ORDER BY id')), $before,
   'second close changed nothing');

# --- check, and a tampered line ---------------------------------------------

($rc, $out) = $t->worker('invoice', 'check');
is($rc, 0, 'check passes on issued invoices') or diag($out);
like($out, qr/ok: 7 invoices/, 'check reports seven invoices');

# the database refuses the change; someone who drops the triggers first
# still gets caught by check

my $tamper = "UPDATE invoice_lines l JOIN invoices i ON i.id = l.invoice "
    . "SET l.amount_cents = l.amount_cents + 1 WHERE i.account = "
    . "$id{pro_over} AND l.kind = 'overage' AND l.model = 'mock-basic'";
ok(!eval { $t->sql($tamper); 1 }, 'the database refuses to change a line');
like($@, qr/an issued invoice cannot change/, 'and says why');
$t->sql("DROP TRIGGER invoice_lines_sealed_update");
$t->sql($tamper);
($rc, $out) = $t->worker('invoice', 'check');
is($rc, 1, 'check fails on a tampered line');
like($out, qr/MISMATCH invoice \d+ \(account $id{pro_over}, \Q$P\E\) line/,
     'and names the invoice and line');
$t->sql("UPDATE invoice_lines l JOIN invoices i ON i.id = l.invoice SET "
        . "l.amount_cents = l.amount_cents - 1 WHERE i.account = "
        . "$id{pro_over} AND l.kind = 'overage' AND l.model = 'mock-basic'");
$t->sql("DELETE FROM schema_migrations WHERE version = "
        . "'003_billing_audit.sql'");
$t->migrate;
ok(!eval { $t->sql($tamper); 1 }, 'migrate re-run: the trigger is back');

# --- a late event for P goes into N as an adjustment -------------------------

# P's invoice is voided first (written off): it still counts as what P
# billed, so the late event adds only its own cost, not P's month again

($rc, $out, $err) = $t->worker('invoice', 'void', '--id',
    $t->sql_value("SELECT id FROM invoices WHERE account = $id{pro_over} "
                  . "AND period = '$P'"), '--reason', 'written off');
is($rc, 0, "pro_over's $P invoice voided") or diag($err);

# one more premium call at the new price: the premium@new line becomes
# 2000 in / 4000 out = 1e10 + 8e10 = 9e10 -> 9 cents, was 5: +4 cents

events(account => 'pro_over', n => 1, model => 'mock-premium',
       in => 1000, out => 2000, ts => "$P-28");
($rc, $out) = $t->worker('invoice', 'check');
like($out, qr/1 late events not billed yet/, 'check notes the late event');

# a webhook receiver: the first request fails with 500, then 200

my $hook = IO::Socket::IP->new(LocalHost => '127.0.0.1', LocalPort => 0,
                               Listen => 16, ReuseAddr => 1) or die $@;
my $hook_port = $hook->sockport;
my $hook_log = $t->dir . '/hook.log';
my $hook_pid = fork;

if ($hook_pid == 0) {
    my $n = 0;
    while (my $c = $hook->accept) {
        my ($head, $body) = ('', '');
        while (<$c>) { last if /^\r?\n$/; $head .= $_ }
        my ($len) = $head =~ /content-length:\s*(\d+)/i;
        read($c, $body, $len) if $len;
        my $code = $n++ == 0 ? 500 : 200;
        open my $f, '>>', $hook_log;
        print $f JSON::PP->new->canonical->encode(
            { head => $head, body => $body, code => $code }), "\n";
        close $f;
        print $c "HTTP/1.1 $code X\r\nContent-Length: 0\r\n"
                 . "Connection: close\r\n\r\n";
        close $c;
    }
    exit 0;
}

($rc, $out, $err) = $t->worker('invoice', 'close', '--period', $N,
    '--webhook-url', "http://127.0.0.1:$hook_port/invoices",
    '--webhook-secret', 's3cret');
is($rc, 0, "close $N exits 0") or diag($err);
like($out, qr/webhook: 7 invoices delivered, 0 failed/, 'webhook delivered')
    or diag($out . $err);

is(total('pro_over', $N), 1904,
   'N: pro base $19.00 + late adjustment $0.04 (the void P invoice counts '
   . 'as billed)');
my ($adj) = $t->sql("SELECT l.ref_period, l.calls, l.amount_cents FROM "
    . "invoice_lines l JOIN invoices i ON i.id = l.invoice WHERE i.account "
    . "= $id{pro_over} AND i.period = '$N' AND l.kind = 'adjustment'");
is_deeply($adj, [ $P, 1, 4 ], 'adjustment line names P, one event, 4 cents');
is(total('pro_over', $P), 1912, 'the issued P invoice did not change');
is(total('ent', $N), 50000, 'N: enterprise contract, no usage');
is(total('free_at', $N), 0, 'N: free, no usage');

($rc, $out) = $t->worker('invoice', 'check');
is($rc, 0, 'check passes with the adjustment') or diag($out);

# webhook: signed, idempotency key, retried, recorded

my @hooks = map { JSON::PP->new->decode($_) }
            split /\n/, Aihub::read_file($hook_log);
is(scalar @hooks, 8, 'eight POSTs: one failure and seven deliveries');
is($hooks[0]{code}, 500, 'the first attempt failed');
my ($k0) = $hooks[0]{head} =~ /idempotency-key:\s*(\S+)/i;
my ($k1) = $hooks[1]{head} =~ /idempotency-key:\s*(\S+)/i;
is($k0, $k1, 'the retry carries the same idempotency key');
my ($ts, $sig) = $hooks[1]{head}
    =~ /x-aihub-signature:\s*t=(\d+),v1=([0-9a-f]+)/i;
is($sig, hmac_sha256_hex("$ts.$hooks[1]{body}", 's3cret'),
   'HMAC-SHA256 signature over the timestamp and the body');
# the receiver's tolerance check: the timestamp is within 5 minutes
ok(defined $ts && abs(time - $ts) < 300, 'the timestamp is now');
my $inv = JSON::PP->new->decode($hooks[1]{body});
is($inv->{period}, $N, 'the body is the invoice JSON');
is($t->sql_value('SELECT COUNT(*) FROM webhook_deliveries'), 8,
   'every attempt recorded');
is($t->sql_value('SELECT COUNT(*) FROM webhook_deliveries WHERE delivered '
                 . '= 1'), 7, 'seven delivered');

kill 'TERM', $hook_pid;
waitpid $hook_pid, 0;

# --- show ------------------------------------------------------------------

($rc, $out) = $t->worker('invoice', 'show', '--period', $P, '--account',
                         'pro_over');
is($rc, 0, 'show exits 0');
like($out, qr/total \$19\.12/, 'show prints the total');
($rc, $out) = $t->worker('invoice', 'show', '--period', $P, '--json');
my $all = JSON::PP->new->decode($out);
is(scalar @$all, 7, 'show --json lists seven invoices');

# --- bad arguments -----------------------------------------------------------

($rc) = $t->worker('invoice', 'close', '--period', '2026-13');
is($rc, 2, 'bad period exits 2');
($rc) = $t->worker('invoice', 'close', '--period', months_back(0));
is($rc, 1, 'the current month cannot be closed');

# show, check and deliver take an optional --period, checked the same way
for my $cmd (qw(show check deliver)) {
    for my $bad ('2026-13', '2026-1', 'x') {
        ($rc, $out, $err) = $t->worker('invoice', $cmd, '--period', $bad);
        is($rc, 2, "invoice $cmd --period $bad: exits 2");
        like($err, qr/invalid --period "\Q$bad\E"/,
             "invoice $cmd --period $bad: says so");
    }
}

$t->done;
