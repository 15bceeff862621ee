#!/usr/bin/perl

# Fault: Redis loses its data while one of two workers holds rounds it
# read (one waiting for MariaDB, the next read ahead), and the other
# worker restores Redis before the first has stored them.  Those calls
# were in the counters Redis lost, and the restore read the ledger without
# them: the worker that stores them after the restore must add them to the
# counters itself (sql/008_ledger_gate.sql orders the restore against each
# drain COMMIT).  Before, the counter stayed 100 calls below the ledger for
# the rest of the month: a hard quota passed by as many calls.  The first
# worker is stopped (SIGSTOP) between its read and its store, the restore
# must not wait for it, and nothing is added while Redis keeps its data.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use Aihub;
use AihubFixtures qw(period_id usage_event_json lock_table sql_session
                     commit_fault_so);

sub usage_rows { AihubFixtures::usage_rows(@_) }

plan(skip_all => 'aihub-worker not built') unless Aihub::have_worker();

my $t = Aihub->new(redis => 1, mariadb => 1);
$t->migrate;

$t->create_key(account => 'two', plan => 'pro');
my $acct = $t->sql_value("SELECT id FROM accounts WHERE name = 'two'");
my $pk = "aihub:period:$acct:" . period_id();

# 50 calls included: the 51 beyond them are overage, 4 µ$ each
$t->sql("INSERT INTO account_overrides (account, included_calls) "
        . "VALUES ($acct, 50)");

