#!/usr/bin/perl

# Invoices billed on the right terms (issue 12, "wrong amounts"), totals
# worked out by hand: thinking tokens are billed as output, a plan change
# within a month charges one base fee (the plan in force at the month's
# end, or the contract price, once), late events are billed with the terms
# the closed invoice was computed with, a price change mid-month and a
# spend cap, a model without a price refuses the close, a spend cap that
# does not fit is refused.  Every total matches to the cent in show
# --json, the CSV, the JSON and the HTML report.  A spend cap of $0 (no
# cap to the module) is refused.

use strict;
use warnings;

use Test::More;
use JSON::PP;

use lib 't/lib';
use Aihub;
use AihubFixtures qw(months_back ledger_events);

plan skip_all => 'aihub-worker not built' unless Aihub::have_worker();

my $t = Aihub->new(redis => 1, mariadb => 1);
$t->migrate;

# P: the month before last (ended), N: last month (ended), B: before P

my $P = months_back(2);
my $N = months_back(1);
my $B = months_back(3);

my %id;

# 40 plans more, with names of 32 characters: an invoice's terms hold the
# overage rule of every plan (before: the first 32, and 1,024 bytes)
my @many = map { sprintf 'team-plan-with-a-long-name-%05d', $_ } 1 .. 40;

for my $plan (@many) {
    my ($prc, undef, $perr) = $t->worker('plan', 'add', $plan, '--base-fee',
                                         1, '--overage', 'on',
                                         '--model-tier', 'all');
    is($prc, 0, "plan $plan added") or diag($perr);
}

for ([ think => 'pro' ], [ switch => 'pro' ], [ late => 'enterprise' ],
     [ ghost => 'pro' ], [ capped => 'pro' ], [ many => $many[-1] ])
{
    my ($name, $plan) = @$_;
    $t->create_key(account => $name, plan => $plan);
    $id{$name} = $t->sql_value("SELECT id FROM accounts WHERE name = "
                               . "'$name'");
}

$t->sql("UPDATE accounts SET created_at = '$B-15 00:00:00'");
$t->sql("UPDATE subscriptions SET started_at = '$B-15 00:00:00'");

my ($rc, $out, $err);

# no call included: every call is overage

for my $name (qw(think switch late ghost capped many)) {
    ($rc, $out, $err) = $t->worker('account', 'override', $name,
                                   '--included', 0);
    is($rc, 0, "$name: nothing included") or diag($err);
}

sub events {
    my (%o) = @_;

    ledger_events($t, %o, account => $id{$o{account}});
}

sub total {
    my ($name, $period) = @_;
    return $t->sql_value("SELECT total_cents FROM invoices WHERE account = "
                         . "$id{$name} AND period = '$period'");
}

# --- spend cap: a value that does not fit is refused -------------------------

($rc, $out, $err) = $t->worker('account', 'override', 'think',
                               '--spend-cap', '18446744073709.56');
is($rc, 2, 'a spend cap beyond 64 bits of micro-dollars is refused');
is($t->sql_value("SELECT IFNULL(spend_cap_micros, 'none') FROM "
                 . "account_overrides WHERE account = $id{think}"), 'none',
   'and nothing was stored');
($rc) = $t->worker('account', 'override', 'think', '--spend-cap',
                   '9223372036854.77');
is($rc, 0, 'the largest cap that fits is taken');
is($t->sql_value("SELECT spend_cap_micros FROM account_overrides WHERE "
                 . "account = $id{think}"), 9223372036854770000,
   'stored exactly');
$t->worker('account', 'override', 'think', '--spend-cap', 'default');

# a cap of $0 would be stored as 0, which the module and invoices read as
# no cap at all: refused, naming what stops the overage or clears the cap

for my $v ('0', '0.00', '-1') {
    ($rc, $out, $err) = $t->worker('account', 'override', 'think',
                                   '--spend-cap', $v);
    is($rc, 2, "--spend-cap $v is refused");
    like($err, qr/--overage 0.*--spend-cap default/s,
         '  and names --overage 0 and --spend-cap default');
}
is($t->sql_value("SELECT IFNULL(spend_cap_micros, 'none') FROM "
                 . "account_overrides WHERE account = $id{think}"), 'none',
   'no cap of 0 was stored');

