#!/usr/bin/perl

# A mock model provider speaking the OpenAI wire format, for tests and the
# demo.  Core Perl only.
#
#   perl t/mock_provider.pl --port P --key SECRET --log FILE [--pidfile F]
#       [--host 127.0.0.1]
#
# Endpoints
#   POST /v1/chat/completions   JSON, or SSE when "stream": true
#   GET  /v1/models             OpenAI list shape
# Both require "Authorization: Bearer SECRET" (401 OpenAI error otherwise).
#
# Deterministic usage
#   prompt_tokens     = ceil(characters of all message contents / 4)
#                       + 3 per message
#   completion_tokens = x-mock-completion-tokens, default 7; the answer is
#                       that many words "tok" joined by spaces
#   total_tokens      = prompt + completion (+ x-mock-total-extra)
#
# Per-request controls, as request headers or, for clients where headers
# are awkward, in the last user message as "mock:status=500;delay-ms=100"
# (same names without the "x-mock-" prefix):
#   x-mock-status: N             answer N with an OpenAI error JSON
#   x-mock-delay-ms: N           sleep before the response headers
#   x-mock-chunk-delay-ms: N     sleep between SSE events
#   x-mock-cut-after: N          send N SSE events, then drop the connection
#   x-mock-no-usage: 1           no usage in the JSON nor the usage chunk
#   x-mock-garbage: 1            200 with a body that is not JSON
#   x-mock-total-extra: N        total_tokens = prompt + completion + N
#   x-mock-choices-null: 1       usage chunk carries "choices": null
#   x-mock-size: BYTES           pad the answer's content to BYTES characters
#   x-mock-completion-tokens: N  completion tokens (and words) to answer
#
# Every request is appended to the log as one JSON line, written with a
# single write() on an O_APPEND descriptor before the response is sent:
#   {ts, method, path, authorization, headers, body, status, usage, streamed}
#
# One process per connection (fork), HTTP/1.1 keep-alive, request bodies by
# Content-Length or chunked.  Streams use chunked transfer encoding (HTTP/1.1)
# or end with the connection (HTTP/1.0).  SIGTERM stops the server and the
# connections it is serving.

use strict;
use warnings;

use Encode qw(decode);
use Fcntl qw(O_WRONLY O_APPEND O_CREAT);
use Getopt::Long;
use IO::Select;
use IO::Socket::IP;
use JSON::PP;
use POSIX qw(ceil WNOHANG);
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Time::HiRes qw(time sleep);

my %opt = (host => '127.0.0.1', key => 'mock-provider-secret');

GetOptions(\%opt, 'port=i', 'key=s', 'log=s', 'pidfile=s', 'host=s')
    && $opt{port} && $opt{log}
    or die "usage: $0 --port P --key SECRET --log FILE [--pidfile F]\n";

my $JSON = JSON::PP->new->utf8->canonical;
my $IDLE_TIMEOUT = 60;
my @MODELS = qw(mock-basic mock-premium gpt-4o-mini gemini-2.0-flash
                grok-beta);

sysopen(my $log, $opt{log}, O_WRONLY | O_APPEND | O_CREAT, 0644)
    or die "mock: cannot open $opt{log}: $!\n";

my $listen = IO::Socket::IP->new(
    LocalHost => $opt{host},
    LocalPort => $opt{port},
    Listen    => 128,
    ReuseAddr => 1,
) or die "mock: cannot listen on $opt{host}:$opt{port}: $@\n";

setpgrp(0, 0);

if ($opt{pidfile}) {
    open my $fh, '>', $opt{pidfile} or die "mock: $opt{pidfile}: $!\n";
    print $fh "$$\n";
    close $fh;
}

my $master = $$;
my $stop = 0;

$SIG{PIPE} = 'IGNORE';
$SIG{TERM} = $SIG{INT} = sub { $stop = 1 };
$SIG{CHLD} = sub { 1 while waitpid(-1, WNOHANG) > 0 };

while (!$stop) {
    my $c = $listen->accept;

    unless ($c) {
        next;                      # EINTR from SIGCHLD, or a failed accept
    }

    my $pid = fork;

    if (!defined $pid) {
        warn "mock: fork: $!\n";
        close $c;
        next;
    }

    if ($pid == 0) {
        close $listen;
        $SIG{TERM} = $SIG{INT} = 'DEFAULT';
        $SIG{CHLD} = 'DEFAULT';
        serve_connection($c);
        POSIX::_exit(0);
    }

    close $c;
}

