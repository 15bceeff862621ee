#!/usr/bin/perl
# The daily rollups equal the aggregate of the stored events, whether the
# drain computed them in C (batches without duplicates) or in SQL (batches
# with replayed events): many accounts, two days, models differing only in
# case, an event id repeated inside one batch.
use strict;
use warnings;
use Test::More;
use JSON::PP;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use Aihub;

my $t = Aihub->new(redis => 1, mariadb => 1);
my ($rc, $out, $err) = $t->worker('migrate', '--sql-dir', $t->root . '/sql');
is($rc, 0, 'migrate') or diag($err);
my $json = JSON::PP->new->canonical;
my $midnight = (int(time / 86400) * 86400) * 1000;
sub ev {
    my (%o) = @_;
    $json->encode({ v => 1, id => sprintf('%032x', $o{id}), ts => $o{ts},
        node => 'n', account => $o{account}, key => 'ai-hub-AbCdEfGh',
        plan => 'pro', model => $o{model}, provider => 'mock',
        prompt_tokens => $o{p}, completion_tokens => 3,
        total_tokens => $o{p} + 3, cost_micros => $o{id} % 7,
        status => $o{status}, streamed => JSON::PP::false,
        aborted => JSON::PP::false, estimated => JSON::PP::false,
        latency_ms => 1 });
}
my @models = ('mock-basic', 'mock-premium', 'Mock-Basic', "m\x{e9}x");
my %evs;
for my $i (1 .. 3000) {
    $evs{$i} = ev(id => $i, ts => $midnight - 1500 + $i, account => 1 + $i % 37,
                  model => $models[$i % 4], p => $i % 11,
                  status => ($i % 5 ? 200 : 502));
}
sub add { $t->redis('XADD', 'aihub:usage', '*', 'event', $_[0]) }
sub check {
    my ($n, $what) = @_;
    ok($t->wait_for(sub { $t->sql_value('SELECT COUNT(*) FROM usage_events') == $n
                          && $t->sql_value('SELECT COALESCE(SUM(requests),0) FROM usage_daily') == $n },
                    timeout => 20), "$what: $n stored and rolled up");
    my $a = join "\n", map { join ',', @$_ } $t->sql(
        'SELECT account, day, LOWER(model), requests, calls, prompt_tokens, '
      . 'completion_tokens, total_tokens, cost_micros FROM usage_daily '
      . 'ORDER BY 1, 2, 3');
    my $b = join "\n", map { join ',', @$_ } $t->sql(
        'SELECT account, DATE(ts), LOWER(model), COUNT(*), '
      . 'SUM(status BETWEEN 200 AND 299), SUM(prompt_tokens), '
      . 'SUM(completion_tokens), SUM(total_tokens), SUM(cost_micros) '
      . 'FROM usage_events GROUP BY 1, 2, 3 ORDER BY 1, 2, 3');
    is($a, $b, "$what: usage_daily == aggregate of usage_events");
}
# 1: fresh events only (C path)
add($evs{$_}) for 1 .. 2000;
$t->start_worker('--consumer', 'w1', '--block-ms', '100');
check(2000, 'fresh');
# 2: replays mixed with new ones (SQL path), and one id twice in a batch
$t->stop_worker;
for my $i (1501 .. 2500) { add($evs{$i}) }
add($evs{2600}); add($evs{2600});
$t->start_worker('--consumer', 'w1', '--block-ms', '100');
check(2501, 'replays + in-batch repeat');
# 3: fresh again after
add($evs{$_}) for 2601 .. 3000;
check(2901, 'fresh again');
is($t->sql_value("SELECT COUNT(DISTINCT day) FROM usage_daily"), 2, 'two days');
like($t->worker_log, qr/already stored/, "SQL (duplicates) path taken");
$t->done;
