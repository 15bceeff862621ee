#!/usr/bin/perl
#
# aihub benchmark driver, started by t/bench/run.sh (./build.sh bench).
# Reuses t/lib/Aihub.pm for Redis, MariaDB, aihub-worker and process
# handling; writes its own nginx configurations (access_log off, more
# connections) for the stub and the systems under test.
#
# CPU 1: the system under test (one nginx worker, or Portkey's node).
# CPU 0: wrk, the stub upstream, Redis, MariaDB and aihub-worker run.

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Path qw(make_path);
use List::Util qw(sum max min);
use POSIX qw(ceil floor strftime);
use Time::HiRes qw(time sleep);
use Compress::Zlib ();
use Digest::SHA qw(sha256_hex);
use JSON::PP qw(decode_json);

our $BENCH;
BEGIN { $BENCH = abs_path(dirname(__FILE__)); }
use lib "$BENCH/../lib";
use Aihub;

$| = 1;

my $ROOT = abs_path("$BENCH/../..");
my $OUT = $ENV{BENCH_OUT} // "$BENCH/out";
my $QUICK = $ENV{BENCH_QUICK} ? 1 : 0;
my $NGINX = '/usr/sbin/nginx';
my $HZ = POSIX::sysconf(POSIX::_SC_CLK_TCK()) || 100;
my $SUT_CPU = $ENV{BENCH_SUT_CPU} // 1;
my $LOAD_CPU = $ENV{BENCH_LOAD_CPU} // 0;
my $AUX_CPU = $ENV{BENCH_AUX_CPU} // $LOAD_CPU;    # Redis, MariaDB, worker

my %C = $QUICK
    ? (conns => [32], rounds => 2, dur => 3, warm => 2, rate_conns => 64,
       rate_rounds => 2,
       drain_events => 50_000, mem_requests => 100_000, mem_keys => 10_000,
       zone => '1m', mem_sample => 1000)
    : (conns => [16, 64, 256], rounds => 3, head_rounds => 5, dur => 5,
       warm => 3, rate_conns => 64, rate_rounds => 5,
       drain_events => 200_000,
       mem_requests => 1_000_000, mem_keys => 100_000, zone => '1m',
       mem_sample => 1000);

