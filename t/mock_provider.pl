#!/usr/bin/perl

# A mock model provider that behaves on the wire like the real ones
# (OpenAI, OpenRouter, Gemini's OpenAI-compatible endpoint), for tests and
# the demo.  Core Perl only.
#
#   perl t/mock_provider.pl --port P --key SECRET --log FILE [--pidfile F]
#       [--host 127.0.0.1]
#
# The path prefix says which provider it plays, as the real base URLs do:
#   /v1/...               OpenAI (a model whose id begins o<digit> or
#                         gpt-5 plays a reasoning model: max_tokens is a
#                         400, max_completion_tokens is read)
#   /api/v1/...           OpenRouter
#   /v1beta/openai/...    Gemini (OpenAI-compatible endpoint)
#   /mistral/v1/...       Mistral (its base URL is /v1 as OpenAI's: the
#                         prefix is the mock's way to play it): a member
#                         it does not know, such as stream_options, is a
#                         422 in its own shape; a stream's usage comes in
#                         its last chunk, unasked
# Endpoints under each prefix:
#   POST chat/completions   JSON, or SSE when "stream": true
#   POST responses          the Responses API, JSON or SSE (typed events);
#                           "background": true answers "queued" with no
#                           usage, as OpenAI does (the model runs after);
#                           a hosted tool (web_search, ...) adds its call
#                           item, and the log its fee ("tool_fees")
#   POST embeddings         float arrays, or base64 ("encoding_format")
#   GET  models, GET models/{id}
# All require "Authorization: Bearer SECRET".  A bad credential is answered
# in the provider's own shape: OpenAI 401 invalid_api_key; OpenRouter 401
# {"error":{"code":401,"message":...}}; Gemini 400 with a JSON *array*
# [{"error":{"code":400,...,"status":"INVALID_ARGUMENT",
#   "details":[{"reason":"API_KEY_INVALID",...}]}}].  Errors of every kind
# follow the same per-provider shapes.
#
# Like the real providers, every answer carries the provider's own headers
# (openai-organization, openai-project, openai-processing-ms,
# openai-version, set-cookie, cf-ray, x-ratelimit-*), and an answer is
# compressed (gzip or deflate; streams too, flushed per event) when the
# request's Accept-Encoding asks for it.
#
# Deterministic usage
#   prompt_tokens     = ceil(characters of all message contents / 4)
#                       + 3 per message
#   completion_tokens = x-mock-completion-tokens, default 7; the answer is
#                       that many words "tok" joined by spaces; at most
#                       max_tokens (max_completion_tokens), then
#                       finish_reason "length"
#   total_tokens      = prompt + completion (+ x-mock-total-extra)
#
# Per-request controls, as request headers or, for clients where headers
# are awkward, in the last user message as "mock:status=500;delay-ms=100"
# (same names without the "x-mock-" prefix):
#   x-mock-status: N             answer N with an OpenAI error JSON
#   x-mock-message: TEXT         ... whose message is TEXT
#   x-mock-violations: N         ... Gemini's: with N fieldViolations in
#                                its details (some 200 bytes each)
#   x-mock-delay-ms: N           sleep before the response headers
#   x-mock-chunk-delay-ms: N     sleep between SSE events
#   x-mock-cut-after: N          send N SSE events, then drop the connection
#   x-mock-no-usage: 1           no usage in the JSON nor the usage chunk
#   x-mock-garbage: 1            200 with a body that is not JSON
#   x-mock-accel: PATH           a JSON answer with X-Accel-Redirect: PATH
#                                (and X-Accel-Buffering: yes), as a
#                                provider behind nginx might leave them
#   x-mock-json-cut: N           a JSON answer: its header (Content-Length
#                                of the whole body), its first N bytes,
#                                then the connection dropped
#   x-mock-flagged: 1            403: OpenRouter's moderation flagged the
#                                input (its error's metadata.reasons)
#   x-mock-error-null: 1         a chat answer that begins "error": null
#   x-mock-error-200: 1|CODE     200 with OpenRouter's error object as
#                                the body (an error once the model began),
#                                its "code" 502, or CODE (400: about the
#                                request)
#   x-mock-total-extra: N        total_tokens = prompt + completion + N
#   x-mock-choices-null: 1       usage chunk carries "choices": null
#   x-mock-size: BYTES           pad the answer's content to BYTES characters
#   x-mock-completion-tokens: N  completion tokens (and words) to answer
#   x-mock-retry-after: N|DATE   Retry-After on an error answer
#   x-mock-no-credit: 1          with status 429: OpenAI's answer for an
#                                account with no credit left
#                                (insufficient_quota)
#   x-mock-raw-status: 1         a status line no HTTP parser accepts
#   x-mock-error-after: N        a stream: N content chunks, then an error
#                                object (as OpenRouter fails mid-stream)
#   x-mock-open-end: 1           a stream ends without "[DONE]" and without
#                                the blank line after its last event (the
#                                last line's break and then the end)
#   x-mock-incomplete: 1         Responses API: stop at max_output_tokens,
#                                status "incomplete" (response.incomplete)
#   x-mock-failed: 1             Responses API stream: after the text, end
#                                with response.failed (status "failed", an
#                                error object, the usage so far)
#   x-mock-encoding: CODING      compress unasked: gzip, gzip-members (a
#                                gzip member an event, or a half), deflate,
#                                raw-deflate (labelled deflate), br (bytes
#                                labelled br that are not brotli),
#                                gzip-corrupt (gzip whose data goes bad: a
#                                stream's from the fourth event, a JSON
#                                answer's from its middle), gzip-garbage
#                                (labelled gzip, not gzip from its first
#                                byte)
#   x-mock-keepalive: N          keep the connection alive before the answer
#                                as DeepSeek does while its server is busy:
#                                N empty lines before a JSON answer, N
#                                ": keep-alive" comments before a stream's
#                                first event, 100 ms apart
#   x-mock-tool-call: 1          chat: the model calls a tool instead of
#                                writing text: get_weather with
#                                {"location":"Paris","unit":"celsius"};
#                                streamed as OpenAI does, the name first,
#                                then the arguments 8 characters a chunk;
#                                finish_reason "tool_calls"
#   x-mock-tool-call: 2          two parallel calls: that one, then
#                                get_time with {"timezone":"Europe/Paris"};
#                                streamed as OpenAI does (index 0, then
#                                index 1), but by Gemini as its endpoint
#                                does: no "index", each call whole with its
#                                own id, both in one delta, finish_reason
#                                "stop" (its stream says "stop" for tool
#                                calls; its JSON says "tool_calls")
#   x-mock-reasoning-tokens: N   output tokens spent thinking (Responses:
#                                output_tokens_details.reasoning_tokens;
#                                chat: total = prompt + completion + N)
#
# Each provider's own dialect of the answer, as on the wire:
#   OpenRouter  "provider" and "native_finish_reason" beside the choices;
#               usage with "cost" (dollars, a float: 1.5e-05), "is_byok"
#               and token details; streams open with, and every third
#               event is preceded by, an SSE comment
#               ": OPENROUTER PROCESSING" (its keep-alive)
#   OpenAI      every stream chunk has "service_tier", "system_fingerprint"
#               and "obfuscation" (random padding that hides the length
#               of the text, on by default since 2025), the usage chunk too;
#               with include_usage every chunk before it "usage": null
#   Gemini      a stream carries its usage in every chunk, cumulative
#               (completion_tokens counts the words so far), the last
#               content chunk with finish_reason and the full usage: no
#               separate usage chunk
# (the log's "usage" is the final figure, without the dialect's extras)
#
# Every request is appended to the log as one JSON line, written with a
# single write() on an O_APPEND descriptor before the response is sent:
#   {ts, method, path, authorization, headers, body, status, usage, streamed}
#
# One process per connection (fork; a child may serve more connections one
# after another, below), HTTP/1.1 keep-alive, request bodies by
# Content-Length or chunked.  Streams use chunked transfer encoding (HTTP/1.1)
# or end with the connection (HTTP/1.0).  SIGTERM stops the server and the
# connections it is serving.

