#!/usr/bin/perl

# Months closed out of order, and two closes of one month at once when the
# first takes longer than MariaDB's lock wait (README, "Invoices").
#
# A contract changed after last month was closed, while the month before
# it is still open (its close refused, say, for a model without a price):
# that month is billed on the contract at its end.  Before, the terms hold
# stopped at the first closed month it met, and the open month was billed
# on the new contract ($3,000 against $2,500).
#
# A close waiting for another close of the same month longer than
# innodb_lock_wait_timeout (50 s by default; a close of a million events
# takes longer) waits again, then finds the month closed.  Before, it
# failed with exit 1 while the other issued every invoice.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time);

use lib 't/lib';
use Aihub;
use AihubFixtures qw(months_back);

plan skip_all => 'aihub-worker not built' unless Aihub::have_worker();

my $t = Aihub->new(redis => 1, mariadb => 1);
$t->migrate;

# P: the month before last, N: last month, B: the month before P

my $P = months_back(2);
my $N = months_back(1);
my $B = months_back(3);

for ([ ent => 'enterprise' ], [ small => 'pro' ]) {
    my ($rc, undef, $err) = $t->worker('account', 'create', $_->[0],
                                       '--plan', $_->[1]);
    is($rc, 0, "account $_->[0] created") or diag($err);
}

my ($rc, $out, $err) = $t->worker('account', 'override', 'ent',
                                  '--base-fee', 2500);
is($rc, 0, 'the contract: $2,500 a month') or diag($err);

# both accounts since B; nothing held yet (the changes above were made
# before they existed in those months)
$t->sql("UPDATE accounts SET created_at = '$B-15 00:00:00'");
$t->sql("UPDATE subscriptions SET started_at = '$B-15 00:00:00'");
$t->sql('DELETE FROM terms_held');

my $ent = $t->sql_value("SELECT id FROM accounts WHERE name = 'ent'");

# last month closed first; the month before stays open
($rc, $out, $err) = $t->worker('invoice', 'close', '--period', $N, '--force');
is($rc, 0, "$N closed, $P still open") or diag($err);

($rc, undef, $err) = $t->worker('account', 'override', 'ent',
                                '--base-fee', 3000);
is($rc, 0, 'the contract goes to $3,000') or diag($err);

is($t->sql_value("SELECT COUNT(*) FROM terms_held WHERE account = $ent "
                 . "AND period = '$P'"), 1,
   "${P}'s terms are held, though $N after it is closed");

($rc, $out, $err) = $t->worker('invoice', 'close', '--period', $P, '--force');
is($rc, 0, "$P closed") or diag($err);
is($t->sql_value("SELECT total_cents FROM invoices WHERE account = $ent "
                 . "AND period = '$P'"), 250000,
   "$P is billed on the contract at its end: \$2,500.00");
is($t->sql_value("SELECT total_cents FROM invoices WHERE account = $ent "
                 . "AND period = '$N'"), 250000,
   "$N too (closed before the change)");

# --- a close that waits on another's period row past the lock wait -------
# The other close is played by a session that inserted the month's row in
# a transaction it holds 8 s, then rolls back; the lock wait is 1 s.

my $B2 = months_back(4);
$t->sql_root('SET GLOBAL innodb_lock_wait_timeout = 1');

my $holder = $t->spawn('holder', [
    'mariadb', '--no-defaults', '-uroot', '--socket=' . $t->mysql_socket,
    $t->mysql_db, '-e',
    "START TRANSACTION; INSERT INTO billing_periods (period) VALUES ('$B2'); "
    . 'SELECT SLEEP(8); ROLLBACK;' ]);

ok($t->wait_for(sub {
       $t->sql_value('SET SESSION TRANSACTION ISOLATION LEVEL READ '
                     . 'UNCOMMITTED; SELECT COUNT(*) FROM billing_periods '
                     . "WHERE period = '$B2'") > 0
   }, timeout => 20), 'the other session holds the row')
    or diag(Aihub::read_file($t->dir . '/holder.out'));

my $t0 = time;
($rc, $out, $err) = $t->worker('invoice', 'close', '--period', $B2,
                               '--force');
my $took = time - $t0;
is($rc, 0, "the close waited for the other past the lock wait, and closed "
   . sprintf('(%.1f s)', $took)) or diag("$out\n$err");
like($out, qr/^closed \Q$B2\E:/m, 'it issued the month itself, the other '
     . 'having rolled back');
like($err, qr/another close of \Q$B2\E is running; waiting for it/,
     'it said it was waiting');
cmp_ok($took, '>=', 2, 'it waited more than one lock wait');
$t->stop_proc('holder');

$t->sql_root('SET GLOBAL innodb_lock_wait_timeout = 50');

$t->done;
