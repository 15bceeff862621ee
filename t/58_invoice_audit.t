#!/usr/bin/perl

# Issued invoices are tamper-evident (issue 12, "audit"): the database
# refuses to change or delete them; a void is a recorded status change and
# no revenue; someone who drops the triggers and sets an invoice void with
# its plan and subtotal changed, changes calls, allowance or terms, or
# deletes an invoice with its lines, is named by "invoice check".

use strict;
use warnings;

use Test::More;
use JSON::PP;

use lib 't/lib';
use Aihub;
use AihubFixtures qw(months_back);

plan skip_all => 'aihub-worker not built' unless Aihub::have_worker();

my $t = Aihub->new(redis => 1, mariadb => 1);
$t->migrate;

my $P = months_back(2);
my $B = months_back(3);

my %id;

for my $name (qw(a1 a2 a3 a4)) {
    $t->create_key(account => $name, plan => 'pro');
    $id{$name} = $t->sql_value("SELECT id FROM accounts WHERE name = "
                               . "'$name'");

    # the contract as it was from the start (a change made after a month's
    # end is not billed to that month: t/56)
    $t->worker('account', 'override', $name, '--included', 0);
}

$t->sql("UPDATE accounts SET created_at = '$B-15 00:00:00'");
$t->sql("UPDATE subscriptions SET started_at = '$B-15 00:00:00'");

# each account: one mock-premium call of 1M prompt tokens ($2.50/M), all
# overage (nothing included): $19.00 + $2.50 = $21.50; four: $86.00

my $tag = 0;

for my $name (qw(a1 a2 a3 a4)) {
    $tag++;
    $t->sql("INSERT INTO usage_events (event_id, ts, account, key_prefix, "
        . "plan, model, provider, prompt_tokens, completion_tokens, "
        . "total_tokens, cost_micros, status, streamed, aborted, estimated, "
        . "latency_ms, node) VALUES (MD5('$tag'), '$P-05 10:00:00', "
        . "$id{$name}, 'ai-hub-AbCdEfGh', 'pro', 'mock-premium', 'mock', "
        . "1000000, 0, 1000000, 2500000, 200, 0, 0, 0, 5, 'n')");
}

my ($rc, $out, $err) = $t->worker('invoice', 'close', '--period', $P,
                                  '--force');
is($rc, 0, "close $P") or diag($err);
like($out, qr/4 invoices, total \$86\.00/, 'four invoices of $21.50');

sub inv { $t->sql_value("SELECT id FROM invoices WHERE account = "
                        . "$id{$_[0]}") }

($rc, $out) = $t->worker('invoice', 'check');
is($rc, 0, 'check passes on untouched invoices') or diag($out);

# --- the database refuses changes ---------------------------------------------

for my $q ("UPDATE invoices SET subtotal_cents = 0 WHERE id = " . inv('a2'),
           "UPDATE invoices SET status = 'void', plan = 'free' WHERE id = "
           . inv('a2'),
           "DELETE FROM invoice_lines WHERE invoice = " . inv('a3'),
           "DELETE FROM invoices WHERE id = " . inv('a3'),
           "INSERT INTO invoice_lines (invoice, kind, amount_cents) VALUES ("
           . inv('a4') . ", 'adjustment', -2150)")
{
    ok(!eval { $t->sql($q); 1 }, "refused: $q");
}

# --- a recorded void ----------------------------------------------------------

