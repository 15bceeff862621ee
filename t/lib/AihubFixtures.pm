package AihubFixtures;

=head1 NAME

AihubFixtures - shared fixtures for the request-path tests (t/1*.t): the
model catalog and full key records seeded straight into Redis, OpenAI
error checks, mock-log helpers and concurrent requests

=head1 SYNOPSIS

    use lib 't/lib';
    use Aihub;
    use AihubFixtures qw(:all);

    my $t = Aihub->new(redis => 1, mock => 1);
    seed_models($t);
    my $free = seed_full_key($t, account => 7, plan => 'free');
    $t->nginx($HTTP)->start_nginx;    # the test's http{} contents
    wait_ready($t, $free);

    my $r = $t->chat($free, model => 'test-premium');
    is_error($r, 403, 'model_not_allowed', 'free: premium refused');

=head1 FUNCTIONS

    seed_models($t, %models)  the catalog: HASH aihub:model:<id> + SET
                              aihub:models, then PUBLISH aihub:invalidate
                              "models".  Default %MODELS: test-basic
                              (upstream mock-basic, tier basic) and
                              test-premium (upstream mock-premium, tier
                              premium), provider mock.
    seed_full_key($t, %f)     a key record with every field (defaults: free
                              plan, rpm/tpm 0, included 1000, overage 0,
                              models "tier:basic"), plus the account's
                              account-keys index; returns the key
    wait_ready($t, $key, %o)  polls GET /v1/models until the catalog is
                              loaded (name => instance); true when ready
    is_error($r, $status, $code, $name)
                              status, the OpenAI error shape and its code
    mock_count($t)            requests the mock provider received so far
    mock_since($t, $n)        its log entries after the first $n
    parallel_chat($t, $n, $key, %opt)
                              $n requests at once (forked children, each
                              one blocking HTTP request, all released
                              together); returns a list of hash refs
                              {status, code, body}; opt: model, headers,
                              names => [instances to alternate], path
    period_id($time)          "YYYYMMDD" of the calendar month of $time
                              (UTC), as the module names period hashes for
                              a key without anchor
    worker_processes($t, $n, $name)
                              rewrites the instance's nginx.conf (written
                              by $t->nginx) to run $n worker processes
    fault_keys($t, $prefix)   the fault tests' three pro accounts
                              "${prefix}1".."${prefix}3", RPM and TPM
                              unlimited; returns a key of each
    fault_nodes($t, $key, %o) the fault tests' gateway: nodes n1 and n2
                              (two worker processes each, the mock as
                              provider, a /plain location), aihub-worker
                              draining (consumer w1), both started and
                              checked ready with $key; opt: redis_timeout
                              (default 1s), extra (http{} directives),
                              worker (aihub-worker's arguments)
    canned_stub($t)           starts an nginx instance "stub" (no module)
                              answering every request with the bench's
                              canned chat completion (t/bench/canned.json:
                              the Perl mock cannot keep up with wrk);
                              returns its port
    wrk_chat($t, %o)          wrk (t/bench/chat.lua, keep-alive) against
                              an instance: key, c (connections), seconds,
                              model (test-basic), name (instance); returns
                              (requests answered, how many were not 2xx)
    gateway_conf(%o)          the http{} contents of a gateway proxying to
                              canned_stub's port (stub => PORT; or url =>
                              the provider's URL, e.g. %%MOCK_URL%%): Redis
                              (redis => ADDR, default %%REDIS%%;
                              redis_timeout => TIME, default 5s), key
                              cache 8m, failure mode closed, keep-alive to
                              the provider; extra => http{} lines, loc =>
                              location lines, server => server{} lines,
                              upstream => 1 for an "upstream stub" with
                              keepalive, dev => 1 for the developer API,
                              providers => the aihub_provider lines in
                              place of the one "mock" at url
                              (/api/v1/developer/)
    raw_chat($t, $key, %headers)
                              a chat call written by hand on a connection
                              of its own, returned open (a client that
                              goes away, a worker killed under it);
                              -name => the instance to call
    fork_proxy($t, $backlog, \&loop)
                              a process that listens on a free port (with
                              that accept backlog) and runs
                              loop($listen, redis port): a test's own
                              proxy in front of Redis; returns (port, pid)
    relay_accept($listen, $redis_port, $sel, \%peer, \%is_client)
                              in such a loop: a new client and its own
                              connection to Redis, paired and selected
    relay_drop($sel, $s, \%peer, @more)
                              in such a loop: $s and its peer closed and
                              forgotten (in %peer and each hash of @more)
    cut_proxy(%o)             a loop for fork_proxy that relays every
                              connection (to the port it is given, or
                              connect => sub returning the server's
                              socket) and breaks them on demand: while
                              the file cut => PATH holds "before REGEX" or
                              "after REGEX", a client's write the regex
                              matches is forwarded up to the match and the
                              connection closed (before), or forwarded and
                              the server's answer to it dropped with both
                              ends closed (after); one cut every half
                              second at most;
                              the file cuts => PATH counts the cuts by
                              the line that made them
    proxy_cuts($path, $line)  how many cuts that line made so far
    gz($bytes)                those bytes gzip-compressed
    usage_event_json($n, %fields)
                              a valid usage event as the module writes it,
                              for a test to XADD: its id $n in 32 hex
                              digits, %fields over the defaults (account
                              1, mock-basic, 10 + 5 tokens, 4 µ\$, 200)
    counted_once($t, $account, $answered, $inflight, $why)
                              after a load: wait_counted, then asserts
                              each call counted once, none beyond those
                              in flight, no event twice
    proxied_gateway($t, $proxy_port, $workers, $probe_key)
                              a gateway on canned_stub whose Redis is the
                              proxy, started; true once its catalog loaded
    period_field($t, $account, $field)
                              a member of the account's period hash of
                              this month (0 if absent)
    calls_settle($t, $account, $want, $name)
                              asserts the account's calls counter of this
                              month reaches $want (a call's settle goes in
                              the next batch, 10 ms on at the earliest)
                              and is still $want 0.2 s later
    wait_counted($t, $account, $answered)
                              polls until the account's leases are all back
                              and its calls counter equals its usage events
                              in the stream (answered calls and those
                              aborted once the provider had them; distinct
                              ids, as the worker stores them) and is at
                              least $answered; returns (ok, calls counted,
                              [event ids, a resent one as often as it is
                              in the stream])

=cut

use strict;
use warnings;

use Exporter qw(import);
use IO::Compress::Gzip qw(gzip $GzipError);
use IO::Select;
use IO::Socket::IP;
use JSON::PP;
use POSIX qw(strftime);
use Test::More;
use Time::HiRes qw(time sleep);

use AihubJSON qw(json_codec);
use AihubStream qw(usage_events dechunk);

our @EXPORT_OK = qw(seed_models seed_full_key wait_ready is_error
                    mock_count mock_since parallel_chat period_id months_back
                    ledger_events
                    worker_processes fault_keys fault_nodes
                    canned_stub wrk_chat gateway_conf
                    period_field calls_settle wait_counted fork_proxy
                    relay_accept
                    relay_drop cut_proxy proxy_cuts gz usage_event_json
                    sql_session lock_table commit_fault_so
                    proxied_gateway counted_once gateway_metrics raw_chat
                    %MODELS $PREFIX);
our %EXPORT_TAGS = (all => \@EXPORT_OK);

our $PREFIX = 'aihub:';

our %MODELS = (
    'test-basic'   => { provider => 'mock', upstream => 'mock-basic',
                        tier => 'basic', price_in => 1000000,
                        price_out => 2000000 },
    'test-premium' => { provider => 'mock', upstream => 'mock-premium',
                        tier => 'premium', price_in => 10000000,
                        price_out => 30000000 },
);

my $JSON = json_codec();


sub seed_models {
    my ($t, %models) = @_;

    %models = %MODELS unless %models;

    my $old = $t->redis('SMEMBERS', "${PREFIX}models") // [];
    $t->redis('DEL', "${PREFIX}model:$_") for @$old;
    $t->redis('DEL', "${PREFIX}models");

    for my $id (sort keys %models) {
        $t->redis('HSET', "${PREFIX}model:$id", %{ $models{$id} });
        $t->redis('SADD', "${PREFIX}models", $id);
    }

    $t->redis('SET', "${PREFIX}epoch", time, 'NX');
    $t->redis('PUBLISH', "${PREFIX}invalidate", 'models');
}


my $ACCOUNT_SEQ = 100;

sub seed_full_key {
    my ($t, %f) = @_;

    my $account = $f{account} // ++$ACCOUNT_SEQ;

    my %rec = (
        account    => $account,
        plan       => 'free',
        status     => 'active',
        scopes     => 'chat',
        expires    => 0,
        rpm        => 0,
        tpm        => 0,
        included   => 1000,
        overage    => 0,
        spend_cap  => 0,
        max_tokens => 0,
        models     => 'tier:basic',
        anchor     => 0,
        %f,
    );

    my $key = $t->seed_key(%rec);

    $t->redis('HSET', "${PREFIX}account-keys:$account",
              Aihub::key_prefix($key), Aihub::key_hash($key));

    return $key;
}


sub wait_ready {
    my ($t, $key, %o) = @_;

    return $t->wait_for(sub {
        my $r = $t->http(GET => '/v1/models', key => $key,
                         (name => $o{name}) x!! $o{name}, timeout => 2);
        return $r->{status} == 200 && $r->{json}
               && @{ $r->{json}{data} // [] };
    }, timeout => $o{timeout} // 5);
}


sub is_error {
    my ($r, $status, $code, $name) = @_;

    my $e = ref $r->{json} eq 'HASH' ? $r->{json}{error} : undef;

    my $ok = $r->{status} == $status
             && ref $e eq 'HASH'
             && defined $e->{message} && length $e->{message}
             && defined $e->{type} && length $e->{type}
             && exists $e->{param}
             && defined $e->{code} && $e->{code} eq $code
             && ($r->{headers}{'content-type'} // '') =~ m{^application/json};

    ok($ok, "$name: $status $code")
        or diag("got $r->{status}: " . ($r->{content} // ''));

    return $ok;
}


sub mock_count { scalar(my @l = $_[0]->mock_log) }


sub mock_since {
    my ($t, $n) = @_;

    my @l = $t->mock_log;
    return @l[$n .. $#l];
}


sub period_id {
    my ($time) = @_;

    return strftime('%Y%m01', gmtime($time // time));
}


# n usage events straight into MariaDB, as the drain stores them: the
# account's id, the first at ts + 1 s and a second apart, the model, in
# and out tokens each; plan (pro), total (in + out, SQL), status (200),
# aborted (0) as given.  The billing tests write their months this way.
my $ledger_tag = 0;

sub ledger_events {
    my ($t, %o) = @_;

    $ledger_tag++;
    my $plan = $o{plan} // 'pro';
    my $total = $o{total} // "$o{in} + $o{out}";
    my $status = $o{status} // 200;
    my $aborted = $o{aborted} // 0;

    $t->sql("INSERT INTO usage_events (event_id, ts, account, key_prefix, "
        . "plan, model, provider, prompt_tokens, completion_tokens, "
        . "total_tokens, cost_micros, status, streamed, aborted, estimated, "
        . "latency_ms, node) SELECT MD5(CONCAT('$ledger_tag-', seq)), "
        . "TIMESTAMP('$o{ts}') + INTERVAL seq SECOND, $o{account}, "
        . "'ai-hub-AbCdEfGh', '$plan', '$o{model}', 'mock', $o{in}, "
        . "$o{out}, $total, 0, $status, 0, $aborted, 0, 5, 'n' "
        . "FROM seq_1_to_$o{n}");
}


# the calendar month (UTC) k months before this one, "YYYY-MM"
sub months_back {
    my ($k) = @_;

    my @now = gmtime;
    my ($y, $m) = ($now[5] + 1900, $now[4] + 1 - $k);

    while ($m < 1) { $m += 12; $y-- }

    return sprintf '%04d-%02d', $y, $m;
}


sub worker_processes {
    my ($t, $n, $name) = @_;

    my $file = $t->nginx_dir($name) . '/nginx.conf';
    my $conf = Aihub::read_file($file);
    $conf =~ s/^worker_processes \d+;/worker_processes $n;/m
        or die "no worker_processes in $file\n";
    Aihub::write_file($file, $conf);
}



sub fault_keys {
    my ($t, $prefix) = @_;

    my @keys = map { $t->create_key(account => "$prefix$_", plan => 'pro') }
               1 .. 3;
    $t->worker('account', 'override', "$prefix$_", '--rpm', 0, '--tpm', 0)
        for 1 .. 3;

    return @keys;
}


sub fault_nodes {
    my ($t, $key, %o) = @_;

    my $timeout = $o{redis_timeout} // '1s';
    my $extra = $o{extra} // '';

    for my $n (qw(n1 n2)) {
        $t->nginx(<<"END", name => $n);
    aihub_redis %%REDIS%%;
    aihub_redis_timeout $timeout;
    aihub_cache_zone aihub:8m;
    aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
    $extra

    server {
        listen 127.0.0.1:%%PORT%%;

        location /v1/ {
            aihub on;
            proxy_pass \$aihub_proxy_url;
            proxy_set_header Host \$aihub_provider_host;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }

        location = /plain {
            return 200 "plain\\n";
        }
    }
END
        worker_processes($t, 2, $n);
    }

    $t->start_worker(@{ $o{worker}
                        // [ '--consumer', 'w1', '--batch', 50,
                             '--block-ms', 100 ] });
    $t->start_nginx($_) for qw(n1 n2);

    for my $n (qw(n1 n2)) {
        ok(wait_ready($t, $key, name => $n, timeout => 10), "$n: ready");
    }
}
# $n chat requests at once, each on a connection of its own: all of them
# connected, then all sent, then every answer read as it comes (one
# process, no fork: a child forked for each request cost about 40 ms of
# CPU; t/34's 1,800 requests took 81 s of CPU, now 5).
# Each result is {status, code}: the status (599 when the connection
# failed or no answer came within "timeout" seconds, as HTTP::Tiny says)
# and the error code of a JSON error answer.

sub parallel_chat {
    my ($t, $n, $key, %o) = @_;

    my @names = @{ $o{names} // [ undef ] };
    my $path = $o{path} // '/v1/chat/completions';
    my $body = $JSON->encode({
        model    => $o{model} // 'test-basic',
        messages => [ { role => 'user', content => 'hello' } ],
    });
    my %h = (host => 'localhost', 'content-type' => 'application/json',
             %{ $o{headers} // {} },
             authorization => "Bearer $key", connection => 'close',
             'content-length' => length $body);
    my $head = "POST $path HTTP/1.1\r\n"
               . join('', map { my $k = $_;
                                map { "$k: $_\r\n" }
                                    ref $h{$k} ? @{ $h{$k} } : $h{$k} }
                          sort keys %h)
               . "\r\n";

    my (@res, %pending);
    my $sel = IO::Select->new;

    # every connection made first, then every request sent: they reach
    # nginx within a few milliseconds of each other
    my @conn = map {
        my $s = eval { $t->connect(name => $names[$_ % @names]) };
        [ $_, $s, $@ ];
    } 0 .. $n - 1;

    for (@conn) {
        my ($i, $s, $err) = @$_;

        unless ($s && print $s $head . $body) {
            $res[$i] = { status => 599, code => "connect: " . ($err || $!) };
            next;
        }

        $s->blocking(0);
        $pending{ fileno $s } = [ $i, $s, '' ];
        $sel->add($s);
    }

    my $deadline = time + ($o{timeout} // 20);

    while ($sel->count && time < $deadline) {
        my $wait = $deadline - time;

        for my $s ($sel->can_read($wait > 0 ? $wait : 0)) {
            my $p = $pending{ fileno $s };
            my $got = sysread($s, $p->[2], 65536, length $p->[2]);

            next if !defined $got && $!{EAGAIN};
            next if $got;

            # the end of the answer (Connection: close), or of the connection
            $sel->remove($s);
            delete $pending{ fileno $s };
            close $s;
            $res[ $p->[0] ] = parallel_answer($p->[2]);
        }
    }

    for my $p (values %pending) {
        close $p->[1];
        $res[ $p->[0] ] = { status => 599, code => 'timed out' };
    }

    return @res;
}


# an HTTP/1.1 answer read to the end: {status, code}
sub parallel_answer {
    my ($raw) = @_;

    my $end = index($raw, "\r\n\r\n");
    my ($status) = $raw =~ m{^HTTP/1\.[01] (\d{3})};

    return { status => 599, code => 'no answer' }
        if $end < 0 || !$status;

    my $head = substr($raw, 0, $end);
    my $content = substr($raw, $end + 4);
    $content = dechunk($content)
        if $head =~ /^transfer-encoding:\s*chunked\s*$/mi;

    my $json = $content =~ /^\s*\{/ ? eval { $JSON->decode($content) }
                                      : undef;

    return { status => $status,
             code => ($json && ref $json->{error} ? $json->{error}{code}
                                                  : undef) };
}


# --- steady load and the ledger check, for the fault tests (t/6x) ----------
#
# These are called fully qualified (AihubFixtures::load_start and so on).
#
#   $load = load_start($t, keys => [...], names => [...], clients => 4,
#                      seconds => 20, max => 400, pause => 0.02,
#                      headers => {...}, timeout => 30)
#       forked children, each a loop of blocking chat requests (model
#       mock-basic) alternating over the nginx instances and the keys,
#       until load_stop, "seconds" or "max" requests per child; loopback
#       only.  Each request is one line in the child's file.
#   @res = load_stop($t, $load)
#       stops the children and returns one hash per request: start (epoch
#       seconds), elapsed, status (599 when HTTP::Tiny got no answer), node,
#       key (index in keys), code (error code, "connect" when the
#       connection was refused, "io" for any other transport failure)
#   @res = load_results($load)   the same, while the load runs
#   %n = status_counts(@res)     status => count
#   chat_calls($t)               chat requests the mock provider received
#   usage_rows($t)               rows in usage_events
#   wait_drained($t, timeout => 30)
#       until every chat call the provider received is a row and nothing
#       is pending in the stream; true when it got there
#   ledger_counters($t)
#       { account id => [ calls in the Redis period hash(es), counted rows in
#       usage_events ] } for every account with rows or a period hash

sub load_start {
    my ($t, %o) = @_;

    my @keys = @{ $o{keys} };
    my @names = @{ $o{names} };
    my $clients = $o{clients} // 4;
    my $dir = $t->dir . '/load' . int(rand 1e9);
    mkdir $dir or die "mkdir $dir: $!\n";

    my $deadline = time + ($o{seconds} // 30);
    my @pids;

    for my $c (0 .. $clients - 1) {
        my $pid = fork;
        die "fork: $!\n" unless defined $pid;

        if ($pid == 0) {
            srand($$ ^ time);
            open my $fh, '>', "$dir/$c" or POSIX::_exit(1);
            $fh->autoflush(1);

            for my $i (0 .. ($o{max} // 1000) - 1) {
                last if -e "$dir/stop" || time >= $deadline;

                my $node = $names[($c + $i) % @names];
                my $k = ($c * 7 + $i) % @keys;
                my $start = time;
                my $r = eval {
                    $t->chat($keys[$k], model => $o{model} // 'mock-basic',
                             name => $node, headers => $o{headers} // {},
                             timeout => $o{timeout} // 30);
                };
                my $code = '-';

                if (!$r) {
                    $r = { status => 599, elapsed => time - $start };
                    $code = 'io';
                } elsif ($r->{status} == 599) {
                    $code = ($r->{content} // '') =~ /Could not connect
                                                      |Connection\ refused/x
                            ? 'connect' : 'io';
                } elsif (ref $r->{json} eq 'HASH'
                         && ref $r->{json}{error} eq 'HASH') {
                    $code = $r->{json}{error}{code} // '-';
                }

                printf $fh "%.4f %.4f %d %s %d %s\n", $start, $r->{elapsed},
                       $r->{status}, $node, $k, $code;

                sleep $o{pause} if $o{pause};
            }

            close $fh;
            POSIX::_exit(0);
        }

        push @pids, $pid;
    }

    return { dir => $dir, pids => \@pids };
}


sub load_results {
    my ($load) = @_;

    my @res;

    for my $file (sort glob "$load->{dir}/[0-9]*") {
        for my $line (split /\n/, Aihub::read_file($file)) {
            my @f = split / /, $line;
            next unless @f == 6;
            push @res, { start => $f[0], elapsed => $f[1], status => $f[2],
                         node => $f[3], key => $f[4], code => $f[5] };
        }
    }

    return sort { $a->{start} <=> $b->{start} } @res;
}


sub load_stop {
    my ($t, $load) = @_;

    Aihub::write_file("$load->{dir}/stop", '');
    waitpid($_, 0) for @{ $load->{pids} };

    return load_results($load);
}


sub status_counts {
    my %n;
    $n{ $_->{status} }++ for @_;
    return %n;
}


sub chat_calls {
    my ($t) = @_;

    return scalar grep { ($_->{path} // '') =~ m{/chat/completions} }
                  $t->mock_log;
}


sub usage_rows { $_[0]->sql_value('SELECT COUNT(*) FROM usage_events') }


sub wait_drained {
    my ($t, %o) = @_;

    return $t->wait_for(sub {
        my $p = eval { $t->redis('XPENDING', "${PREFIX}usage",
                                 'aihub-drain')->[0] } // -1;
        my $rows = eval { usage_rows($t) } // -1;
        return $p == 0 && $rows == chat_calls($t);
    }, timeout => $o{timeout} // 30, interval => 0.2);
}


sub ledger_counters {
    my ($t) = @_;

    my %c;

    # the calls that count (the worker's AW_SQL_COUNTED): 2xx, or aborted
    for my $row ($t->sql('SELECT account, COUNT(*) FROM usage_events'
                         . ' WHERE status BETWEEN 200 AND 299 OR aborted = 1'
                         . ' GROUP BY account')) {
        $c{ $row->[0] } = [ 0, $row->[1] + 0 ];
    }

    for my $hash (@{ $t->redis('KEYS', "${PREFIX}period:*") // [] }) {
        my ($account) = $hash =~ /^\Q$PREFIX\Eperiod:(\d+):/ or next;
        $c{$account} //= [ 0, 0 ];
        $c{$account}[0] += $t->redis('HGET', $hash, 'calls') // 0;
    }

    return \%c;
}


sub canned_stub {
    my ($t) = @_;

    my $canned = Aihub::read_file(Aihub::root() . '/t/bench/canned.json');
    $canned =~ s/\s+\z//;
    $canned =~ s/'/\\'/g;

    $t->nginx(<<"END", name => 'stub', no_module => 1);
    server {
        listen 127.0.0.1:%%PORT%%;
        keepalive_requests 100000;

        location / {
            default_type application/json;
            return 200 '$canned';
        }
    }
END
    $t->start_nginx('stub');

    return $t->port('stub');
}


sub wrk_chat {
    my ($t, %o) = @_;

    local $ENV{BENCH_KEY} = $o{key};
    local $ENV{BENCH_MODEL} = $o{model} // 'test-basic';
    my $port = $t->port($o{name});
    my $out = `/usr/bin/wrk -t2 -c$o{c} -d$o{seconds}s --timeout 10s \\
               -s t/bench/chat.lua http://127.0.0.1:$port/ 2>&1`;
    my ($n) = $out =~ /BENCH requests=(\d+)/ or diag($out);
    my ($status) = $out =~ / status=(\d+)/;
    my @codes = $out =~ / (status_\d+=\d+)/g;
    diag("wrk on " . ($o{name} // 'the gateway') . ": @codes") if @codes;
    my ($us) = $out =~ / duration_us=(\d+)/;

    return ($n // 0, $status // -1, ($us // 0) / 1e6);
}


sub gateway_conf {
    my (%o) = @_;

    my $redis = $o{redis} // '%%REDIS%%';
    my $timeout = $o{redis_timeout} // '5s';
    my $providers = $o{providers}
                    // "aihub_provider mock url="
                       . ($o{url} // "http://127.0.0.1:$o{stub}/v1")
                       . " key_env=AIHUB_MOCK_KEY;";
    my $extra = $o{extra} // '';
    my $loc = $o{loc} // '';
    my $server = $o{server} // '';
    $server .= <<'END' if $o{dev};
        location /api/v1/developer/ {
            aihub on;
            aihub_failure_mode closed;
            proxy_pass $aihub_proxy_url;
        }
END
    my $failure = $o{failure_mode} // 'closed';
    my $upstream = $o{upstream} ? <<"END" : '';
    upstream stub {
        server 127.0.0.1:$o{stub};
        keepalive 32;
    }
END

    return <<"END";
    aihub_redis $redis;
    aihub_redis_timeout $timeout;
    aihub_cache_zone aihub:8m;
    $providers
    $extra
$upstream
    server {
        listen 127.0.0.1:%%PORT%%;
        keepalive_requests 100000;

        location /v1/ {
            aihub on;
            aihub_failure_mode $failure;
            $loc
            proxy_pass \$aihub_proxy_url;
            proxy_set_header Host \$aihub_provider_host;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }

        location = /metrics { aihub_metrics; }
        $server
    }
END
}


# a chat call written by hand on its own connection, left to the caller to
# read or drop (a client that goes away, a worker process killed under it);
# %h: more request headers, and -name => the instance (default: the first)
sub raw_chat {
    my ($t, $key, %h) = @_;

    my $name = delete $h{-name};
    my $body = '{"model":"test-basic","messages":[{"role":"user",'
               . '"content":"hello"}]}';
    my $s = $t->connect(name => $name);
    print $s "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"
             . "Authorization: Bearer $key\r\n"
             . "Content-Type: application/json\r\n"
             . join('', map { "$_: $h{$_}\r\n" } sort keys %h)
             . "Content-Length: " . length($body) . "\r\n"
             . "Connection: close\r\n\r\n$body";
    return $s;
}


# the module's counters (the "aihub_metrics" location of gateway_conf):
# a hash of name (labels included) to value
sub gateway_metrics {
    my ($t, $name) = @_;

    my $r = $t->http(GET => '/metrics', name => $name);
    my %m;
    for (split /\n/, $r->{content} // '') {
        next if /^#/;
        my ($k, $v) = /^(\S+) (\S+)$/ or next;
        $m{$k} = $v;
    }
    return \%m;
}


sub fork_proxy {
    my ($t, $backlog, $loop) = @_;

    my $listen = IO::Socket::IP->new(LocalHost => '127.0.0.1',
                                     LocalPort => 0, Listen => $backlog,
                                     ReuseAddr => 1)
        or BAIL_OUT("proxy listen: $!");
    my $port = $listen->sockport;
    my $pid = fork // BAIL_OUT("fork: $!");

    if ($pid == 0) {
        $loop->($listen, $t->redis_port);
        POSIX::_exit(0);
    }

    close $listen;

    return ($port, $pid);
}


# after a load on one account: the calls counted once (wait_counted), none
# beyond those answered and those in flight when the client stopped, and
# no usage event in the stream twice ($why says why none would be); the
# tests' own (Test::More) assertions; returns the calls counted
sub counted_once {
    my ($t, $account, $answered, $inflight, $why) = @_;

    my ($ok, $calls, $ids) = wait_counted($t, $account, $answered);
    Test::More::ok($ok, "every lease back, the counter equal to the events: "
                        . "$calls calls counted, $answered answered");
    Test::More::cmp_ok($calls, '<=', $answered + $inflight,
                       'no call counted beyond those answered and those '
                       . 'in flight');

    my %seen;
    my @twice = grep { $seen{$_}++ } @$ids;
    Test::More::is(scalar @twice, 0, 'no usage event in the stream twice'
                                     . ($why ? " ($why)" : ''));
    return $calls;
}


# a gateway that reaches Redis through a test's proxy (fork_proxy's port),
# with "workers" worker processes, started, its catalog loaded (probe: a
# key to ask with); returns true when ready
sub proxied_gateway {
    my ($t, $proxy, $workers, $probe) = @_;

    my $stub = canned_stub($t);
    $t->nginx(gateway_conf(redis => "127.0.0.1:$proxy", stub => $stub));
    worker_processes($t, $workers);
    $t->start_nginx;
    return wait_ready($t, $probe);
}


sub cut_proxy {
    my (%o) = @_;

    return sub {
        my ($listen, $port) = @_;
        my $sel = IO::Select->new($listen);
        my (%peer, %is_client, %cut_answer, %cuts);
        my $last_cut = 0;

        my $connect = $o{connect} // sub {
            IO::Socket::IP->new(PeerHost => '127.0.0.1', PeerPort => $port);
        };

        my $drop = sub {
            relay_drop($sel, $_[0], \%peer, \%is_client, \%cut_answer);
        };

        my $count = sub {
            my ($line) = @_;
            $cuts{$line}++;
            $last_cut = time;
            Aihub::write_file($o{cuts}, join '', map { "$_ $cuts{$_}\n" }
                                                sort keys %cuts);
        };

        for ( ;; ) {
            for my $s ($sel->can_read(1)) {
                if ($s == $listen) {
                    my $c = $listen->accept or next;
                    my $server = $connect->() or do { close $c; next };
                    @peer{ $c, $server } = ($server, $c);
                    $is_client{$c} = 1;
                    $sel->add($c, $server);
                    next;
                }

                my $n = sysread($s, my $buf, 65536);
                if (!$n) {
                    $drop->($s);
                    next;
                }

                my $to = $peer{$s} or next;

                if ($cut_answer{$s}) {
                    $count->($cut_answer{$s});
                    $drop->($s);
                    next;
                }

                if ($is_client{$s} && -e $o{cut} && time - $last_cut >= 0.5) {
                    my $line = Aihub::read_file($o{cut});
                    $line =~ s/^\s+|\s+$//g;
                    my ($when, $re) = $line =~ /^(before|after) (.+)$/s;

                    if ($when && $buf =~ /$re/s) {
                        if ($when eq 'before') {
                            # what came before the match goes on; the
                            # client's end is closed at once, the server's
                            # gets the end of the stream (a close with
                            # answers unread would reset it and lose the
                            # bytes) and is read until the server closes it
                            my $at = $-[0];
                            syswrite($to, substr($buf, 0, $at)) if $at > 0;
                            $count->($line);
                            delete @peer{ $s, $to };
                            delete $is_client{$s};
                            $sel->remove($s);
                            close $s;
                            shutdown($to, 1);
                            next;
                        }

                        $cut_answer{$to} = $line;
                        $last_cut = time;
                    }
                }

                syswrite($to, $buf) // $drop->($s);
            }
        }
    };
}


sub proxy_cuts {
    my ($path, $line) = @_;

    my $text = -e $path ? Aihub::read_file($path) : '';
    return ($text =~ /^\Q$line\E (\d+)$/m)[0] // 0;
}


# a MariaDB session of its own, SQL written to it line by line (a lock it
# takes is held until the handle is closed or told otherwise)
sub sql_session {
    my ($t) = @_;

    open(my $s, '|-', 'mariadb', '--no-defaults', '-uroot',
         '--socket=' . $t->mysql_socket, $t->mysql_db)
        or die "mariadb: $!";
    $s->autoflush(1);
    return $s;
}


# "table" locked for writing by a session of its own: (the session, whether
# the lock was seen taken within 10 s); "UNLOCK TABLES;\n" to it releases it
sub lock_table {
    my ($t, $table) = @_;

    my $s = sql_session($t);
    print $s "LOCK TABLES $table WRITE;\n";
    my $ok = $t->wait_for(sub {
        scalar $t->sql("SHOW OPEN TABLES WHERE `Table` = '$table' "
                       . "AND In_use > 0")
    }, timeout => 10);
    return ($s, $ok);
}


# t/lib/commit_fault.c built into the test's directory: preloaded into a
# worker (LD_PRELOAD), MySQL refuses the COMMIT of any transaction that
# wrote the model "commit-poison" (error 1180, after a real ROLLBACK)
sub commit_fault_so {
    my ($t) = @_;

    my $so = "$t->{dir}/commit_fault.so";
    my $inc = `mariadb_config --include 2>/dev/null`
              || `mysql_config --include 2>/dev/null` || '';
    chomp $inc;
    system('cc', '-shared', '-fPIC', split(' ', $inc), '-o', $so,
           't/lib/commit_fault.c', '-ldl') == 0
        or die "cannot build t/lib/commit_fault.c\n";
    return $so;
}


sub usage_event_json {
    my ($n, %f) = @_;

    return JSON::PP->new->canonical->encode({
        v => 1, id => sprintf('%032x', $n), ts => int(time * 1000),
        node => 'test-node', account => 1, key => 'ai-hub-AbCdEfGh',
        plan => 'pro', model => 'mock-basic', provider => 'mock',
        prompt_tokens => 10, completion_tokens => 5, total_tokens => 15,
        cost_micros => 4, status => 200, streamed => JSON::PP::false,
        aborted => JSON::PP::false, estimated => JSON::PP::false,
        latency_ms => 12,
        %f,
    });
}


sub gz {
    my ($in) = @_;

    my $out;
    gzip(\$in => \$out) or die $GzipError;
    return $out;
}


# a relaying proxy's new client (fork_proxy's loop): its own connection to
# Redis made, the two paired in %$peer and both in the select set, the
# client's end marked in %$is_client; false when none was made
sub relay_accept {
    my ($listen, $redis_port, $sel, $peer, $is_client) = @_;

    my $c = $listen->accept or return;
    my $r = IO::Socket::IP->new(PeerHost => '127.0.0.1',
                                PeerPort => $redis_port)
        or do { close $c; return };
    @$peer{ $c, $r } = ($r, $c);
    $is_client->{$c} = 1;
    $sel->add($c, $r);
    return 1;
}


sub relay_drop {
    my ($sel, $s, $peer, @more) = @_;

    my $p = delete $peer->{$s};
    delete $peer->{$p} if $p;

    for my $h ($s, $p) {
        next unless $h;
        delete $_->{$h} for @more;
        $sel->remove($h);
        close $h;
    }
}


sub period_field {
    my ($t, $account, $field) = @_;

    my %h = @{ $t->redis('HGETALL', "aihub:period:$account:" . period_id())
               // [] };

    return ($h{$field} // 0) + 0;
}


sub calls_settle {
    my ($t, $account, $want, $name) = @_;

    $t->wait_for(sub { period_field($t, $account, 'calls') == $want },
                 timeout => 5);
    Time::HiRes::sleep(0.2);

    return Test::More::is(period_field($t, $account, 'calls'), $want, $name);
}


sub wait_counted {
    my ($t, $account, $answered) = @_;

    my ($calls, @ids);
    my $period = period_id();

    my $counted = sub {
        @ids = map { $_->{id} }
               grep { $_->{account} == $account
                      && ($_->{status} == 200 || $_->{aborted}) }
               usage_events($t);
        my %distinct = map { $_ => 1 } @ids;

        return $calls == keys %distinct;
    };

    my $ok = $t->wait_for(sub {
        $calls = period_field($t, $account, 'calls');

        # the stream last, once the counters say done: reading every
        # event of a load each poll took seconds
        return 0 unless period_field($t, $account, 'leased_calls') == 0
                        && ($t->redis('ZCARD',
                                      "aihub:leases:$account:$period")
                            // 0) == 0
                        && $calls >= $answered;

        return $counted->();
    }, timeout => 30, interval => 0.2);

    $counted->() unless $ok;
    diag("account $account: leased "
         . period_field($t, $account, 'leased_calls') . ", calls $calls, "
         . scalar(@ids) . " events, $answered answered") unless $ok;

    return ($ok, $calls, \@ids);
}

1;