for my $k (qw(rounds head_rounds rate_rounds dur warm drain_events
            mem_requests mem_keys)) {
    my $e = 'BENCH_' . uc $k;
    $C{$k} = $ENV{$e} if defined $ENV{$e};
}
$C{conns} = [ split /,/, $ENV{BENCH_CONNS} ] if $ENV{BENCH_CONNS};
my %ONLY = map { $_ => 1 } split /,/, ($ENV{BENCH_ONLY} // '');

make_path($OUT);
open my $LOG, '>', "$OUT/bench.log" or die "$OUT/bench.log: $!\n";
$LOG->autoflush(1);

my $T0 = time;
my $LOAD0 = (split ' ', Aihub::read_file('/proc/loadavg'))[0];
my @FAIL;
our %UNEXPECTED;    # aihub instance -> runs with an unexpected answer

sub say { my $m = join '', @_; printf "[%5.0fs] %s\n", time - $T0, $m;
          printf $LOG "[%5.0fs] %s\n", time - $T0, $m; }
sub logf { print $LOG @_, "\n"; }
sub fail { my $m = join '', @_; push @FAIL, $m; say("FAIL: $m"); }

sub slurp { Aihub::read_file($_[0]) }
sub spew { Aihub::write_file(@_) }

# --- the stack -------------------------------------------------------------

my $t = Aihub->new;
$t->{done} = 1;    # Aihub's END: stop everything, no test output
say("state directory: ", $t->dir, $ENV{AIHUB_KEEP} ? ' (kept)' : '');

# private copies of the module and the worker: a rebuild during the run
# (cp over the .so nginx has mapped) would crash the nginx workers
make_path($t->dir . '/bin');
system('cp', "$ROOT/build/modules/ngx_http_aihub_module.so",
       "$ROOT/build/bin/aihub-worker", $t->dir . '/bin/') == 0
    or die "copying the module and the worker failed\n";
my $MODULE = $t->dir . '/bin/ngx_http_aihub_module.so';
$Aihub::WORKER = $t->dir . '/bin/aihub-worker';

$t->start_redis('--save', '', '--appendonly', 'no');
# a buffer pool as a production server would have; what the ledger's growth
# costs past the pool's size is t/bench/ledger_ids.pl's measure
my $POOL = $ENV{BENCH_MARIADB_POOL} // '1G';
$t->start_mariadb(buffer_pool => $POOL);
pin($t->{procs}{redis}{pid}, $AUX_CPU);
pin($t->{procs}{mariadb}{pid}, $AUX_CPU);
$t->migrate;
say("Redis ", $t->redis_addr, ", MariaDB ", $t->mysql_socket,
    " (InnoDB buffer pool $POOL), migrated");

sub pin {
    my ($pid, $cpu) = @_;
    system("taskset -a -p -c $cpu $pid > /dev/null") == 0
        or die "taskset $pid: failed\n";
}

# The ledger (MariaDB and aihub-worker) shares CPU $AUX_CPU with wrk and the
# stub upstream.  At its normal priority it drains while G runs and takes
# that CPU from the load generator, so G runs starved of requests (its
# core two-thirds busy), and a drain catching up on earlier runs' events
# slows whichever run it overlaps, B1's as much as G's (README,
# "Performance").  So it runs at SCHED_IDLE (BENCH_LEDGER=normal: not),
# on whatever that core leaves, and each run starts once the events of
# the runs before it are in MariaDB (catch_up).  A G run's aux column
# counts the ledger's CPU until its events are stored.  The row G+ledger
# runs G with the ledger at its normal priority, as the runs before
# 2026-12-02 17:52 did.
my $LEDGER_IDLE = ($ENV{BENCH_LEDGER} // 'idle') ne 'normal';

sub ledger_prio {
    my ($policy) = @_;    # idle or other
    for my $p (qw(mariadb worker)) {
        my $pr = $t->{procs}{$p};
        next unless $pr && !$pr->{exited};
        system("chrt -a --$policy -p 0 $pr->{pid} > /dev/null") == 0
            or die "chrt --$policy $p ($pr->{pid}): failed\n";
    }
}

sub worker_ok {
    my (@args) = @_;
    my ($rc, $out, $err) = $t->worker(@args);
    die "aihub-worker @args: exit $rc\n$out$err\n" if $rc;
    return $out;
}

# keys: G (unthrottled pro account), G-429 (rpm 1), G-401 (bad checksum)

my $KEY = $t->create_key(account => 'bench', plan => 'pro');
worker_ok(qw(account override bench --included 2000000000 --rpm 0 --tpm 0
             --overage 1));
my $KEY429 = $t->create_key(account => 'bench429', plan => 'pro');
worker_ok(qw(account override bench429 --included 2000000000 --rpm 1
             --tpm 0 --overage 1));

my $BADKEY = $KEY;
substr($BADKEY, -1, 1) = substr($BADKEY, -1) eq 'A' ? 'B' : 'A';

my $ACCOUNT = $t->sql_value("SELECT account FROM api_keys WHERE key_hash = '"
                            . Aihub::key_hash($KEY) . "'")
    // die "bench key not in api_keys\n";

# whatever the plan says, make sure the Redis records are what we want
my $khash = Aihub::key_hash($KEY);
$t->redis('HSET', "aihub:key:$khash", rpm => 0, tpm => 0,
          included => 2000000000, overage => 1, spend_cap => 0);
my $k429 = Aihub::key_hash($KEY429);
$t->redis('HSET', "aihub:key:$k429", rpm => 1, tpm => 0,
          included => 2000000000, overage => 1);
$t->redis('PUBLISH', 'aihub:invalidate', "key:$khash");
$t->redis('PUBLISH', 'aihub:invalidate', "key:$k429");
logf("key record: ", join ' ',
     @{ $t->redis('HGETALL', "aihub:key:$khash") });

# --- nginx instances ------------------------------------------------------

my $CANNED = slurp("$BENCH/canned.json");
chomp $CANNED;
my $SSE = slurp("$BENCH/canned.sse");

sub ngx_quote {
    my ($s) = @_;
    $s =~ s/\\/\\\\/g;
    $s =~ s/"/\\"/g;
    $s =~ s/\n/\\n/g;
    $s =~ s/\$/\${dollar}/g if $s =~ /\$/;
    return qq{"$s"};
}

my %NG;    # name -> {port, dir}

sub nginx_conf {
    my ($name, %o) = @_;

    my $d = $t->dir . "/$name";
    make_path($d);
    my $port = $NG{$name}{port} //= Aihub::free_port();
    $NG{$name}{dir} = $d;

    my $main = $o{main} // '';
    my $http = $o{http} // '';

    my $conf = <<"END";
$main
env AIHUB_MOCK_KEY;
user root;
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_core 2g;
working_directory $d;
pid $d/nginx.pid;
error_log $d/error.log warn;

events {
    worker_connections 16384;
}

http {
    access_log off;
    client_body_temp_path $d/client_body_temp;
    proxy_temp_path $d/proxy_temp;
    fastcgi_temp_path $d/fastcgi_temp;
    uwsgi_temp_path $d/uwsgi_temp;
    scgi_temp_path $d/scgi_temp;
    keepalive_requests 10000000;
    keepalive_timeout 75s;
    client_body_buffer_size 16k;

$http
}
END
    $conf =~ s/%%PORT%%/$port/g;
    $conf =~ s/%%DIR%%/$d/g;
    spew("$d/nginx.conf", $conf);
    return $port;
}

sub start_ngx {
    my ($name, $cpu) = @_;

    my $d = $NG{$name}{dir};
    my @argv = ($NGINX, '-p', "$d/", '-c', "$d/nginx.conf",
                '-e', "$d/error.log");

    my ($rc, $o, $e) = $t->run_cmd([ @argv, '-t' ],
                                   env => { AIHUB_MOCK_KEY => 'stub-secret' });
    die "nginx -t $name failed:\n$o$e\n" if $rc;

    $t->spawn("nginx:$name", [ 'taskset', '-c', $cpu, @argv ],
              env => { AIHUB_MOCK_KEY => 'stub-secret' },
              out => "$d/stderr.log");
    $t->wait_port("nginx:$name", $NG{$name}{port}, 10)
        or die "nginx $name did not start:\n" . slurp("$d/error.log")
               . slurp("$d/stderr.log");
    my @w;
    $t->wait_for(sub { @w = $t->nginx_worker_pids($name) }, timeout => 5);
    die "nginx $name: no worker process\n" unless @w;
    $NG{$name}{workers} = [@w];
    $NG{$name}{master} = $t->{procs}{"nginx:$name"}{pid};
    return $NG{$name}{port};
}

sub stop_ngx { $t->stop_nginx($_[0]) }

# the stub upstream: canned JSON, or the canned SSE with x-bench-stream: 1

my $STUB = nginx_conf('stub', http => <<"END");
    server {
        listen 127.0.0.1:%%PORT%% backlog=4096;

        location = /v1/chat/completions {
            if (\$http_x_bench_stream) {
                rewrite ^ /sse last;
            }
            default_type application/json;
            return 200 ${\ ngx_quote($CANNED)};
        }

        location = /sse {
            internal;
            default_type text/event-stream;
            return 200 ${\ ngx_quote($SSE)};
        }
    }
END
start_ngx('stub', $LOAD_CPU);

my $PROXY = <<'END';
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
END

my $UPSTREAM = <<"END";
    upstream stub {
        server 127.0.0.1:$STUB;
        keepalive 512;
        keepalive_requests 10000000;
    }
END

# B0: the canned answer from nginx itself

nginx_conf('B0', http => <<"END");
    server {
        listen 127.0.0.1:%%PORT%% backlog=4096;
        location = /v1/chat/completions {
            default_type application/json;
            return 200 ${\ ngx_quote($CANNED)};
        }
    }
END

# B1: bare proxy_pass with keepalive

nginx_conf('B1', http => <<"END");
$UPSTREAM
    server {
        listen 127.0.0.1:%%PORT%% backlog=4096;
        location /v1/ {
            proxy_pass http://stub;
$PROXY        }
    }
END

# L: B1 + the OpenResty way (key lookup in a shared dict by SHA-1 of the
# key, a quota counter, a per-key per-minute rate check): lmeter.lua's
# check()

sub lua_str { my $s = shift; return "'$s'"; }

my $LUA_INIT = <<"END";
    lua_package_path "$BENCH/?.lua;;";
    lua_shared_dict bench_keys 16m;
    lua_shared_dict bench_quota 16m;
    lua_shared_dict bench_rate 16m;

    init_by_lua_block {
        require("lmeter").init({
            [${\ lua_str($KEY) }] = "$ACCOUNT|pro|0",
            [${\ lua_str($KEY429) }] = "$ACCOUNT|pro|1",
        })
    }
END

my $LUA_MAIN = "load_module /usr/lib/nginx/modules/ndk_http_module.so;\n"
             . "load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;";

nginx_conf('L', main => $LUA_MAIN, http => <<"END");
$UPSTREAM
$LUA_INIT
    server {
        listen 127.0.0.1:%%PORT%% backlog=4096;
        location /v1/ {
            access_by_lua_block { require("lmeter").check() }
            proxy_pass http://stub;
$PROXY        }
    }
END

# LM: the metering a Lua gateway does to bill a call as G does (the body
# and the answer decoded with cjson, a usage event batched to Redis every
# 10 ms), on top of L's checks: t/bench/lmeter.lua

nginx_conf('LM', main => $LUA_MAIN, http => <<"END");
$UPSTREAM
$LUA_INIT
    init_worker_by_lua_block {
        require("lmeter").init_worker("127.0.0.1", ${\ $t->redis_port })
    }

    server {
        listen 127.0.0.1:%%PORT%% backlog=4096;
        location /v1/ {
            access_by_lua_block { require("lmeter").access() }
            header_filter_by_lua_block { require("lmeter").header() }
            body_filter_by_lua_block { require("lmeter").body() }
            log_by_lua_block { require("lmeter").log() }
            proxy_pass http://stub;
$PROXY        }
    }
END

# G: aihub on the full path

sub aihub_conf {
    my ($name, $zone, $extra) = @_;
    $extra //= '';
    nginx_conf($name,
        main => "load_module $MODULE;",
        http => <<"END");
$UPSTREAM
    $extra
    aihub_redis ${\ $t->redis_addr };
    aihub_redis_timeout 300ms;
    aihub_cache_zone aihub:$zone;
    aihub_provider mock url=http://stub/v1 key_env=AIHUB_MOCK_KEY;

    server {
        listen 127.0.0.1:%%PORT%% backlog=4096;
        location /v1/ {
            aihub on;
            aihub_failure_mode closed;
            proxy_pass \$aihub_proxy_url;
            proxy_set_header Host \$aihub_provider_host;
$PROXY        }
        location = /metrics {
            aihub_metrics;
        }
    }
END
}

aihub_conf('G', '16m');

# G-edge: every call waits for its own lease of one call, as an account
# within a few calls of its hard quota does (what exactness costs there)
aihub_conf('Gedge', '16m', 'aihub_lease_calls 1;');

for my $n (qw(B0 B1 L LM G Gedge)) {
    start_ngx($n, $SUT_CPU);
}

# aihub-worker drains while G runs
$t->start_worker;
pin($t->{procs}{worker}{pid}, $AUX_CPU);
ledger_prio('idle') if $LEDGER_IDLE;

# Portkey, pinned to the SUT core, loopback only (preload.mjs)

my $PK_PORT = Aihub::free_port();
my $PK_DIR = "$BENCH/portkey/node_modules/\@portkey-ai/gateway";
my $HAVE_PK = -f "$PK_DIR/build/start-server.js";

if ($HAVE_PK && !$ENV{BENCH_NO_PORTKEY}) {
    $t->spawn('portkey', [ 'taskset', '-c', $SUT_CPU, 'node',
                           '--import', "$BENCH/portkey/preload.mjs",
                           "$PK_DIR/build/start-server.js",
                           "--port=$PK_PORT", '--headless' ],
              env => { NODE_ENV => 'production',
                       BENCH_LOOPBACK_ONLY => 1 },
              out => $t->dir . '/portkey.log');
    $t->wait_port('portkey', $PK_PORT, 30)
        or die "portkey did not start:\n" . slurp($t->dir . '/portkey.log');
    $NG{P} = { port => $PK_PORT, workers => [ $t->{procs}{portkey}{pid} ] };
} else {
    say("Portkey not installed or disabled: no P rows");
}

# --- sanity: every system answers what it should ------------------------

sub curl {
    my ($port, %o) = @_;
    my @h;
    push @h, '-H', "Authorization: Bearer $o{key}" if $o{key};
    push @h, '-H', 'x-bench-stream: 1' if $o{stream};
    if ($o{portkey}) {
        push @h, '-H', 'x-portkey-provider: openai', '-H',
                 "x-portkey-custom-host: http://127.0.0.1:$STUB/v1",
                 '-H', 'Authorization: Bearer sk-bench-stub';
    }
    my $body = '{"model":"mock-basic","messages":[{"role":"user",'
             . '"content":"hi"}]'
             . ($o{stream} ? ',"stream":true,"stream_options":'
                             . '{"include_usage":true}' : '') . '}';
    my ($rc, $out) = $t->run_cmd([ 'curl', '-sS', '-o', $t->dir . '/curl.body',
        '-w', '%{http_code}', '-H', 'Content-Type: application/json', @h,
        '--data-binary', $body,
        "http://127.0.0.1:$port/v1/chat/completions" ], timeout => 20);
    return ($out, slurp($t->dir . '/curl.body'));
}

my %EXPECT = (B0 => 200, B1 => 200, G => 200, L => 200, LM => 200);
my @checks = (
    [ 'B0', $NG{B0}{port}, {}, 200 ],
    [ 'B1', $NG{B1}{port}, {}, 200 ],
    [ 'B1-stream', $NG{B1}{port}, { stream => 1 }, 200 ],
    [ 'L', $NG{L}{port}, { key => $KEY }, 200 ],
    [ 'L-401', $NG{L}{port}, { key => $BADKEY }, 401 ],
    [ 'LM', $NG{LM}{port}, { key => $KEY }, 200 ],
    [ 'LM-401', $NG{LM}{port}, { key => $BADKEY }, 401 ],
    [ 'G', $NG{G}{port}, { key => $KEY }, 200 ],
    [ 'G-stream', $NG{G}{port}, { key => $KEY, stream => 1 }, 200 ],
    [ 'G-401', $NG{G}{port}, { key => $BADKEY }, 401 ],
    [ 'G-429 (1st)', $NG{G}{port}, { key => $KEY429 }, 200 ],
    [ 'G-429', $NG{G}{port}, { key => $KEY429 }, 429 ],
    ($NG{P} ? [ 'P', $PK_PORT, { portkey => 1 }, 200 ] : ()),
);

my $G_CURL_OK = 0;

for my $c (@checks) {
    my ($name, $port, $o, $want) = @$c;
    my ($code, $body) = curl($port, %$o);
    logf("check $name: $code " . substr($body, 0, 300));
    if ($code != $want) {
        die "sanity check $name: HTTP $code, expected $want\n$body\n";
    }
    if ($want == 200 && $body !~ /"usage"/) {
        die "sanity check $name: no usage in the answer\n$body\n";
    }
    $G_CURL_OK++ if $name =~ /^G/ && $code == 200;
}
# LM does the work it is compared for: its call's event, with the answer's
# usage, reached Redis
my $lm_event;
$t->wait_for(sub {
    my $r = $t->redis('XREVRANGE', 'aihub:bench:lm', '+', '-', 'COUNT', 1);
    $lm_event = ref $r eq 'ARRAY' && @$r ? $r->[0][1][1] : undef;
}, timeout => 5);
die "sanity check LM: no usage event in aihub:bench:lm\n" unless $lm_event;
my $lm = decode_json($lm_event);
die "sanity check LM: the event has not the answer's usage: $lm_event\n"
    unless $lm->{prompt_tokens} == 24 && $lm->{completion_tokens} == 27
           && $lm->{cost_micros} == 20
           && !$lm->{estimated} && $lm->{status} == 200;
say("sanity checks passed (", scalar @checks, ", and LM's usage event)");

# what the aihub instances answered over all their runs, printed at the
# end when a run had an answer it should not have
my %MET0 = map { $_ => metrics($_) } qw(G Gedge);

sub status_report {
    my ($label, $names, $m0) = @_;
    my $any = grep { $UNEXPECTED{$_} } @$names;
    for my $name (@$names) {
        my $d = status_diff($m0->{$name}, metrics($name));
        $any ? say("$label, $name /metrics: $d")
             : logf("$label, $name /metrics: $d");
    }
}

if ($ENV{BENCH_HOLD}) {
    my %p = map { $_ => $NG{$_}{port} } grep { $NG{$_}{port} } keys %NG;
    spew("$OUT/hold.env", join('', map { "PORT_$_=$p{$_}\n" } sort keys %p)
         . "KEY=$KEY\nKEY429=$KEY429\nBADKEY=$BADKEY\nREDIS="
         . $t->redis_port . "\nDIR=" . $t->dir . "\n"
         . join('', map { "PID_$_=@{ $NG{$_}{workers} }\n" }
                grep { $NG{$_}{workers} } sort keys %NG));
    say("holding (BENCH_HOLD): $OUT/hold.env; kill -TERM $$ to stop");
    $SIG{TERM} = $SIG{INT} = sub { $t->stop_all; exit 0 };
    sleep 3600 while 1;
}

# --- measuring ----------------------------------------------------------

# utime and stime of a process, in ticks (fields 14 and 15 of its stat)
sub proc_cpu_ticks {
    my ($pid) = @_;
    my $s = slurp("/proc/$pid/stat") or return (0, 0);
    $s =~ s/^.*\) //s;
    return (split / /, $s)[11, 12];
}

sub proc_ticks { my ($u, $k) = proc_cpu_ticks($_[0]); return $u + $k }

# utime alone: the CPU a process spent in its own code, not the kernel's
sub proc_user_ticks { return (proc_cpu_ticks($_[0]))[0] }

sub cpu_line {
    my ($cpu) = @_;
    for (split /\n/, slurp('/proc/stat')) {
        next unless /^cpu$cpu /;
        my @f = (split ' ')[1 .. 8];
        my $idle = $f[3] + $f[4];
        return (sum(@f) - $idle, sum(@f));
    }
    return (0, 0);
}

my @AUX = qw(redis mariadb worker);

sub aux_ticks {
    return map { my $p = $t->{procs}{$_};
                 $p && !$p->{exited} ? proc_ticks($p->{pid}) : 0 } @AUX;
}

# until the usage stream is empty and the aihub instances hold no event:
# every event of the runs so far stored (wait_drain's test, without its
# checks); fails when the stream has not shrunk for BENCH_DRAIN_STALL s
sub catch_up {
    my ($label) = @_;
    my $stall = $ENV{BENCH_DRAIN_STALL} // 30;
    my ($low, $moved) = (undef, time);
    for (;;) {
        my $len = $t->redis('XLEN', 'aihub:usage');
        if ($len == 0) {
            my (undef, $buffered) = ev_running();
            return if !$buffered && $t->redis('XLEN', 'aihub:usage') == 0;
        }
        ($low, $moved) = ($len, time) if !defined $low || $len < $low;
        die "$label: the usage stream stuck at $len entries for $stall s\n"
            if time - $moved > $stall;
        sleep 0.05;
    }
}

# one wrk run; returns a result hash
sub wrk {
    my (%o) = @_;

    my $name = $o{name};
    my $sys = $o{sys} // $name;
    my $n = $NG{$sys} or die "no system $sys\n";
    my $url = "http://127.0.0.1:$n->{port}/v1/chat/completions";
    my %env = (BENCH_KEY => $o{key} // '', %{ $o{env} // {} });

    # an aihub instance's answers by status, to name what it answered
    # when wrk saw an unexpected status (outside the measured interval)
    my $aihub = $sys =~ /^G/;
    my $m0 = $aihub ? metrics($sys) : undef;

    my $cu = !$o{no_catch_up};    # the fixed-rate runs pause the drain
    catch_up("before $name") if $cu;
    ledger_prio('other') if $o{ledger} && $LEDGER_IDLE;

    # The drain waits (SIGSTOP) while an aihub instance is measured, and
    # stores the run's events right after it (catch_up; the aux column
    # counts that CPU); G+ledger drains during its run.  Draining on CPU 0,
    # even at SCHED_IDLE, slowed the gateway on CPU 1: in paired runs of
    # the held bench, G took 21.0, 22.3 and 25.3 µs a request with the
    # drain stopped and 24.8, 35.6 and 33.5 with it running (its user time
    # up by a quarter too: MariaDB's working set against the gateway's in
    # the cache the two cores share), and CPU 0 took 3 to 5 times the
    # rescheduling interrupts a request (0.12-0.27 against 0.035), a VM
    # exit each on CPU 1, which wakes wrk and the stub while the drain
    # runs there.  Such a drain stands for the ledger's host, which is
    # not the gateway's in production; B1 and L have none.
    my $wpid = $t->{procs}{worker} && !$t->{procs}{worker}{exited}
               ? $t->{procs}{worker}{pid} : undef;
    my $pause = $aihub && $cu && !$o{ledger} && $wpid;
    kill 'STOP', $wpid if $pause;

    my @sut = @{ $n->{workers} };
    my $s0 = sum(map { proc_ticks($_) } @sut);
    my $u0 = sum(map { proc_user_ticks($_) } @sut);
    my @a0 = aux_ticks();
    my ($b0, $t0) = cpu_line($SUT_CPU);
    my ($lb0, $lt0) = cpu_line($LOAD_CPU);

    my ($rc, $out, $err) = $t->run_cmd(
        [ 'taskset', '-c', $LOAD_CPU, 'wrk', '-t1', "-c$o{conns}",
          "-d$o{dur}s", '--timeout', $sys eq 'P' ? '30s' : '5s',
          '-s', "$BENCH/chat.lua", $url ],
        env => \%env, timeout => $o{dur} + 60);

    my $s1 = sum(map { proc_ticks($_) } @sut);
    my $u1 = sum(map { proc_user_ticks($_) } @sut);
    my ($b1, $t1) = cpu_line($SUT_CPU);
    my ($lb1, $lt1) = cpu_line($LOAD_CPU);
    ledger_prio('idle') if $o{ledger} && $LEDGER_IDLE;
    kill 'CONT', $wpid if $pause;
    catch_up("after $name") if $cu && $aihub;
    my @a1 = aux_ticks();

    logf("wrk $name c=$o{conns} d=$o{dur}: $out$err");
    my ($line) = $out =~ /^BENCH (.*)$/m
        or die "wrk $name: no result (exit $rc)\n$out$err\n";
    my %r = map { split /=/, $_, 2 } split ' ', $line;

    my $req = $r{requests} || 1;
    $r{name} = $name;
    $r{conns} = $o{conns};
    $r{rps} = $r{requests} / ($r{duration_us} / 1e6);
    $r{cpu_us} = ($s1 - $s0) / $HZ * 1e6 / $req;
    $r{user_us} = ($u1 - $u0) / $HZ * 1e6 / $req;
    $r{core_us} = ($b1 - $b0) / $HZ * 1e6 / $req;
    $r{core_busy} = ($t1 - $t0) ? ($b1 - $b0) / ($t1 - $t0) : 0;
    $r{load_busy} = ($lt1 - $lt0) ? ($lb1 - $lb0) / ($lt1 - $lt0) : 0;
    for my $i (0 .. $#AUX) {
        $r{"aux_$AUX[$i]"} = ($a1[$i] - $a0[$i]) / $HZ * 1e6 / $req;
    }
    $r{aux_us} = sum(map { $r{"aux_$_"} } @AUX);
    $r{sockerr} = $r{connect} + $r{read} + $r{write} + $r{timeout};
    $r{ok} = $r{requests} - $r{status};
    $r{rate} = $o{rate} if $o{rate};

    # non-2xx answers by status (chat.lua: status_NNN=count); wrk's own
    # "status" counts those over 399
    my %codes = map { /^status_(\d+)$/ ? ($1 => $r{$_}) : () } keys %r;
    $r{codes} = \%codes;
    $r{codes_str} = codes_str(\%codes);

    my $expect = $o{expect} // 200;
    my @other = grep { $_ != $expect } keys %codes;
    my $where = "$name c=$o{conns}" . ($o{rate} ? " rate $o{rate}/s" : '');

    if ($r{requests} == 0) {
        fail("$where: no requests completed");
    } elsif ($expect == 200 && ($r{status} || $r{sockerr} || @other)) {
        fail("$where: $r{status} non-2xx ($r{codes_str}) and $r{sockerr} "
             . "socket errors in $r{requests} requests");
    } elsif ($expect != 200 && $r{sockerr}) {
        fail("$where: $r{sockerr} socket errors");
    } elsif ($expect != 200 && ($r{ok} > 1 || @other)) {
        fail("$where: $r{ok} answers were 2xx and "
             . sum(0, map { $codes{$_} } @other) . " neither 2xx nor "
             . "$expect ($r{codes_str}) in $r{requests} requests");
    }

    if ($aihub && ($r{sockerr} || @other || ($expect != 200 && $r{ok} > 1)))
    {
        my $d = status_diff($m0, metrics($sys));
        $UNEXPECTED{$sys}++;
        say("  $sys answered during $name: $d");
    }

    if ($sys eq 'G' || $sys eq 'Gmem' || $sys eq 'Gedge') {
        $o{count_ok} //= ($expect == 200);
        if ($o{count_ok}) {
            $main::G_OK += $r{ok};
        } else {
            $main::G_OK += $r{ok};    # the 1st G-429 request of a minute
        }
        $main::G_INFLIGHT += $o{conns};
    }

    logf(sprintf "  -> %.0f req/s, %.2f us/req SUT (user %.2f), %.2f us/req "
         . "core, busy %.0f%%/%.0f%%, p50 %d p99 %d p999 %d, err %d/%d (%s)",
         $r{rps}, $r{cpu_us}, $r{user_us}, $r{core_us}, 100 * $r{core_busy},
         100 * $r{load_busy}, $r{p50}, $r{p99}, $r{p999}, $r{status},
         $r{sockerr}, $r{codes_str});

    return \%r;
}

sub metrics {
    my ($name) = @_;
    my ($rc, $out) = $t->run_cmd([ 'curl', '-sS',
        "http://127.0.0.1:$NG{$name}{port}/metrics" ], timeout => 20);
    my %m;
    for (split /\n/, $out // '') {
        next if /^#/;
        $m{$1} = $2 if /^(\S+)\s+(\S+)$/;
    }
    return \%m;
}

sub codes_str {
    my ($c) = @_;
    return join(', ', map { "$_: $c->{$_}" } sort { $a <=> $b } keys %$c)
           || 'none';
}

# the counters of an aihub instance's /metrics that say what it answered
# and why: requests by status, failed-open, usage events, lane refusals
# and timeouts; those that changed between two snapshots
my $STATUS_METRICS = qr/^aihub_(?:requests_total|failed_open_total
                         |usage_events_total|lane_\w*(?:refusals|timeouts
                         |waits)_total)/x;

sub status_diff {
    my ($m0, $m1) = @_;
    my @d;
    for my $k (sort keys %$m1) {
        next unless $k =~ $STATUS_METRICS;
        my $v0 = $m0->{$k} // 0;
        push @d, sprintf '%s %s -> %s (+%s)', $k, $v0, $m1->{$k},
                         $m1->{$k} - $v0 if $m1->{$k} != $v0;
    }
    return @d ? join('; ', @d) : 'no counter changed';
}

sub commandstats {
    my $info = $t->redis('INFO', 'commandstats');
    my %c;
    while ($info =~ /^cmdstat_(\S+?):calls=(\d+),usec=(\d+)/mg) {
        $c{$1} = { calls => $2, usec => $3 };
    }
    return \%c;
}

our $G_OK = 0;
our $G_INFLIGHT = 0;

# the closed-loop systems, in the order of each round.  Every system gets
# the same request, the caller's key in it (B0 and B1 read the header and
# B1 passes it on, as a bare proxy in front of a provider would): until
# 2026-12-02 B0 and B1 got it without, 69 bytes shorter
my @SYS = (
    [ 'B0',       sys => 'B0', key => $KEY ],
    [ 'B1',       sys => 'B1', key => $KEY ],
    [ 'G',        sys => 'G', key => $KEY ],
    [ 'L',        sys => 'L', key => $KEY ],
    ($LEDGER_IDLE ? [ 'G+ledger', sys => 'G', key => $KEY, ledger => 1 ]
                  : ()),
    [ 'G-edge',   sys => 'Gedge', key => $KEY ],
    [ 'LM',       sys => 'LM', key => $KEY ],
    ($NG{P} ? [ 'P', sys => 'P',
                env => { BENCH_PORTKEY => "http://127.0.0.1:$STUB/v1" } ]
            : ()),
    [ 'B1-stream', sys => 'B1', key => $KEY, env => { BENCH_STREAM => 1 } ],
    [ 'G-stream', sys => 'G', key => $KEY, env => { BENCH_STREAM => 1 } ],
    [ 'G-401',    sys => 'G', key => $BADKEY, expect => 401 ],
    [ 'G-429',    sys => 'G', key => $KEY429, expect => 429 ],
);
@SYS = grep { !%ONLY || $ONLY{ $_->[0] } } @SYS;
@SYS = () if $ENV{BENCH_DRAIN_ONLY};

my %RES;    # "name|conns" -> [results]

say("warm-up: ", join(' ', map { $_->[0] } @SYS), ", $C{warm}s each");
for my $s (@SYS) {
    my ($name, %o) = @$s;
    wrk(name => $name, %o, conns => $C{conns}[0], dur => $C{warm});
}

# The targets are read at the headline connection count (64; 32 quick),
# which gets more rounds: this machine has phases of a minute or two in
# which the systems running the most code of their own (G, LM) take up to
# half as much again a request while B1 and L barely change (README,
# "Performance", the run of 20:17), and with 3 rounds two could fall in
# one.  B1, G and L run back to back in each round.
my $HEAD = $C{conns}[ @{ $C{conns} } > 1 ? 1 : 0 ];
$C{head_rounds} //= $C{rounds};

for my $c (@{ $C{conns} }) {
    my $rounds = $c == $HEAD ? $C{head_rounds} : $C{rounds};
    for my $round (1 .. $rounds) {
        say("closed loop c=$c round $round/$rounds");
        for my $s (@SYS) {
            my ($name, %o) = @$s;
            push @{ $RES{"$name|$c"} },
                 wrk(name => $name, %o, conns => $c, dur => $C{dur});
        }
    }
}

# --- fixed rate: half of B1's peak -----------------------------------

sub med {
    my @v = sort { $a <=> $b } @_;
    return undef unless @v;
    return @v % 2 ? $v[$#v / 2] : ($v[@v / 2 - 1] + $v[@v / 2]) / 2;
}

my $b1_peak = max(map { med(map { $_->{rps} } @{ $RES{"B1|$_"} // [] }) // 0 }
                  @{ $C{conns} }) || 20000;
my $g_peak = max(map { med(map { $_->{rps} } @{ $RES{"G|$_"} // [] }) // 0 }
                 @{ $C{conns} }) || $b1_peak;
my $RATE_CAPPED = $g_peak < $b1_peak;
my $RATE = int(min($b1_peak, $g_peak) / 2 / 500) * 500 || 500;
my $rc_ = $C{rate_conns};
my $delay = $rc_ * 1000 / $RATE;

my @RSYS = grep { $_->[0] =~ /^(B0|B1|G|L|B1-stream|G-stream)$/ } @SYS;
my $RLABEL = "rate";

say("fixed rate: ~$RATE req/s (half of " . ($RATE_CAPPED ? "G" : "B1")
    . "'s peak; $rc_ connections, mean pause "
    . sprintf('%.2f', $delay) . " ms)");
# The drain is paused (SIGSTOP) during these runs: MariaDB and aihub-worker
# share CPU 0 with wrk and the stub upstream, and their bursts (the drain's
# INSERTs and COMMITs) would be counted as the gateway's latency.  Where
# the ledger runs on a host of its own, it costs the gateway no latency.
# One more G run a round with the drain working ("G+drain") shows what it
# costs on this box.  The events wait in Redis meanwhile, and are all in
# MariaDB at the end (checked below).
my $WPID = $t->{procs}{worker}{pid};
my $RDRAIN = "rate+drain";
# More rounds here than in the closed loop: one run's p99 moves by
# hundreds of µs from run to run on this machine, B1's as much as G's, and
# in step with it (both rise when the host is busy).  So each round runs
# the systems back to back, and the added latency is the median of the
# rounds' differences: G's run against the B1 run just before it.
my ($GSPEC) = grep { $_->[0] eq 'G' } @RSYS;

# What an event waiting in the stream costs Redis in memory (what bounds
# how long the ledger may be away): the growth of used_memory over a G run
# with the drain paused, divided by the events Redis confirmed in it.
our @EVENT_BYTES;

sub stream_memory {
    my ($mem) = $t->redis('INFO', 'memory') =~ /^used_memory:(\d+)/m;
    return ($mem // 0, ev_confirmed('G'));
}
for my $round (1 .. $C{rate_rounds}) {
    say("fixed rate round $round/$C{rate_rounds}");
    for my $s (@RSYS, $GSPEC ? ([ @$GSPEC, drain => 1 ]) : ()) {
        my ($name, %o) = @$s;
        my $drain = delete $o{drain};
        my %env = (%{ $o{env} // {} }, BENCH_DELAY_MS => $delay);
        kill 'STOP', $WPID unless $drain;
        my @m0 = !$drain && $o{sys} eq 'G' ? stream_memory() : ();
        push @{ $RES{"$name|" . ($drain ? $RDRAIN : $RLABEL)} },
             wrk(sys => $name, %o, name => $name . ($drain ? '+drain' : ''),
                 no_catch_up => 1,
                 env => \%env, conns => $rc_, dur => $C{dur}, rate => $RATE);
        if (@m0) {
            sleep 0.1;    # the last batches confirmed
            my @m1 = stream_memory();
            push @EVENT_BYTES, ($m1[0] - $m0[0]) / ($m1[1] - $m0[1])
                if $m1[1] > $m0[1];
        }
        kill 'CONT', $WPID unless $drain;
    }
}

# --- profile G if it misses its CPU target ---------------------------

sub agg {
    my ($k) = @_;
    my $l = $RES{$k} or return undef;
    my %a = (n => scalar @$l);
    for my $f (qw(rps cpu_us user_us core_us aux_us aux_redis aux_mariadb
                  aux_worker p50 p99 p999 core_busy load_busy)) {
        my @v = map { $_->{$f} } @$l;
        $a{$f} = med(@v);
        $a{"${f}_min"} = min(@v);
        $a{"${f}_max"} = max(@v);
    }
    $a{status} = sum(map { $_->{status} } @$l);
    my %codes;
    for my $r (@$l) {
        $codes{$_} += $r->{codes}{$_} for keys %{ $r->{codes} // {} };
    }
    $a{codes_str} = codes_str(\%codes);
    $a{codes_n} = keys %codes;
    $a{sockerr} = sum(map { $_->{sockerr} } @$l);
    $a{requests} = sum(map { $_->{requests} } @$l);
    return \%a;
}

my ($gA, $b1A) = (agg("G|$HEAD"), agg("B1|$HEAD"));
my $PROFILE = '';

if (!$ENV{BENCH_NO_PROFILE} && $gA && $b1A
    && ($b1A->{cpu_us} / $gA->{cpu_us} < 0.85 || $ENV{BENCH_PROFILE}))
{
    say("G misses G/B1 >= 0.85 by CPU: perf record on the G worker");
    my $pid = $NG{G}{workers}[0];
    my $pd = "$OUT/perf-G.data";
    $t->spawn('perf', [ 'perf', 'record', '-F', '2999', '-g', '-p', $pid,
                        '-o', $pd ], out => $t->dir . '/perf.out');
    sleep 1;
    my $c0 = commandstats();
    my $pr = wrk(name => 'G-profiled', sys => 'G', key => $KEY,
                 conns => $HEAD, dur => $QUICK ? 5 : 10);
    my $c1 = commandstats();
    my $req = $pr->{requests} || 1;
    my @cs;
    for my $cmd (sort keys %$c1) {
        my $dc = $c1->{$cmd}{calls} - ($c0->{$cmd}{calls} // 0);
        my $du = $c1->{$cmd}{usec} - ($c0->{$cmd}{usec} // 0);
        next unless $dc > 0;
        push @cs, sprintf('%-12s %6.3f calls/req  %6.2f µs/call  %6.2f µs/req',
                          $cmd, $dc / $req, $du / $dc, $du / $req);
    }
    $main::REDIS_CMDS = join "\n", "Redis commands during the profiled G "
        . "run ($req requests, INFO commandstats; Redis on CPU $LOAD_CPU):",
        @cs, sprintf('SUT %.1f µs/req; aux: Redis %.1f, MariaDB %.1f, '
                     . 'aihub-worker %.1f µs/req', $pr->{cpu_us},
                     $pr->{aux_redis}, $pr->{aux_mariadb},
                     $pr->{aux_worker});
    say($main::REDIS_CMDS);
    $t->stop_proc('perf', signal => 'INT', grace => 30);
    system("perf report -i $pd --no-children --percent-limit 0.7 --stdio "
           . "--sort symbol,dso -g none 2>/dev/null > $OUT/perf-G.txt");
    system("perf report -i $pd --children --percent-limit 2 --stdio "
           . "--sort symbol -g none 2>/dev/null > $OUT/perf-G-children.txt");
    $PROFILE = join "\n", grep { /%/ && !/^#/ }
               split /\n/, slurp("$OUT/perf-G.txt");
    my @top = (split /\n/, $PROFILE)[0 .. 24];
    $PROFILE = join "\n", grep { defined } @top;
    say("profile (self time, top 25):\n$PROFILE");
}

# --- usage events of the G runs: all in MariaDB -------------------------

# the events Redis confirmed to the aihub nginx instances still running
# (a stream entry carries up to 64 events: entries are not events); an
# instance's figures are added once, when it stops
my %EV_STOPPED;

sub ev_confirmed {
    my ($name) = @_;
    return metrics($name)->{'aihub_usage_events_total{state="confirmed"}'}
           // 0;
}

# the running aihub instances: (events Redis confirmed, events still
# buffered in the instances), with those of the stopped ones added
sub ev_running {
    my ($n, $buffered) = (0, 0);
    $n += $_ for values %EV_STOPPED;
    for my $name (grep { /^G/ && $NG{$_}{port} && !$EV_STOPPED{$_} }
                  keys %NG)
    {
        my $m = metrics($name);
        $n += $m->{'aihub_usage_events_total{state="confirmed"}'} // 0;
        $buffered += $m->{aihub_usage_events_buffered} // 0;
    }
    return ($n, $buffered);
}

# Done when the instances hold no event and the usage stream is empty:
# aihub-worker deletes an entry only once its batch is committed and
# ACKed, so an empty stream means every event Redis confirmed is stored
# (or dead-lettered).  Progress is the stream's length, asked of Redis on
# the harness's one connection; MariaDB counts its rows once, at the end
# (a COUNT(*) every 0.5 s took MariaDB CPU from the drain it waited for).
# Waits as long as the stream keeps shrinking; fails when it has not
# shrunk for BENCH_DRAIN_STALL s (30), or after BENCH_DRAIN_CAP s (1800).
sub wait_drain {
    my ($label) = @_;
    my $stall = $ENV{BENCH_DRAIN_STALL} // 30;
    my $cap = $ENV{BENCH_DRAIN_CAP} // 1800;
    my $t0 = time;
    my ($added, $buffered, $len, $why);
    my $len0 = $t->redis('XLEN', 'aihub:usage');
    my ($low, $moved) = ($len0, $t0);
    for (;;) {
        $len = $t->redis('XLEN', 'aihub:usage');
        ($low, $moved) = ($len, time) if $len < $low;
        if ($len == 0) {
            ($added, $buffered) = ev_running();
            # confirmed before the stream was seen empty: all drained
            last if !$buffered && $t->redis('XLEN', 'aihub:usage') == 0;
        }
        if (time - $moved > $stall) {
            $why = sprintf 'the usage stream stuck at %d entries for %d s'
                   . '%s', $len, $stall, $buffered ? ", $buffered events "
                   . "still buffered in nginx" : '';
            last;
        }
        if (time - $t0 > $cap) {
            $why = "the usage stream still has $len entries after $cap s";
            last;
        }
        sleep 0.25;
    }
    ($added, $buffered) = ev_running() if $why;
    my $rows = $t->sql_value('SELECT COUNT(*) FROM usage_events');
    my $dead = eval { $t->redis('XLEN', 'aihub:usage:dead') } // 0;
    say(sprintf "%s: %d events emitted, %d rows in usage_events, %d dead, "
        . "%d G 2xx answers counted by wrk (+ <= %d in flight), %d stream "
        . "entries drained in %.1fs", $label, $added, $rows, $dead,
        $G_OK + $G_CURL_OK, $G_INFLIGHT, $len0 - $len, time - $t0);
    if ($why) {
        my $w = $t->{procs}{worker};
        my $st = $w && $t->alive('worker')
                 && slurp("/proc/$w->{pid}/stat") =~ /\) (\S)/
                 ? "state $1 in /proc" : 'gone';
        fail("$label: drain not finished: $why (aihub-worker $st)");
    }
    fail("$label: $added events emitted but $rows in MariaDB")
        if $rows != $added;
    fail("$label: $dead events in the dead-letter stream") if $dead;
    fail("$label: $added events < " . ($G_OK + $G_CURL_OK)
         . " successful G requests") if $added < $G_OK + $G_CURL_OK;
    fail("$label: $added events > successful + in-flight")
        if $added > $G_OK + $G_CURL_OK + $G_INFLIGHT;
    return ($added, $rows);
}

status_report('after the G runs', [ qw(G Gedge) ], \%MET0);
my ($EV_ADDED, $EV_ROWS) = wait_drain('events after the G runs');

# --- memory: 1M requests over 100k keys, small zone ---------------------

my %MEM;
my @B62 = ("0" .. "9", "A" .. "Z", "a" .. "z");

unless ($ENV{BENCH_NO_MEMORY} || $ENV{BENCH_DRAIN_ONLY}) {
    $EV_STOPPED{G} = ev_confirmed('G');
    stop_ngx('G');
    aihub_conf('Gmem', $C{zone});
    start_ngx('Gmem', $SUT_CPU);
    $MET0{Gmem} = metrics('Gmem');

    say("memory: seeding $C{mem_keys} keys into Redis");
    my @keys;
    my $resp = '';
    for my $i (1 .. $C{mem_keys}) {
        my $random = join '', map { $B62[rand 62] } 1 .. 32;
        my $crc = Compress::Zlib::crc32($random);
        my $check = '';
        for (1 .. 6) { $check = $B62[$crc % 62] . $check;
                       $crc = int($crc / 62); }
        my $k = "ai-hub-$random$check";
        push @keys, $k;
        $resp .= Aihub::resp_encode('HSET', 'aihub:key:' . sha256_hex($k),
            account => $ACCOUNT, prefix => substr($k, 0, 15), plan => 'pro',
            status => 'active', scopes => 'chat', expires => 0,
            models => '*', included => 2000000000, overage => 1, rpm => 0,
            tpm => 0, spend_cap => 0, max_tokens => 0, anchor => 0,
            created => time);
    }
    die "crc32 mismatch\n" unless Aihub::make_key(substr($keys[0], 7, 32))
                                  eq $keys[0];
    spew($t->dir . '/seed.resp', $resp);
    system("redis-cli -p " . $t->redis_port . " --pipe < " . $t->dir
           . "/seed.resp > " . $t->dir . "/seed.out 2>&1") == 0
        or die "redis-cli --pipe failed: " . slurp($t->dir . '/seed.out');
    spew($t->dir . '/keys.txt', join("\n", @keys) . "\n");
    spew($t->dir . '/keys-sample.txt',
         join("\n", @keys[0 .. $C{mem_sample} - 1]) . "\n");

    my $pid = $NG{Gmem}{workers}[0];
    my $zone_kb = zone_kb($C{zone});
    my %m0 = (rss => rss_kb($pid), zone => zone_rss_kb($pid, $zone_kb),
              keys => metrics('Gmem')->{aihub_cache_keys} // 0);

    # a few distinct keys (fit in the zone): bytes per cached key
    my $r = wrk(name => 'Gmem-sample', sys => 'Gmem', conns => 8,
                dur => 2, env => { BENCH_KEYS_FILE =>
                                   $t->dir . '/keys-sample.txt' });
    my %m1 = (rss => rss_kb($pid), zone => zone_rss_kb($pid, $zone_kb),
              keys => metrics('Gmem')->{aihub_cache_keys} // 0);

    say("memory: $C{mem_requests} requests over $C{mem_keys} keys, "
        . "zone $C{zone}");
    my $done = 0;
    my $rate = $r->{rps} || 5000;
    my @runs;
    my $t0 = time;
    while ($done < $C{mem_requests}) {
        my $d = ceil(($C{mem_requests} - $done) / $rate);
        $d = 30 if $d > 30;
        $d = 1 if $d < 1;
        my $x = wrk(name => 'Gmem', sys => 'Gmem', conns => 64, dur => $d,
                    env => { BENCH_KEYS_FILE => $t->dir . '/keys.txt' });
        push @runs, $x;
        $done += $x->{requests};
        $rate = $x->{rps} || $rate;
    }
    my $mm = metrics('Gmem');
    my %m2 = (rss => rss_kb($pid), zone => zone_rss_kb($pid, $zone_kb),
              keys => $mm->{aihub_cache_keys} // 0);
    $MEM{zone_bytes} = $mm->{aihub_cache_zone_bytes};
    $MEM{dropped} = $mm->{'aihub_usage_events_total{state="dropped"}'};
    logf("Gmem metrics: ", join ' ', map { "$_=$mm->{$_}" } sort keys %$mm);
    %MEM = (%MEM, m0 => \%m0, m1 => \%m1, m2 => \%m2, zone_kb => $zone_kb,
            requests => $done, rps => $done / (time - $t0),
            cpu_us => sum(map { $_->{cpu_us} * $_->{requests} } @runs)
                      / $done,
            p99 => med(map { $_->{p99} } @runs),
            sample => $C{mem_sample},
            per_key_pages => ($m1{zone} - $m0{zone}) * 1024 / $C{mem_sample},
            per_key => $m2{keys} ? ($MEM{zone_bytes} // $zone_kb * 1024)
                                   / $m2{keys} : 0);
    say(sprintf "memory: RSS %d -> %d -> %d kB, zone touched %d -> %d -> %d"
        . " kB of %d kB, keys cached %d -> %d -> %d, %.0f bytes per cached "
        . "key (zone / keys when full)", $m0{rss}, $m1{rss},
        $m2{rss}, $m0{zone}, $m1{zone}, $m2{zone}, $zone_kb, $m0{keys},
        $m1{keys}, $m2{keys}, $MEM{per_key});
    fail("memory: $MEM{dropped} usage events dropped") if $MEM{dropped};
    fail("memory: zone grew beyond its size") if $m2{zone} > $zone_kb;

    status_report('after the memory run', [ 'Gmem' ], \%MET0);
    ($EV_ADDED, $EV_ROWS) = wait_drain('events after the memory run');
}

sub rss_kb {
    my ($pid) = @_;
    return (slurp("/proc/$pid/status") =~ /^VmRSS:\s+(\d+)/m)[0] // 0;
}

sub zone_kb {
    my ($z) = @_;
    my ($n, $u) = $z =~ /^(\d+)([km]?)$/i;
    return $u =~ /m/i ? $n * 1024 : $u =~ /k/i ? $n : $n / 1024;
}

# Rss of the shared mappings of exactly the zone's size
sub zone_rss_kb {
    my ($pid, $kb) = @_;
    my $sm = slurp("/proc/$pid/smaps");
    my $tot = 0;
    for my $blk (split /\n(?=[0-9a-f]+-[0-9a-f]+ )/, $sm) {
        next unless $blk =~ /^\S+ rw-s .*(?:zero|SYSV)/;
        my ($size) = $blk =~ /^Size:\s+(\d+) kB/m;
        next unless $size && $size >= $kb && $size <= $kb + 8;
        my ($rss) = $blk =~ /^Rss:\s+(\d+) kB/m;
        $tot += $rss;
    }
    return $tot;
}

# --- worker drain vs a batched INSERT ------------------------------------

# MariaDB with no dirty page left to flush: the G runs leave millions of
# rows in its buffer pool that InnoDB writes back in the background, on
# the CPU the drain and the baseline use; each is timed from a quiet
# MariaDB (flushed by innodb_max_dirty_pages_pct 0, then the setting back)

sub mariadb_quiet {
    my ($why) = @_;
    my $var = sub {
        my ($q) = @_;
        my @r = $t->sql_root($q);
        return @r ? $r[0][1] : undef;
    };
    my %old = map {
        $_ => $var->("SHOW GLOBAL VARIABLES LIKE '$_'")
    } qw(innodb_max_dirty_pages_pct innodb_io_capacity_max
         innodb_io_capacity);
    my $dirty = sub {
        $var->("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'")
    };
    my ($d0, $t0) = ($dirty->(), time);
    $t->sql_root('SET GLOBAL innodb_io_capacity_max = 100000');
    $t->sql_root('SET GLOBAL innodb_io_capacity = 100000');
    $t->sql_root('SET GLOBAL innodb_max_dirty_pages_pct = 0');
    $t->wait_for(sub { $dirty->() == 0 }, timeout => 180, interval => 0.5);
    $t->sql_root("SET GLOBAL $_ = $old{$_}")
        for qw(innodb_max_dirty_pages_pct innodb_io_capacity
               innodb_io_capacity_max);
    my $t1 = time;

    # and done with the rest of its background work (purge, change buffer
    # merges): less than 2% of a CPU over a second
    my $pid = $t->{procs}{mariadb}{pid};
    $t->wait_for(sub {
        my $c0 = proc_ticks($pid);
        sleep 1;
        return (proc_ticks($pid) - $c0) / $HZ < 0.02;
    }, timeout => 120, interval => 0);
    say(sprintf "%s: MariaDB flushed %d dirty pages in %.1f s (%d left), "
        . "then idle after %.1f s", $why, $d0, $t1 - $t0, $dirty->(),
        time - $t1);
}

my %DRAIN;

unless ($ENV{BENCH_NO_DRAIN}) {
    ledger_prio('other');    # MariaDB as the baseline finds it
    $t->stop_worker;
    my $n = $C{drain_events};
    say("drain: pre-filling $n events");
    $t->sql_root('CREATE DATABASE IF NOT EXISTS aihub_drain '
                 . 'CHARACTER SET utf8mb4');
    $t->sql_root('CREATE DATABASE IF NOT EXISTS aihub_base '
                 . 'CHARACTER SET utf8mb4');
    my @fl = ('--redis', $t->redis_addr, '--redis-prefix', 'drain:',
              '--mysql-socket', $t->mysql_socket, '--mysql-user', 'root');
    for my $db (qw(aihub_drain aihub_base)) {
        my ($rc, $o, $e) = $t->run_cmd([ $Aihub::WORKER, @fl,
            '--mysql-db', $db, 'migrate', '--sql-dir', "$ROOT/sql" ],
            timeout => 120);
        die "migrate $db: $o$e\n" if $rc;
    }

    # entries as a busy node writes them: one "events" field of up to
    # AIHUB_USAGE_EVENTS_MAX events, one per line (BENCH_DRAIN_PER: fewer)
    my ($max) = slurp("$ROOT/ngx_aihub_module/aihub_protocol.h")
                =~ /#define AIHUB_USAGE_EVENTS_MAX\s+(\d+)/
        or die "AIHUB_USAGE_EVENTS_MAX not found\n";
    my $per = min($ENV{BENCH_DRAIN_PER} || $max, $max);
    my $now = int(time * 1000);
    my ($resp, $sql) = ('', '');
    my (@rows, @entry);
    for my $i (1 .. $n) {
        # as the module makes them: the time in ms, then random digits
        my $id = sprintf '%012x%08x%012x', $now + $i, int rand 0xffffffff,
                         $i;
        my $ev = sprintf '{"v":1,"id":"%s","ts":%d,"node":"bench",'
            . '"account":%d,"key":"ai-hub-bench000","plan":"pro",'
            . '"model":"mock-basic","provider":"mock","prompt_tokens":24,'
            . '"completion_tokens":27,"total_tokens":51,"cost_micros":20,'
            . '"status":200,"streamed":false,"aborted":false,'
            . '"estimated":false,"latency_ms":1}', $id, $now + $i,
            $ACCOUNT;
        push @entry, $ev;
        if (@entry == $per || $i == $n) {
            $resp .= Aihub::resp_encode('XADD', 'drain:usage', '*', 'events',
                                        join("\n", @entry));
            @entry = ();
        }
        my $ts = strftime('%Y-%m-%d %H:%M:%S', gmtime(($now + $i) / 1000))
                 . sprintf('.%03d', ($now + $i) % 1000);
        push @rows, "('$id','$ts',$ACCOUNT,'ai-hub-bench000','pro',"
                  . "'mock-basic','mock',24,27,51,20,200,0,0,0,1,'bench')";
    }
    for (my $i = 0; $i < @rows; $i += 500) {
        my $e = min($i + 499, $#rows);
        $sql .= 'INSERT INTO usage_events (event_id, ts, account, key_prefix,'
              . ' plan, model, provider, prompt_tokens, completion_tokens,'
              . ' total_tokens, cost_micros, status, streamed, aborted,'
              . " estimated, latency_ms, node) VALUES\n"
              . join(",\n", @rows[$i .. $e]) . ";\n";
    }
    spew($t->dir . '/drain.resp', $resp);
    spew($t->dir . '/baseline.sql', $sql);
    system("redis-cli -p " . $t->redis_port . " --pipe < " . $t->dir
           . "/drain.resp > " . $t->dir . "/drain.out 2>&1") == 0
        or die "redis-cli --pipe: " . slurp($t->dir . '/drain.out');

    # aihub-worker run until every row is in
    mariadb_quiet('drain');
    my $t0 = time;
    my $my0 = proc_ticks($t->{procs}{mariadb}{pid});
    my $rd0 = proc_ticks($t->{procs}{redis}{pid});
    my $batch = $ENV{BENCH_DRAIN_BATCH};
    my $insert = $ENV{BENCH_DRAIN_INSERT};
    $t->spawn('drainer', [ $Aihub::WORKER, @fl,
                           '--mysql-db', 'aihub_drain', 'run',
                           ($batch ? ('--batch', $batch) : ()),
                           ($insert ? ('--insert', $insert) : ()) ],
              out => $t->dir . '/drainer.log');
    my $wpid = $t->{procs}{drainer}{pid};
    my $wt = 0;

    # done when the stream is empty: the worker deletes an entry only once
    # its batch is committed and ACKed.  Asked of Redis on one connection
    # every 10 ms, not of MariaDB (a client process and a COUNT(*) scan
    # every 0.1 s took MariaDB CPU from the drain it timed); the rows are
    # counted once the drain is over.
    while (time - $t0 < 300) {
        $wt = proc_ticks($wpid) || $wt;
        last if $t->redis('XLEN', 'drain:usage') == 0;
        sleep 0.01;
    }
    my $dt = time - $t0;
    $wt = proc_ticks($wpid) || $wt;
    my $my1 = proc_ticks($t->{procs}{mariadb}{pid});
    my $rd1 = proc_ticks($t->{procs}{redis}{pid});
    my $rows = ($t->sql_in('aihub_drain',
                           'SELECT COUNT(*) FROM usage_events'))[0][0] // 0;
    my %cpu_ev = (worker => $wt / $HZ * 1e6 / $n,
                  mariadb => ($my1 - $my0) / $HZ * 1e6 / $n,
                  redis => ($rd1 - $rd0) / $HZ * 1e6 / $n);
    $t->stop_proc('drainer', grace => 10);
    fail("drain: only $rows of $n events stored in 300 s") if $rows < $n;

    # the baseline: the same rows, batched INSERTs of 500, autocommit
    mariadb_quiet('baseline');
    my $bm0 = proc_ticks($t->{procs}{mariadb}{pid});
    my $b0 = time;
    system("mariadb --no-defaults -uroot --socket=" . $t->mysql_socket
           . " aihub_base < " . $t->dir . "/baseline.sql") == 0
        or fail("baseline INSERT failed");
    my $bt = time - $b0;
    my $bcpu = (proc_ticks($t->{procs}{mariadb}{pid}) - $bm0) / $HZ * 1e6 / $n;
    my $brows = ($t->sql_in('aihub_base', 'SELECT COUNT(*) FROM usage_events'))[0][0];
    %DRAIN = (n => $n, worker_s => $dt, worker_eps => $rows / $dt,
              base_s => $bt, base_eps => $brows / $bt, cpu => \%cpu_ev,
              base_cpu => $bcpu, batch => $batch // 'default (512)',
              per => $per);
    say(sprintf "drain: aihub-worker %.0f events/s (%.1f s), batched INSERT"
        . " %.0f rows/s (%.1f s), ratio %.2f; CPU µs/event: worker %.1f, "
        . "MariaDB %.1f, Redis %.1f; baseline MariaDB %.1f",
        $DRAIN{worker_eps}, $dt, $DRAIN{base_eps}, $bt,
        $DRAIN{worker_eps} / $DRAIN{base_eps}, $cpu_ev{worker},
        $cpu_ev{mariadb}, $cpu_ev{redis}, $bcpu);
}

# --- error logs ---------------------------------------------------------

for my $name (sort keys %NG) {
    next unless $NG{$name}{dir};
    for (split /\n/, slurp("$NG{$name}{dir}/error.log")) {
        fail("nginx $name error log: $_") if /\[(alert|crit|emerg)\]/;
    }
}

# --- the table ------------------------------------------------------------

my @md;
my $when = strftime('%Y-%m-%d %H:%M UTC', gmtime);
my $cpu = (grep { /^model name/ } split /\n/, slurp('/proc/cpuinfo'))[0]
          // '';
$cpu =~ s/^model name\s*:\s*//;
my $kernel = `uname -r`; chomp $kernel;
my $nver = `$NGINX -v 2>&1`; chomp $nver; $nver =~ s/^.*\///;

push @md, "# aihub benchmark results", '',
    "Run: $when, " . ($QUICK ? '**quick** (BENCH_QUICK=1)' : '**full**')
    . " mode, `./build.sh bench`. Machine: " . `nproc` =~ s/\s+//r
    . " cores, $cpu, Linux $kernel, nginx $nver (Debian), "
    . "wrk 4.1 (1 thread). Load average before the run: $LOAD0, after: "
    . (split ' ', slurp('/proc/loadavg'))[0]
    . ($LOAD0 > 0.5 ? ' (**other work was running on this machine**: '
       . 'req/s and latencies are disturbed; CPU µs/req of the SUT '
       . 'process is the robust figure)' : '') . '.', '',
    "Each system under test has one nginx worker (Portkey: one node "
    . "process) pinned to CPU $SUT_CPU; wrk and the stub upstream run on "
    . "CPU $LOAD_CPU, Redis, MariaDB and aihub-worker on CPU $AUX_CPU "
    . "(BENCH_AUX_CPU)"
    . ($LEDGER_IDLE ? ", MariaDB and aihub-worker at SCHED_IDLE: they "
       . "drain on what CPU $AUX_CPU leaves, and each run starts once the "
       . "events of the runs before it are stored" : '')
    . "; the drain waits (SIGSTOP) while an aihub instance is measured "
    . "and stores its events right after the run (its CPU in the aux "
    . "column)"
    . ($LEDGER_IDLE ? " (G+ledger: G with the ledger at its normal "
       . "priority, draining during the run)" : '')
    . ". Closed loop: "
    . "$C{rounds} interleaved rounds of $C{dur} s per connection count "
    . "($C{head_rounds} at c=$HEAD, where the targets are read; B1, G and "
    . "L back to back in each) after a $C{warm} s warm-up; figures are "
    . "medians over rounds, "
    . "[min–max] where shown. **CPU µs/req** = utime+stime of the SUT "
    . "process(es) from /proc/PID/stat over the run, divided by the "
    . "requests wrk counted (the primary figure: CPU $LOAD_CPU saturates "
    . "first, so req/s understates the differences); *user* = its utime "
    . "part (the SUT's own code; the rest is the kernel's work for its "
    . "system calls); *core* = all busy "
    . "time of CPU $SUT_CPU from /proc/stat (includes softirq/loopback "
    . "work); *aux* = Redis + MariaDB + aihub-worker CPU per request "
    . "(on CPU $AUX_CPU; a G run's until its events are stored); "
    . "*busy* = how busy CPU $SUT_CPU and CPU "
    . "$LOAD_CPU were during the run (a closed loop stops at the first "
    . "core that saturates). Latencies from wrk, µs; wrk's timeout is 5 s "
    . "(30 s for Portkey, whose p99 at 256 connections is seconds).", '';

push @md, '| system | conns | req/s [min–max] | CPU µs/req [min–max] '
    . '| user µs/req | core µs/req | aux µs/req (Redis/MariaDB/worker) '
    . "| busy CPU $SUT_CPU / $LOAD_CPU | p50 | p99 | p99.9 | non-2xx "
    . '| socket err |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|';

my @order = map { $_->[0] } @SYS;

for my $c (@{ $C{conns} }, $RLABEL, $RDRAIN) {
    for my $name (@order) {
        my $a = agg("$name|$c") or next;
        my $exp = $name =~ /401|429/ ? ' (expected)'
                : $a->{codes_n} ? " ($a->{codes_str})" : '';
        push @md, sprintf '| %s | %s | %s [%s–%s] | %.1f [%.1f–%.1f] | %.1f '
            . '| %.1f | %.1f (%.1f/%.1f/%.1f) | %.0f%% / %.0f%% | %d | %d '
            . '| %d | %d%s | %d |',
            $name, $c eq $RLABEL ? "$rc_ @ ~$RATE/s, drain paused"
                   : $c eq $RDRAIN ? "$rc_ @ ~$RATE/s, drain running" : $c,
            fmt_n($a->{rps}), fmt_n($a->{rps_min}), fmt_n($a->{rps_max}),
            $a->{cpu_us}, $a->{cpu_us_min}, $a->{cpu_us_max}, $a->{user_us},
            $a->{core_us}, $a->{aux_us}, $a->{aux_redis}, $a->{aux_mariadb},
            $a->{aux_worker}, 100 * $a->{core_busy}, 100 * $a->{load_busy},
            $a->{p50}, $a->{p99}, $a->{p999}, $a->{status}, $exp,
            $a->{sockerr};
    }
}

sub fmt_n { my $n = sprintf '%.0f', shift; 1 while $n =~ s/^(\d+)(\d{3})/$1,$2/; $n }

# ratios

my @TG;    # target lines

sub ratio_row {
    my ($num, $den, $c) = @_;
    my ($x, $y) = (agg("$num|$c"), agg("$den|$c"));
    return unless $x && $y;
    return ($x->{rps} / $y->{rps}, $y->{cpu_us} / $x->{cpu_us});
}

push @md, '', '## Ratios (medians; by CPU = CPU/req of the other / CPU/req'
    . ' of G, so higher is better for G)', '',
    '| ratio | ' . join(' | ', map { "c=$_ req/s | c=$_ CPU" }
                             @{ $C{conns} }) . ' |',
    '|---|' . join('', map { '---:|---:|' } @{ $C{conns} });

for my $p ([ 'G', 'B1' ], [ 'G+ledger', 'B1' ], [ 'G-edge', 'B1' ],
           [ 'G', 'B0' ], [ 'G', 'L' ], [ 'G+ledger', 'L' ],
           [ 'G', 'LM' ], [ 'G', 'P' ],
           [ 'G-401', 'B0' ], [ 'G-429', 'B0' ], [ 'G-stream', 'B1-stream' ],
           [ 'L', 'B1' ])
{
    my @cells;
    for my $c (@{ $C{conns} }) {
        my @r = ratio_row(@$p, $c);
        push @cells, @r ? (sprintf('%.3f', $r[0]), sprintf('%.3f', $r[1]))
                        : ('–', '–');
    }
    push @md, "| $p->[0] / $p->[1] | " . join(' | ', @cells) . ' |';
}

# the same CPU ratios round by round at the headline connection count:
# each run against the other system's run of the same round (the machine's
# speed drifts between rounds; a pair within one round shares it)

sub round_ratios {
    my ($num, $den, $c) = @_;
    my ($xl, $yl) = ($RES{"$num|$c"}, $RES{"$den|$c"});
    return () unless $xl && $yl && @$xl && @$xl == @$yl;
    return map { $yl->[$_]{cpu_us} / $xl->[$_]{cpu_us} } 0 .. $#$xl;
}

my @RR;
for my $p ([ 'G', 'B1' ], [ 'G', 'L' ], [ 'G', 'LM' ], [ 'L', 'B1' ],
          [ 'G+ledger', 'B1' ], [ 'G+ledger', 'L' ]) {
    my @r = round_ratios(@$p, $HEAD);
    push @RR, "$p->[0] / $p->[1] " . join(', ', map { sprintf '%.3f', $_ } @r)
        if @r;
}
push @md, '', "By CPU at c=$HEAD, round by round: " . join('; ', @RR) . '.'
    if @RR;

# added latency at the fixed rate: the median of the rounds' differences
# (each run of the first against the run of the second in its round)

sub added {
    my ($xk, $yk) = @_;
    my ($xl, $yl) = ($RES{$xk}, $RES{$yk});
    return undef unless $xl && $yl && @$xl && @$xl == @$yl;
    my %a;
    for my $f (qw(p50 p99 p999)) {
        my @d = map { $xl->[$_]{$f} - $yl->[$_]{$f} } 0 .. $#$xl;
        $a{$f} = med(@d);
        $a{"${f}_all"} = [@d];
        # the difference of the medians, for comparison
        $a{"${f}_meds"} = med(map { $_->{$f} } @$xl)
                        - med(map { $_->{$f} } @$yl);
    }
    return \%a;
}

my $ga = added("G|$RLABEL", "B1|$RLABEL");
my $gsa = added("G-stream|$RLABEL", "B1-stream|$RLABEL");
my $gda = added("G|$RDRAIN", "B1|$RLABEL");
push @md, '', "## Added latency of G over B1 at ~$RATE req/s (half of "
    . ($RATE_CAPPED ? sprintf("G's peak of %.0f req/s: half of B1's peak, "
                              . "%.0f, would overload G", $g_peak,
                              $b1_peak / 2)
                    : "B1's peak")
    . "; wrk with a randomised per-connection pause, $rc_ connections; "
    . "the req/s column above shows the rate reached; the drain paused, "
    . "but in the G+drain row)", '',
    "$C{rate_rounds} rounds of $C{dur} s; in each, the systems run back "
    . "to back, and a row's figure is the median of the rounds' "
    . "differences (its run against the other's run in the same round). "
    . "The last columns give each round's p99 difference, and the "
    . "difference of the two medians in the table above.", '',
    '| pair | added p50 µs | added p99 µs | added p99.9 µs '
    . '| p99 differences by round | p99 medians\' difference |',
    '|---|---:|---:|---:|---|---:|';
for my $pp ([ 'G − B1', $ga ], [ 'G-stream − B1-stream', $gsa ],
            [ 'G+drain − B1 (drain running on CPU 0)', $gda ]) {
    my ($l, $d) = @$pp;
    next unless $d;
    push @md, sprintf '| %s | %d | %d | %d | %s | %d |', $l, $d->{p50},
        $d->{p99}, $d->{p999}, join(', ', @{ $d->{p99_all} }),
        $d->{p99_meds};
}

# targets

my $H = $HEAD;
my @rG = ratio_row('G', 'B1', $H);
my @rP = ratio_row('G', 'P', $H);
my @r401 = ratio_row('G-401', 'B0', $H);
my @r429 = ratio_row('G-429', 'B0', $H);

sub tgt {
    my ($what, $ok, $val) = @_;
    push @TG, sprintf '| %s | %s | %s |', $what, $val,
        !defined $ok ? 'n/a' : $ok ? 'met' : '**missed**';
}

tgt('G/B1 ≥ 0.85 by req/s', @rG ? $rG[0] >= 0.85 : undef,
    @rG ? sprintf('%.3f', $rG[0]) : '–');
tgt('G/B1 ≥ 0.85 by CPU/req', @rG ? $rG[1] >= 0.85 : undef,
    @rG ? sprintf('%.3f', $rG[1]) : '–');
my @rL = ratio_row('G', 'L', $H);
my @rLM = ratio_row('G', 'LM', $H);
tgt('G/L ≥ 1 by CPU/req (issue 10)', @rL ? $rL[1] >= 1 : undef,
    @rL ? sprintf('%.3f', $rL[1])
          . (@rLM ? sprintf(' (G/LM, the same metering in Lua: %.3f)',
                            $rLM[1]) : '') : '–');
tgt('added p50 ≤ 100 µs at half load', $ga ? $ga->{p50} <= 100 : undef,
    $ga ? "$ga->{p50} µs" : '–');
tgt('added p99 ≤ 500 µs at half load', $ga ? $ga->{p99} <= 500 : undef,
    $ga ? "$ga->{p99} µs" : '–');
tgt('G/P ≥ 40 (req/s)', @rP ? $rP[0] >= 40 : undef,
    @rP ? sprintf('%.1f (CPU: %.1f)', @rP) : '–');
tgt('G/P ≥ 60 by CPU/req (issue 10)', @rP ? $rP[1] >= 60 : undef,
    @rP ? sprintf('%.1f', $rP[1]) : '–');
tgt('Redis CPU per G request ≤ 3 µs (issue 10)',
    $gA ? $gA->{aux_redis} <= 3 : undef,
    $gA ? sprintf('%.1f µs', $gA->{aux_redis}) : '–');
tgt('G-401 ≥ 0.8 of B0 (req/s; CPU)', @r401 ? min(@r401) >= 0.8 : undef,
    @r401 ? sprintf('%.3f; %.3f', @r401) : '–');
tgt('G-429 ≥ 0.8 of B0 (req/s; CPU)', @r429 ? min(@r429) >= 0.8 : undef,
    @r429 ? sprintf('%.3f; %.3f', @r429) : '–');
tgt('streaming adds ≤ 1 ms p99 (G-stream − B1-stream, half load)',
    $gsa ? $gsa->{p99} <= 1000 : undef, $gsa ? "$gsa->{p99} µs" : '–');
if (%DRAIN) {
    tgt('worker drain ≥ 0.8 of batched INSERT (issue 10; issue 6: 0.5)',
        $DRAIN{worker_eps} / $DRAIN{base_eps} >= 0.8,
        sprintf('%.2f', $DRAIN{worker_eps} / $DRAIN{base_eps}));
    tgt('worker drain ≥ 20,000 events/s', $DRAIN{worker_eps} >= 20000,
        fmt_n($DRAIN{worker_eps}) . ' events/s');
}

push @md, '', "## Targets (issues 6 and 10; closed loop at c=$H)", '',
    '| target | value | |', '|---|---:|---|', @TG;

push @md, '', '## Usage events', '',
    (@EVENT_BYTES
     ? (sprintf('Redis memory an event waiting in the stream: %.0f bytes '
                . '(median of %d G runs at the fixed rate with the drain '
                . 'paused: used_memory\'s growth over the run / the events '
                . 'Redis confirmed in it; %s).', med(@EVENT_BYTES),
                scalar @EVENT_BYTES,
                join(', ', map { sprintf '%.0f', $_ } @EVENT_BYTES)), '')
     : ()),
    "$EV_ADDED usage events emitted by the G runs (confirmed by Redis, "
    . "from the instances' /metrics), "
    . "$EV_ROWS rows in usage_events after the drain; " . ($G_OK + $G_CURL_OK)
    . " successful G answers counted by wrk/curl (wrk does not count the "
    . "requests in flight when it stops, at most $G_INFLIGHT).";

if (%DRAIN) {
    push @md, '', '## Worker drain', '',
        "| | events | seconds | events/s | CPU µs/event |",
        '|---|---:|---:|---:|---|',
        sprintf('| aihub-worker run, batch %s (pre-filled stream of entries '
                . 'of %d events, as the module writes them under load → '
                . 'MariaDB) | %d | %.2f | %s | worker %.1f, MariaDB %.1f, '
                . 'Redis %.1f |',
                $DRAIN{batch}, $DRAIN{per}, $DRAIN{n}, $DRAIN{worker_s},
                fmt_n($DRAIN{worker_eps}), $DRAIN{cpu}{worker},
                $DRAIN{cpu}{mariadb}, $DRAIN{cpu}{redis}),
        sprintf('| baseline: batched INSERT, 500 rows/statement, autocommit '
                . '| %d | %.2f | %s | MariaDB %.1f |', $DRAIN{n},
                $DRAIN{base_s}, fmt_n($DRAIN{base_eps}), $DRAIN{base_cpu});
}

if (%MEM) {
    push @md, '', '## Memory (G, small cache zone)', '',
        "$MEM{requests} requests over $C{mem_keys} distinct keys through "
        . "`aihub_cache_zone aihub:$C{zone}` (so entries are evicted); "
        . sprintf("%.0f req/s, %.1f CPU µs/req, p99 %d µs (misses go to "
                  . "Redis).", $MEM{rps}, $MEM{cpu_us}, $MEM{p99}), '',
        '| | worker RSS kB | zone pages touched kB (of '
        . "$MEM{zone_kb}) | keys cached (aihub_metrics) |", '|---|---:|---:|---:|',
        "| start | $MEM{m0}{rss} | $MEM{m0}{zone} | $MEM{m0}{keys} |",
        "| after $MEM{sample} distinct keys | $MEM{m1}{rss} | $MEM{m1}{zone} "
        . "| $MEM{m1}{keys} |",
        "| after $MEM{requests} requests | $MEM{m2}{rss} | $MEM{m2}{zone} "
        . "| $MEM{m2}{keys} |",
        '', sprintf('Bytes per cached key: %.0f (zone size / keys cached '
                    . 'once full); %.0f by pages touched for the first %d '
                    . 'keys.', $MEM{per_key}, $MEM{per_key_pages},
                    $MEM{sample});
}

if ($PROFILE) {
    push @md, '', "## Profile of the G worker (perf, c=$H, self time)", '',
        '```', $PROFILE, '```';
}
if ($main::REDIS_CMDS) {
    push @md, '', '```', $main::REDIS_CMDS, '```';
}

if (@FAIL) {
    push @md, '', '## FAILURES', '', map { "- $_" } @FAIL;
}

my $md = join("\n", @md) . "\n";
spew("$OUT/RESULTS.md", $md);
spew("$BENCH/RESULTS.md", $md) unless $ENV{BENCH_NO_RESULTS};
print "\n$md\n";

$t->stop_all;

if (@FAIL) {
    print STDERR "bench: FAILED:\n", map { "  $_\n" } @FAIL;
    exit 1;
}
say("done");
exit 0;