use strict;
use warnings;

use Compress::Raw::Zlib qw(Z_OK Z_SYNC_FLUSH Z_FINISH MAX_WBITS WANT_GZIP);
use Encode qw(decode);
use MIME::Base64 qw(encode_base64);
use Fcntl qw(O_WRONLY O_APPEND O_CREAT);
use Getopt::Long;
use IO::Select;
use IO::Socket::IP;
use JSON::PP;
use POSIX qw(ceil WNOHANG SIGCHLD SIG_BLOCK SIG_UNBLOCK sigprocmask);
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Time::HiRes qw(time sleep);

my %opt = (host => '127.0.0.1', key => 'mock-provider-secret');

GetOptions(\%opt, 'port=i', 'key=s', 'log=s', 'pidfile=s', 'host=s')
    && $opt{port} && $opt{log}
    or die "usage: $0 --port P --key SECRET --log FILE [--pidfile F]\n";

my $JSON = JSON::PP->new->utf8->canonical;

# Gemini's thought signature on a call (opaque bytes, base64)
my $THOUGHT_SIGNATURE = 'EjQKMgEMOdbHmock';
# what Gemini 3 takes on a call: its own signature, or one of the values
# Google documents for a call the model did not make ("Thought signatures",
# ai.google.dev)
my %SIGNATURE_OK = map { $_ => 1 } $THOUGHT_SIGNATURE,
    'skip_thought_signature_validator', 'context_engineering_is_the_way_to_go';
my $IDLE_TIMEOUT = 60;
my @MODELS = qw(mock-basic mock-premium gpt-4o-mini gemini-2.0-flash
                grok-beta mock-embed text-embedding-3-small);
my $EMBED_DIM = 8;

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
my %kids;

# A child that has served its connection takes the next ones from the
# listening socket, which it shares with the parent (whoever is first
# takes a connection), until it has waited LINGER seconds for one or the
# parent is gone; only the first LINGER_MAX children at a time do, so a
# burst of hundreds of connections leaves no more behind.  A fork cost
# each connection about 19 ms of CPU (4 in the parent, 15 in the child;
# a request on a connection kept alive takes 0.8 ms), and nginx opens a
# connection to the provider for every call.  A connection is still one
# process's alone, from its first request to its end.
my $LINGER = 10;
my $LINGER_MAX = 16;
my $SIGCHLD_SET = POSIX::SigSet->new(SIGCHLD);

$listen->blocking(0);

$SIG{PIPE} = 'IGNORE';
$SIG{TERM} = $SIG{INT} = sub { $stop = 1 };
$SIG{CHLD} = sub {
    while ((my $pid = waitpid(-1, WNOHANG)) > 0) {
        delete $kids{$pid};
    }
};

