#!/usr/bin/perl

# aihub-worker run: the usage stream becomes rows in usage_events, each
# event exactly once; rollups count new rows only; bad events go to the
# dead-letter stream with a reason; nothing stays pending; SIGTERM exits 0.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use Aihub;
use AihubFixtures qw(usage_event_json);

plan skip_all => 'aihub-worker not built' unless Aihub::have_worker();

my $t = Aihub->new(redis => 1, mariadb => 1);

# --- migrate: applies 001 once, records it, seeds plans and models ---------

my ($rc, $out, $err) = $t->worker('migrate', '--sql-dir', $t->root . '/sql');
is($rc, 0, 'migrate exits 0') or diag($err);
like($out, qr/applied 001_schema\.sql/, 'migrate applied 001_schema.sql');

($rc, $out, $err) = $t->worker('migrate', '--sql-dir', $t->root . '/sql');
is($rc, 0, 'second migrate exits 0');
unlike($out, qr/applied/, 'second migrate applies nothing');
my @files = sort grep { /^\d{3}_.*\.sql$/ }
            map { s{.*/}{}r } glob($t->root . '/sql/*.sql');
is_deeply([ map { $_->[0] } $t->sql('SELECT version FROM schema_migrations '
                                    . 'ORDER BY version') ], \@files,
          'each migration recorded once');
is_deeply([ map { $_->[0] } $t->sql('SELECT name FROM plans ORDER BY id') ],
          [qw(free pro enterprise)], 'plans seeded');
is($t->sql_value("SELECT included_calls FROM plans WHERE name = 'pro'"),
   10000, 'pro includes 10000 calls');
is($t->sql_value("SELECT base_fee_cents FROM plans WHERE name = 'pro'"),
   1900, 'pro costs 1900 cents');
is($t->redis('HGET', 'aihub:model:mock-premium', 'tier'), 'premium',
   'migrate synced the model catalog to Redis');
ok($t->redis('SISMEMBER', 'aihub:models', 'mock-basic'),
   'mock-basic in the models set');

# --- events ----------------------------------------------------------------

my $now = int(time * 1000);