# stop the connections still being served, then leave

$SIG{TERM} = 'IGNORE';
kill 'TERM', -$master;
unlink $opt{pidfile} if $opt{pidfile};
exit 0;


sub serve_connection {
    my ($c) = @_;

    setsockopt($c, IPPROTO_TCP, TCP_NODELAY, 1);
    $c->autoflush(1);

    my $buf = '';

    for (;;) {
        my $req = read_request($c, \$buf);

        return unless $req;

        my $keep = handle_request($c, $req);

        return unless $keep && $req->{keepalive};
    }
}


# reads one request: returns {method, path, version, headers, body,
# keepalive} or undef when the connection is closed or idle too long

sub read_request {
    my ($c, $buf) = @_;

    my $end;

    until (($end = index($$buf, "\r\n\r\n")) >= 0) {
        return undef unless fill($c, $buf);
    }

    my $head = substr($$buf, 0, $end);
    substr($$buf, 0, $end + 4) = '';

    my ($line, @lines) = split /\r\n/, $head;
    my ($method, $target, $version) = split / /, $line // '';

    return undef unless $version && $version =~ m{^HTTP/1\.[01]$};

    my %h;

    for (@lines) {
        my ($n, $v) = /^([^:]+):\s*(.*?)\s*$/ or next;
        $n = lc $n;
        $h{$n} = exists $h{$n} ? "$h{$n}, $v" : $v;
    }

    my $body = '';

    if (($h{'transfer-encoding'} // '') =~ /chunked/i) {
        for (;;) {
            my $i;

            until (($i = index($$buf, "\r\n")) >= 0) {
                return undef unless fill($c, $buf);
            }

            my ($size) = substr($$buf, 0, $i) =~ /^([0-9a-fA-F]+)/;
            return undef unless defined $size;
            $size = hex $size;
            substr($$buf, 0, $i + 2) = '';

            if ($size == 0) {
                # trailers, up to the empty line
                until (($i = index($$buf, "\r\n")) >= 0) {
                    return undef unless fill($c, $buf);
                }

                while ($i > 0) {
                    substr($$buf, 0, $i + 2) = '';
                    until (($i = index($$buf, "\r\n")) >= 0) {
                        return undef unless fill($c, $buf);
                    }
                }

                substr($$buf, 0, 2) = '';
                last;
            }

            while (length($$buf) < $size + 2) {
                return undef unless fill($c, $buf);
            }

            $body .= substr($$buf, 0, $size);
            substr($$buf, 0, $size + 2) = '';
        }

    } elsif (my $len = $h{'content-length'}) {
        while (length($$buf) < $len) {
            return undef unless fill($c, $buf);
        }

        $body = substr($$buf, 0, $len);
        substr($$buf, 0, $len) = '';
    }

    my $conn = lc($h{connection} // '');
    my $keepalive = $version eq 'HTTP/1.1' ? $conn !~ /close/
                                           : $conn =~ /keep-alive/;

    my ($path) = split /\?/, $target, 2;

    return {
        method    => $method,
        path      => $path,
        version   => $version,
        headers   => \%h,
        body      => $body,
        keepalive => $keepalive,
    };
}


sub fill {
    my ($c, $buf) = @_;

    return 0 unless IO::Select->new($c)->can_read($IDLE_TIMEOUT);

    my $n = sysread($c, $$buf, 65536, length $$buf);

    return $n ? 1 : 0;
}


# answers one request; returns true if the connection may be kept

sub handle_request {
    my ($c, $req) = @_;

    my $h = $req->{headers};
    my %entry = (
        ts            => time,
        method        => $req->{method},
        path          => $req->{path},
        authorization => $h->{authorization},
        headers       => $h,
        body          => decode('UTF-8', $req->{body}),
        status        => undef,
        usage         => undef,
        streamed      => JSON::PP::false,
    );

    my $auth_ok = ($h->{authorization} // '') eq "Bearer $opt{key}";

    if ($req->{method} eq 'GET' && $req->{path} eq '/v1/models') {
        return error($c, $req, \%entry, 401, 'invalid_request_error',
                     'invalid_api_key', 'Incorrect API key provided.')
            unless $auth_ok;

        my $list = {
            object => 'list',
            data   => [ map { { id => $_, object => 'model',
                                created => 1700000000,
                                owned_by => 'aihub-mock' } } @MODELS ],
        };

        return respond($c, $req, \%entry, 200, $JSON->encode($list));
    }

    if ($req->{path} ne '/v1/chat/completions') {
        return error($c, $req, \%entry, 404, 'invalid_request_error',
                     'unknown_url', "Unknown request URL: $req->{method} "
                     . "$req->{path}");
    }

    if ($req->{method} ne 'POST') {
        return error($c, $req, \%entry, 405, 'invalid_request_error',
                     'method_not_allowed', 'Use POST.');
    }

    return error($c, $req, \%entry, 401, 'invalid_request_error',
                 'invalid_api_key', 'Incorrect API key provided.')
        unless $auth_ok;

    my $in = eval { $JSON->decode($req->{body}) };

    return error($c, $req, \%entry, 400, 'invalid_request_error', undef,
                 'We could not parse the JSON body of your request.')
        unless ref $in eq 'HASH';

    my $ctl = controls($h, $in);

    sleep($ctl->{'delay-ms'} / 1000) if $ctl->{'delay-ms'};

    if (my $status = $ctl->{status}) {
        my %type = (429 => ['requests', 'rate_limit_exceeded',
                            'Rate limit reached for requests.'],
                    500 => ['server_error', undef,
                            'The server had an error while processing '
                            . 'your request.'],
                    503 => ['server_error', 'service_unavailable',
                            'The engine is currently overloaded.']);
        my $t = $type{$status} // ['server_error', undef, "mock $status"];

        return error($c, $req, \%entry, $status, @$t);
    }

    if ($ctl->{garbage}) {
        return respond($c, $req, \%entry, 200,
                       "<html>this is not JSON {\"usage\": oops\n");
    }

    my $model = $in->{model} // 'mock-basic';
    my $messages = ref $in->{messages} eq 'ARRAY' ? $in->{messages} : [];
    my $chars = 0;

    $chars += length content_text($_->{content}) for @$messages;

    my $prompt = ceil($chars / 4) + 3 * @$messages;
    my $completion = $ctl->{'completion-tokens'} // 7;
    my $usage = {
        prompt_tokens     => $prompt + 0,
        completion_tokens => $completion + 0,
        total_tokens      => $prompt + $completion
                             + ($ctl->{'total-extra'} // 0),
    };

    my @words = ('tok') x $completion;
    my $content = join ' ', @words;
    my $pad = '';

    if (my $size = $ctl->{size}) {
        $pad = 'x' x ($size - length $content) if $size > length $content;
    }

    my $id = sprintf 'chatcmpl-mock%08x%04x', int(time), $$ & 0xffff;
    my $created = int time;

    if ($in->{stream} && $in->{stream} ne 'false') {
        my $want_usage = ref $in->{stream_options} eq 'HASH'
                         && $in->{stream_options}{include_usage}
                         && !$ctl->{'no-usage'};

        $entry{streamed} = JSON::PP::true;

        return stream($c, $req, \%entry, $ctl, {
            id => $id, created => $created, model => $model,
            words => \@words, pad => $pad,
            usage => $want_usage ? $usage : undef,
        });
    }

    my $answer = {
        id      => $id,
        object  => 'chat.completion',
        created => $created,
        model   => $model,
        choices => [ {
            index         => 0,
            message       => { role => 'assistant',
                               content => $content . $pad },
            logprobs      => undef,
            finish_reason => 'stop',
        } ],
    };

    unless ($ctl->{'no-usage'}) {
        $answer->{usage} = $usage;
        $entry{usage} = $usage;
    }

    return respond($c, $req, \%entry, 200, $JSON->encode($answer));
}


# the controls of one request: headers first, then "mock:k=v;k=v" in the
# last user message

sub controls {
    my ($h, $in) = @_;

    my %ctl;

    if (ref $in->{messages} eq 'ARRAY') {
        my ($last) = grep { ref $_ eq 'HASH' && ($_->{role} // '') eq 'user' }
                     reverse @{ $in->{messages} };

        if ($last && content_text($last->{content}) =~ /mock:(\S+)/) {
            for (split /;/, $1) {
                my ($k, $v) = split /=/, $_, 2;
                $ctl{lc $k} = $v // 1;
            }
        }
    }

    for my $name (keys %$h) {
        $ctl{$1} = $h->{$name} if $name =~ /^x-mock-(.+)$/;
    }

    for (qw(status delay-ms chunk-delay-ms cut-after total-extra size
            completion-tokens)) {
        delete $ctl{$_} if defined $ctl{$_} && $ctl{$_} !~ /^\d+$/;
    }

    return \%ctl;
}


sub content_text {
    my ($content) = @_;

    return $content // '' unless ref $content;

    if (ref $content eq 'ARRAY') {
        return join '', map { ref $_ eq 'HASH' ? $_->{text} // '' : '' }
                        @$content;
    }

    return '';
}


sub error {
    my ($c, $req, $entry, $status, $type, $code, $message) = @_;

    my $body = $JSON->encode({ error => {
        message => $message,
        type    => $type,
        param   => undef,
        code    => $code,
    } });

    return respond($c, $req, $entry, $status, $body);
}


sub respond {
    my ($c, $req, $entry, $status, $body) = @_;

    $entry->{status} = $status + 0;
    write_log($entry);

    my $head = "HTTP/1.1 $status " . reason($status) . "\r\n"
             . "Content-Type: application/json\r\n"
             . "Content-Length: " . length($body) . "\r\n"
             . "x-request-id: mock-$$-" . int(time * 1000) . "\r\n"
             . ($req->{keepalive} ? '' : "Connection: close\r\n")
             . "\r\n";

    put($c, $head . $body) or return 0;

    return 1;
}


sub stream {
    my ($c, $req, $entry, $ctl, $s) = @_;

    my $chunked = $req->{version} eq 'HTTP/1.1';
    my $base = { id => $s->{id}, object => 'chat.completion.chunk',
                 created => $s->{created}, model => $s->{model} };
    my @events;

    my $i = 0;

    for my $w (@{ $s->{words} }) {
        my $delta = { content => $i++ ? " $w" : $w };
        $delta->{role} = 'assistant' if $i == 1;
        push @events, { %$base, choices => [ { index => 0, delta => $delta,
                                               finish_reason => undef } ] };
    }

    for (my $p = 0; $p < length $s->{pad}; $p += 1024) {
        push @events, { %$base, choices => [ { index => 0,
            delta => { content => substr($s->{pad}, $p, 1024) },
            finish_reason => undef } ] };
    }

    push @events, { %$base, choices => [ { index => 0, delta => {},
                                           finish_reason => 'stop' } ] };

    if ($s->{usage}) {
        push @events, { %$base,
                        choices => $ctl->{'choices-null'} ? undef : [],
                        usage => $s->{usage} };
        $entry->{usage} = $s->{usage};
    }

    @events = map { 'data: ' . $JSON->encode($_) . "\n\n" } @events;
    push @events, "data: [DONE]\n\n";

    $entry->{status} = 200;
    write_log($entry);

    put($c, "HTTP/1.1 200 OK\r\n"
            . "Content-Type: text/event-stream\r\n"
            . "Cache-Control: no-cache\r\n"
            . ($chunked ? "Transfer-Encoding: chunked\r\n"
                        : "Connection: close\r\n")
            . "\r\n") or return 0;

    my $cut = $ctl->{'cut-after'};
    my $delay = ($ctl->{'chunk-delay-ms'} // 0) / 1000;
    my $n = 0;

    for my $ev (@events) {
        if (defined $cut && $n == $cut) {
            # abrupt: no last chunk, no [DONE], just the end of the
            # connection
            close $c;
            return 0;
        }

        sleep $delay if $delay && $n;

        put($c, $chunked ? sprintf("%x\r\n%s\r\n", length $ev, $ev) : $ev)
            or return 0;
        $n++;
    }

    return 0 unless $chunked;

    put($c, "0\r\n\r\n") or return 0;

    return 1;
}


sub put {
    my ($c, $data) = @_;

    while (length $data) {
        my $n = syswrite($c, $data);
        return 0 unless $n;
        substr($data, 0, $n) = '';
    }

    return 1;
}


sub write_log {
    my ($entry) = @_;

    my $line = $JSON->encode($entry) . "\n";

    syswrite($log, $line);
}


sub reason {
    my %r = (200 => 'OK', 400 => 'Bad Request', 401 => 'Unauthorized',
             404 => 'Not Found', 405 => 'Method Not Allowed',
             429 => 'Too Many Requests', 500 => 'Internal Server Error',
             502 => 'Bad Gateway', 503 => 'Service Unavailable');

    return $r{$_[0]} // 'Status';
}
