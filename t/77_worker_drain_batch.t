#!/usr/bin/perl

# The drain's two ways of inserting a batch store the same rows: the bulk
# execution of a prepared INSERT (MariaDB, the default) and the multi-row
# INSERT (--insert text, and servers without bulk execution).  The same
# 1,203 events (quotes, backslashes, non-ASCII, the longest strings, the
# largest numbers, duplicates within a batch and across batches, an event
# MySQL refuses) go through each into an empty ledger; rows and rollups
# must be equal, the refused event dead-lettered by both.  MariaDB's
# general log shows which way each run went.  And under a steady trickle
# the drain lingers after a short round, so its transactions carry more
# events: fewer COMMITs for the same events, none lost or doubled.

use strict;
use warnings;

use Test::More;
use JSON::PP;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use Aihub;

plan skip_all => 'aihub-worker not built' unless Aihub::have_worker();

my $t = Aihub->new(redis => 1, mariadb => 1);
$t->migrate;

# a trigger refuses one model: the bulk execution fails as a whole, the
# batch goes again event by event and that event is dead-lettered
$t->sql(qq{DELIMITER //\nCREATE TRIGGER refuse_one BEFORE INSERT ON usage_events
          FOR EACH ROW IF NEW.model = 'refused-model' THEN
              SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused for the test';
          END IF //});

my $json = JSON::PP->new->canonical;
my $now = int(time * 1000);
my @models = ('mock-basic', q{o'brien "quoted" \\ back\\slash},
              "caf\x{e9} \x{1F642} \x{4e2d}\x{6587}", 'm' x 128);

sub event {
    my ($i, %o) = @_;

    return $json->encode({
        v => 1, id => sprintf('%012x%020x', $now + $i, $i),
        ts => $now + $i * 7, node => $i % 5 ? 'node-1' : 'n' x 255,
        account => 1 + $i % 3, key => $i % 2 ? 'ai-hub-AbCdEfGh' : 'k' x 32,
        plan => $i % 4 ? 'pro' : 'p' x 32,
        model => $o{model} // $models[$i % @models],
        provider => $i % 3 ? 'mock' : 'q' x 32,
        prompt_tokens => $i == 7 ? 999_999_000 : $i,
        completion_tokens => 2 * $i,
        total_tokens => $i == 7 ? 1_000_000_000 : 3 * $i,
        cost_micros => $i == 9 ? 1_000_000_000_000 : 5 * $i,
        status => $i % 11 ? 200 : 502,
        streamed => $i % 2 ? JSON::PP::true : JSON::PP::false,
        aborted => $i % 13 ? JSON::PP::false : JSON::PP::true,
        estimated => $i % 17 ? JSON::PP::false : JSON::PP::true,
        latency_ms => $i * 3,
    });
}

# entries as nodes write them: mostly several events an entry
my @entries;
my @batch;
for my $i (1 .. 1200) {
    push @batch, event($i);
    if (@batch == 37 || $i == 1200) {
        push @entries, [ 'events', join("\n", @batch) ];
        @batch = ();
    }
}
# a duplicate within the first rounds, one much later, and a refused event
splice @entries, 3, 0, [ 'event', event(5) ];
push @entries, [ 'event', event(600) ];
push @entries, [ 'event', event(1201, model => 'refused-model') ];
push @entries, [ 'event', event(1202) ];

my $ROWS = 'SELECT event_id, ts, account, key_prefix, plan, model, '
         . 'provider, prompt_tokens, completion_tokens, total_tokens, '
         . 'cost_micros, status, streamed, aborted, estimated, latency_ms, '
         . 'node FROM usage_events ORDER BY event_id';
my $DAILY = 'SELECT account, day, model, requests, calls, prompt_tokens, '
          . 'completion_tokens, total_tokens, cost_micros FROM usage_daily '
          . 'ORDER BY account, day, model';

sub drain {
    my ($mode, @extra) = @_;

    $t->sql('TRUNCATE usage_events');
    $t->sql('TRUNCATE usage_daily');
    $t->sql('TRUNCATE mysql.general_log');
    $t->redis('DEL', 'aihub:usage', 'aihub:usage:dead');
    $t->redis('XADD', 'aihub:usage', '*', @$_) for @entries;
    $t->sql_root("SET GLOBAL log_output = 'TABLE'");
    $t->sql_root('SET GLOBAL general_log = 1');

    $t->start_worker('--consumer', "w-$mode", '--block-ms', '100',
                     '--insert', $mode, @extra);
    my $ok = $t->wait_for(sub {
        $t->redis('XLEN', 'aihub:usage:dead') >= 1
        && $t->sql_value('SELECT COUNT(*) FROM usage_events') >= 1201
        && $t->redis('XPENDING', 'aihub:usage', 'aihub-drain')->[0] == 0
    }, timeout => 30);
    ok($ok, "$mode: every entry drained and ACKed");
    $t->stop_worker;
    $t->sql_root('SET GLOBAL general_log = 0');

    my %log;
    for my $r ($t->sql_root("SELECT command_type, LEFT(argument, 300) "
                            . "FROM mysql.general_log")) {
        my ($cmd, $arg) = @$r;
        $log{bulk}++ if $cmd eq 'Execute'
                        && $arg =~ /^INSERT IGNORE INTO usage_events .*\?, \?\)$/s;
        $log{text}++ if $cmd eq 'Query'
                        && $arg =~ /^INSERT IGNORE INTO usage_events .* VALUES \('/s;
    }

    my $dead = $t->redis('XRANGE', 'aihub:usage:dead', '-', '+');

    return {
        rows => [ $t->sql($ROWS) ], daily => [ $t->sql($DAILY) ],
        dead => [ map { { @{ $_->[1] } } } @$dead ], log => \%log,
        stored => Aihub::read_file($t->dir . '/worker.log')
                  =~ /stopping: stored (\d+) events, (\d+) duplicates/
                  ? [ $1, $2 ] : [],
    };
}

my $bulk = drain('bulk');
my $text = drain('text');

ok($bulk->{log}{bulk} && $bulk->{log}{bulk} >= 3,
   "bulk: the batches went as bulk executions ($bulk->{log}{bulk})");
ok(!$bulk->{log}{text}, 'bulk: no multi-row INSERT of events')
    or diag("text inserts: $bulk->{log}{text}");
ok($text->{log}{text} && $text->{log}{text} >= 3,
   "text: the batches went as multi-row INSERTs ($text->{log}{text})");
ok(!$text->{log}{bulk}, 'text: no bulk execution');

is(scalar @{ $bulk->{rows} }, 1201, 'bulk: 1,201 rows (1,202 events, '
   . 'one refused; the duplicates stored once)');
is_deeply($bulk->{rows}, $text->{rows}, 'the same rows, column by column');
is_deeply($bulk->{daily}, $text->{daily}, 'the same daily rollups');
is_deeply($bulk->{stored}, $text->{stored},
          "the same counts logged (stored, duplicates: @{ $bulk->{stored} })");

my ($long) = grep { $_->[5] eq 'm' x 128 && $_->[16] eq 'n' x 255 }
             @{ $bulk->{rows} };
ok($long, 'the longest model and node names are stored whole');
my ($odd) = grep { $_->[5] eq $models[1] } @{ $bulk->{rows} };
ok($odd, 'quotes and backslashes stored as sent');
my %by_id = map { $_->[0] => $_ } @{ $bulk->{rows} };
is($by_id{ sprintf('%012x%020x', $now + 7, 7) }[9], 1_000_000_000,
   'the largest token count');
is($by_id{ sprintf('%012x%020x', $now + 9, 9) }[10], 1_000_000_000_000,
   'the largest cost, 1,000,000,000,000 micros');
is(scalar(grep { $_->[5] eq 'refused-model' } @{ $bulk->{rows} }), 0,
   'the refused event is not stored');

for my $run ([ bulk => $bulk ], [ text => $text ]) {
    my ($mode, $r) = @$run;
    is(scalar @{ $r->{dead} }, 1, "$mode: one dead letter");
    like($r->{dead}[0]{reason} // '', qr/refused for the test/,
         "$mode: it is the refused event, with MySQL's reason");
}

my $sum = $t->sql_value('SELECT SUM(requests) FROM usage_daily');
is($sum, 1201, 'rollups count each stored event once');

# --- a round larger than one statement MySQL takes (max_allowed_packet,
# 16 MB by default: --batch 100000 of 250-byte rows passes it; here 64 KB
# against the 1,203 events' 400 KB).  Before, the INSERT was refused
# whole, the connection dropped, and the same batch went again for ever:
# nothing stored.  Now a transaction's rows fit the server's limit.
$t->sql_root('SET GLOBAL max_allowed_packet = 65536');

for my $mode (qw(bulk text)) {
    my $small = drain($mode, '--batch', 2000);
    is_deeply($small->{rows}, $bulk->{rows},
              "$mode, 64 KB packets: the same 1,201 rows");
    is_deeply($small->{daily}, $bulk->{daily},
              "$mode, 64 KB packets: the same daily rollups");
    is(scalar @{ $small->{dead} }, 1, "$mode, 64 KB packets: one dead letter");
    cmp_ok($small->{log}{$mode} // 0, '>=', 12,
           "$mode, 64 KB packets: in transactions that fit "
           . "(" . ($small->{log}{$mode} // 0) . " INSERTs)");
}

$t->sql_root('SET GLOBAL max_allowed_packet = 16777216');

# --- a steady trickle: 3,000 events, 10 every 10 ms, with --linger-ms 0
# and the default 50; MariaDB's COMMITs counted while each drains

sub trickle {
    my ($linger, $base) = @_;

    $t->sql('TRUNCATE usage_events');
    $t->redis('DEL', 'aihub:usage', 'aihub:usage:dead');
    $t->start_worker('--consumer', "w-linger-$linger", '--block-ms', '1000',
                     '--linger-ms', $linger);
    sleep 0.5;
    my $c0 = ($t->sql_root("SHOW GLOBAL STATUS LIKE 'Com_commit'"))[0][1];
    my $t0 = time;

    for my $k (0 .. 299) {
        $t->redis('XADD', 'aihub:usage', '*', 'events',
                  join("\n", map { event($base + 10 * $k + $_) } 1 .. 10));
        my $next = $t0 + ($k + 1) * 0.01;
        sleep($next - time) if $next > time;
    }

    my $ok = $t->wait_for(sub {
        $t->sql_value('SELECT COUNT(*) FROM usage_events') >= 3000
        && $t->redis('XPENDING', 'aihub:usage', 'aihub-drain')->[0] == 0
    }, timeout => 30);
    my $c1 = ($t->sql_root("SHOW GLOBAL STATUS LIKE 'Com_commit'"))[0][1];
    $t->stop_worker;

    ok($ok, "linger $linger: all 3,000 events stored and ACKed");
    is($t->sql_value('SELECT COUNT(*) FROM usage_events'), 3000,
       "linger $linger: each once");
    return $c1 - $c0;
}

my $eager = trickle(0, 10_000);
my $lingering = trickle(50, 20_000);
note("COMMITs for 3,000 events over 3 s: $eager without linger, "
     . "$lingering with 50 ms");
ok($lingering * 2 < $eager,
   "lingering after short rounds: fewer than half the transactions "
   . "($lingering against $eager)");
ok($lingering <= 3000 / 50 * 2,
   'about one transaction every 50 ms at most');

done_testing;