# --- base fee: the same bound -------------------------------------------------

($rc, $out, $err) = $t->worker('account', 'override', 'think',
                               '--base-fee', '10000000000000');
is($rc, 2, 'a base fee beyond 64 bits of micro-dollars is refused');
is($t->sql_value("SELECT IFNULL(base_fee_cents, 'none') FROM "
                 . "account_overrides WHERE account = $id{think}"), 'none',
   'and nothing was stored');
($rc) = $t->worker('account', 'override', 'think', '--base-fee',
                   '9223372036854.77');
is($rc, 0, 'the largest base fee that fits is taken');
is($t->sql_value("SELECT base_fee_cents FROM account_overrides WHERE "
                 . "account = $id{think}"), 922337203685477, 'stored exactly');
$t->worker('account', 'override', 'think', '--base-fee', 'default');

# --- thinking tokens ---------------------------------------------------------

# gemini-2.5-pro ($1.25 / $10 per M), 1,000 in / 100 out / 5,100 total:
# output = total - prompt = 4,100 tokens;
# 1,000 * 1.25 + 4,100 * 10 = 1,250 + 41,000 micro-$ = 4.225 c -> 4 c;
# pro $19.00 + $0.04 = $19.04

events(account => 'think', n => 1, model => 'google/gemini-2.5-pro',
       in => 1000, out => 100, total => 5100, ts => "$P-10");

# --- a plan change within the month ------------------------------------------

# switch: pro with a contract price of $2,500, enterprise from P-10: the
# plan in force at the month's end is enterprise, its fee is the contract
# price, charged once: $2,500.00 (no usage)

($rc) = $t->worker('account', 'override', 'switch', '--base-fee', '2500');
is($rc, 0, 'switch: contract price $2,500');
$t->worker('account', 'plan', 'switch', '--plan', 'enterprise');
$t->sql("UPDATE subscriptions SET ended_at = '$P-10 12:00:00' "
        . "WHERE account = $id{switch} AND ended_at IS NOT NULL");
$t->sql("UPDATE subscriptions SET started_at = '$P-10 12:00:00' "
        . "WHERE account = $id{switch} AND ended_at IS NULL");

# --- late: a contract of $2,500, one call in P -------------------------------

# mock-premium ($2.50 / $10 per M) 2,000 in / 7,500 out:
# 2,000 * 2.5 + 7,500 * 10 = 5,000 + 75,000 micro-$ = 8 c;
# P: $2,500.00 + $0.08 = $2,500.08

($rc) = $t->worker('account', 'override', 'late', '--base-fee', '2500');
is($rc, 0, 'late: contract price $2,500');
events(account => 'late', n => 1, model => 'mock-premium', plan =>
       'enterprise', in => 2000, out => 7500, ts => "$P-05");

# many: the 43rd plan, $1.00, overage on; the call of late's, 8 c beyond
# the allowance: $1.08
events(account => 'many', n => 1, model => 'mock-premium', plan =>
       $many[-1], in => 2000, out => 7500, ts => "$P-05");

# --- a price change mid-month and a spend cap ---------------------------------

# mock-basic goes from $0.15 / $0.60 to $0.30 / $1.20 per M on P-15;
# capped (pro, cap $0.10 on overage) calls it with 100,000 in / 50,000 out
# on P-10: 100,000 * 0.15 + 50,000 * 0.60 = 15,000 + 30,000 = 45,000
#   micro-$ = 4.5 c -> 5 c (half up)
# and on P-20: 100,000 * 0.30 + 50,000 * 1.20 = 30,000 + 60,000 = 90,000
#   micro-$ = 9 c
# overage 5 + 9 = 14 c, capped at 10 c: adjustment -4 c;
# $19.00 + $0.14 - $0.04 = $19.10

$t->sql("INSERT INTO model_prices (model, price_in_micros, price_out_micros,"
        . " valid_from, source) VALUES ('mock-basic', 300000, 1200000, "
        . "'$P-15 00:00:00', 'test')");
($rc) = $t->worker('account', 'override', 'capped', '--spend-cap', '0.10');
is($rc, 0, 'capped: spend cap $0.10');
events(account => 'capped', n => 1, model => 'mock-basic', in => 100000,
       out => 50000, ts => "$P-10");
