#!/usr/bin/perl

# Benchmark: events drained per second from the Redis usage stream into
# MariaDB by "aihub-worker run", against a baseline of plain batched
# multi-row INSERTs of the same rows (no Redis, no per-event dedup, no
# rollups).  Not a test: prints numbers.
#
#   perl worker/bench/drain.pl [EVENTS] [BATCH] [PER_ENTRY]
#                                       (default 50000, 500, 1)
#
# PER_ENTRY: events per stream entry (XADD ... event e1 event e2 ...), 1
# to 64, as the module's batched writes send them.

use strict;
use warnings;

use FindBin;
use JSON::PP;
use Time::HiRes qw(time sleep);

use lib "$FindBin::Bin/../../t/lib";
use Aihub;

my $N = shift // 50000;
my $BATCH = shift // 500;
my $PER = shift // 1;

die "build the worker first\n" unless Aihub::have_worker();

my $t = Aihub->new(redis => 1, mariadb => 1);
$t->migrate;

my $json = JSON::PP->new->canonical;
my $now = int(time * 1000);
my @events = map {
    $json->encode({
        v => 1, id => sprintf('%032x', $_), ts => $now + $_, node => 'bench',
        account => 1 + $_ % 50, key => 'ai-hub-AbCdEfGh', plan => 'pro',
        model => ('mock-basic', 'mock-premium')[$_ % 2], provider => 'mock',
        prompt_tokens => 120, completion_tokens => 80, total_tokens => 200,
        cost_micros => 66, status => 200, streamed => JSON::PP::false,
        aborted => JSON::PP::false, estimated => JSON::PP::false,
        latency_ms => 250 })
} 1 .. $N;

# load the stream (pipelined), then time the drain alone

my $s = $t->redis_connect;
my ($buf, $out) = ('', '');
my $entries = 0;
for (my $i = 0; $i < $N; $i += $PER) {
    my @e = @events[$i .. ($i + $PER < $N ? $i + $PER : $N) - 1];
    $out .= Aihub::resp_encode('XADD', 'aihub:usage', '*',
                               map { ('event', $_) } @e);
    $entries++;
    if (length $out > 1 << 20) { print $s $out; $out = '' }
}
print $s $out;
Aihub::resp_read($s, \$buf) for 1 .. $entries;

# done when the stream is empty: the worker deletes an entry only once its
# batch is committed and ACKed.  Asked of Redis every 10 ms on one
# connection, not of MariaDB (a COUNT(*) scan every 50 ms takes MariaDB
# CPU from the drain it times); the rows are counted once, at the end.
# Gives up when the stream has not shrunk for 30 s.

my $t0 = time;
$t->start_worker('--batch', $BATCH, '--block-ms', 50);
my ($low, $moved) = ($entries, $t0);
for (;;) {
    my $len = $t->redis('XLEN', 'aihub:usage');
    last if $len == 0;
    ($low, $moved) = ($len, time) if $len < $low;
    die "drain stalled: $len stream entries left, none drained in 30 s\n"
        if time - $moved > 30;
    sleep 0.01;
}
my $drain = time - $t0;
$t->stop_worker;
my $rows = $t->sql_value('SELECT COUNT(*) FROM usage_events');
die "drain: $rows of $N events in usage_events\n" if $rows != $N;

# baseline: the same rows, multi-row INSERTs of $BATCH in one session

$t->sql('CREATE TABLE baseline LIKE usage_events');
my $sql = '';
for (my $i = 0; $i < $N; $i += $BATCH) {
    my @v;
    for my $k ($i + 1 .. ($i + $BATCH < $N ? $i + $BATCH : $N)) {
        push @v, sprintf("('%032x', FROM_UNIXTIME(%.3f), %d, "
            . "'ai-hub-AbCdEfGh', 'pro', '%s', 'mock', 120, 80, 200, 66, "
            . "200, 0, 0, 0, 250, 'bench')", $k, ($now + $k) / 1000,
            1 + $k % 50, ('mock-basic', 'mock-premium')[$k % 2]);
    }
    $sql .= "INSERT INTO baseline (event_id, ts, account, key_prefix, plan, "
        . "model, provider, prompt_tokens, completion_tokens, total_tokens, "
        . "cost_micros, status, streamed, aborted, estimated, latency_ms, "
        . "node) VALUES " . join(',', @v) . ";\n";
}
Aihub::write_file($t->dir . '/baseline.sql', $sql);

$t0 = time;
my ($rc, $o, $e) = $t->run_cmd([ 'sh', '-c', "mariadb --no-defaults -uroot "
    . "--socket=" . $t->mysql_socket . " " . $t->mysql_db
    . " < " . $t->dir . "/baseline.sql" ], timeout => 600);
die "baseline failed: $e\n" if $rc;
my $base = time - $t0;

printf "events: %d in %d stream entries, batch %d (2 cores: %s)\n", $N,
       $entries, $BATCH, `nproc` =~ s/\s+//r;
printf "aihub-worker drain : %8.0f events/s (%.2f s; stream read, "
       . "validation, INSERT IGNORE, rollups, XACK)\n", $N / $drain, $drain;
printf "batched INSERT     : %8.0f events/s (%.2f s; plain multi-row INSERT "
       . "from a file)\n", $N / $base, $base;
printf "ratio              : %8.2f\n", $base / $drain;

$t->done;
