#!/usr/bin/perl

# aihub-worker run with usage stream entries that carry several events
# (issue 10's batched writes: XADD ... event <json1> event <json2> ...):
# every "event" field, and every line of an "events" field (the module
# writes one per batch: XADD ... events "<json1>\n<json2>..."), is an event
# of its own, stored, counted as a
# duplicate or dead-lettered on its own with the entry's stream id; at
# most AIHUB_USAGE_EVENTS_MAX (256) per entry, the rest dead-lettered;
# nothing stays pending and the stream ends empty.  --batch 10 makes the
# rounds take several transactions and one entry several slices.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use Aihub;
use AihubFixtures qw(usage_event_json);

plan skip_all => 'aihub-worker not built' unless Aihub::have_worker();

my $t = Aihub->new(redis => 1, mariadb => 1);
$t->migrate;


# the most events an entry carries, as the module and the worker read it
my ($MAX) = Aihub::read_file("$Aihub::ROOT/ngx_aihub_module/aihub_protocol.h")
            =~ /#define AIHUB_USAGE_EVENTS_MAX\s+(\d+)/
    or BAIL_OUT('AIHUB_USAGE_EVENTS_MAX not found');
my $now = int(time * 1000);

sub id { sprintf '%032x', $_[0] }

sub event {
    my ($n, %o) = @_;

    return usage_event_json($n, ts => $now,
                            model => $o{model} // 'mock-basic');
}

# XADD aihub:usage * event <e1> event <e2> ...: returns the entry's id
sub add_events {
    return $t->redis('XADD', 'aihub:usage', '*',
                     map { ('event', $_) } @_);
}

# XADD aihub:usage * events "<e1>\n<e2>\n...", as the module writes them
sub add_lines {
    return $t->redis('XADD', 'aihub:usage', '*', 'events', join("\n", @_));
}

sub rows {
    return $t->sql_value('SELECT COUNT(*) FROM usage_events');
}

sub stored {
    my @ids = map { "'" . id($_) . "'" } @_;
    return $t->sql_value('SELECT COUNT(*) FROM usage_events WHERE event_id '
                         . 'IN (' . join(', ', @ids) . ')');
}

# the stored events of ids $lo to $hi (ids are fixed-width hex: BETWEEN)
sub stored_range {
    my ($lo, $hi) = @_;

    return $t->sql_value('SELECT COUNT(*) FROM usage_events WHERE event_id '
                         . "BETWEEN '" . id($lo) . "' AND '" . id($hi) . "'");
}

sub drained {
    return $t->redis('XLEN', 'aihub:usage') == 0
           && $t->redis('XPENDING', 'aihub:usage', 'aihub-drain')->[0] == 0;
}

sub dead_letters {
    my %by_id;

    for my $e (@{ $t->redis('XRANGE', 'aihub:usage:dead', '-', '+') }) {
        my %f = @{ $e->[1] };
        push @{ $by_id{ $f{stream_id} } }, \%f;
    }

    return \%by_id;
}

# --- written before the worker starts --------------------------------------

my $three = add_events(map { event($_) } 101 .. 103);

my $bad = '{"v":1,"id":"' . id(299) . '"}';
my $mixed = add_events(event(201), $bad, event(202));

my @same = map { event($_) } 301 .. 303;
my $first = add_events(@same);
my $again = add_events(@same);

my @many = map { event($_) } 1001 .. 1001 + $MAX;
my $over = add_events(@many);

my $none = $t->redis('XADD', 'aihub:usage', '*', 'note', 'no event here');

my $other = $t->redis('XADD', 'aihub:usage', '*', 'node', 'x',
                      'event', event(501), 'other', 'y');

# the "events" field: one event per line
my $bad_line = '{"v":1,"id":"' . id(899) . '","ts":1}';
my $lines = add_lines(event(801), $bad_line, event(802));
my $both = $t->redis('XADD', 'aihub:usage', '*', 'event', event(811),
                     'events', join("\n", event(812), event(813)));
# lines that cJSON alone would read in part: two events run together (it
# stops after the first) and a model holding an escaped NUL (stored cut)
my $run_on = event(821) . event(822);
my $nul = event(824, model => "mock\0x");
my $partial = add_lines($run_on, event(823), $nul);
my @many_lines = map { event($_) } 3001 .. 3000 + $MAX;
my $lines_over = $t->redis('XADD', 'aihub:usage', '*',
                           'events', join("\n", @many_lines[0 .. $MAX - 2]),
                           'event', $many_lines[$MAX - 1],
                           'events', event(3001 + $MAX));

is($t->redis('XLEN', 'aihub:usage'), 11, 'eleven stream entries written');

$t->start_worker('--consumer', 'w1', '--block-ms', '100', '--batch', '10');

ok($t->wait_for(\&drained, timeout => 15),
   'every entry ACKed and deleted: XLEN 0, nothing pending')
    or diag($t->worker_log);

is(stored(101 .. 103), 3, 'an entry of 3 valid events: 3 rows');
is(stored(201, 202), 2, '2 valid events + 1 invalid in one entry: 2 rows');
is(stored(299), 0, 'the invalid event is not stored');
is(stored(301 .. 303), 3, 'the same 3-event entry added twice: 3 rows');
is(stored(1001 .. 1000 + $MAX), $MAX,
   "an entry of $MAX + 1 events: the first $MAX stored");
is(stored(1001 + $MAX), 0, 'the last is not stored');
is(stored(501), 1, 'fields other than "event" are ignored');
is(stored(801, 802), 2,
   '"events" lines: 2 valid + 1 invalid in one field, 2 rows');
is(stored(899), 0, 'the invalid line is not stored');
is(stored(811 .. 813), 3, 'an "event" and an "events" field in one entry');
is(stored(823), 1, 'the valid line beside two lines cJSON would read in part');
is(stored(821, 822, 824), 0,
   'neither event of the run-together line, nor the one with a NUL');
is(stored(3001 .. 3000 + $MAX), $MAX,
   "$MAX events in \"events\" and \"event\" fields of one entry: all stored");
is(stored(3001 + $MAX), 0, 'the one more, in a second "events" field, is not');
is(rows(), 3 + 2 + 3 + $MAX + 1 + 2 + 3 + 1 + $MAX, 'no other row');
is($t->sql_value('SELECT SUM(requests) FROM usage_daily'), rows(),
   'the rollups count each stored event once');

my $dead = dead_letters();
is(scalar(keys %$dead), 6, 'dead letters name six stream entries');

is(scalar(@{ $dead->{$mixed} // [] }), 1,
   'one dead letter for the invalid event of the mixed entry');
is($dead->{$mixed}[0]{event}, $bad, 'it keeps that event as written');
like($dead->{$mixed}[0]{reason} // '', qr/missing member "ts"/,
     'with the reason');

is(scalar(@{ $dead->{$over} // [] }), 1,
   "one dead letter for the entry of $MAX + 1 events");
is($dead->{$over}[0]{event}, $many[$MAX], 'it is the last event');
like($dead->{$over}[0]{reason} // '',
     qr/event ${\ ($MAX + 1)} of ${\ ($MAX + 1)} .*at most $MAX/,
     "the reason says an entry carries at most $MAX");

is(scalar(@{ $dead->{$none} // [] }), 1,
   'an entry without an "event" field: one dead letter');
like($dead->{$none}[0]{reason} // '', qr/no "event" or "events" field/,
     'saying so');

is(scalar(@{ $dead->{$lines} // [] }), 1,
   'one dead letter for the invalid line of an "events" field');
is($dead->{$lines}[0]{event}, $bad_line, 'it keeps that line as written');
is(scalar(@{ $dead->{$partial} // [] }), 2,
   'two dead letters for the lines cJSON would read in part');
is($dead->{$partial}[0]{event}, $run_on, 'the run-together line as written');
like($dead->{$partial}[0]{reason} // '', qr/text after the object/,
     'with the reason');
is($dead->{$partial}[1]{event}, $nul, 'the line with the NUL as written');
like($dead->{$partial}[1]{reason} // '', qr/\\u0000/, 'with the reason');
is(scalar(@{ $dead->{$lines_over} // [] }), 1,
   "one dead letter for the entry of $MAX + 1 events in three fields");
is($dead->{$lines_over}[0]{event}, event(3001 + $MAX),
   'it is the last event');
like($dead->{$lines_over}[0]{reason} // '',
     qr/event ${\ ($MAX + 1)} of ${\ ($MAX + 1)} /,
     'the reason counts the events of every field');

# --- the multi-event entry replayed after it was stored --------------------

my $replay = add_events(@same);
add_events(event(601), event(602));

ok($t->wait_for(sub { stored(601, 602) == 2 && drained() }, timeout => 10),
   'a replayed 3-event entry and a new 2-event entry drained');
is(stored(301 .. 303), 3, 'the replayed events are not stored twice');
is($t->sql_value('SELECT SUM(requests) FROM usage_daily'), rows(),
   'the replay did not touch the rollups');

# --- many entries of 1 to $MAX events, written while the worker drains -----

my ($next, $sent) = (10000, 0);

for my $i (0 .. 79) {
    my $k = 1 + ($i * 37) % $MAX;
    $k = 1 if $i % 5 == 0;      # single-event entries in between
    # half of them as the module writes them, one "events" field
    ($i % 2 ? \&add_lines : \&add_events)->(map { event($next + $_) }
                                            0 .. $k - 1);
    $next += $k;
    $sent += $k;
}

ok($t->wait_for(sub { stored_range(10000, $next - 1) == $sent && drained() },
                timeout => 30),
   "80 entries of 1 to $MAX events: all $sent stored, the stream empty")
    or diag('stored ' . stored_range(10000, $next - 1) . " of $sent");
is($t->redis('XLEN', 'aihub:usage'), 0, 'XLEN 0');
is(rows(), 3 + 2 + 3 + $MAX + 1 + 2 + 3 + 1 + $MAX + 2 + $sent,
   'no other row');
is($t->sql_value('SELECT SUM(requests) FROM usage_daily'), rows(),
   'each event counted once in the rollups');
is(scalar(keys %{ dead_letters() }), 6, 'no new dead letter');

# --- the totals: the second copy and the replay counted as duplicates ------

$t->stop_worker;
like($t->worker_log, qr/already stored/, 'the drain logged duplicates');
like($t->worker_log,
     qr/stopping: stored ${\ rows()} events, 6 duplicates, 7 dead-lettered/,
     'stored each event once, 6 duplicates (3 + 3), 7 dead letters');

# --- entries of several events pending on a dead consumer: claimed whole ---

my $claim_a = add_events(map { event($_) } 701 .. 730);
my $claim_b = add_lines(event(731), '{}', event(732));
my $ghost = $t->redis('XREADGROUP', 'GROUP', 'aihub-drain', 'ghost',
                      'COUNT', 10, 'STREAMS', 'aihub:usage', '>');
is(scalar @{ $ghost->[0][1] }, 2, 'a dead consumer read two entries');

$t->start_worker('--consumer', 'w2', '--block-ms', '100', '--batch', '10',
                 '--claim-idle-ms', '300');
ok($t->wait_for(sub { stored(701 .. 732) == 32 && drained() },
                timeout => 15),
   'the worker claimed them: all 32 valid events stored, nothing pending')
    or diag($t->worker_log);
my ($claimed, $claimed_events) = (0, 0);
my $log = $t->worker_log;
while ($log =~ /claimed (\d+) entries \((\d+) events\)/g) {
    $claimed += $1;
    $claimed_events += $2;
}
is_deeply([ $claimed, $claimed_events ], [ 2, 33 ],
          'claimed 2 entries carrying 33 events (log)');
is(scalar(@{ dead_letters()->{$claim_b} // [] }), 1,
   'the invalid event of a claimed entry dead-lettered with its stream id');
$t->stop_worker;

$t->done;