sub event {
    my (%o) = @_;

    return usage_event_json(
        0, id => $o{id}, ts => $o{ts} // $now, account => $o{account} // 1,
        model => $o{model} // 'mock-basic', prompt_tokens => $o{prompt} // 10,
        completion_tokens => $o{completion} // 5,
        total_tokens => ($o{prompt} // 10) + ($o{completion} // 5),
        status => $o{status} // 200);
}

sub id { sprintf '%032x', $_[0] }

$t->redis('XADD', 'aihub:usage', '*', 'event',
          event(id => id(1), prompt => 100, completion => 20));
$t->redis('XADD', 'aihub:usage', '*', 'event',
          event(id => id(2), prompt => 7, completion => 3,
                model => 'mock-premium'));
$t->redis('XADD', 'aihub:usage', '*', 'event',
          event(id => id(3), status => 502, prompt => 0, completion => 0));
$t->redis('XADD', 'aihub:usage', '*', 'event',
          event(id => id(1), prompt => 100, completion => 20));   # replay
my $poison = $t->redis('XADD', 'aihub:usage', '*', 'event', '{"v":1,"id":');
my $wrong = $t->redis('XADD', 'aihub:usage', '*', 'event',
    event(id => 'NOT-HEX-' . ('x' x 24)));

$t->start_worker('--consumer', 'w1', '--block-ms', '100');

ok($t->wait_for(sub {
       $t->sql_value('SELECT COUNT(*) FROM usage_events') == 3
       && $t->redis('XLEN', 'aihub:usage:dead') == 2
   }, timeout => 5), 'three events stored, two dead-lettered');

my @rows = $t->sql('SELECT event_id, account, model, prompt_tokens, '
                   . 'completion_tokens, total_tokens, status, node, '
                   . 'UNIX_TIMESTAMP(ts) * 1000 FROM usage_events '
                   . 'ORDER BY event_id');
is_deeply([ @{ $rows[0] }[0 .. 7] ],
          [ id(1), 1, 'mock-basic', 100, 20, 120, 200, 'test-node' ],
          'first event stored with its values');
is(int($rows[0][8]), $now, 'timestamp kept to the millisecond');
is_deeply([ @{ $rows[1] }[0, 2, 5] ], [ id(2), 'mock-premium', 10 ],
          'second event');

# rollups: the replay of event 1 must not count twice; the 502 is a
# request, not a call

my %daily = map { $_->[0] => $_ } $t->sql(
    'SELECT model, requests, calls, prompt_tokens, completion_tokens, '
    . 'total_tokens FROM usage_daily');
is_deeply($daily{'mock-basic'}, [ 'mock-basic', 2, 1, 100, 20, 120 ],
          'mock-basic rollup: 2 requests, 1 successful call, tokens once');
is_deeply($daily{'mock-premium'}, [ 'mock-premium', 1, 1, 7, 3, 10 ],
          'mock-premium rollup');

# dead letters carry the event, the reason and the stream id

my $dead = $t->redis('XRANGE', 'aihub:usage:dead', '-', '+');
my %d0 = @{ $dead->[0][1] };
is($d0{event}, '{"v":1,"id":', 'dead letter keeps the raw event');
is($d0{stream_id}, $poison, 'dead letter names the stream id');
like($d0{reason}, qr/JSON/, 'reason: not valid JSON');
my %d1 = @{ $dead->[1][1] };
like($d1{reason}, qr/"id"/, 'reason names the bad member');
is($d1{stream_id}, $wrong, 'second dead letter stream id');

ok($t->wait_for(sub {
       $t->redis('XPENDING', 'aihub:usage', 'aihub-drain')->[0] == 0
   }, timeout => 3), 'every entry ACKed');

# --- replaying an already stored stream entry inserts nothing --------------

$t->redis('XADD', 'aihub:usage', '*', 'event',
          event(id => id(2), prompt => 7, completion => 3,
                model => 'mock-premium'));
$t->redis('XADD', 'aihub:usage', '*', 'event', event(id => id(4)));

ok($t->wait_for(sub {
       $t->sql_value('SELECT COUNT(*) FROM usage_events') == 4
   }, timeout => 5), 'a new event after the replay is stored');
sleep 0.3;
is($t->sql_value('SELECT COUNT(*) FROM usage_events'), 4,
   'the replayed event was not stored twice');
is($t->sql_value("SELECT requests FROM usage_daily "
                 . "WHERE model = 'mock-premium'"), 1,
   'the replay did not touch the rollup');

# --- Redis restarts (and loses everything): reconnect, new group, drain ----

$t->restart_redis;
$t->redis('XADD', 'aihub:usage', '*', 'event', event(id => id(5)));
ok($t->wait_for(sub {
       $t->sql_value('SELECT COUNT(*) FROM usage_events') == 5
   }, timeout => 10), 'after a Redis restart the worker reconnects and drains');
ok($t->alive('worker'), 'the worker survived the Redis restart');
is($t->redis('HGET', 'aihub:model:mock-basic', 'tier'), 'basic',
   'after reconnecting the worker wrote the catalog back to Redis');

# --- SIGTERM: clean exit, code 0 -------------------------------------------

my $pid = $t->{procs}{worker}{pid};
kill 'TERM', $pid;
my $gone = $t->wait_for(sub { !$t->alive('worker') }, timeout => 5);
ok($gone, 'worker exits on SIGTERM');
is($t->{procs}{worker}{status}, 0, 'exit status 0') if $gone;
like(Aihub::read_file($t->dir . '/worker.log'), qr/stopping: stored 5 events/,
     'final log line counts the stored events');
unlike(Aihub::read_file($t->dir . '/worker.log'), qr/ai-hub-[0-9A-Za-z]{38}/,
       'no full key in the log');

# --- SIGTERM mid-drain: the batch in hand and the round read ahead (the
# drain reads the next round while MySQL inserts one) are stored and ACKed
# before the exit; nothing read stays pending, nothing is lost or doubled

my $nterm = 30000;
my $s = $t->redis_connect;
my ($obuf, $rbuf) = ('', '');

for my $i (1 .. $nterm) {
    $obuf .= Aihub::resp_encode('XADD', 'aihub:usage', '*', 'event',
                                event(id => id(1000 + $i)));
    if (length $obuf > 1 << 20) { print $s $obuf; $obuf = '' }
}

print $s $obuf;
Aihub::resp_read($s, \$rbuf) for 1 .. $nterm;

$t->spawn('term', [ $Aihub::WORKER, $t->worker_flags, 'run',
                    '--consumer', 'term', '--batch', 100, '--block-ms', 100 ]);
ok($t->wait_for(sub {
       $t->sql_value('SELECT COUNT(*) FROM usage_events') > 1005
   }, timeout => 30), 'the drain of 30,000 events began');
kill 'TERM', $t->{procs}{term}{pid};
$gone = $t->wait_for(sub { !$t->alive('term') }, timeout => 10);
ok($gone, 'worker exits on SIGTERM mid-drain');
is($t->{procs}{term}{status}, 0, 'exit status 0') if $gone;

my $left = $t->redis('XLEN', 'aihub:usage');
ok($left > 0, "stopped mid-drain ($left entries not read)");
is($t->redis('XPENDING', 'aihub:usage', 'aihub-drain')->[0], 0,
   'every entry read before the stop was stored and ACKed');
is($t->sql_value('SELECT COUNT(*) FROM usage_events') - 5 + $left, $nterm,
   'stored + still in the stream = sent: none lost, none twice');

# --- SIGHUP reopens the log file --------------------------------------------

my $log = $t->dir . '/drain.log';
$t->spawn('hup', [ $Aihub::WORKER, $t->worker_flags, 'run',
                   '--consumer', 'h', '--block-ms', 100, '--log', $log ]);
ok($t->wait_for(sub { -s $log }, timeout => 5), '--log file written');
rename $log, "$log.1";
kill 'HUP', $t->{procs}{hup}{pid};
ok($t->wait_for(sub { -s $log }, timeout => 5), 'SIGHUP: a new log file');
like(Aihub::read_file($log), qr/log file reopened/, 'the new file says so');
$t->stop_proc('hup');
like(Aihub::read_file($log), qr/stopping/, 'later lines go to the new file');

# --- bad arguments: exit 2 ------------------------------------------------

($rc, $out, $err) = $t->worker('run', '--batch', 'many');
is($rc, 2, 'run --batch many exits 2');
like($err, qr/invalid number/, 'and says why');

($rc, $out, $err) = $t->worker('run', '--linger-ms', '-1');
is($rc, 2, 'run --linger-ms -1 exits 2');
like($err, qr/invalid number in .*--linger-ms/, 'and names the options');

($rc, $out, $err) = $t->worker('run', '--insert', 'csv');
is($rc, 2, 'run --insert csv exits 2');
like($err, qr/--insert is bulk or text/, 'and says what it takes');

($rc, $out, $err) = $t->worker('run', '--help');
is($rc, 0, 'run --help exits 0');
like($out, qr/usage: aihub-worker run/, 'run --help prints the usage');

$t->done;
