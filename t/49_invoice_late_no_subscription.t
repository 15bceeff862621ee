#!/usr/bin/perl

# Accounts whose subscription has ended (README, "Accounts" and "Invoices
# and reports").
#
# Late usage: a month in which the account has no subscription gets no
# invoice, unless usage of an earlier closed month arrived late; then it
# gets an invoice of those adjustment lines alone.  Before, the close
# returned at "no subscription" before the adjustments: the late usage was
# never billed, by that close or any later one, and "invoice check" kept
# saying "next close adjusts".  P: the subscription's last month; N: the
# month after, without one; M: the month after that.  The subscriptions
# of past months are ended in MySQL ("account cancel" ends one now).
#
# The CLI: such an account is listed and shown (before, both left it
# out), gets no new key and is not resumed until it has a plan again;
# "account cancel" suspends an account and ends its subscription (before,
# no command ended one: "suspend" kept billing the plan).

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

my $B = months_back(4);
my $P = months_back(3);
my $N = months_back(2);
my $M = months_back(1);

my %id;

for my $name (qw(leaver stayer gone)) {
    my ($rc, undef, $err) = $t->worker('account', 'create', $name,
                                       '--plan', 'pro');
    is($rc, 0, "account $name created") or diag($err);
    ($rc, undef, $err) = $t->worker('account', 'override', $name,
                                    '--included', 1);
    is($rc, 0, "$name: one call included") or diag($err);
    $id{$name} = $t->sql_value("SELECT id FROM accounts WHERE name = "
                               . "'$name'");
}

$t->sql("UPDATE accounts SET created_at = '$B-15 00:00:00'");
$t->sql("UPDATE subscriptions SET started_at = '$B-15 00:00:00'");
$t->sql('DELETE FROM terms_held');

# leaver's subscription ends within P, gone's within B

$t->sql("UPDATE subscriptions SET ended_at = '$P-25 00:00:00' WHERE "
        . "account = $id{leaver}");
$t->sql("UPDATE subscriptions SET ended_at = '$B-20 00:00:00' WHERE "
        . "account = $id{gone}");

# an account without a subscription is still listed and shown, plan "-"
# (before, both joined the current subscription and left it out)

my ($lrc, $list) = $t->worker('account', 'list');
is($lrc, 0, 'account list exits 0');
like($list, qr/^\d+\s+gone\s+active\s+-\s/m, 'list: gone, plan "-"');
like($list, qr/^\d+\s+stayer\s+active\s+pro\s/m, 'list: stayer, pro');
my ($src, $show) = $t->worker('account', 'show', 'gone');
is($src, 0, 'account show exits 0');
like($show, qr/^plan\s+-$/m, 'show: plan "-"');
like($show, qr/^name\s+gone$/m, 'show: its name');

# an account without a subscription gets no new key and is not made active
# (its keys would not be served: the sync writes a key with its plan);
# given a plan, it gets both

my ($krc, $kout, $kerr) = $t->worker('key', 'create', '--account', 'gone');
is($krc, 1, 'key create for an account without a subscription: exit 1');
like($kerr, qr/account "gone" has no subscription, so no key of it would be served/,
     'and says why');
is($kout, '', 'no key printed');
is($t->sql_value("SELECT COUNT(*) FROM api_keys WHERE account = $id{gone}"),
   0, 'no key stored');
$t->worker('account', 'suspend', 'gone');
($krc, undef, $kerr) = $t->worker('account', 'resume', 'gone');
is($krc, 1, 'resume of an account without a subscription: exit 1');
like($kerr, qr/account "gone" has no subscription: give it a plan first/,
     'and says why');
is($t->sql_value("SELECT status FROM accounts WHERE id = $id{gone}"),
   'suspended', 'it stays suspended');
($krc) = $t->worker('account', 'plan', 'gone', '--plan', 'free');
is($krc, 0, 'gone gets a plan again');
($krc) = $t->worker('account', 'resume', 'gone');
is($krc, 0, 'then resume works');
($krc, $kout) = $t->worker('key', 'create', '--account', 'gone');
is($krc, 0, 'and key create');
like($kout, qr/^ai-hub-/, 'which prints the key');

# back to the subscription that ended in B, for the months below
$t->sql("DELETE FROM api_keys WHERE account = $id{gone}");
$t->sql("DELETE FROM subscriptions WHERE account = $id{gone} AND "
        . "ended_at IS NULL");

sub event {
    my ($account, $ts, $in, $out) = @_;

    ledger_events($t, account => $id{$account}, n => 1, ts => $ts,
                  model => 'mock-basic', in => $in, out => $out);
}

sub total {
    my ($name, $period) = @_;
    return $t->sql_value("SELECT total_cents FROM invoices WHERE account = "
                         . "$id{$name} AND period = '$period'");
}

sub close_month {
    my ($period) = @_;
    my ($rc, $out, $err) = $t->worker('invoice', 'close', '--period',
                                      $period, '--force');
    is($rc, 0, "close $period") or diag($err);
    return $out;
}

# --- P: both billed their plan; the included call each -------------------------

event('leaver', "$P-02 10:00:00", 10, 10);
event('stayer', "$P-02 10:00:00", 10, 10);

like(close_month($P), qr/closed \Q$P\E: 2 invoices, total \$38\.00/,
     "$P: leaver and stayer, \$19.00 each; gone (ended in $B) nothing");

# --- late usage of P, after its close -----------------------------------------

# the second call of the month, beyond the one included: mock-basic at
# 0.15/0.60 per M, 100000 in and 50000 out = 4.5 cents -> 5 (half up)

event('leaver', "$P-20 10:00:00", 100000, 50000);
event('stayer', "$P-20 10:00:00", 100000, 50000);

