package Aihub;

=head1 NAME

Aihub - test harness for aihub: throwaway Redis, MariaDB, mock provider,
nginx with ngx_http_aihub_module and aihub-worker, on free loopback ports

=head1 SYNOPSIS

    use Test::More;
    use lib 't/lib';
    use Aihub;

    my $t = Aihub->new(redis => 1, mariadb => 1, mock => 1);
    $t->migrate;
    my $key = $t->create_key(account => 'acme', plan => 'free');

    # the contents of http{}, as this test runs them
    $t->nginx(<<'END')->start_nginx;
        aihub_redis %%REDIS%%;
        aihub_cache_zone aihub:8m;
        aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;

        server {
            listen 127.0.0.1:%%PORT%%;

            location /v1/ {
                aihub on;
                proxy_pass $aihub_proxy_url;
                proxy_set_header Host $aihub_provider_host;
            }
        }
    END
    $t->start_worker;

    my $r = $t->http(POST => '/v1/chat/completions', key => $key,
                     body => { model => 'mock-basic',
                               messages => [{ role => 'user',
                                              content => 'hi' }] });
    is($r->{status}, 200, 'answered');
    is($r->{json}{usage}{completion_tokens}, 7, 'usage passed through');

    $t->done;    # stops everything, checks the error logs, done_testing

=head1 DESCRIPTION

Each test file starts what it needs in its own temporary directory
(removed at the end unless C<AIHUB_KEEP=1>), on ports picked free at start,
so test files can run in parallel (C<prove -j>).  Whatever happens (a failed
test, C<die>, a signal), every process started is stopped in C<END>.

