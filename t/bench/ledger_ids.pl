#!/usr/bin/env perl
#
# What the usage event id's order costs MariaDB as the ledger grows:
# BENCH_IDS_ROWS rows (1,000,000) into usage_events, in the drain's
# 500-row INSERT IGNOREs, once with 128 random bits per id and once with
# ids as the module makes them (the time in ms, then random digits), each
# into a fresh table, with the tests' 64M InnoDB buffer pool (a production
# ledger outgrows any pool).  Prints MariaDB's CPU per row for each
# quarter of the rows.  Run by hand: perl t/bench/ledger_ids.pl (as root,
# after ./build.sh build).
#

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use POSIX ();
use Time::HiRes qw(time);

our $BENCH;
BEGIN { $BENCH = abs_path(dirname(__FILE__)); }
use lib "$BENCH/../lib";
use Aihub;

$| = 1;

my $ROOT = abs_path("$BENCH/../..");
my $ROWS = $ENV{BENCH_IDS_ROWS} // 1_000_000;
my $POOL = $ENV{BENCH_MARIADB_POOL} // '64M';
my $PER = 500;
my $HZ = POSIX::sysconf(POSIX::_SC_CLK_TCK()) || 100;

my $t = Aihub->new;
$t->start_mariadb(buffer_pool => $POOL);
$t->migrate;
my $pid = $t->{procs}{mariadb}{pid};

sub mariadb_cpu {
    my @f = split ' ', Aihub::read_file("/proc/$pid/stat");
    return ($f[13] + $f[14]) / $HZ;
}

sub id_random { join '', map { sprintf '%08x', int rand 2**32 } 1 .. 4 }

sub id_ordered {
    my ($ms) = @_;
    return sprintf('%012x', $ms)
           . join '', map { sprintf '%05x', int rand 2**20 } 1 .. 4;
}

my %KIND = (random => \&id_random, ordered => \&id_ordered);

printf "%d rows a kind, %d-row INSERT IGNOREs, buffer pool %s; "
       . "MariaDB CPU us/row by quarter\n", $ROWS, $PER, $POOL;

for my $kind (qw(random ordered)) {
    $t->sql("TRUNCATE usage_events");
    my $ms = int(time * 1000);
    my @q;

    for my $quarter (1 .. 4) {
        my $sql = '';

        for (my $i = 0; $i < $ROWS / 4; $i += $PER) {
            my @v;

            for (1 .. $PER) {
                $ms++;
                my @tm = gmtime(int($ms / 1000));
                push @v, sprintf("('%s','%04d-%02d-%02d %02d:%02d:%02d.%03d',"
                    . "1,'ai-hub-bench000','pro','mock-basic','mock',24,27,"
                    . "51,20,200,0,0,0,1,'bench',1)",
                    $KIND{$kind}->($ms), $tm[5] + 1900, $tm[4] + 1, $tm[3],
                    $tm[2], $tm[1], $tm[0], $ms % 1000);
            }

            $sql .= "INSERT IGNORE INTO usage_events (event_id, ts, account,"
                  . " key_prefix, plan, model, provider, prompt_tokens,"
                  . " completion_tokens, total_tokens, cost_micros, status,"
                  . " streamed, aborted, estimated, latency_ms, node,"
                  . " drain_batch) VALUES " . join(',', @v) . ";\n";
        }

        my $file = $t->dir . "/ids-$kind-$quarter.sql";
        open my $fh, '>', $file or die "$file: $!\n";
        print $fh $sql;
        close $fh;

        my ($c0, $w0) = (mariadb_cpu(), time);
        system("mariadb --no-defaults -uroot --socket=" . $t->mysql_socket
               . " aihub < $file") == 0 or die "mariadb failed\n";
        my ($c1, $w1) = (mariadb_cpu(), time);
        push @q, sprintf '%.1f (%.1f s)', ($c1 - $c0) * 1e6 / ($ROWS / 4),
                         $w1 - $w0;
        unlink $file;
    }

    printf "  %-8s %s\n", $kind, join '  ', @q;
}

$t->stop_all;