events(account => 'capped', n => 1, model => 'mock-basic', in => 100000,
       out => 50000, ts => "$P-20");

# The terms set up above stand for the terms in force since B: a test can
# only enter them now, after those months ended, so the terms each change
# held for the ended months (worker/terms_held.c) are let go here.  Below,
# a change entered after a month's end is not billed to that month.

ok($t->sql_value('SELECT COUNT(*) FROM terms_held') > 0,
   'the changes above held the terms of the ended months first');
$t->sql('DELETE FROM terms_held');

# --- a model without a price --------------------------------------------------

# ghost-model has no price row: the close refuses, names it, issues nothing

events(account => 'ghost', n => 1, model => 'ghost-model', in => 10000,
       out => 10000, ts => "$P-07");

($rc, $out, $err) = $t->worker('invoice', 'close', '--period', $P,
                               '--force');
is($rc, 1, 'close refuses a billable call of a model with no price');
like($err, qr/no price for model "ghost-model"/, 'and names the model')
    or diag($err);
is($t->sql_value('SELECT COUNT(*) FROM invoices'), 0, 'nothing issued');
is($t->sql_value('SELECT COUNT(*) FROM billing_periods'), 0,
   'the period stays open');

# a price from 2000 on ($1 / $1 per M): 10,000 * 1 + 10,000 * 1 = 20,000
# micro-$ = 2 c; pro $19.00 + $0.02 = $19.02

$t->sql("INSERT INTO model_prices (model, price_in_micros, price_out_micros,"
        . " valid_from, source) VALUES ('ghost-model', 1000000, 1000000, "
        . "'2000-01-01 00:00:00', 'test')");

($rc, $out, $err) = $t->worker('invoice', 'close', '--period', $P,
                               '--force');
is($rc, 0, "close $P") or diag($err);

is(total('think', $P), 1904, 'thinking tokens billed: $19.04');
my ($line) = $t->sql("SELECT l.prompt_tokens, l.completion_tokens, "
    . "l.amount_cents FROM invoice_lines l JOIN invoices i ON i.id = "
    . "l.invoice WHERE i.account = $id{think} AND l.kind = 'overage'");
is_deeply($line, [ 1000, 4100, 4 ],
          'the overage line: 1,000 in, 4,100 out (100 + 4,000 thinking)');

is(total('switch', $P), 250000, 'plan change: the contract price once');
is($t->sql_value("SELECT COUNT(*) FROM invoice_lines l JOIN invoices i ON "
                 . "i.id = l.invoice WHERE i.account = $id{switch} AND "
                 . "l.kind = 'base'"), 1, 'one base line');
is($t->sql_value("SELECT plan FROM invoices WHERE account = $id{switch}"),
   'enterprise', 'the plan in force at the end of the month');

is(total('late', $P), 250008, 'late: $2,500.08 in P');
is(total('ghost', $P), 1902, 'ghost-model at its price: $19.02');
is(total('capped', $P), 1910, 'capped: $19.00 + $0.14 capped at $0.10');
is(total('many', $P), 108,
   'the 43rd plan: its overage billed by its own rule: $1.08');
is_deeply([ $t->sql("SELECT l.kind, l.price_in_micros, l.amount_cents FROM "
                    . "invoice_lines l JOIN invoices i ON i.id = l.invoice "
                    . "WHERE i.account = $id{capped} AND l.kind IN "
                    . "('overage', 'adjustment') ORDER BY l.id") ],
          [ [ 'overage', 150000, 5 ], [ 'overage', 300000, 9 ],
            [ 'adjustment', 0, -4 ] ],
          'one line per price, each rounded once, then the cap');

# --- the contract and the plan change after the close of P ----------------

# N has ended, and is not closed: a new contract price for "late" and a new
# base fee for pro, entered now (as on the 1st, for the month that has just
# begun), are not N's terms.  Before, N was billed on them.

($rc) = $t->worker('account', 'override', 'late', '--base-fee', '3000');
is($rc, 0, 'late: contract price now $3,000');
($rc, undef, $err) = $t->worker('plan', 'set', 'pro', '--base-fee', '25');
is($rc, 0, 'pro: base fee now $25') or diag($err);
is($t->sql_value("SELECT terms FROM terms_held WHERE account = $id{late} "
                 . "AND period = '$N'") =~ /base_cents=250000 /, 1,
   "late: N's terms held at its end, at the contract price then");
