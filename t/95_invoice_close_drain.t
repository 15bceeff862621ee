#!/usr/bin/perl

# A month's close runs in one transaction over every account, which takes
# minutes on a large ledger.  Meanwhile the drain goes on storing this
# month's calls: the close must not lock the rows and gaps of usage_events
# that the new calls go into (it marks last month's events of an account,
# and InnoDB's REPEATABLE READ locked the gap after them, where that
# account's next call is inserted, until the close committed).
#
# The close is held half way (its first account's events marked and
# invoice written, the second account's invoice waiting for a row another
# session holds) while the drain stores calls of this month for both.

use strict;
use warnings;

use Test::More;
use POSIX ();
use Time::HiRes qw(time sleep);

use lib 't/lib';
use Aihub;
use AihubFixtures qw(usage_event_json);

plan skip_all => 'aihub-worker not built' unless Aihub::have_worker();

my $t = Aihub->new(redis => 1, mariadb => 1);
$t->migrate;

my @now = gmtime;
my ($y, $m) = ($now[5] + 1900, $now[4] + 1);
my ($ly, $lm) = $m == 1 ? ($y - 1, 12) : ($y, $m - 1);
my $N = sprintf '%04d-%02d', $ly, $lm;         # last month: ended

my %id;
for ([ first => 'pro' ], [ second => 'pro' ]) {
    my ($name, $plan) = @$_;
    $t->create_key(account => $name, plan => $plan);
    $id{$name} = $t->sql_value("SELECT id FROM accounts WHERE name = "
                               . "'$name'");
}
$t->sql("UPDATE accounts SET created_at = '$N-01 00:00:00'");
$t->sql("UPDATE subscriptions SET started_at = '$N-01 00:00:00'");

# last month's calls: 20 of each account, stored

for my $name (qw(first second)) {
    $t->sql("INSERT INTO usage_events (event_id, ts, account, key_prefix, "
        . "plan, model, provider, prompt_tokens, completion_tokens, "
        . "total_tokens, cost_micros, status, streamed, aborted, estimated, "
        . "latency_ms, node) SELECT MD5(CONCAT('$name-', seq)), "
        . "TIMESTAMP('$N-10') + INTERVAL seq MINUTE, $id{$name}, "
        . "'ai-hub-AbCdEfGh', 'pro', 'mock-basic', 'mock', 10, 5, 15, 4, "
        . "200, 0, 0, 0, 5, 'n' FROM seq_1_to_20");
}

# --- the close, held after issuing the first account's invoice -------------

# an invoice row of the second account, not committed: the close's own
# waits for it (the unique account and period) after the first account's
# events are marked and its invoice written
my $held = $t->dir . '/held';
open(my $lock, '|-', 'mariadb --no-defaults --unbuffered -uroot '
     . '--socket=' . $t->mysql_socket . ' ' . $t->mysql_db . " > $held")
    or die "mariadb: $!";
$lock->autoflush(1);
print $lock "START TRANSACTION; INSERT INTO invoices (account, period, plan) "
    . "VALUES ($id{second}, '$N', ''); SELECT 'the row is held';\n";
ok($t->wait_for(sub { Aihub::read_file($held) =~ /the row is held/ },
                timeout => 5), 'the second account\'s invoice row held');

my $closer = fork // die "fork: $!";
if ($closer == 0) {
    my ($crc, $cout, $cerr) = $t->worker('invoice', 'close', '--period', $N,
                                         '--force');
    Aihub::write_file($t->dir . '/close', "$crc\n$cout$cerr");
    POSIX::_exit(0);
}

ok($t->wait_for(sub {
    $t->sql_value("SELECT COUNT(*) FROM information_schema.processlist "
                  . "WHERE info = 'INSERT INTO invoices (account, period, "
                  . "plan) VALUES ($id{second}, ?, \\'\\')'") == 1
}, timeout => 10), 'the close has marked the first account\'s 20 events '
   . 'and waits at the second account')
    or diag(explain([ $t->sql('SELECT state, info FROM '
                              . 'information_schema.processlist') ]));
ok(!-e $t->dir . '/close', 'the close is still running');

# --- the drain, meanwhile ----------------------------------------------------

$t->start_worker('--consumer', 'w', '--block-ms', 100);

my $now_ms = int(time * 1000);
my @ids;
for my $k (1 .. 6) {
    my $name = $k % 2 ? 'first' : 'second';
    push @ids, sprintf('%032x', 0x950000 + $k);
    $t->redis('XADD', 'aihub:usage', '*', 'event',
              usage_event_json(0x950000 + $k, account => 0 + $id{$name},
                               ts => $now_ms + $k));
}

# and a late call of last month for each: the first account's invoice is
# written, so its late call waits for the next close; the second's is not
my $late_ms = $t->sql_value("SELECT UNIX_TIMESTAMP('$N-20')") * 1000;
my %late;
for my $name (qw(first second)) {
    my $n = 0x95ff00 + $id{$name};
    $late{$name} = sprintf '%032x', $n;
    $t->redis('XADD', 'aihub:usage', '*', 'event',
              usage_event_json($n, account => 0 + $id{$name},
                               ts => $late_ms));
}
push @ids, values %late;

my $in = join ',', map { "'$_'" } @ids;
my $t0 = time;
ok($t->wait_for(sub {
    $t->sql_value("SELECT COUNT(*) FROM usage_events WHERE event_id IN "
                  . "($in)") == 8
}, timeout => 8), 'this month\'s calls of both accounts, and a late call '
   . 'of last month of each, are stored while the close runs')
    or diag($t->worker_log);
diag(sprintf 'stored %.1f s after they reached the stream', time - $t0);
ok(!-e $t->dir . '/close', 'and the close was still running then');

# --- the close ends ----------------------------------------------------------

print $lock "ROLLBACK;\n";
close $lock;
waitpid($closer, 0);

ok($t->wait_for(sub {
    $t->sql_value("SELECT COUNT(*) FROM usage_events WHERE event_id IN "
                  . "($in)") == 8
}, timeout => 60), 'all stored in the end');

my $closed = Aihub::read_file($t->dir . '/close');
like($closed, qr/^0\n/, 'the close exits 0') or diag($closed);
like($closed, qr/closed \Q$N\E: 2 invoices, total \$38\.00/,
     'two invoices, $19.00 each') or diag($closed);

is($t->sql_value("SELECT calls FROM invoices WHERE account = $id{first}"),
   20, 'the first account\'s invoice: its 20 calls');
is($t->sql_value("SELECT calls FROM invoices WHERE account = "
                 . "$id{second}"), 21,
   'the second account\'s: 21, its late call stored before its turn');
is($t->sql_value("SELECT COUNT(*) FROM usage_events WHERE invoice IS NULL "
                 . "AND event_id = '$late{first}'"), 1,
   'the first account\'s late call left for the next close');
is($t->sql_value("SELECT COUNT(*) FROM usage_events WHERE invoice IS NULL "
                 . "AND event_id IN ($in)"), 7,
   'this month\'s calls not billed');

my ($rc, $out) = $t->worker('invoice', 'check');
is($rc, 0, 'invoice check agrees') or diag($out);
like($out, qr/account $id{first} \Q$N\E: 1 late events not billed yet/,
     'and notes the late call');

$t->stop_worker;
$t->done;
