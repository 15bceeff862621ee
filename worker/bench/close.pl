#!/usr/bin/perl

# Benchmark: "aihub-worker invoice close" of one month with EVENTS usage
# events of one account (pro, 10,000 included; three models, one price
# change mid-month, all but the included calls billed), then "invoice
# check".  Prints the times and the worker's peak memory.  Not a test.
#
#   perl worker/bench/close.pl [EVENTS]     (default 1000000)

use strict;
use warnings;

use FindBin;
use Time::HiRes qw(time);

use lib "$FindBin::Bin/../../t/lib";
use Aihub;

my $N = shift // 1000000;

die "build the worker first\n" unless Aihub::have_worker();

my $t = Aihub->new(redis => 1, mariadb => 1);
$t->migrate;
$t->create_key(account => 'big', plan => 'pro');
$t->sql("UPDATE accounts SET created_at = '2000-01-01'");
$t->sql("UPDATE subscriptions SET started_at = '2000-01-01'");
my $acct = $t->sql_value("SELECT id FROM accounts WHERE name = 'big'");

my @now = gmtime;
my ($y, $m) = ($now[5] + 1900, $now[4] + 1 - 2);
while ($m < 1) { $m += 12; $y-- }
my $P = sprintf '%04d-%02d', $y, $m;

$t->sql("INSERT INTO model_prices (model, price_in_micros, price_out_micros,"
        . " valid_from, source) VALUES ('mock-basic', 300000, 1200000, "
        . "'$P-15 00:00:00', 'bench')");

# N events spread over the month's first 27 days, 100,000 per statement

my $t0 = time;
my $step = 100000;

for (my $done = 0; $done < $N; $done += $step) {
    my $n = $N - $done < $step ? $N - $done : $step;
    $t->sql("INSERT INTO usage_events (event_id, ts, account, key_prefix, "
        . "plan, model, provider, prompt_tokens, completion_tokens, "
        . "total_tokens, cost_micros, status, streamed, aborted, estimated, "
        . "latency_ms, node) SELECT MD5(seq + $done), TIMESTAMP('$P-01') + "
        . "INTERVAL ((seq + $done) * 2332800 DIV $N) SECOND, $acct, "
        . "'ai-hub-AbCdEfGh', 'pro', ELT(1 + (seq + $done) % 3, "
        . "'mock-basic', 'mock-premium', 'openai/gpt-4o'), 'mock', 100, 50, "
        . "150 + (seq % 7), 1, IF(seq % 50 = 0, 502, 200), 0, 0, 0, 5, 'n' "
        . "FROM seq_1_to_$n");
}

printf "inserted %d events in %.1f s\n", $N, time - $t0;

for my $cmd ([ 'invoice', 'close', '--period', $P, '--force' ],
             [ 'invoice', 'check', '--period', $P ])
{
    $t0 = time;
    my ($rc, $out, $err) = $t->run_cmd([ '/usr/bin/time', '-f', '%M',
        $t->build . '/bin/aihub-worker', $t->worker_flags, @$cmd ],
        timeout => 3600);
    my ($kb) = $err =~ /(\d+)\s*$/;
    printf "%s: exit %d, %.1f s, peak RSS %d KB\n%s", "@$cmd[0, 1]", $rc,
           time - $t0, $kb // 0, $out;
}

$t->done;