is($t->sql_value("SELECT COUNT(*) FROM terms_held WHERE period = '$P'"), 0,
   'none held for P, closed');

($rc, $out) = $t->worker('invoice', 'check');
is($rc, 0, 'check: untouched invoices still match after the change')
    or diag($out);

# a late call for P, same tokens: 8 c at P's terms (contract $2,500 in P)

events(account => 'late', n => 1, model => 'mock-premium', plan =>
       'enterprise', in => 2000, out => 7500, ts => "$P-20");

($rc, $out, $err) = $t->worker('invoice', 'close', '--period', $N,
                               '--force');
is($rc, 0, "close $N") or diag($err);

# N: $2,500.00, the contract price at N's end, + the P adjustment $0.08

is(total('late', $N), 250008,
   'N: $2,500 (the contract at its end) + $0.08 late, not $3,000');
is(total('think', $N), 1900, 'N, pro: $19.00, the fee at its end, not $25');
my ($adj) = $t->sql("SELECT l.ref_period, l.calls, l.amount_cents FROM "
    . "invoice_lines l JOIN invoices i ON i.id = l.invoice WHERE i.account "
    . "= $id{late} AND i.period = '$N' AND l.kind = 'adjustment'");
is_deeply($adj, [ $P, 1, 8 ], 'the adjustment: P, one event, 8 cents');

($rc, $out) = $t->worker('invoice', 'check');
is($rc, 0, 'check passes after the adjustment') or diag($out);

# --- the same figures everywhere ----------------------------------------------

# P: 1904 + 250000 + 250008 + 1902 + 1910 + 108 = 505832
# N: think 1900 + switch 250000 (enterprise at the contract price) + late
#    250008 + ghost 1900 + capped 1900 + many 100 = 505808

my %want = (
    $P => { think => 1904, switch => 250000, late => 250008, ghost => 1902,
            capped => 1910, many => 108 },
    $N => { think => 1900, switch => 250000, late => 250008, ghost => 1900,
            capped => 1900, many => 100 },
);
my %sum = ($P => 505832, $N => 505808);

sub usd { my $c = shift; sprintf '%d.%02d', int($c / 100), $c % 100 }

for my $per ($P, $N) {
    my $w = $want{$per};

    ($rc, $out) = $t->worker('invoice', 'show', '--period', $per, '--json');
    my %show = map { $_->{account}{name} => $_->{total_cents} }
               @{ JSON::PP->new->decode($out) };
    is_deeply(\%show, $w, "$per: show --json totals");

    my $dir = $t->dir . "/report-$per";
    ($rc, $out, $err) = $t->worker('report', '--period', $per, '--out',
                                   $dir);
    is($rc, 0, "$per: report") or diag($err);

    my $rep = JSON::PP->new->decode(Aihub::read_file("$dir/report.json"));
    my %json = map { $_->{account}{name} => $_->{total_cents} }
               @{ $rep->{invoices} };
    is_deeply(\%json, $w, "$per: report.json totals");
    is($rep->{total_cents}, $sum{$per}, "$per: report.json revenue");

    my %csv;
    my @rows = split /\r\n/, Aihub::read_file("$dir/invoices.csv");
    shift @rows;
    for (@rows) {
        my @f = /("(?:[^"]|"")*"|[^,]*)(?:,|$)/g;
        $csv{ $f[3] } = $f[-2];
    }
    is_deeply(\%csv, { map { $_ => usd($w->{$_}) } keys %$w },
              "$per: invoices.csv totals");

    my $html = Aihub::read_file("$dir/report.html");
    my %html = $html =~ m{<tr><td>([a-z]+)</td><td class="n">\$([\d.]+)</td>}g;
    delete $html{pro};
    delete $html{enterprise};
    is_deeply(\%html, { map { $_ => usd($w->{$_}) } keys %$w },
              "$per: report.html top accounts");
    like($html, qr/id="kpi-revenue">\$\Q${\ usd($sum{$per})}\E</,
         "$per: report.html revenue");
}

$t->done;