my $reason = q{duplicate account's "twin" \'; DROP TABLE invoices; --};
($rc, $out, $err) = $t->worker('invoice', 'void', '--id', inv('a1'),
                               '--reason', $reason);
is($rc, 0, 'invoice void') or diag($err);
is($t->sql_value("SELECT reason FROM invoice_voids WHERE invoice = "
                 . inv('a1')), $reason, 'the reason is stored as given');
is($t->sql_value("SELECT status FROM invoices WHERE id = " . inv('a1')),
   'void', 'a1 is void');
($rc, $out) = $t->worker('invoice', 'check');
is($rc, 0, 'check passes with a recorded void') or diag($out);

# the report leaves the void invoice out of revenue: 3 x $21.50 = $64.50

my $dir = $t->dir . '/report';
($rc, $out, $err) = $t->worker('report', '--period', $P, '--out', $dir);
is($rc, 0, 'report') or diag($err);
my $rep = JSON::PP->new->decode(Aihub::read_file("$dir/report.json"));
is($rep->{total_cents}, 6450, 'report.json: revenue $64.50, void left out');
is($rep->{invoice_count}, 3, 'three invoices count');
is_deeply([ map { $_->{total_cents} } @{ $rep->{revenue_by_plan} } ],
          [ 6450 ], 'revenue by plan: pro $64.50');
is_deeply([ sort map { $_->{name} } @{ $rep->{top_accounts} } ],
          [qw(a2 a3 a4)],
   'the void account is not a top account');
like(Aihub::read_file("$dir/report.html"),
     qr/id="kpi-revenue">\$64\.50</, 'report.html: revenue $64.50');
is_deeply([ sort map { $_->{account}{name} } @{ $rep->{invoices} } ],
          [qw(a2 a3 a4)], 'report.json: the void invoice is not listed');
my @csv = grep { !/^invoice_id,/ } split /\r\n/,
          Aihub::read_file("$dir/invoices.csv");
my $void_id = inv('a1');
is(scalar(grep { /^$void_id,/ } @csv), 0,
   'invoices.csv: no line of the void invoice');
my $csv_cents = 0;
$csv_cents += (split /,/)[12] for @csv;
is($csv_cents, 6450, 'invoices.csv: its lines add up to the revenue');

# a query that fails makes no report, not a report of $0
$t->sql('RENAME TABLE usage_daily TO usage_daily_away');
my $dir2 = $t->dir . '/report-failed';
($rc, $out, $err) = $t->worker('report', '--period', $P, '--out', $dir2);
$t->sql('RENAME TABLE usage_daily_away TO usage_daily');
is($rc, 1, 'report: a failed query exits 1');
ok(!-e "$dir2/report.json", '... and writes no report');

# --- tampering past the triggers ----------------------------------------------

$t->sql("DROP TRIGGER $_") for qw(invoices_sealed_update
    invoices_sealed_delete invoice_lines_sealed_insert
    invoice_lines_sealed_update invoice_lines_sealed_delete);

# a2: set void (no record) with its plan and subtotal changed

my $a2 = inv('a2');
$t->sql("UPDATE invoices SET status = 'void', plan = 'free', "
        . "subtotal_cents = 0 WHERE id = $a2");
($rc, $out) = $t->worker('invoice', 'check');
is($rc, 1, 'check fails on a void without a record');
like($out, qr/invoice $a2 .*status void, but no void was recorded/,
     'names the status');
like($out, qr/invoice $a2 .*plan free, recomputed pro/, 'names the plan');
like($out, qr/invoice $a2 .*subtotal \$0\.00, total \$21\.50/,
     'names the subtotal');
like($out, qr/invoice $a2 .*differs from what was issued/,
     'the digest no longer matches');

# a4: calls, included calls, terms

my $a4 = inv('a4');
$t->sql("UPDATE invoices SET calls = 2, included_calls = 1 WHERE id = $a4");
($rc, $out) = $t->worker('invoice', 'check');
like($out, qr/invoice $a4 .*: 2 calls, recomputed 1/, 'names the calls');
like($out, qr/invoice $a4 .*: 1 calls included, recomputed 0/,
     'names the included calls');
$t->sql("UPDATE invoices SET calls = 1, included_calls = 0, terms = "
        . "REPLACE(terms, 'included=0', 'included=1') WHERE id = $a4");
($rc, $out) = $t->worker('invoice', 'check');
like($out, qr/invoice $a4 .*line \d+ "overage/,
     'terms changed: the lines no longer follow from them');
like($out, qr/invoice $a4 .*differs from what was issued/,
     'and the digest names the change');
$t->sql("UPDATE invoices SET terms = REPLACE(terms, 'included=1', "
        . "'included=0') WHERE id = $a4");

# a3: deleted with its lines

my $a3 = inv('a3');
$t->sql("DELETE FROM invoice_lines WHERE invoice = $a3");
$t->sql("DELETE FROM invoices WHERE id = $a3");
($rc, $out) = $t->worker('invoice', 'check', '--period', $P);
is($rc, 1, 'check fails on a deleted invoice');
like($out, qr/MISMATCH \Q$P\E: invoice $a4 does not follow the one before/,
     'the chain is broken after the deleted invoice');
like($out, qr/MISMATCH \Q$P\E: 3 invoices, 4 issued at the close/,
     'and the count names the missing one');
unlike($out, qr/invoice $a4 .*differs from what was issued/,
       'a4 itself is back as issued');

$t->done;