sub event { usage_event_json($_[0], account => $acct + 0) }
sub calls { $t->redis('HGET', $pk, 'calls') // 0 }
sub logs {
    join '', map { Aihub::read_file($t->dir . "/$_") }
             qw(worker.log worker2.log);
}

$t->start_worker('--consumer', 'w1', '--batch', 50, '--block-ms', 100);
my $w1 = $t->{procs}{worker}{pid};

# The test's events come without settles: a counter the drain raised on
# its own would show here

$t->redis('XADD', 'aihub:usage', '*', 'event', event(1));
ok($t->wait_for(sub { usage_rows($t) == 1 }, timeout => 10),
   'the drain runs');
sleep 0.5;
is(calls(), 0, 'nothing added to the counters while Redis keeps its data');

# MariaDB held up: w1's next round waits for the lock, the one after is
# read ahead meanwhile

my ($lock, $locked) = lock_table($t, 'usage_events');
ok($locked, 'usage_events locked');

$t->redis('EVAL', "for i = 1, #ARGV do redis.call('XADD', KEYS[1], '*', "
                  . "'event', ARGV[i]) end return #ARGV", 1, 'aihub:usage',
          map { event($_) } 2 .. 101);
ok($t->wait_for(sub {
    my $p = $t->redis('XPENDING', 'aihub:usage', 'aihub-drain');
    ($p->[0] // 0) == 100
        && grep { $_->[0] eq 'w1' && $_->[1] == 100 } @{ $p->[3] // [] }
}, timeout => 10), 'w1 holds both rounds: one waits for MariaDB, one read '
   . 'ahead');

# w2 starts; w1 stopped with its rounds; Redis loses its data; w2
# restores it

$t->spawn('worker2', [ $Aihub::WORKER, $t->worker_flags, 'run',
                       '--consumer', 'w2', '--batch', 50, '--block-ms', 100 ],
          out => $t->dir . '/worker2.log');
ok($t->wait_for(sub { logs() =~ /\d+: draining .* as consumer "w2"/ },
                timeout => 10), 'w2 runs');
kill 'STOP', $w1;
$t->redis('FLUSHALL');
print $lock "UNLOCK TABLES;\n";
close $lock;

ok($t->wait_for(sub { eval { $t->redis('EXISTS', 'aihub:epoch') } },
                timeout => 10),
   'w2 restores Redis while w1 is stopped (the restore does not wait for '
   . 'it)');
my $restored = calls();
cmp_ok($restored, '<', 101, "the restore read the ledger without w1's "
       . "rounds ($restored calls)");

kill 'CONT', $w1;

ok($t->wait_for(sub { usage_rows($t) == 101 }, timeout => 20),
   'every event stored');
ok($t->wait_for(sub { calls() == 101 }, timeout => 10),
   "the counter counts w1's rounds, stored after the restore")
    or diag('calls ' . calls() . ', ledger ' . usage_rows($t));
sleep 1;
is(calls(), 101, 'and counts them once');
is($t->redis('HGET', $pk, 'overage') // 0, 51 * 4,
   'the overage is the ledger\'s: the cost of the 51 calls beyond the 50 '
   . 'included');
like(logs(), qr/stored after its restore: added to the period counters/,
     'the worker says what it added');

# --- both workers find Redis without its data at once -----------------------
# The gate's row held by the test: each worker's restore waits for it, and
# the one that gets it second finds the marker back and writes nothing.

my $gate = sql_session($t);
print $gate "START TRANSACTION;\n"
    . "SELECT epoch FROM ledger_gate WHERE id = 1 FOR UPDATE;\n";
sleep 0.5;
my @log0 = map { length Aihub::read_file($t->dir . "/$_") }
           qw(worker.log worker2.log);
$t->redis('FLUSHALL');
ok($t->wait_for(sub {
    $t->sql_value("SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                  . "WHERE INFO LIKE 'SELECT epoch FROM ledger_gate%FOR "
                  . "UPDATE'") == 2
}, timeout => 10), 'both restores wait for the gate');
print $gate "COMMIT;\n";
close $gate;

# what the two workers logged since; the restorer logs once it has
# published, which may be after the other found the marker back
sub logged_since {
    join '', map {
        substr(Aihub::read_file($t->dir . '/'
                                . (qw(worker.log worker2.log))[$_]),
               $log0[$_])
    } 0, 1;
}

# what w1 logged since an offset in its log
sub w1_logged_since { substr($t->worker_log, $_[0]) }

ok($t->wait_for(sub { eval { $t->redis('EXISTS', 'aihub:epoch') }
                      && logged_since() =~ /another worker restored it /
                      && logged_since() =~ /Redis had lost its data: rest/ },
                timeout => 10),
   'one worker restores Redis, the other finds it restored');
sleep 0.5;
is(() = logged_since() =~ /Redis had lost its data: restored/g, 1,
   'restored once');
is(calls(), 101, 'the counter equals the ledger');

# --- Redis back to an older snapshot in place --------------------------------
# The marker goes back to an older epoch while the connections stay (as
# DEBUG RELOAD of an older RDB does).  Rounds read under it must not be
# taken for rounds read before a loss: their calls are in the counters (the
# 10 settled by hand here, as the module's batches settle them), and added
# again they would count twice.  The worker sees the marker go back and
# syncs again, as after a restart: the marker back to the gate's epoch.

my $epoch = $t->redis('GET', 'aihub:epoch');
@log0 = map { length Aihub::read_file($t->dir . "/$_") }
        qw(worker.log worker2.log);
$t->redis('HINCRBY', $pk, 'calls', 10);
$t->redis('SET', 'aihub:epoch', $epoch - 1);
$t->redis('XADD', 'aihub:usage', '*', 'event', event($_)) for 102 .. 111;

ok($t->wait_for(sub { usage_rows($t) == 111 }, timeout => 10),
   'the 10 events stored');
sleep 1;
is(calls(), 111, 'counted once: not added again');
is($t->redis('GET', 'aihub:epoch'), $epoch,
   'the marker raised back to the gate\'s epoch');
unlike(logged_since(), qr/added to the period counters/, 'nothing added');

# --- w1 comes back after w2's restore: the counters left as it wrote them ---
# Redis loses its data and every connection (a restart) while w1 is
# stopped; w2 restores Redis and then stores 10 events whose settles Redis
# refused (the module's batches between the loss and the restore: it sends
# those settles again).  When w1 connects again, raising the counters to
# the ledger would count those 10 calls, and the module's settles again.

my $rows = usage_rows($t);
kill 'STOP', $w1;
$t->redis('FLUSHALL');
$t->redis('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
ok($t->wait_for(sub { eval { $t->redis('EXISTS', 'aihub:epoch') } },
                timeout => 10), 'w2 restores Redis');
my $restored_calls = calls();
is($restored_calls, $rows, 'the restored counter is the ledger\'s');
$t->redis('XADD', 'aihub:usage', '*', 'event', event($_)) for 112 .. 121;
ok($t->wait_for(sub { usage_rows($t) == $rows + 10 }, timeout => 10),
   'w2 stores the 10 events of the refused batches');
my $w1_log = length $t->worker_log;
kill 'CONT', $w1;
ok($t->wait_for(sub {
    w1_logged_since($w1_log) =~ /restored since the connection was lost/
}, timeout => 10), 'w1 connects again and leaves the counters as they are');
sleep 0.5;
$t->redis('HINCRBY', $pk, 'calls', 10);    # the module's settles, again
is(calls(), usage_rows($t), 'the counter equals the ledger: the 10 calls '
   . 'counted once');

# --- a worker that starts right after another's restore -------------------
# The same, but w1 was not running and starts after w2's restore: it has
# no marker of its own to compare, and raising the counters to the ledger
# would count the 10 calls twice as well.  A restore less than a minute
# old wrote them from the ledger: they are left as it wrote them.

$t->stop_worker;
$rows = usage_rows($t);
$t->redis('FLUSHALL');
$t->redis('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
ok($t->wait_for(sub { eval { $t->redis('EXISTS', 'aihub:epoch') } },
                timeout => 10), 'w2 restores Redis');
is(calls(), $rows, 'the restored counter is the ledger\'s');
$t->redis('XADD', 'aihub:usage', '*', 'event', event($_)) for 122 .. 131;
ok($t->wait_for(sub { usage_rows($t) == $rows + 10 }, timeout => 10),
   'w2 stores the 10 events of the refused batches');
my $off = length $t->worker_log;    # w1's log goes on after its last run
$t->start_worker('--consumer', 'w1', '--batch', 50, '--block-ms', 100);
ok($t->wait_for(sub { w1_logged_since($off) =~ /key records, models and /
                }, timeout => 10), 'w1 starts and syncs');
like(w1_logged_since($off), qr/restored less than a minute ago: its period /,
     'w1 leaves the counters as the restore wrote them');
$t->redis('HINCRBY', $pk, 'calls', 10);    # the module's settles, again
is(calls(), usage_rows($t), 'the counter equals the ledger: the 10 calls '
   . 'counted once');

# --- a worker that dies before it adds what it stored ----------------------
# As in the first phase, w1 stores a round read before the loss after w2's
# restore; but it dies (SIGKILL) before it adds it, held up by a table
# lock.  The addition was kept in the ledger with the round
# (ledger_additions): w2 finds it and makes it.  Before, it was in w1's
# memory only, and the counter stayed 50 calls below the ledger.

# w1 (the only worker) reads a round of the events given, held up by a
# table lock, and is stopped; Redis loses its data and w2 restores it.
# Returns the calls in the ledger (and the counters) before the round.
sub round_over_restore {
    my ($first, @round) = @_;

    # one event first: a fresh worker reads one stream entry, then as
    # many as a round holds (the module's entries carry many events)
    my $rows = usage_rows($t) + 1;
    $t->redis('XADD', 'aihub:usage', '*', 'event', event($first));
    ok($t->wait_for(sub { usage_rows($t) == $rows }, timeout => 10),
       'w1 drains');
    $t->redis('HINCRBY', $pk, 'calls', 1);    # its settle

    my ($lock, $locked) = lock_table($t, 'usage_events');
    ok($locked, 'usage_events locked');
    $t->redis('EVAL', "for i = 1, #ARGV do redis.call('XADD', KEYS[1], "
                      . "'*', 'event', ARGV[i]) end return #ARGV", 1,
              'aihub:usage', @round);
    ok($t->wait_for(sub {
        my $p = $t->redis('XPENDING', 'aihub:usage', 'aihub-drain');
        grep { $_->[0] eq 'w1' && $_->[1] == @round } @{ $p->[3] // [] }
    }, timeout => 10), 'w1 holds a round of ' . @round . ', waiting for '
       . 'MariaDB');

    $w1 = $t->{procs}{worker}{pid};
    kill 'STOP', $w1;
    $t->spawn('worker2', [ $Aihub::WORKER, $t->worker_flags, 'run',
                           '--consumer', 'w2', '--batch', 50,
                           '--block-ms', 100 ],
              out => $t->dir . '/worker2.log');
    $t->redis('FLUSHALL');
    print $lock "UNLOCK TABLES;\n";
    close $lock;
    ok($t->wait_for(sub { eval { $t->redis('EXISTS', 'aihub:epoch') } },
                    timeout => 10), 'w2 restores Redis while w1 is stopped');
    is(calls(), $rows, 'the restore read the ledger without w1\'s round');

    return $rows;
}

$t->stop_proc('worker2');
$rows = round_over_restore(132, map { event($_) } 133 .. 182);

# the addition reads the account's allowance: held there, after the COMMIT
my $terms;
($terms, $locked) = lock_table($t, 'account_overrides');
ok($locked, 'account_overrides locked');
kill 'CONT', $w1;
ok($t->wait_for(sub { usage_rows($t) == $rows + 50 }, timeout => 10),
   'w1 commits its round');
ok($t->wait_for(sub {
    $t->sql_value("SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                  . "WHERE INFO LIKE '%account_overrides%' AND STATE LIKE "
                  . "'%lock%'") > 0
}, timeout => 10), 'and waits to add it');
is($t->sql_value('SELECT COUNT(*) FROM ledger_additions'), 50,
   'the addition is kept in the ledger with the round');
$t->stop_proc('worker', signal => 'KILL');
print $terms "UNLOCK TABLES;\n";
close $terms;
is(calls(), $rows, 'w1 died before it added the round');

ok($t->wait_for(sub { calls() == $rows + 50 }, timeout => 20),
   'w2 adds the round w1 left')
    or diag('calls ' . calls() . ', ledger ' . usage_rows($t));
is($t->sql_value('SELECT COUNT(*) FROM ledger_additions'), 0,
   'and deletes what was kept');
like(Aihub::read_file($t->dir . '/worker2.log'),
     qr/stored after its restore: added to the period counters of 1 /,
     'w2 says what it added');
sleep 1;
is(calls(), usage_rows($t), 'the counter equals the ledger');

# round_over_restore with a round of 50 from event $first + 1, the last of
# model $poison; w1 let go on: the 49 others are stored ("how") and added,
# the poisoned one dead-lettered (the only dead letter: Redis lost the
# others with its data)
sub poisoned_round {
    my ($first, $poison, $how, $logged) = @_;

    my $rows = round_over_restore(
        $first, (map { event($_) } $first + 1 .. $first + 49),
        usage_event_json($first + 50, account => $acct + 0,
                         model => $poison));
    my $off = length $t->worker_log;

    kill 'CONT', $w1;
    ok($t->wait_for(sub { usage_rows($t) == $rows + 49 }, timeout => 20),
       "w1 stores the 49 good events $how");
    ok($t->wait_for(sub { calls() == $rows + 49 }, timeout => 10),
       'and adds them')
        or diag('calls ' . calls() . ', ledger ' . usage_rows($t));
    ok($t->wait_for(sub { w1_logged_since($off) =~ $logged }, timeout => 5),
       "the round went $how");
    ok($t->wait_for(sub { $t->redis('XLEN', 'aihub:usage:dead') == 1 },
                    timeout => 5), 'the poisoned one dead-lettered');
    is($t->sql_value('SELECT COUNT(*) FROM ledger_additions'), 0,
       'nothing left kept');
    sleep 1;
    is(calls(), usage_rows($t), 'the counter equals the ledger');
}

# --- the same round stored row by row ---------------------------------------
# One event of the round is one MySQL refuses after its INSERT (its rollup
# out of range, as in t/57): the round is stored row by row, without it,
# and the addition is kept and made for the 49 others.

my $day = $t->sql_value('SELECT CURDATE()');
$t->sql("INSERT INTO usage_daily (account, day, model, requests, calls, "
        . "cost_micros) VALUES ($acct, '$day', 'poison-model', 1, 1, "
        . "9223372036854775805)");
$t->stop_proc('worker2');
$t->start_worker('--consumer', 'w1', '--batch', 50, '--block-ms', 100);
poisoned_round(183, 'poison-model', 'row by row',
               qr/MySQL refused the batch after the insert .*; storing /);

# --- the same round, one transaction an event -------------------------------
# One event of the round is one whose COMMIT MySQL refuses (t/lib/
# commit_fault.c, as in t/70): the round's COMMIT refused, then the events'
# in one transaction, they are stored one transaction each, and each new
# row is kept for the addition at its own COMMIT.

$t->stop_proc('worker2');
$t->stop_worker;
{
    my $so = commit_fault_so($t);
    local $ENV{LD_PRELOAD} = $ENV{LD_PRELOAD} ? "$ENV{LD_PRELOAD}:$so" : $so;
    $t->start_worker('--consumer', 'w1', '--batch', 50, '--block-ms', 100);
}
poisoned_round(234, 'commit-poison', 'one transaction an event',
               qr/refused the COMMIT of the events .*; storing each /);

$t->stop_proc('worker2');
$t->done;
