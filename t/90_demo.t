#!/usr/bin/perl

# ./build.sh demo: the printed curl command returns a chat completion,
# running it again keeps the keys, ./build.sh stop leaves no process behind.
# Runs in its own state directory and on free ports, so a demo the
# developer has running is not touched.

use strict;
use warnings;

use Test::More;

use lib 't/lib';
use Aihub;

my $t = Aihub->new;
$t->skip_unless_built;

my $state = $t->dir . '/state';
my %env = (
    AIHUB_STATE           => $state,
    AIHUB_DEMO_PORT       => Aihub::free_port(),
    AIHUB_DEMO_REDIS_PORT => Aihub::free_port(),
    AIHUB_DEMO_MOCK_PORT  => Aihub::free_port(),
    OPENROUTER_API_KEY    => '',
    GEMINI_API_KEY        => '',
);

my $stopped = 0;

sub build_sh {
    my ($rc, $out, $err) = $t->run_cmd([ $t->root . '/build.sh', @_ ],
                                       env => \%env, timeout => 300);
    return ($rc, $out, $err);
}

sub env_file {
    my %e = map { /^(\w+)=(.*)$/ ? ($1, $2) : () }
            split /\n/, Aihub::read_file("$state/demo.env");
    return \%e;
}

# processes whose command line or working directory is in our state dir

sub leftovers {
    my @p;

    for my $dir (glob '/proc/[0-9]*') {
        my $cmd = Aihub::read_file("$dir/cmdline");
        $cmd =~ tr/\0/ /;
        my $stat = Aihub::read_file("$dir/stat");
        next if $stat =~ /^\d+ \(.*\) Z/;
        push @p, "$dir: $cmd" if index($cmd, $state) >= 0
                              || index($cmd, ":$env{AIHUB_DEMO_REDIS_PORT}")
                                 >= 0;
    }

    return @p;
}

my ($rc, $out, $err) = build_sh('demo');
is($rc, 0, 'demo: exit 0') or diag("$out\n$err");

my $env = env_file();
is($env->{AIHUB_URL}, "http://127.0.0.1:$env{AIHUB_DEMO_PORT}",
   'demo.env: AIHUB_URL');
like($env->{AIHUB_KEY_FREE}, qr/^ai-hub-\w{38}$/, 'demo.env: free key');
like($env->{AIHUB_KEY_PRO}, qr/^ai-hub-\w{38}$/, 'demo.env: pro key');

# the command as printed: from "curl" to the first line not ending in "\"

my ($curl) = $out =~ /^(curl .*?[^\\])$/ms;
ok($curl, 'demo: prints a curl command') or diag($out);
like($curl // '', qr/\Q$env->{AIHUB_KEY_FREE}\E/, 'curl: with the free key');

my ($crc, $cout, $cerr) = $t->run_cmd([ 'bash', '-c', $curl // 'false' ]);
is($crc, 0, 'curl: exit 0') or diag($cerr);
my $answer = eval { JSON::PP->new->decode($cout) } // {};
is($answer->{object}, 'chat.completion', 'curl: a chat completion')
    or diag($cout);
ok($answer->{usage}{total_tokens}, 'curl: with usage');

# the admin path: demo.env carries what aihub-worker reads from the
# environment, so after sourcing it every command reaches the demo

like($out, qr/^\s*set -a; \. \S*demo\.env; set \+a$/m,
     'demo: says how to load demo.env for aihub-worker');

my @g = gmtime;
my $period = sprintf '%04d-%02d', $g[5] + 1900, $g[4] + 1;
my $rdir = $t->dir . '/report';
my $admin = 'set -a; . "$1"; set +a; '
          . 'exec "$AIHUB_WORKER" report --period "$2" --out "$3"';

my ($arc, $aout, $aerr) = $t->run_cmd([ '/usr/bin/env', '-i', 'PATH=/usr/bin:/bin',
    'bash', '-c', $admin, 'admin', "$state/demo.env", $period, $rdir ]);
is($arc, 0, "demo.env sourced: aihub-worker report --period $period")
    or diag("$aout\n$aerr");
ok(-s "$rdir/report.json" && -s "$rdir/invoices.csv",
   'demo.env sourced: the report is written');

($rc, $out, $err) = build_sh('demo');
is($rc, 0, 'demo again: exit 0') or diag("$out\n$err");
is_deeply(env_file(), $env, 'demo again: same keys');

($crc, $cout) = $t->run_cmd([ 'bash', '-c', $curl // 'false' ]);
like($cout, qr/"chat\.completion"/, 'demo again: the key still works');

($rc, $out, $err) = build_sh('stop');
is($rc, 0, 'stop: exit 0') or diag("$out\n$err");
$stopped = 1;

my @left = leftovers();
is(scalar @left, 0, 'stop: no process left behind') or diag(join "\n", @left);
is_deeply([ glob "$state/pids/*.pid" ], [], 'stop: pid files removed');

$t->done;

END {
    build_sh('stop') if $t && !$stopped && -d "$state/pids";
}