At the end (C<< $t->done >>, or C<END> if the file never got there) each
nginx error log is checked: any C<[alert]>, C<[emerg]>, C<[crit]> line, or
C<AddressSanitizer>, C<LeakSanitizer>, C<runtime error> line, is a failed
test unless whitelisted with C<< $t->allow_log(qr/.../) >>; so is a
sanitizer's report in the output of any other process the test ran
(C<< $t->spawn >>, C<< $t->run_cmd >>: test-asan's aihub-worker).

Services a test did not ask for are never started, so the mock provider,
Redis and MariaDB helpers work without the module or the worker being built.

=head1 ENVIRONMENT

    AIHUB_KEEP=1        keep the temporary directory (its path is printed)
    AIHUB_BUILD=DIR     build output, default <repo>/build
    AIHUB_NGINX=PATH    nginx binary, default /usr/sbin/nginx
    AIHUB_MODULE=PATH   the module .so, default
                        <build>/modules/ngx_http_aihub_module.so
    AIHUB_VERBOSE=1     diag() each process started

=head1 METHODS

=head2 Construction and paths

    Aihub->new(%opt)   redis => 1, mariadb => 1, mock => 1 start those now;
                       redis_args => [...] extra redis-server arguments;
                       mock_key => SECRET (default 'mock-provider-secret')
    $t->dir            the temporary directory
    $t->root           the repository
    $t->build          the build directory
    Aihub::have_module, Aihub::have_worker   true when built
    $t->skip_unless_built                    skip_all unless both are built

=head2 Redis

    $t->start_redis(@extra_args)   (called by new with redis => 1)
    $t->redis_port, $t->redis_addr ("127.0.0.1:PORT")
    $t->redis(@cmd)          one command, returns the reply: a scalar, an
                             array ref for arrays, undef for nil; dies
                             "redis: ERR ..." on an error reply
    $t->redis_nowait(@cmd)   sends on a new connection, does not wait for the
                             reply (for DEBUG SLEEP while the test goes on)
    $t->stop_redis, $t->restart_redis (same port, data lost)
    Redis runs with --enable-debug-command local (Redis 7 refuses DEBUG,
    hence DEBUG SLEEP, otherwise).

=head2 MariaDB

    $t->start_mariadb        (called by new with mariadb => 1); creates the
                             database "aihub"
    $t->start_mariadb(buffer_pool => '1G')
                             InnoDB buffer pool size (default 64M, which
                             the tests want; the benchmark needs one its
                             tables of millions of rows fit in); kept for
                             later starts of the same instance
    $t->mysql_socket, $t->mysql_port, $t->mysql_db
    $t->sql($query)          list of rows, each an array ref (NULL = undef);
                             dies with the client's message on error
    $t->sql_value($query)    first column of the first row, or undef
    $t->stop_mariadb

=head2 Mock provider (t/mock_provider.pl)

    $t->start_mock           (called by new with mock => 1)
    $t->mock_port, $t->mock_url ("http://127.0.0.1:PORT/v1"),
    $t->mock_key
    $t->mock_log             list of hash refs, one per request received
    $t->stop_mock

=head2 aihub-worker

    $t->worker(@args)            runs $Aihub::WORKER (build/bin/aihub-worker,
                                 or $AIHUB_WORKER: test-asan's) with the
                                 --redis/--mysql-* flags of this test;
                                 returns (exit code, stdout, stderr)
    $t->migrate                  worker migrate --sql-dir <repo>/sql; dies
                                 on failure
    $t->create_key(account => NAME, plan => PLAN, scopes => 'chat,admin')
                                 the key (first line of stdout); dies on
                                 failure
    $t->start_worker(@run_args)  "aihub-worker run @run_args" in the
                                 background (log: $t->dir/worker.log)
    $t->stop_worker
    $t->worker_log               what the background worker printed

=head2 nginx

Several instances can run at once; each has a name (default "nginx"), its
own directory C<< $t->dir/NAME >> and its own port.

As in nginx-tests, a test writes the configuration it runs in the test
file: C<$http> is the whole contents of the http{} block (directives,
servers, locations).  The harness adds only what every instance needs and
no test is about: the module, the process settings, the paths.

    $t->nginx($http, %opt)   writes NAME/nginx.conf: load_module, env
                             AIHUB_MOCK_KEY (the mock's credential, see
                             key_env=), user root, daemon off, one worker
                             process, pid, error_log, events, and in
                             http{} the access log and temp paths under
                             the instance directory; then $http.
                             Options: name => 'n2', main => text for the
                             main context, no_module => 1.  Returns $t.
    Substitutions in $http and main: %%PORT%% (this instance's port),
    %%REDIS%% (127.0.0.1:PORT), %%MOCK%% (127.0.0.1:PORT), %%MOCK_URL%%,
    %%DIR%% (instance directory), %%MODULE%% (the .so), %%ROOT%%.
    $t->port(NAME)           the instance's listen port
    $t->nginx_dir(NAME)
    $t->start_nginx(NAME)    starts, waits until the port accepts; dies
                             with the error log if it does not start
    $t->nginx_test(NAME)     runs nginx -t: returns (ok, output)
    $t->reload_nginx(NAME)   SIGHUP, waits for the new worker process
    $t->stop_nginx(NAME)
    $t->nginx_worker_pids(NAME)
    $t->error_log(NAME)      the error log's contents
    $t->allow_log(qr/.../)   whitelist alert lines a test expects

=head2 HTTP

    $t->http($method, $path, %opt)
        headers => {...}, body => string or ref (ref: JSON-encoded and
        content-type application/json), key => KEY (sets Authorization:
        Bearer KEY), port => P or name => NAME (default: the "nginx"
        instance), timeout => seconds (default 10).
        Returns the HTTP::Tiny response hash plus json (decoded body, when
        it is JSON), events (for text/event-stream: the data: payloads,
        decoded, '[DONE]' kept as a string) and elapsed (seconds).
    $t->chat($key, %opt)     POST /v1/chat/completions; model (default
                             mock-basic), content (default 'hello'),
                             stream => 1, include_usage => 1,
                             plus the http() options
    Aihub::sse_events($body) data: payloads of an SSE body
    $t->connect(port => P)   a raw IO::Socket::IP to nginx

=head2 Keys without the worker

    Aihub::make_key($random)   a well-formed ai-hub key (right length,
                               alphabet and CRC-32 checksum, as in
                               aihub_protocol.h); $random: 32 base62
                               characters, random if omitted
    Aihub::key_hash($key)      lowercase hex SHA-256
    Aihub::key_prefix($key)    display prefix ("ai-hub-" + 8 characters)
    $t->seed_key(%fields)      writes a key record straight into Redis
                               (<prefix>key:<hash>); fields: key (default
                               a new one), account (1), plan (free), status
                               (active), scopes (chat), expires (0),
                               models ('*'), included (1000), rpm (0),
                               tpm (0), any other field of
                               aihub_protocol.h, prefix => 'aihub:'.
                               Returns the key.
    $t->seed_model($id, %fields)  model:<id> record (provider mock,
                               upstream $id, tier basic, price_in,
                               price_out), SADD models, PUBLISH invalidate
                               "models".  With the worker, prefer
                               "aihub-worker sync" from the ledger.

=head2 Misc

    $t->wait_for(sub { ... }, timeout => 2)   polls every 50 ms; returns
                                               the sub's true value or undef
    Aihub::free_port()
    $t->done                 stop everything, check logs, done_testing

=cut

use strict;
use warnings;

use Cwd qw(abs_path);
use Digest::SHA qw(sha256_hex);
use File::Basename qw(dirname);
use File::Path qw(make_path);
use File::Temp qw(tempdir);
use HTTP::Tiny;
use IO::Socket::IP;
use IO::Select;
use JSON::PP;
use POSIX qw(WNOHANG);
use Test::More;
use Time::HiRes qw(time sleep);

use AihubJSON qw(json_codec);

our $ROOT  = abs_path(dirname(__FILE__) . '/../..');
our $BUILD = $ENV{AIHUB_BUILD} // "$ROOT/build";
our $NGINX = $ENV{AIHUB_NGINX} // '/usr/sbin/nginx';
our $MODULE = $ENV{AIHUB_MODULE}
             // "$BUILD/modules/ngx_http_aihub_module.so";
our $WORKER = $ENV{AIHUB_WORKER} // "$BUILD/bin/aihub-worker";

my $JSON = json_codec()->allow_nonref;
my @INSTANCES;
my %PORTS_USED;


sub new {
    my ($class, %opt) = @_;

    my $dir = tempdir('aihub-XXXXXX', TMPDIR => 1,
                      CLEANUP => !$ENV{AIHUB_KEEP});

    my $self = bless {
        dir      => $dir,
        owner    => $$,
        procs    => {},
        nginx    => {},
        allow    => [],
        mock_key => $opt{mock_key} // 'mock-provider-secret',
        mysql_db => 'aihub',
        redis_password => $opt{redis_password},
    }, $class;

    push @INSTANCES, $self;

    diag("aihub test dir kept: $dir") if $ENV{AIHUB_KEEP};

    $self->start_redis(@{ $opt{redis_args} // [] }) if $opt{redis};
    $self->start_mariadb if $opt{mariadb};
    $self->start_mock if $opt{mock};

    return $self;
}


sub dir   { $_[0]{dir} }
sub root  { $ROOT }
sub build { $BUILD }

sub have_module { -f $MODULE }
sub have_worker { -x $WORKER }


sub skip_unless_built {
    my ($self) = @_;

    plan(skip_all => "module not built ($MODULE)") unless have_module();
    plan(skip_all => "worker not built ($WORKER)") unless have_worker();
}


# --- ports and processes ---------------------------------------------------

sub free_port {
    for (1 .. 50) {
        my $s = IO::Socket::IP->new(LocalHost => '127.0.0.1', LocalPort => 0,
                                    Listen => 1, ReuseAddr => 0)
            or next;
        my $port = $s->sockport;
        close $s;
        next if $PORTS_USED{$port}++;
        return $port;
    }

    die "no free port\n";
}


sub port_open {
    my ($port) = @_;

    my $s = IO::Socket::IP->new(PeerHost => '127.0.0.1', PeerPort => $port,
                                Timeout => 1);
    return 0 unless $s;
    close $s;
    return 1;
}


# spawn(name, [argv], env => {...}, out => file): fork+exec, returns pid

sub spawn {
    my ($self, $name, $argv, %opt) = @_;

    my $out = $opt{out} // "$self->{dir}/$name.out";

    diag("start $name: @$argv") if $ENV{AIHUB_VERBOSE};

    my $pid = fork;
    die "fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        setpgrp(0, 0);
        @ENV{ keys %{ $opt{env} } } = values %{ $opt{env} } if $opt{env};
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $out or POSIX::_exit(126);
        open STDERR, '>&', \*STDOUT;
        { no warnings "exec"; exec { $argv->[0] } @$argv; }
        print STDERR "exec $argv->[0]: $!\n";
        POSIX::_exit(127);
    }

    $self->{procs}{$name} = { pid => $pid, out => $out };
    $self->{outs}{$out} = $name;

    return $pid;
}


# a sanitizer's report in a process's output (test-asan's aihub-worker:
# its UBSan reports go to stderr, whatever log_path says) is a crash

my $SANITIZER_REPORT = qr/: runtime error: |ERROR: (?:Address|Leak)Sanitizer/;

sub sanitizer_reports {
    my ($self, $what, $text) = @_;

    push @{ $self->{crashes} }, map { "$what: $_" }
        grep { $_ =~ $SANITIZER_REPORT } split /\n/, $text // '';
}


sub alive {
    my ($self, $name) = @_;

    my $p = $self->{procs}{$name} or return 0;

    return 0 if $p->{exited};

    if (waitpid($p->{pid}, WNOHANG) == $p->{pid}) {
        $self->exited($name, $p, $?);
        return 0;
    }

    return 1;
}


# a process reaped: its status kept, and a crash (a signal no test sends to
# stop a process: SEGV, ABRT, BUS, FPE, ILL) noted for check_logs
sub exited {
    my ($self, $name, $p, $status) = @_;

    $p->{exited} = 1;
    $p->{status} = $status;

    my $sig = $status & 127;
    push @{ $self->{crashes} }, "$name (pid $p->{pid}) died of signal $sig"
        if grep { $sig == $_ } 4, 6, 7, 8, 11;
}


# TERM, wait up to $grace seconds, then KILL; the whole process group

sub stop_proc {
    my ($self, $name, %opt) = @_;

    my $p = delete $self->{procs}{$name} or return;
    my $grace = $opt{grace} // 5;

    return if $p->{exited};

    # died before it was told to stop
    if (waitpid($p->{pid}, WNOHANG) == $p->{pid}) {
        $self->exited($name, $p, $?);
        return;
    }

    kill $opt{signal} // 'TERM', $p->{pid};

    my $deadline = time + $grace;

    while (time < $deadline) {
        my $r = waitpid($p->{pid}, WNOHANG);
        $self->exited($name, $p, $?) if $r == $p->{pid};
        if ($r == $p->{pid} || $r == -1) {
            kill 'KILL', -$p->{pid};    # leftovers in its group, if any
            return;
        }
        sleep 0.02;
    }

    diag("$name (pid $p->{pid}) did not stop in ${grace}s, killing");
    kill 'KILL', -$p->{pid};
    kill 'KILL', $p->{pid};
    waitpid($p->{pid}, 0);
}


sub wait_port {
    my ($self, $name, $port, $timeout) = @_;

    my $deadline = time + ($timeout // 10);

    while (time < $deadline) {
        return 1 if port_open($port);
        return 0 unless $self->alive($name);
        sleep 0.02;
    }

    return 0;
}


sub read_file {
    my ($file) = @_;

    open my $fh, '<', $file or return '';
    local $/;
    my $s = <$fh>;
    return $s // '';
}


sub write_file {
    my ($file, $text) = @_;

    open my $fh, '>', $file or die "$file: $!\n";
    print $fh $text;
    close $fh or die "$file: $!\n";
}


sub tail {
    my ($file, $n) = @_;

    my @l = split /\n/, read_file($file);
    splice @l, 0, @l - $n if @l > $n;
    return join "\n", @l;
}


sub wait_for {
    my ($self, $code, %opt) = @_;

    my $deadline = time + ($opt{timeout} // 2);

    for (;;) {
        my $r = $code->();
        return $r if $r;
        return undef if time >= $deadline;
        sleep($opt{interval} // 0.05);
    }
}


# --- Redis -----------------------------------------------------------------

sub start_redis {
    my ($self, @extra) = @_;

    my $d = "$self->{dir}/redis";
    make_path($d);

    for my $try (1 .. 3) {
        my $port = $self->{redis_port} // free_port();

        $self->spawn('redis', [ 'redis-server', '--bind', '127.0.0.1',
                                '--port', $port, '--save', '',
                                '--appendonly', 'no', '--dir', $d,
                                '--daemonize', 'no',
                                '--enable-debug-command', 'local',
                                ('--requirepass', $self->{redis_password})
                                    x!! $self->{redis_password},
                                @extra ],
                     out => "$d/redis.log");

        if ($self->wait_port('redis', $port, 10)) {
            $self->{redis_port} = $port;
            delete $self->{redis_sock};

            # a new install: the worker's first restore has nothing to
            # restore (a later restart is a test's own business)
            $self->redis('SET', 'aihub:epoch', time, 'NX')
                unless $self->{redis_started}++;

            return $self;
        }

        $self->stop_proc('redis');
        delete $self->{redis_port};
    }

    die "redis did not start:\n" . tail("$d/redis.log", 20) . "\n";
}


sub redis_port { $_[0]{redis_port} }
sub redis_addr { "127.0.0.1:$_[0]{redis_port}" }


sub stop_redis {
    my ($self) = @_;

    delete $self->{redis_sock};
    $self->stop_proc('redis');
}


sub restart_redis {
    my ($self, @extra) = @_;

    $self->stop_redis;
    $self->start_redis(@extra);
}


sub resp_encode {
    my @cmd = @_;

    my $s = '*' . @cmd . "\r\n";
    for (@cmd) {
        my $b = "$_";
        utf8::encode($b) if utf8::is_utf8($b);
        $s .= '$' . length($b) . "\r\n$b\r\n";
    }
    return $s;
}


sub redis_connect {
    my ($self) = @_;

    die "redis not started\n" unless $self->{redis_port};

    my $s = IO::Socket::IP->new(PeerHost => '127.0.0.1',
                                PeerPort => $self->{redis_port},
                                Timeout => 5)
        or die "redis connect: $@\n";
    $s->autoflush(1);

    if (defined $self->{redis_password}) {
        my $buf = '';
        print $s resp_encode('AUTH', $self->{redis_password});
        my $r = resp_read($s, \$buf);
        die "redis AUTH: $$r\n" if ref $r eq 'Aihub::RedisError';
    }

    return $s;
}


sub redis {
    my ($self, @cmd) = @_;

    my $s = $self->{redis_sock} //= $self->redis_connect;
    my $buf = '';

    unless (print $s resp_encode(@cmd)) {
        delete $self->{redis_sock};
        die "redis write: $!\n";
    }

    my $reply = eval { resp_read($s, \$buf) };

    if (my $e = $@) {
        delete $self->{redis_sock};
        die $e;
    }

    if (ref $reply eq 'Aihub::RedisError') {
        die "redis: $$reply\n";
    }

    return $reply;
}


sub redis_nowait {
    my ($self, @cmd) = @_;

    my $s = $self->redis_connect;
    print $s resp_encode(@cmd);
    push @{ $self->{redis_nowait} }, $s;    # keep it open until the end
    return;
}


sub resp_line {
    my ($s, $buf) = @_;

    my $i;

    until (($i = index($$buf, "\r\n")) >= 0) {
        resp_fill($s, $buf);
    }

    my $line = substr($$buf, 0, $i);
    substr($$buf, 0, $i + 2) = '';
    return $line;
}


sub resp_fill {
    my ($s, $buf) = @_;

    IO::Select->new($s)->can_read(10) or die "redis: reply timeout\n";
    my $n = sysread($s, $$buf, 65536, length $$buf);
    die "redis: connection closed\n" unless $n;
}


sub resp_read {
    my ($s, $buf) = @_;

    my $line = resp_line($s, $buf);
    my ($t, $v) = (substr($line, 0, 1), substr($line, 1));

    return $v if $t eq '+';
    return $v + 0 if $t eq ':';
    return bless \(my $e = $v), 'Aihub::RedisError' if $t eq '-';

    if ($t eq '$') {
        return undef if $v < 0;
        resp_fill($s, $buf) while length($$buf) < $v + 2;
        my $data = substr($$buf, 0, $v);
        substr($$buf, 0, $v + 2) = '';
        return $data;
    }

    if ($t eq '*') {
        return undef if $v < 0;
        my @a;
        for (1 .. $v) {
            my $r = resp_read($s, $buf);
            die "redis: $$r\n" if ref $r eq 'Aihub::RedisError';
            push @a, $r;
        }
        return \@a;
    }

    die "redis: bad reply line '$line'\n";
}


# --- MariaDB ---------------------------------------------------------------

sub start_mariadb {
    my ($self, %opt) = @_;

    my $d = "$self->{dir}/mysql";
    my $data = "$d/data";
    my $tmp = "$d/tmp";
    make_path($data, $tmp);

    # a private tmpdir: a starting server removes the temporary files of
    # others in a shared one, and parallel test files would collide
    my ($rc, $out, $err) = $self->run_cmd(
        [ 'mariadb-install-db', '--no-defaults', '--user=root',
          "--datadir=$data", "--tmpdir=$tmp",
          '--auth-root-authentication-method=normal', '--skip-test-db' ],
        env => { TMPDIR => $tmp }, timeout => 60);
    die "mariadb-install-db failed:\n$out$err\n" if $rc;

    $self->{mysql_socket} = "$d/mysqld.sock";
    $self->{mysql_buffer_pool} = $opt{buffer_pool}
        // $self->{mysql_buffer_pool} // '64M';

    for my $try (1 .. 3) {
        my $port = free_port();

        $self->spawn('mariadb', [ 'mariadbd', '--no-defaults', '--user=root',
            "--datadir=$data", "--socket=$self->{mysql_socket}",
            "--port=$port", '--bind-address=127.0.0.1', "--tmpdir=$tmp",
            '--skip-name-resolve', '--skip-log-bin',
            "--innodb-buffer-pool-size=$self->{mysql_buffer_pool}",
            "--log-error=$d/error.log",
            "--pid-file=$d/mysqld.pid" ], out => "$d/mysqld.out");

        my $up = $self->wait_for(sub {
            return 'dead' unless $self->alive('mariadb');
            return -S $self->{mysql_socket} && port_open($port);
        }, timeout => 20);

        if ($up && $up ne 'dead') {
            $self->{mysql_port} = $port;
            $self->sql_root("CREATE DATABASE IF NOT EXISTS $self->{mysql_db}"
                            . " CHARACTER SET utf8mb4");
            return $self;
        }

        $self->stop_proc('mariadb');
    }

    die "mariadbd did not start:\n" . tail("$d/error.log", 30) . "\n";
}


sub mysql_socket { $_[0]{mysql_socket} }
sub mysql_port   { $_[0]{mysql_port} }
sub mysql_db     { $_[0]{mysql_db} }

sub stop_mariadb { $_[0]->stop_proc('mariadb', grace => 20) }


sub sql_root { my $self = shift; $self->sql_in(undef, @_) }
sub sql      { my $self = shift; $self->sql_in($self->{mysql_db}, @_) }


sub sql_in {
    my ($self, $db, $query) = @_;

    die "mariadb not started\n" unless $self->{mysql_socket};

    my ($rc, $out, $err) = $self->run_cmd(
        [ 'mariadb', '--no-defaults', '-uroot',
          "--socket=$self->{mysql_socket}", '--batch', '--skip-column-names',
          '--default-character-set=utf8mb4', (defined $db ? ($db) : ()),
          '-e', $query ], timeout => 60);

    die "sql failed ($query): $err\n" if $rc;

    my @rows;

    for my $line (split /\n/, $out) {
        push @rows, [ map { $_ eq 'NULL' ? undef : unescape_batch($_) }
                      split /\t/, $line, -1 ];
    }

    return @rows;
}


sub unescape_batch {
    my ($s) = @_;

    my %map = (n => "\n", t => "\t", '0' => "\0", '\\' => '\\');
    $s =~ s/\\([nt0\\])/$map{$1}/g;
    return $s;
}


sub sql_value {
    my ($self, $query) = @_;

    my @rows = $self->sql($query);
    return @rows ? $rows[0][0] : undef;
}


# run_cmd([argv], stdin => text, timeout => s, env => {}) ->
#     (exit code, stdout, stderr); exit code 128+N for signal N

sub run_cmd {
    my ($self, $argv, %opt) = @_;

    # named by the process too: forked callers run commands at once
    my $n = ++$self->{cmd_seq};
    my ($o, $e, $i) = map { "$self->{dir}/cmd$$-$n.$_" } qw(out err in);

    write_file($i, $opt{stdin} // '');

    my $pid = fork;
    die "fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        @ENV{ keys %{ $opt{env} } } = values %{ $opt{env} } if $opt{env};
        open STDIN, '<', $i;
        open STDOUT, '>', $o;
        open STDERR, '>', $e;
        { no warnings "exec"; exec { $argv->[0] } @$argv; }
        print STDERR "exec $argv->[0]: $!\n";
        POSIX::_exit(127);
    }

    my $deadline = time + ($opt{timeout} // 60);
    my $status;

    for (;;) {
        if (waitpid($pid, WNOHANG) == $pid) {
            $status = $?;
            last;
        }
        if (time > $deadline) {
            kill 'KILL', $pid;
            waitpid($pid, 0);
            $status = 9;
            last;
        }
        sleep 0.01;
    }

    my @r = ($status & 127 ? 128 + ($status & 127) : $status >> 8,
             read_file($o), read_file($e));
    $self->sanitizer_reports("@$argv", $r[2]);
    unlink $o, $e, $i;
    return @r;
}


# --- mock provider ---------------------------------------------------------

sub start_mock {
    my ($self) = @_;

    my $log = "$self->{dir}/mock.log";

    for my $try (1 .. 3) {
        my $port = free_port();

        $self->spawn('mock', [ $^X, "$ROOT/t/mock_provider.pl",
                               '--port', $port, '--key', $self->{mock_key},
                               '--log', $log ],
                     out => "$self->{dir}/mock.out");

        if ($self->wait_port('mock', $port, 10)) {
            $self->{mock_port} = $port;
            return $self;
        }

        $self->stop_proc('mock');
    }

    die "mock provider did not start:\n"
        . tail("$self->{dir}/mock.out", 20) . "\n";
}


sub mock_port { $_[0]{mock_port} }
sub mock_key  { $_[0]{mock_key} }
sub mock_url  { "http://127.0.0.1:$_[0]{mock_port}/v1" }
sub stop_mock { $_[0]->stop_proc('mock') }


sub mock_log {
    my ($self) = @_;

    my @e;

    for (split /\n/, read_file("$self->{dir}/mock.log")) {
        push @e, $JSON->decode($_);
    }

    return @e;
}


# --- worker ----------------------------------------------------------------

sub worker_flags {
    my ($self) = @_;

    my @f;

    push @f, '--redis', $self->redis_addr if $self->{redis_port};
    push @f, '--redis-password', $self->{redis_password}
        if defined $self->{redis_password};

    if ($self->{mysql_socket}) {
        push @f, '--mysql-socket', $self->{mysql_socket},
                 '--mysql-user', 'root', '--mysql-db', $self->{mysql_db};
    }

    return @f;
}


sub worker {
    my ($self, @args) = @_;

    die "worker not built ($WORKER)\n" unless have_worker();

    return $self->run_cmd([ $WORKER, $self->worker_flags, @args ],
                          timeout => 120);
}


sub migrate {
    my ($self) = @_;

    my ($rc, $out, $err) = $self->worker('migrate', '--sql-dir', "$ROOT/sql");
    die "aihub-worker migrate failed ($rc):\n$out$err\n" if $rc;
    return $self;
}


sub create_key {
    my ($self, %opt) = @_;

    my @a = ('key', 'create', '--account', $opt{account} // 'test',
             '--plan', $opt{plan} // 'free');
    push @a, '--scopes', $opt{scopes} if $opt{scopes};

    my ($rc, $out, $err) = $self->worker(@a);
    die "aihub-worker @a failed ($rc):\n$out$err\n" if $rc;

    my ($key) = split /\n/, $out;
    $key =~ s/\s+$// if defined $key;
    die "aihub-worker @a printed no key\n" unless $key;
    return $key;
}


sub start_worker {
    my ($self, @args) = @_;

    die "worker not built ($WORKER)\n" unless have_worker();

    $self->spawn('worker', [ $WORKER, $self->worker_flags, 'run', @args ],
                 out => "$self->{dir}/worker.log");

    sleep 0.1;
    die "aihub-worker run exited:\n"
        . tail("$self->{dir}/worker.log", 20) . "\n"
        unless $self->alive('worker');

    return $self;
}


sub stop_worker { $_[0]->stop_proc('worker', grace => 10) }

sub worker_log { read_file("$_[0]{dir}/worker.log") }


# --- nginx -----------------------------------------------------------------

sub nginx_dir {
    my ($self, $name) = @_;
    return "$self->{dir}/" . ($name // 'nginx');
}


sub port {
    my ($self, $name) = @_;

    my $n = $self->{nginx}{ $name // 'nginx' }
        or die "nginx instance '" . ($name // 'nginx') . "' not configured\n";
    return $n->{port};
}


sub nginx {
    my ($self, $http, %opt) = @_;

    my $name = $opt{name} // 'nginx';
    my $d = $self->nginx_dir($name);
    make_path($d);

    my $n = $self->{nginx}{$name} //= { port => free_port(), dir => $d };

    my $module = $opt{no_module} ? '' : "load_module $MODULE;\n";
    my $main = $opt{main} // '';

    my $conf = <<"END";
${module}env AIHUB_MOCK_KEY;
env AIHUB_REDIS_PASSWORD;
user root;
daemon off;
master_process on;
worker_processes 1;
pid %%DIR%%/nginx.pid;
error_log %%DIR%%/error.log info;
$main

events {
    worker_connections 1024;
}

http {
    access_log %%DIR%%/access.log;
    client_body_temp_path %%DIR%%/client_body_temp;
    proxy_temp_path %%DIR%%/proxy_temp;
    fastcgi_temp_path %%DIR%%/fastcgi_temp;
    uwsgi_temp_path %%DIR%%/uwsgi_temp;
    scgi_temp_path %%DIR%%/scgi_temp;

$http
}
END

    my %sub = (
        PORT     => $n->{port},
        DIR      => $d,
        MODULE   => $MODULE,
        ROOT     => $ROOT,
        REDIS    => $self->{redis_port} ? $self->redis_addr
                                        : '127.0.0.1:1',
        MOCK     => '127.0.0.1:' . ($self->{mock_port} // 1),
        MOCK_URL => 'http://127.0.0.1:' . ($self->{mock_port} // 1) . '/v1',
    );

    $conf =~ s/%%(\w+)%%/exists $sub{$1} ? $sub{$1} : "%%$1%%"/ge;

    write_file("$d/nginx.conf", $conf);
    $n->{conf} = $conf;

    return $self;
}


sub nginx_argv {
    my ($self, $name) = @_;

    my $d = $self->nginx_dir($name);
    return ($NGINX, '-p', "$d/", '-c', "$d/nginx.conf", '-e', "$d/error.log");
}


sub nginx_env {
    my ($self) = @_;
    return { AIHUB_MOCK_KEY => $self->{mock_key},
             (AIHUB_REDIS_PASSWORD => $self->{redis_password})
                 x!! defined $self->{redis_password} };
}


sub nginx_test {
    my ($self, $name) = @_;

    my ($rc, $out, $err) = $self->run_cmd([ $self->nginx_argv($name), '-t' ],
                                          env => $self->nginx_env);
    return ($rc == 0, $out . $err);
}


sub start_nginx {
    my ($self, $name) = @_;

    $name //= 'nginx';
    my $n = $self->{nginx}{$name}
        or die "nginx '$name': call \$t->nginx(...) first\n";
    my $d = $n->{dir};

    $self->spawn("nginx:$name", [ $self->nginx_argv($name) ],
                 env => $self->nginx_env, out => "$d/stderr.log");

    unless ($self->wait_port("nginx:$name", $n->{port}, 10)) {
        $self->stop_proc("nginx:$name");
        die "nginx '$name' did not start:\n" . tail("$d/stderr.log", 20)
            . "\n" . tail("$d/error.log", 20) . "\n";
    }

    $n->{started} = 1;
    return $self;
}


sub nginx_worker_pids {
    my ($self, $name) = @_;

    my $p = $self->{procs}{ 'nginx:' . ($name // 'nginx') } or return;
    my @pids;

    for my $stat (glob '/proc/[0-9]*/stat') {
        my $s = read_file($stat) or next;
        my ($pid, $comm, $ppid) = $s =~ /^(\d+) \((.*)\) \S+ (\d+)/ or next;
        next unless $ppid == $p->{pid};
        my $cmd = read_file("/proc/$pid/cmdline");
        push @pids, $pid if $cmd =~ /worker process/;
    }

    return sort { $a <=> $b } @pids;
}


sub reload_nginx {
    my ($self, $name) = @_;

    $name //= 'nginx';
    my $p = $self->{procs}{"nginx:$name"} or die "nginx '$name' not running\n";
    my %old = map { $_ => 1 } $self->nginx_worker_pids($name);

    kill 'HUP', $p->{pid};

    $self->wait_for(sub {
        my @now = $self->nginx_worker_pids($name);
        return @now && !grep { $old{$_} } @now;
    }, timeout => 10) or die "nginx '$name' reload: old workers remain\n";

    return $self;
}


sub stop_nginx {
    my ($self, $name) = @_;

    $self->stop_proc('nginx:' . ($name // 'nginx'), grace => 10);
}


sub error_log {
    my ($self, $name) = @_;
    return read_file($self->nginx_dir($name) . '/error.log');
}


sub allow_log {
    my ($self, @re) = @_;
    push @{ $self->{allow} }, @re;
}


# lines of the error logs that must fail a test

sub bad_log_lines {
    my ($self, $name) = @_;

    my @bad;

    for my $file (map { $self->nginx_dir($name) . "/$_" }
                  qw(error.log stderr.log)) {
        for my $line (split /\n/, read_file($file)) {
            next unless $line =~ /\[(?:alert|emerg|crit)\]/
                     || $line =~ /AddressSanitizer|LeakSanitizer
                                  |runtime\ error/x;
            next if grep { $line =~ $_ } @{ $self->{allow} };
            push @bad, $line;
        }
    }

    return @bad;
}


# --- HTTP ------------------------------------------------------------------

sub http {
    my ($self, $method, $path, %opt) = @_;

    my $port = $opt{port} // $self->port($opt{name});
    my %h = %{ $opt{headers} // {} };
    my $body = $opt{body};

    $h{authorization} = "Bearer $opt{key}" if defined $opt{key};

    if (ref $body) {
        $body = $JSON->encode($body);
        $h{'content-type'} //= 'application/json';
    }

    my $ua = HTTP::Tiny->new(timeout => $opt{timeout} // 10,
                             keep_alive => 0, max_redirect => 0);
    my $start = time;
    my $r = $ua->request($method, "http://127.0.0.1:$port$path", {
        headers => \%h,
        (defined $body ? (content => $body) : ()),
    });

    $r->{elapsed} = time - $start;

    my $ct = $r->{headers}{'content-type'} // '';

    if ($ct =~ m{text/event-stream}) {
        $r->{events} = [ sse_events($r->{content}) ];
    } elsif (length($r->{content} // '') && $r->{content} =~ /^\s*[\[{]/) {
        $r->{json} = eval { $JSON->decode($r->{content}) };
    }

    return $r;
}


sub chat {
    my ($self, $key, %opt) = @_;

    my $body = {
        model    => $opt{model} // 'mock-basic',
        messages => $opt{messages}
                    // [ { role => 'user', content => $opt{content}
                                                       // 'hello' } ],
    };

    if ($opt{stream}) {
        $body->{stream} = JSON::PP::true;
        $body->{stream_options} = { include_usage => JSON::PP::true }
            if $opt{include_usage};
    }

    %$body = (%$body, %{ $opt{extra} }) if $opt{extra};

    delete @opt{qw(model messages content stream include_usage extra)};

    return $self->http(POST => $opt{path} // '/v1/chat/completions',
                       key => $key, body => $body, %opt);
}


sub sse_events {
    my ($body) = @_;

    my @ev;

    for my $block (split /\r?\n\r?\n/, $body // '') {
        my $data = join "\n", map { /^data: ?(.*)$/ ? $1 : () }
                              split /\r?\n/, $block;
        next unless length $data;
        push @ev, $data eq '[DONE]' ? $data
                : (eval { $JSON->decode($data) } // { unparsed => $data });
    }

    return @ev;
}


sub connect {
    my ($self, %opt) = @_;

    my $port = $opt{port} // $self->port($opt{name});
    my $s = IO::Socket::IP->new(PeerHost => '127.0.0.1', PeerPort => $port,
                                Timeout => 5)
        or die "connect $port: $@\n";
    $s->autoflush(1);
    return $s;
}


# --- keys ----------------------------------------------------------------

my @BASE62 = ('0' .. '9', 'A' .. 'Z', 'a' .. 'z');


sub crc32 {
    my ($s) = @_;

    my $crc = 0xffffffff;

    for my $c (unpack 'C*', $s) {
        $crc ^= $c;
        $crc = ($crc >> 1) ^ (0xedb88320 & -($crc & 1)) & 0xffffffff
            for 1 .. 8;
    }

    return $crc ^ 0xffffffff;
}


sub make_key {
    my ($random) = @_;

    $random //= join '', map { $BASE62[rand 62] } 1 .. 32;

    my $crc = crc32($random);
    my $check = '';

    for (1 .. 6) {
        $check = $BASE62[$crc % 62] . $check;
        $crc = int($crc / 62);
    }

    return "ai-hub-$random$check";
}


sub key_hash   { sha256_hex($_[0]) }
sub key_prefix { substr($_[0], 0, 15) }


sub seed_key {
    my ($self, %f) = @_;

    my $key = delete $f{key} // make_key();
    my $prefix = delete $f{prefix} // 'aihub:';

    my %rec = (account => 1, prefix => key_prefix($key), plan => 'free',
               status => 'active', scopes => 'chat', expires => 0,
               models => '*', included => 1000, rpm => 0, tpm => 0, %f);

    $self->redis('HSET', $prefix . 'key:' . key_hash($key), %rec);

    # seeding by hand stands for the worker's restore: Redis holds its copy
    $self->redis('SET', $prefix . 'epoch', time, 'NX');

    return $key;
}


sub seed_model {
    my ($self, $id, %f) = @_;

    my $prefix = delete $f{prefix} // 'aihub:';
    my %rec = (provider => 'mock', upstream => $id, tier => 'basic',
               price_in => 150000, price_out => 600000, %f);

    $self->redis('HSET', $prefix . "model:$id", %rec);
    $self->redis('SADD', $prefix . 'models', $id);
    $self->redis('PUBLISH', $prefix . 'invalidate', 'models');

    return $id;
}


# --- the end ---------------------------------------------------------------

sub stop_all {
    my ($self) = @_;

    return unless $self->{owner} == $$;

    delete $self->{redis_nowait};
    delete $self->{redis_sock};

    for my $name (grep { /^nginx:/ } keys %{ $self->{procs} }) {
        $self->stop_proc($name, grace => 10);
    }

    $self->stop_proc('worker', grace => 10);
    $self->stop_proc('mock');

    for my $name (keys %{ $self->{procs} }) {
        $self->stop_proc($name, grace => 20);
    }
}


sub check_logs {
    my ($self, $as_tests) = @_;

    return if $self->{checked}++;

    # (nginx's own output is read with its error log, below)
    for my $out (sort keys %{ $self->{outs} // {} }) {
        next if $self->{outs}{$out} =~ /^nginx:/;
        $self->sanitizer_reports($self->{outs}{$out}, read_file($out));
    }

    my @crashes = @{ $self->{crashes} // [] };

    if ($as_tests) {
        ok(!@crashes, 'no process of the test crashed')
            or diag(join "\n", @crashes);
    } elsif (@crashes) {
        diag(join "\n", @crashes);
    }

    for my $name (sort keys %{ $self->{nginx} }) {
        next unless $self->{nginx}{$name}{started};

        my @bad = $self->bad_log_lines($name);

        if ($as_tests) {
            ok(!@bad, "no alerts in nginx '$name' error log")
                or diag(join "\n", @bad);
        } elsif (@bad) {
            diag("alerts in nginx '$name' error log:\n" . join "\n", @bad);
        }
    }
}


sub done {
    my ($self) = @_;

    $self->stop_all;
    $self->check_logs(1);
    $self->{done} = 1;
    done_testing();
}


sub DESTROY {
    my ($self) = @_;

    local ($?, $@, $!);
    $self->stop_all;
}


END {
    local $?;

    for my $self (@INSTANCES) {
        next if $self->{done} || $self->{owner} != $$;

        $self->stop_all;

        # a file that died or forgot done(): still report alerts, as
        # tests when no plan fixed their number
        my $tb = Test::More->builder;
        $self->check_logs(!$tb->has_plan && !$tb->{Done_Testing});
    }

    @INSTANCES = ();
}


1;