my ($rc, $out) = $t->worker('invoice', 'check');
is($rc, 0, 'check passes with late usage waiting') or diag($out);
like($out, qr/account $id{leaver} \Q$P\E: 1 late events not billed yet/,
     "check notes leaver's late event");

# --- N: leaver has no subscription; its late usage is billed still -------------

like(close_month($N), qr/closed \Q$N\E: 2 invoices, total \$19\.10/,
     "$N: stayer \$19.00 + \$0.05, leaver \$0.05 of late usage");

is(total('stayer', $N), 1905, 'stayer: its plan and the adjustment');
is(total('leaver', $N), 5, 'leaver: the adjustment alone');
is(total('gone', $N), undef, 'gone: no invoice');

is_deeply([ $t->sql("SELECT l.kind, l.ref_period, l.calls, l.amount_cents "
                    . "FROM invoice_lines l JOIN invoices i ON i.id = "
                    . "l.invoice WHERE i.account = $id{leaver} AND "
                    . "i.period = '$N' ORDER BY l.id") ],
          [ [ 'adjustment', $P, 1, 5 ] ],
          "leaver's $N invoice: one adjustment line naming $P, no base fee");
is_deeply([ $t->sql("SELECT plan, terms, calls, included_calls, "
                    . "subtotal_cents FROM invoices WHERE account = "
                    . "$id{leaver} AND period = '$N'") ],
          [ [ '', 'v1 none', 0, 0, 5 ] ],
          'its header: no plan, the terms of no subscription, no calls');
is($t->sql_value("SELECT COUNT(*) FROM usage_events WHERE invoice IS "
                 . "NULL"), 0, 'every event is billed');

($rc, $out) = $t->worker('invoice', 'check');
is($rc, 0, 'check passes') or diag($out);
like($out, qr/ok: 4 invoices/, 'check: four invoices');
unlike($out, qr/late events not billed/, 'no late event left');

($rc, $out) = $t->worker('invoice', 'show', '--period', $N, '--account',
                         'leaver');
is($rc, 0, 'show exits 0');
like($out, qr/plan \(no subscription\)  calls 0\/0  total \$0\.05/,
     'show: "(no subscription)" and the total');

my $dir = $t->dir . '/report';
($rc, undef, my $err) = $t->worker('report', '--period', $N, '--out', $dir);
is($rc, 0, 'report exits 0') or diag($err);
my $report = JSON::PP->new->decode(Aihub::read_file("$dir/report.json"));
my %by_plan = map { $_->{name} => $_->{total_cents} }
              @{ $report->{revenue_by_plan} };
is_deeply(\%by_plan, { pro => 1905, '(no subscription)' => 5 },
          'report: revenue by plan names it "(no subscription)"')
    or diag(explain($report->{revenue_by_plan}));

# --- M: nothing waits any more --------------------------------------------------

like(close_month($M), qr/closed \Q$M\E: 1 invoices, total \$19\.00/,
     "$M: stayer alone; leaver has nothing to bill");
is(total('leaver', $M), undef, 'leaver: no invoice');

($rc, $out) = $t->worker('invoice', 'check');
is($rc, 0, 'check passes') or diag($out);

# --- cancel: a customer who leaves ---------------------------------------------

# its keys are refused at once and stay refused; its subscription ends now
# (this month is billed on it, later months are not: the months above)

my ($crc, $cout) = $t->worker('key', 'create', '--account', 'quitter',
                              '--plan', 'pro');
is($crc, 0, 'quitter: account and key created');
my ($key) = split /\n/, $cout;
my $rk = 'aihub:key:' . Aihub::key_hash($key);
is($t->redis('HGET', $rk, 'status'), 'active', 'its key record: active');
my $qid = $t->sql_value("SELECT id FROM accounts WHERE name = 'quitter'");

($crc, $cout) = $t->worker('account', 'cancel', 'quitter');
is($crc, 0, 'cancel exits 0');
like($cout, qr/account "quitter" is cancelled: its keys are refused, its subscription ended now/,
     'and says so');
is($t->redis('HGET', $rk, 'status'), 'suspended',
   'its key record: suspended, at once');
is($t->sql_value("SELECT status FROM accounts WHERE id = $qid"),
   'suspended', 'the account: suspended');
is($t->sql_value("SELECT COUNT(*) FROM subscriptions WHERE account = $qid "
                 . "AND ended_at IS NULL"), 0, 'no subscription in force');
is($t->sql_value("SELECT COUNT(*) FROM subscriptions WHERE account = $qid "
                 . "AND ended_at IS NOT NULL"), 1, 'the one it had, ended');

($crc) = $t->worker('sync');
is($crc, 0, 'sync');
is($t->redis('HGET', $rk, 'status'), 'suspended',
   'after a sync: still suspended');

# Redis loses its data: the sync writes the key again, suspended (it left
# out the keys of an account without a subscription: unknown, 401)
$t->redis('DEL', $rk);
($crc) = $t->worker('sync');
is($crc, 0, 'its record lost, then a sync');
is($t->redis('HGET', $rk, 'status'), 'suspended',
   'the record is written again: suspended');
is($t->redis('HGET', $rk, 'account'), $qid, '... of its account');

($crc, $cout) = $t->worker('account', 'cancel', 'quitter');
is($crc, 0, 'cancel again: exit 0');
like($cout, qr/account "quitter" has no subscription; it is suspended/,
     'and says so');

($crc) = $t->worker('account', 'plan', 'quitter', '--plan', 'pro');
is($crc, 0, 'a plan again');
is($t->redis('HGET', $rk, 'status'), 'suspended', 'still suspended');
($crc) = $t->worker('account', 'resume', 'quitter');
is($crc, 0, 'then resume');
is($t->redis('HGET', $rk, 'status'), 'active', 'its key record: active again');

$t->done;