while (!$stop) {
    # (EINTR from SIGCHLD; a connection a lingering child took first)
    next unless IO::Select->new($listen)->can_read(1);
    my $c = $listen->accept or next;

    my $linger = keys(%kids) < $LINGER_MAX;

    # SIGCHLD held until the child is in %kids (one that ended at once
    # would stay there for ever)
    sigprocmask(SIG_BLOCK, $SIGCHLD_SET);
    my $pid = fork;
    $kids{$pid} = 1 if $pid;
    sigprocmask(SIG_UNBLOCK, $SIGCHLD_SET);

    if (!defined $pid) {
        warn "mock: fork: $!\n";
        close $c;
        next;
    }

    if ($pid == 0) {
        $SIG{TERM} = $SIG{INT} = 'DEFAULT';
        $SIG{CHLD} = 'DEFAULT';

        while ($c) {
            $c->blocking(1);
            serve_connection($c);
            close $c;
            undef $c;

            while ($linger && !$c && getppid() == $master
                   && IO::Select->new($listen)->can_read($LINGER))
            {
                $c = $listen->accept;
            }
        }

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

    # which provider this path plays, and the endpoint under its prefix
    my ($kind, $ep) = ('openai', undef);

    if ($req->{path} =~ m{^/v1beta/openai/(.+)$}) {
        ($kind, $ep) = ('gemini', $1);
    } elsif ($req->{path} =~ m{^/mistral/v1/(.+)$}) {
        ($kind, $ep) = ('mistral', $1);
    } elsif ($req->{path} =~ m{^/api/v1/(.+)$}) {
        ($kind, $ep) = ('openrouter', $1);
    } elsif ($req->{path} =~ m{^/v1/(.+)$}) {
        $ep = $1;
    }

    $req->{kind} = $kind;

    my $auth_ok = ($h->{authorization} // '') eq "Bearer $opt{key}";
    my %routes = (
        'chat/completions' => ['POST', \&chat],
        'responses'        => ['POST', \&responses],
        'embeddings'       => ['POST', \&embeddings],
        'models'           => ['GET', \&models],
    );
    my ($route, $model_id);

    if (defined $ep && $ep =~ m{^models/(.+)$}) {
        ($route, $model_id) = (['GET', \&model_one], $1);
    } elsif (defined $ep) {
        $route = $routes{$ep};
    }

    return error($c, $req, \%entry, 404, 'invalid_request_error',
                 'unknown_url', "Unknown request URL: $req->{method} "
                 . "$req->{path}")
        unless $route;

    return error($c, $req, \%entry, 405, 'invalid_request_error',
                 'method_not_allowed', "Use $route->[0].")
        if $req->{method} ne $route->[0];

    return bad_credential($c, $req, \%entry) unless $auth_ok;

    return $route->[1]->($c, $req, \%entry, $model_id) if $route->[0] eq 'GET';

    my $in = eval { $JSON->decode($req->{body}) };

    return error($c, $req, \%entry, 400, 'invalid_request_error', undef,
                 'We could not parse the JSON body of your request.')
        unless ref $in eq 'HASH';

    my $ctl = controls($h, $in);

    sleep($ctl->{'delay-ms'} / 1000) if $ctl->{'delay-ms'};

    if ($ctl->{'raw-status'}) {
        $entry{status} = 0;
        write_log(\%entry);
        put($c, "HTTZ/9.9 2OO fine\r\nx-what: ever\r\n\r\n{\"no\":1}");
        return 0;
    }

    if (my $status = $ctl->{status}) {
        return special($c, $req, \%entry, $status, $ctl)
            if $status == 204 || ($status >= 300 && $status < 400);

        my %type = (400 => ['invalid_request_error', undef,
                            'Invalid request (mock).'],
                    429 => ['requests', 'rate_limit_exceeded',
                            'Rate limit reached for requests.'],
                    500 => ['server_error', undef,
                            'The server had an error while processing '
                            . 'your request.'],
                    503 => ['server_error', 'service_unavailable',
                            'The engine is currently overloaded.']);
        my $t = $type{$status} // ['server_error', undef, "mock $status"];
        $t = [ @$t[0, 1], $ctl->{message} ] if defined $ctl->{message};

        # OpenAI's 429 for an account with no credit left
        $t = ['insufficient_quota', 'insufficient_quota',
              'You exceeded your current quota, please check your plan '
              . 'and billing details. For more information on this error, '
              . 'read the docs: https://platform.openai.com/docs/guides/'
              . 'error-codes/api-errors.']
            if $status == 429 && $ctl->{'no-credit'};

        return error($c, $req, \%entry, $status, @$t,
                     $ctl->{'retry-after'}, $ctl->{violations});
    }

    if ($ctl->{flagged}) {
        # OpenRouter's moderation (its errors page: 403, "your chosen
        # model requires moderation and your input was flagged")
        return respond($c, $req, \%entry, 403, $JSON->encode({
            error => { code => 403,
                       message => 'openai/gpt-4o requires moderation on '
                                  . 'OpenRouter. Your input was flagged for '
                                  . '"violence". No credits were charged.',
                       metadata => { reasons => [ 'violence' ],
                                     flagged_input => 'the flagged text',
                                     provider_name => 'MockUpstream',
                                     model_slug => 'openai/gpt-4o' } } }));
    }

    if ($ctl->{'error-200'}) {
        # OpenRouter once the model has begun: "the returned HTTP response
        # status will be 200 and any error ... emitted in the response
        # body" (its errors page); its envelope names the upstream and the
        # operator's account
        my $code = $ctl->{'error-200'} > 1 ? $ctl->{'error-200'} + 0 : 502;
        return respond($c, $req, \%entry, 200, $JSON->encode({
            error   => { code => $code,
                         message => $code == 400
                             ? 'This endpoint\'s maximum context length is '
                               . '8192 tokens.'
                             : 'Provider returned error',
                         metadata => { provider_name => 'MockUpstream',
                                       raw => 'upstream said: overloaded' } },
            user_id => 'user_2dHFtVWx2n56w6HkOperator0' }));
    }

    if ($ctl->{garbage}) {
        return respond($c, $req, \%entry, 200,
                       "<html>this is not JSON {\"usage\": oops\n");
    }

    return $route->[1]->($c, $req, \%entry, $in, $ctl);
}


sub models {
    my ($c, $req, $entry) = @_;

    my $list = {
        object => 'list',
        data   => [ map { model_object($_) } @MODELS ],
    };

    return respond($c, $req, $entry, 200, $JSON->encode($list));
}


sub model_one {
    my ($c, $req, $entry, $id) = @_;

    return error($c, $req, $entry, 404, 'invalid_request_error',
                 'model_not_found', "The model '$id' does not exist")
        unless grep { $_ eq $id } @MODELS;

    return respond($c, $req, $entry, 200, $JSON->encode(model_object($id)));
}


sub model_object {
    return { id => $_[0], object => 'model', created => 1700000000,
             owned_by => 'aihub-mock' };
}


# deterministic usage: see the top of this file

sub chat_usage {
    my ($in, $ctl) = @_;

    my $messages = ref $in->{messages} eq 'ARRAY' ? $in->{messages} : [];
    my $chars = 0;

    $chars += length content_text($_->{content}) for @$messages;

    my $prompt = ceil($chars / 4) + 3 * @$messages;
    my $completion = $ctl->{'completion-tokens'} // 7;

    return {
        prompt_tokens     => $prompt + 0,
        completion_tokens => $completion + 0,
        total_tokens      => $prompt + $completion
                             + ($ctl->{'total-extra'} // 0)
                             + ($ctl->{'reasoning-tokens'} // 0),
    };
}


# the usage object as each provider writes it
sub dialect_usage {
    my ($req, $usage) = @_;

    return $usage unless $req->{kind} eq 'openrouter';

    return { %$usage,
             cost => ($usage->{prompt_tokens} + 2 * $usage->{completion_tokens})
                     * 0.0000005,
             is_byok => JSON::PP::false,
             prompt_tokens_details => { cached_tokens => 0 },
             completion_tokens_details => { reasoning_tokens => 0 } };
}


sub chat {
    my ($c, $req, $entry, $in, $ctl) = @_;

    if ($req->{kind} eq 'mistral' && exists $in->{stream_options}) {
        # its API refuses what it does not know (extra_forbidden)
        return respond($c, $req, $entry, 422, $JSON->encode({
            object  => 'error',
            message => { detail => [ {
                type  => 'extra_forbidden',
                loc   => [ 'body', 'stream_options' ],
                msg   => 'Extra inputs are not permitted',
                input => $in->{stream_options} } ] },
            type    => 'invalid_request_error',
            param   => undef,
            code    => undef }));
    }

    if ($req->{kind} eq 'openai' && defined $in->{max_tokens}
        && ($in->{model} // '') =~ /^(?:o\d|gpt-5)/)
    {
        # OpenAI's reasoning models (o1, o3, gpt-5...) refuse the older
        # name of the output cap, null aside
        return respond($c, $req, $entry, 400, $JSON->encode({ error => {
            message => "Unsupported parameter: 'max_tokens' is not "
                     . "supported with this model. Use "
                     . "'max_completion_tokens' instead.",
            type    => 'invalid_request_error',
            param   => 'max_tokens',
            code    => 'unsupported_parameter' } }));
    }

    # Gemini 3 (a "gemini-3..." model id, or later) checks the thought
    # signatures of the calls passed back: the first tool call of each
    # assistant message of the current turn (after the last user message;
    # a tool's result is not one) must carry
    # extra_content.google.thought_signature, the mock's own or one of the
    # values Google documents for calls the model did not make, or its 400
    # refuses the request.  Earlier turns are not checked.
    if ($req->{kind} eq 'gemini'
        && ($in->{model} // '') =~ /^(?:models\/)?gemini-([0-9]+)/
        && $1 >= 3)
    {
        my @msgs = ref $in->{messages} eq 'ARRAY' ? @{ $in->{messages} } : ();
        my ($last_user) = grep { ref $msgs[$_] eq 'HASH'
                                 && ($msgs[$_]{role} // '') eq 'user' }
                          reverse 0 .. $#msgs;
        for my $m (@msgs[(defined $last_user ? $last_user + 1 : 0)
                         .. $#msgs]) {
            my $calls = ref $m eq 'HASH' ? $m->{tool_calls} : undef;
            next unless ref $calls eq 'ARRAY' && @$calls;
            my $sig = eval { $calls->[0]{extra_content}{google}
                                 {thought_signature} } // '';
            next if $SIGNATURE_OK{$sig};
            return error($c, $req, $entry, 400, 'invalid_request_error',
                undef, 'Function call is missing a thought_signature in '
                . 'functionCall parts. This is required for tools to work '
                . 'correctly, and missing thought_signature may lead to '
                . 'degraded model performance. Additional data, function '
                . 'call `default_api:' . ($calls->[0]{function}{name} // '')
                . '` , position 2. Please refer to https://ai.google.dev/'
                . 'gemini-api/docs/thought-signatures for more details.');
        }
    }

    my $model = $in->{model} // 'mock-basic';
    my $usage = chat_usage($in, $ctl);
    my $finish = 'stop';

    # stopped at max_tokens, as a real model is: finish_reason "length"
    my $max = $in->{max_completion_tokens} // $in->{max_tokens};

    if (defined $max && $max =~ /^\d+$/ && $max > 0
        && $max < $usage->{completion_tokens})
    {
        $usage->{total_tokens} -= $usage->{completion_tokens} - $max;
        $usage->{completion_tokens} = $max + 0;
        $finish = 'length';
    }

    my $completion = $usage->{completion_tokens};

    my @words = ('tok') x $completion;
    my $content = join ' ', @words;
    my $pad = '';

    if (my $size = $ctl->{size}) {
        $pad = 'x' x ($size - length $content) if $size > length $content;
    }

    my $id = sprintf 'chatcmpl-mock%08x%04x', int(time), $$ & 0xffff;
    my $created = int time;
    my @tools = $ctl->{'tool-call'}
                ? { id => 'call_mock' . ($$ & 0xffff), type => 'function',
                    function => { name => 'get_weather',
                                  arguments => '{"location":"Paris",'
                                               . '"unit":"celsius"}' } }
                : ();
    push @tools, { id => 'call_mock' . ($$ & 0xffff) . 'b',
                   type => 'function',
                   function => { name => 'get_time',
                                 arguments => '{"timezone":'
                                              . '"Europe/Paris"}' } }
        if ($ctl->{'tool-call'} // '') eq '2';
    $finish = 'tool_calls' if @tools;

    # Gemini signs the first call of its answer (its thought signature)
    $tools[0]{extra_content} = { google => {
        thought_signature => $THOUGHT_SIGNATURE } }
        if @tools && $req->{kind} eq 'gemini';

    if ($in->{stream} && $in->{stream} ne 'false') {
        my $want_usage = (ref $in->{stream_options} eq 'HASH'
                          && $in->{stream_options}{include_usage}
                          || $req->{kind} eq 'mistral')
                         && !$ctl->{'no-usage'};

        $entry->{streamed} = JSON::PP::true;

        return stream($c, $req, $entry, $ctl, {
            id => $id, created => $created, model => $model,
            words => \@words, pad => $pad, finish => $finish,
            completion => $completion, tools => \@tools,
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
            message       => @tools
                             ? { role => 'assistant', content => undef,
                                 tool_calls => \@tools, refusal => undef }
                             : { role => 'assistant',
                                 content => $content . $pad },
            logprobs      => undef,
            finish_reason => $finish,
        } ],
    };

    unless ($ctl->{'no-usage'}) {
        $answer->{usage} = dialect_usage($req, $usage);
        $entry->{usage} = $usage;
    }

    if ($req->{kind} eq 'openrouter') {
        $answer->{provider} = 'MockUpstream';
        $_->{native_finish_reason} = $finish for @{ $answer->{choices} };
    }

    my $body = $JSON->encode($answer);

    # an answer whose first member is "error": null (as some
    # OpenAI-compatible servers write it)
    $body =~ s/^\{/{"error":null,/ if $ctl->{'error-null'};

    return respond($c, $req, $entry, 200, $body);
}


# POST responses: input as a string or a list of message items;
# instructions; max_output_tokens

sub responses {
    my ($c, $req, $entry, $in, $ctl) = @_;

    # OpenAI keeps nothing when told "store": false, so a reasoning item
    # passed back by its id alone (no encrypted_content) names nothing
    if (defined $in->{store} && !$in->{store}
        && ref $in->{input} eq 'ARRAY')
    {
        for my $it (@{ $in->{input} }) {
            next unless ref $it eq 'HASH' && ($it->{type} // '') eq 'reasoning'
                        && !length($it->{encrypted_content} // '');
            return error($c, $req, $entry, 404, 'invalid_request_error', undef,
                         "Item with id '" . ($it->{id} // '') . "' not "
                         . 'found. Items are not persisted when `store` is '
                         . 'set to false. Try again with `store` set to '
                         . 'true, or remove this item from your input.');
        }
    }

    my $chars = length($in->{instructions} // '');
    my $items = 0;

    if (ref $in->{input} eq 'ARRAY') {
        for my $it (@{ $in->{input} }) {
            next unless ref $it eq 'HASH';
            $items++;
            $chars += length content_text($it->{content});
        }

    } else {
        $chars += length($in->{input} // '');
        $items = 1;
    }

    my $input = ceil($chars / 4) + 3 * $items;
    my $output = $ctl->{'completion-tokens'} // 7;
    my $reasoning = $ctl->{'reasoning-tokens'} // 0;
    my $status = 'completed';
    my $incomplete;

    if ($ctl->{incomplete}
        || (defined $in->{max_output_tokens}
            && $in->{max_output_tokens} =~ /^\d+$/
            && $output + $reasoning > $in->{max_output_tokens}))
    {
        $status = 'incomplete';
        $incomplete = { reason => 'max_output_tokens' };
        my $max = $in->{max_output_tokens} // 3;
        $output = $max > $reasoning ? $max - $reasoning : 1;
    }

    my $usage = {
        input_tokens          => $input + 0,
        input_tokens_details  => { cached_tokens => 0 },
        output_tokens         => $output + $reasoning,
        output_tokens_details => { reasoning_tokens => $reasoning + 0 },
        total_tokens          => $input + $output + $reasoning,
    };
    my $text = join ' ', ('tok') x $output;
    my $id = sprintf 'resp_mock%08x%04x', int(time), $$ & 0xffff;
    my $msg_id = sprintf 'msg_mock%08x%04x', int(time), $$ & 0xffff;
    # OpenAI keeps a response (30 days) unless told "store": false, and
    # says which in the response object
    my $store = defined $in->{store} ? !!$in->{store} : 1;
    $entry->{stored} = $store ? JSON::PP::true : JSON::PP::false;
    my $base = {
        id => $id, object => 'response', created_at => int time,
        model => $in->{model} // 'mock-basic', status => 'in_progress',
        error => undef, incomplete_details => undef,
        instructions => $in->{instructions},
        max_output_tokens => $in->{max_output_tokens},
        store => $store ? JSON::PP::true : JSON::PP::false,
        output => [], usage => undef,
    };
    my $item = {
        id => $msg_id, type => 'message', status => 'completed',
        role => 'assistant',
        content => [ { type => 'output_text', text => $text,
                       annotations => [] } ],
    };
    my $final = { %$base, status => $status,
                  incomplete_details => $incomplete,
                  output => [ $item ], usage => $usage };

    # the tools OpenAI runs itself, billed per call beyond the tokens
    my @hosted = grep { ref $_ eq 'HASH'
                        && ($_->{type} // '') !~ /^(?:function|custom)$/ }
                      @{ ref $in->{tools} eq 'ARRAY' ? $in->{tools} : [] };

    if (@hosted) {
        $entry->{tool_fees} = [ map { $_->{type} // '?' } @hosted ];
        unshift @{ $final->{output} },
            map { { id => sprintf('ws_mock%08x', int time),
                    type => ($_->{type} // '') =~ /^web_search/
                            ? 'web_search_call' : ($_->{type} // '?') . '_call',
                    status => 'completed',
                    action => { type => 'search', query => 'mock' } } } @hosted;
    }

    $entry->{usage} = $usage;

    # background: "queued" at once, with no usage; the model runs after
    # (and is billed then), the result fetched from GET responses/{id}
    if ($in->{background} && $in->{background} ne 'false'
        && !($in->{stream} && $in->{stream} ne 'false'))
    {
        $entry->{background} = JSON::PP::true;
        return respond($c, $req, $entry, 200, $JSON->encode(
            { %$base, status => 'queued', background => JSON::PP::true }));
    }

    unless ($in->{stream} && $in->{stream} ne 'false') {
        return respond($c, $req, $entry, 200, $JSON->encode($final));
    }

    $entry->{streamed} = JSON::PP::true;

    my @ev;
    my $seq = 0;
    my $add = sub {
        my ($type, %f) = @_;
        push @ev, "event: $type\ndata: "
                  . $JSON->encode({ type => $type,
                                    sequence_number => $seq++, %f })
                  . "\n\n";
    };

    $add->('response.created', response => $base);
    $add->('response.in_progress', response => $base);
    $add->('response.output_item.added', output_index => 0,
           item => { %$item, status => 'in_progress', content => [] });
    $add->('response.content_part.added', item_id => $msg_id,
           output_index => 0, content_index => 0,
           part => { type => 'output_text', text => '', annotations => [] });

    my $i = 0;

    for my $w (('tok') x $output) {
        $add->('response.output_text.delta', item_id => $msg_id,
               output_index => 0, content_index => 0,
               delta => $i++ ? " $w" : $w, logprobs => []);
    }

    $add->('response.output_text.done', item_id => $msg_id,
           output_index => 0, content_index => 0, text => $text,
           logprobs => []);
    $add->('response.content_part.done', item_id => $msg_id,
           output_index => 0, content_index => 0,
           part => $item->{content}[0]);
    $add->('response.output_item.done', output_index => 0, item => $item);

    if ($ctl->{failed}) {
        $add->('response.failed', response => {
            %$final, status => 'failed', incomplete_details => undef,
            error => { code => 'server_error',
                       message => 'The model failed to generate a '
                                  . 'response (mock).' } });
    } else {
        $add->($status eq 'completed' ? 'response.completed'
                                      : 'response.incomplete',
               response => $final);
    }

    return send_stream($c, $req, $entry, $ctl, \@ev);
}


# POST embeddings: input a string or a list of strings (or token arrays)

sub embeddings {
    my ($c, $req, $entry, $in, $ctl) = @_;

    my @inputs = ref $in->{input} eq 'ARRAY' ? @{ $in->{input} }
                                             : ($in->{input} // '');
    @inputs = ([ @inputs ]) if @inputs && !ref $inputs[0]
                               && $inputs[0] =~ /^\d+$/
                               && ref $in->{input} eq 'ARRAY'
                               && !grep { !/^\d+$/ } @inputs;

    my ($tokens, @data) = (0);
    my $b64 = ($in->{encoding_format} // 'float') eq 'base64';

    for my $i (0 .. $#inputs) {
        my $x = $inputs[$i];
        $tokens += ref $x eq 'ARRAY' ? scalar @$x : ceil(length($x) / 4) || 1;

        my @v = map { sprintf('%.4f', (($i + 1) * ($_ + 1) % 7) / 7) + 0 }
                0 .. $EMBED_DIM - 1;

        push @data, { object => 'embedding', index => $i,
                      embedding => $b64
                          ? encode_base64(pack('f<*', @v), '') : \@v };
    }

    my $usage = { prompt_tokens => $tokens, total_tokens => $tokens };

    $entry->{usage} = $usage;

    return respond($c, $req, $entry, 200, $JSON->encode({
        object => 'list', data => \@data,
        model => $in->{model} // 'mock-embed', usage => $usage,
    }));
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
            completion-tokens reasoning-tokens error-after)) {
        delete $ctl{$_} if defined $ctl{$_} && $ctl{$_} !~ /^\d+$/;
    }

    # seconds, or an HTTP-date, as RFC 9110 allows
    delete $ctl{'retry-after'}
        if defined $ctl{'retry-after'}
           && $ctl{'retry-after'} !~ /^(\d+|\w{3}, \d\d \w{3} \d{4} [\d:]{8} GMT)$/;

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


# an error in the shape of the provider this path plays

sub error {
    my ($c, $req, $entry, $status, $type, $code, $message, $retry,
        $violations) = @_;

    my $body;

    if ($req->{kind} eq 'gemini') {
        my %gs = (400 => 'INVALID_ARGUMENT', 401 => 'UNAUTHENTICATED',
                  403 => 'PERMISSION_DENIED', 404 => 'NOT_FOUND',
                  429 => 'RESOURCE_EXHAUSTED', 500 => 'INTERNAL',
                  503 => 'UNAVAILABLE');
        # Google's errors may list each field at fault in their details
        my @details = $violations ? ({
            '@type' => 'type.googleapis.com/google.rpc.BadRequest',
            fieldViolations => [ map { {
                field => "tools[0].function_declarations[$_].parameters",
                description => 'Invalid JSON payload received. Unknown '
                    . "name \"additionalProperties\" at 'tools[0].function_"
                    . "declarations[$_].parameters': Cannot find field." } }
                0 .. $violations - 1 ] }) : ();
        $body = $JSON->encode([ { error => {
            code    => $status + 0,
            message => $message,
            status  => $gs{$status} // 'UNKNOWN',
            (@details ? (details => \@details) : ()),
        } } ]);

    } elsif ($req->{kind} eq 'openrouter') {
        $body = $JSON->encode({ error => {
            code     => $status + 0,
            message  => $message,
            metadata => { provider_name => 'MockUpstream' },
        } });

    } else {
        $body = $JSON->encode({ error => {
            message => $message,
            type    => $type,
            param   => undef,
            code    => $code,
        } });
    }

    return respond($c, $req, $entry, $status, $body,
                   defined $retry ? ("Retry-After: $retry\r\n") : ());
}


sub bad_credential {
    my ($c, $req, $entry) = @_;

    if ($req->{kind} eq 'gemini') {
        my $body = $JSON->encode([ { error => {
            code    => 400,
            message => 'API key not valid. Please pass a valid API key.',
            status  => 'INVALID_ARGUMENT',
            details => [ {
                '@type'  => 'type.googleapis.com/google.rpc.ErrorInfo',
                reason   => 'API_KEY_INVALID',
                domain   => 'googleapis.com',
                metadata => { service => 'generativelanguage.googleapis.com' },
            } ],
        } } ]);

        return respond($c, $req, $entry, 400, $body);
    }

    if ($req->{kind} eq 'openrouter') {
        return error($c, $req, $entry, 401, undef, undef,
                     'No auth credentials found');
    }

    return error($c, $req, $entry, 401, 'invalid_request_error',
                 'invalid_api_key', 'Incorrect API key provided.');
}


# 204, or a redirect to somewhere the client must never be sent

sub special {
    my ($c, $req, $entry, $status, $ctl) = @_;

    $entry->{status} = $status + 0;
    write_log($entry);

    my $head = "HTTP/1.1 $status " . reason($status) . "\r\n"
             . provider_headers()
             . ($status == 204 ? ''
                : "Location: http://provider.internal/secret?org=1\r\n"
                  . "Content-Length: 0\r\n")
             . ($req->{keepalive} ? '' : "Connection: close\r\n")
             . "\r\n";

    put($c, $head) or return 0;

    return 1;
}


# what real providers send with every answer (OpenAI behind Cloudflare)

sub provider_headers {
    return "openai-organization: user-mockorg0123\r\n"
         . "openai-project: proj_mock0123\r\n"
         . "openai-processing-ms: 42\r\n"
         . "openai-version: 2020-10-01\r\n"
         . "x-ratelimit-limit-requests: 10000\r\n"
         . "x-ratelimit-remaining-requests: 9999\r\n"
         . "x-ratelimit-reset-requests: 6ms\r\n"
         . "x-ratelimit-limit-tokens: 30000000\r\n"
         . "x-ratelimit-remaining-tokens: 29999000\r\n"
         . "x-ratelimit-reset-tokens: 2ms\r\n"
         . "set-cookie: __cf_bm=mockprovidercookie; path=/; "
         . "domain=.provider.internal; HttpOnly; Secure; SameSite=None\r\n"
         . "cf-ray: 8e0f00mock0000-SJC\r\n"
         . "x-request-id: mock-$$-" . int(time * 1000) . "\r\n";
}


# the coding the request asks for, as real providers choose it

sub encoding {
    my ($req) = @_;

    # a provider that compresses unasked, as RFC 9110 lets a server do when
    # the request has no Accept-Encoding: x-mock-encoding gzip, deflate,
    # raw-deflate (labelled deflate, without zlib's header, as some servers
    # send it), or br (bytes this mock cannot make: labelled br, not
    # brotli)
    my $forced = lc($req->{headers}{'x-mock-encoding'} // '');
    return $forced
        if $forced =~ /^(gzip|gzip-members|gzip-corrupt|gzip-garbage|deflate
                         |raw-deflate|br)$/x;

    my $ae = lc($req->{headers}{'accept-encoding'} // '');
    my %q;

    for (split /\s*,\s*/, $ae) {
        my ($name, $p) = split /\s*;\s*/, $_, 2;
        my $qv = ($p // '') =~ /q=([0-9.]+)/ ? $1 : 1;
        $q{$name} = $qv;
    }

    return 'gzip' if ($q{gzip} // 0) > 0;
    return 'deflate' if ($q{deflate} // 0) > 0;
    return undef;
}


sub deflater {
    my ($enc) = @_;

    return undef
        if $enc eq 'br' || $enc eq 'gzip-members' || $enc eq 'gzip-garbage';

    my ($d, $st) = Compress::Raw::Zlib::Deflate->new(
        -WindowBits => $enc =~ /^gzip/ ? WANT_GZIP
                       : $enc eq 'raw-deflate' ? -MAX_WBITS : MAX_WBITS,
        -AppendOutput => 0);

    die "mock: deflate: $st\n" unless $st == Z_OK;

    return $d;
}


# the Content-Encoding an answer in that coding is labelled with
sub coding_label {
    return { 'raw-deflate' => 'deflate', 'gzip-members' => 'gzip',
             'gzip-corrupt' => 'gzip', 'gzip-garbage' => 'gzip' }->{$_[0]}
           // $_[0];
}

# what an unreadable coding's bytes look like here: not the text
sub unreadable { join '', map { chr(0x80 | (ord($_) ^ 0x2a)) } split //, $_[0] }


sub compress_all {
    my ($enc, $data) = @_;

    return unreadable($data) if $enc eq 'br';
    return "\xff" x length $data if $enc eq 'gzip-garbage';

    # one gzip member a half, as a concatenation of gzip files is
    if ($enc eq 'gzip-members') {
        my $h = int(length($data) / 2);
        return compress_all('gzip', substr($data, 0, $h))
               . compress_all('gzip', substr($data, $h));
    }

    # the first half good, then bytes that are not deflate data (0xff
    # starts a block of the reserved type 3, RFC 1951, 3.2.3)
    if ($enc eq 'gzip-corrupt') {
        my $d = deflater($enc);
        my ($a, $b);
        $d->deflate(substr($data, 0, int(length($data) / 2)), $a);
        $d->flush($b, Z_SYNC_FLUSH);
        return $a . $b . ("\xff" x 16);
    }

    my $d = deflater($enc);
    my ($out, $tail);

    $d->deflate($data, $out) == Z_OK or die "mock: deflate\n";
    $d->flush($tail, Z_FINISH) == Z_OK or die "mock: deflate\n";

    return $out . $tail;
}


sub respond {
    my ($c, $req, $entry, $status, $body, @extra) = @_;

    $entry->{status} = $status + 0;
    write_log($entry);

    my $enc = length $body ? encoding($req) : undef;

    $body = compress_all($enc, $body) if $enc;

    my $ka = $status == 200 && !$enc
             ? ($req->{headers}{'x-mock-keepalive'} // 0) : 0;

    my $head = "HTTP/1.1 $status " . reason($status) . "\r\n"
             . "Content-Type: application/json\r\n"
             . "Content-Length: " . (length($body) + $ka) . "\r\n"
             . ($enc ? "Content-Encoding: " . coding_label($enc)
                       . "\r\nVary: Accept-Encoding\r\n"
                     : '')
             . provider_headers()
             . join('', @extra)
             . (defined $req->{headers}{'x-mock-accel'}
                ? "X-Accel-Redirect: $req->{headers}{'x-mock-accel'}\r\n"
                  . "X-Accel-Buffering: yes\r\n" : '')
             . ($req->{keepalive} ? '' : "Connection: close\r\n")
             . "\r\n";

    if ($ka) {
        put($c, $head) or return 0;
        for (1 .. $ka) { sleep 0.1; put($c, "\n") or return 0; }
        $head = '';
    }

    my $cut = $req->{headers}{'x-mock-json-cut'};

    if (defined $cut && $cut =~ /^\d+$/) {
        put($c, $head . substr($body, 0, $cut));
        return 0;
    }

    put($c, $head . $body) or return 0;

    return 1;
}


sub stream {
    my ($c, $req, $entry, $ctl, $s) = @_;

    my $base = { id => $s->{id}, object => 'chat.completion.chunk',
                 created => $s->{created}, model => $s->{model} };
    my @events;

    my $i = 0;

    my @tools = @{ $s->{tools} // [] };

    if (@tools > 1 && $req->{kind} eq 'gemini') {
        # parallel calls as Gemini streams them: no index, each call whole
        # with its id (the first with its thought signature), all in one
        # delta; its stream's finish_reason is "stop"
        push @events, { %$base, choices => [ { index => 0, delta => {
            role => 'assistant',
            tool_calls => [ map { { id => $_->{id}, type => 'function',
                                    function => { %{ $_->{function} } },
                                    ($_->{extra_content}
                                     ? (extra_content => $_->{extra_content})
                                     : ()) } }
                            @tools ] },
            finish_reason => undef } ] };
        # (the signature is on the first call already, as in an answer)
        $s->{finish} = 'stop';
        @tools = ();
    }

    for my $k (0 .. $#tools) {
        # each call's name first, then its arguments in pieces
        my $tool = $tools[$k];
        my $args = $tool->{function}{arguments};
        push @events, { %$base, choices => [ { index => 0, delta => {
            ($k == 0 ? (role => 'assistant', content => undef,
                        refusal => undef) : ()),
            tool_calls => [ { index => $k, id => $tool->{id},
                              type => 'function',
                              function => { name => $tool->{function}{name},
                                            arguments => '' },
                              ($tool->{extra_content}
                               ? (extra_content => $tool->{extra_content})
                               : ()) } ] },
            finish_reason => undef } ] };
        for (my $p = 0; $p < length $args; $p += 8) {
            push @events, { %$base, choices => [ { index => 0, delta => {
                tool_calls => [ { index => $k, function => {
                    arguments => substr($args, $p, 8) } } ] },
                finish_reason => undef } ] };
        }
    }

    for my $w (@{ $s->{tools} // [] } ? () : @{ $s->{words} }) {
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

    if (defined(my $n = $ctl->{'error-after'})) {
        # a provider failing mid-stream, as OpenRouter reports it: an
        # error object in place of the next chunk, then the end
        splice @events, $n;
        push @events, { error => { message => 'Upstream provider failed '
                                              . 'mid-stream (mock).',
                                   code => 502 } };
        @events = map { 'data: ' . $JSON->encode($_) . "\n\n" } @events;
        push @events, "data: [DONE]\n\n";

        return send_stream($c, $req, $entry, $ctl, \@events);
    }

    if ($req->{kind} eq 'mistral') {
        # the last content chunk ends it, with the usage
        $events[-1]{choices}[0]{finish_reason} = $s->{finish} // 'stop';
        $events[-1]{usage} = $s->{usage} if $s->{usage} && @events;
        $entry->{usage} = $s->{usage} if $s->{usage};

    } elsif ($req->{kind} eq 'gemini') {
        # usage in every chunk, cumulative; the last content chunk ends it
        my $u = $s->{usage};
        my $k = 0;

        for my $ev (@events) {
            $k++ if $k < $s->{completion};
            $ev->{usage} = { prompt_tokens => $u->{prompt_tokens},
                             completion_tokens => $k,
                             total_tokens => $u->{prompt_tokens} + $k }
                if $u;
        }

        $events[-1]{choices}[0]{finish_reason} = $s->{finish} // 'stop';
        $events[-1]{usage} = $u if $u && @events;
        $entry->{usage} = $u if $u;

    } else {
        push @events, { %$base, choices => [ { index => 0, delta => {},
                                               finish_reason => $s->{finish}
                                                                // 'stop' } ] };

        if ($s->{usage}) {
            push @events, { %$base,
                            choices => $ctl->{'choices-null'} ? undef : [],
                            usage => dialect_usage($req, $s->{usage}) };
            $entry->{usage} = $s->{usage};
        }
    }

    if ($req->{kind} eq 'openai') {
        for my $ev (@events) {
            # with include_usage, every chunk but the last says "usage": null
            $ev->{usage} = undef if $s->{usage} && !exists $ev->{usage};
            $ev->{service_tier} = 'default';
            $ev->{system_fingerprint} = 'fp_mock0001';
            $ev->{obfuscation} = join '', map { ('a' .. 'z', 'A' .. 'Z')
                                                [int rand 52] } 1 .. 1 + int rand 12;
        }
    }

    @events = map { 'data: ' . $JSON->encode($_) . "\n\n" } @events;
    push @events, "data: [DONE]\n\n";

    return send_stream($c, $req, $entry, $ctl, \@events);
}


# sends SSE events: chunked (HTTP/1.1) or to the end of the connection,
# compressed when asked and flushed after every event, as real providers'
# front ends do

sub send_stream {
    my ($c, $req, $entry, $ctl, $events) = @_;

    if ($ctl->{'open-end'}) {
        $events = [ grep { !/^data: \[DONE\]/ } @$events ];
        $events->[-1] =~ s/\n\n\z/\n/ if @$events;
    }

    my $chunked = $req->{version} eq 'HTTP/1.1';
    my $enc = encoding($req);
    my $d = $enc ? deflater($enc) : undef;
    my $br = ($enc // '') eq 'br';
    my $members = ($enc // '') eq 'gzip-members';
    my $corrupt = ($enc // '') eq 'gzip-corrupt';
    my $garbage = ($enc // '') eq 'gzip-garbage';

    $entry->{status} = 200;
    write_log($entry);

    put($c, "HTTP/1.1 200 OK\r\n"
            . "Content-Type: text/event-stream; charset=utf-8\r\n"
            . "Cache-Control: no-cache\r\n"
            . ($enc ? "Content-Encoding: " . coding_label($enc) . "\r\n"
                    : '')
            . provider_headers()
            . ($chunked ? "Transfer-Encoding: chunked\r\n"
                        : "Connection: close\r\n")
            . "\r\n") or return 0;

    my $cut = $ctl->{'cut-after'};
    my $delay = ($ctl->{'chunk-delay-ms'} // 0) / 1000;
    my $n = 0;

    for (1 .. ($d || $br || $members || $garbage ? 0
               : $ctl->{keepalive} // 0)) {
        sleep 0.1;
        my $ping = ": keep-alive\n\n";
        put($c, $chunked ? sprintf("%x\r\n%s\r\n", length $ping, $ping)
                         : $ping) or return 0;
    }

    for my $ev (@$events) {
        if (defined $cut && $n == $cut) {
            # abrupt: no last chunk, no [DONE], just the end of the
            # connection
            close $c;
            return 0;
        }

        sleep $delay if $delay && $n;

        # OpenRouter's keep-alive comment, first and every third event
        $ev = ": OPENROUTER PROCESSING\n\n" . $ev
            if $req->{kind} eq 'openrouter' && $n % 3 == 0;

        if ($d) {
            my ($a, $b);
            $d->deflate($ev, $a);
            $d->flush($b, Z_SYNC_FLUSH);
            $ev = $a . $b;

            # from the fourth event, bytes that are not deflate data
            $ev = "\xff" x length $ev if $corrupt && $n >= 3;

        } elsif ($br) {
            $ev = unreadable($ev);

        } elsif ($members) {
            $ev = compress_all('gzip', $ev);    # a gzip member an event

        } elsif ($garbage) {
            $ev = "\xff" x length $ev;
        }

        put($c, $chunked ? sprintf("%x\r\n%s\r\n", length $ev, $ev) : $ev)
            or return 0;
        $n++;
    }

    if ($d) {
        my $tail;
        $d->flush($tail, Z_FINISH);
        put($c, $chunked ? sprintf("%x\r\n%s\r\n", length $tail, $tail)
                         : $tail) or return 0;
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
    my %r = (200 => 'OK', 204 => 'No Content', 301 => 'Moved Permanently',
             302 => 'Found', 307 => 'Temporary Redirect',
             400 => 'Bad Request', 401 => 'Unauthorized',
             404 => 'Not Found', 405 => 'Method Not Allowed',
             429 => 'Too Many Requests', 500 => 'Internal Server Error',
             502 => 'Bad Gateway', 503 => 'Service Unavailable');

    return $r{$_[0]} // 'Status';
}
