package AihubStream;

=head1 NAME

AihubStream - helpers for the provider, streaming and metering tests
(t/2*.t): a raw HTTP client that timestamps every SSE event as it arrives
(and can hang up mid-stream), the usage events in Redis (for any test
that reads them), a keep-alive client, the billing rule written out once
for the tests

=head1 SYNOPSIS

    use lib 't/lib';
    use Aihub;
    use AihubFixtures qw(:all);
    use AihubStream qw(:all);

    my $r = raw_request($t, body => chat_body(stream => 1), key => $key,
                        headers => { 'x-mock-chunk-delay-ms' => 200 });
    # $r->{events}[$i]{t}: when event $i was complete at the client

    my @ev = usage_events($t);    # decoded events of aihub:usage
    my $n = usage_event_count($t);

=head1 FUNCTIONS

    raw_request($t, %o)   one request on a fresh socket (Connection:
                          close).  o: port (default the "nginx"
                          instance), method (POST), path
                          (/v1/chat/completions), key, headers {},
                          body (string, or ref: JSON-encoded),
                          abort_after => N (close the socket once N SSE
                          events arrived), timeout (10 s).  Returns
                          { status, headers (lower-case names, repeated
                          ones joined with ", "), head (the raw status line
                          and headers), raw (every byte received),
                          body (de-chunked), events => [ { data, t } ]
                          (t: Time::HiRes time the event's blank line
                          arrived), sent (time the request was written),
                          first (time of the first body byte), closed
                          (true if the peer closed) }
    chat_body(%o)         a chat request body: model (test-basic),
                          content ('hello'), stream, include_usage,
                          messages, extra {}
    usage_events($t, raw => 0)
                          every event of aihub:usage, decoded, oldest
                          first: an entry carries one or more events, each
                          its own "event" field or a line of an "events"
                          field, in order (all of them are returned,
                          flattened); with raw => 1 the JSON strings as
                          written
    usage_event_count($t) how many events aihub:usage holds (not entries:
                          XLEN counts entries)
    wait_usage($t, $n, timeout => 5)
                          waits until aihub:usage holds at least $n events;
                          returns the events (possibly fewer)
    cost_of($m, $prompt, $total)
                          round_half_up((prompt*price_in
                          + (total-prompt)*price_out) / 10^6), $m a model
                          hash of %AihubFixtures::MODELS
    ceil4($n)             ceil($n / 4): the documented estimate
    sse_data(@events)     the data: payloads of raw_request events, decoded
                          ('[DONE]' kept as a string)
    normalize_stream($s)  an SSE body with the per-answer "id" and
                          "created" members replaced by fixed values, so
                          two streams of the mock provider compare equal
    dechunk($s)           the body of a chunked transfer encoding
    ka_client()           HTTP::Tiny with keep-alive
    period_calls($t, $account)
                          field calls of the account's period hash (0 when
                          absent)

=cut

use strict;
use warnings;

use Exporter qw(import);
use IO::Select;
use IO::Socket::IP;
use HTTP::Tiny;
use Socket ();
use JSON::PP;
use POSIX qw(ceil);
use Time::HiRes qw(time sleep);

use AihubJSON qw(json_codec);

our @EXPORT_OK = qw(raw_request chat_body usage_events usage_event_count
                    wait_usage cost_of ceil4 sse_data normalize_stream dechunk ka_client
                    period_calls);
our %EXPORT_TAGS = (all => \@EXPORT_OK);

my $JSON = json_codec();


sub chat_body {
    my (%o) = @_;

    my $b = {
        model    => $o{model} // 'test-basic',
        messages => $o{messages}
                    // [ { role => 'user', content => $o{content}
                                                       // 'hello' } ],
    };

    if ($o{stream}) {
        $b->{stream} = JSON::PP::true;
        $b->{stream_options} = { include_usage => JSON::PP::true }
            if $o{include_usage};
    }

    %$b = (%$b, %{ $o{extra} }) if $o{extra};

    return $b;
}


sub raw_request {
    my ($t, %o) = @_;

    my $port = $o{port} // $t->port($o{name});
    my $body = $o{body} // '';
    my %h = %{ $o{headers} // {} };

    $body = $JSON->encode($body) if ref $body;
    $h{'content-type'} //= 'application/json' if length $body;
    $h{authorization} = "Bearer $o{key}" if defined $o{key};

    my $req = ($o{method} // 'POST') . ' '
              . ($o{path} // '/v1/chat/completions') . " HTTP/1.1\r\n"
              . "Host: 127.0.0.1:$port\r\nConnection: close\r\n"
              . join('', map { "$_: $h{$_}\r\n" } sort keys %h)
              . (length $body ? 'Content-Length: ' . length($body) . "\r\n"
                              : '')
              . "\r\n" . $body;

    my $s = IO::Socket::IP->new(PeerHost => '127.0.0.1', PeerPort => $port,
                                Timeout => 5)
        or die "connect $port: $@\n";

    my $r = { raw => '', body => '', events => [], headers => {},
              status => 0, closed => 0 };

    my ($hdone, $chunked, $clen, $cbuf, $ebuf) = (0, 0, undef, '', '');
    my $deadline = time + ($o{timeout} // 10);

    $r->{sent} = time;
    syswrite($s, $req) == length $req or die "write: $!\n";

    my $sel = IO::Select->new($s);

    while (time < $deadline) {
        last if defined $o{abort_after} && @{ $r->{events} }
                                           >= $o{abort_after};

        next unless $sel->can_read(0.05);

        my $n = sysread($s, my $in, 65536);
        my $now = time;

        unless ($n) {
            $r->{closed} = 1;
            last;
        }

        $r->{raw} .= $in;

        unless ($hdone) {
            my $i = index($r->{raw}, "\r\n\r\n");
            next if $i < 0;

            $hdone = 1;
            $r->{head} = substr($r->{raw}, 0, $i);
            $in = substr($r->{raw}, $i + 4);

            my ($sl, @lines) = split /\r\n/, $r->{head};
            ($r->{status}) = $sl =~ m{^HTTP/1\.\d (\d+)};

            for (@lines) {
                my ($k, $v) = /^([^:]+):\s*(.*)$/ or next;
                $k = lc $k;
                $r->{headers}{$k} = exists $r->{headers}{$k}
                                    ? "$r->{headers}{$k}, $v" : $v;
            }

            $chunked = ($r->{headers}{'transfer-encoding'} // '')
                       =~ /chunked/i;
            $clen = $r->{headers}{'content-length'};
        }

        next unless length $in;

        $r->{first} //= $now;

        my $data = '';

        if ($chunked) {
            $cbuf .= $in;

            for (;;) {
                my $i = index($cbuf, "\r\n");
                last if $i < 0;
                my $size = hex substr($cbuf, 0, $i);
                last if length($cbuf) < $i + 2 + $size + 2;
                $data .= substr($cbuf, $i + 2, $size);
                substr($cbuf, 0, $i + 2 + $size + 2) = '';
                if ($size == 0) {
                    $r->{complete} = 1;
                    last;
                }
            }

        } else {
            $data = $in;
        }

        $r->{body} .= $data;
        $ebuf .= $data;

        while ($ebuf =~ s/^(.*?)(?:\r?\n){2}//s) {
            my $block = $1;
            my $d = join "\n", map { /^data: ?(.*)$/ ? $1 : () }
                               split /\r?\n/, $block;
            push @{ $r->{events} }, { data => $d, t => $now, block => $block }
                if length $d;
        }

        last if $r->{complete};
        last if !$chunked && defined $clen && length $r->{body} >= $clen;
    }

    close $s;

    return $r;
}


sub sse_data {
    return map { $_->{data} eq '[DONE]' ? '[DONE]'
                 : (eval { $JSON->decode($_->{data}) }
                    // { unparsed => $_->{data} }) } @_;
}


sub dechunk {
    my ($s) = @_;

    my $out = '';

    for (;;) {
        my $i = index($s, "\r\n");
        last if $i < 0;
        my $size = hex substr($s, 0, $i);
        last if $size == 0;
        $out .= substr($s, $i + 2, $size);
        substr($s, 0, $i + 2 + $size + 2) = '';
    }

    return $out;
}


sub normalize_stream {
    my ($s) = @_;

    $s =~ s/"id":"chatcmpl-[^"]*"/"id":"X"/g;
    $s =~ s/"created":\d+/"created":0/g;
    $s =~ s/"obfuscation":"[^"]*"/"obfuscation":"X"/g;   # random padding
    return $s;
}


sub usage_events {
    my ($t, %o) = @_;

    my $x = $t->redis('XRANGE', 'aihub:usage', '-', '+') // [];
    my @raw;

    for my $entry (@$x) {
        my $f = $entry->[1] // [];

        for (my $i = 0; $i + 1 < @$f; $i += 2) {
            push @raw, $f->[$i + 1] if $f->[$i] eq 'event';
            push @raw, split /\n/, $f->[$i + 1], -1
                if $f->[$i] eq 'events';
        }
    }

    return @raw if $o{raw};
    return map { $JSON->decode($_) } @raw;
}


sub usage_event_count {
    my ($t) = @_;

    my @raw = usage_events($t, raw => 1);

    return scalar @raw;
}


sub wait_usage {
    my ($t, $n, %o) = @_;

    $t->wait_for(sub { usage_event_count($t) >= $n },
                 timeout => $o{timeout} // 5);

    return usage_events($t);
}


sub cost_of {
    my ($m, $prompt, $total) = @_;

    my $num = $prompt * $m->{price_in} + ($total - $prompt) * $m->{price_out};

    return int(($num + 500000) / 1000000);
}


sub ceil4 { ceil($_[0] / 4) }


# HTTP::Tiny writes a request's head and body in two writes; on a kept
# connection Nagle holds the body until the head is ACKed, and the server
# delays that ACK by 40 ms: every call would take 40 ms more. Real clients
# set TCP_NODELAY; so does this one.
{
    no warnings 'redefine';
    my $connect = \&HTTP::Tiny::Handle::connect;
    *HTTP::Tiny::Handle::connect = sub {
        my $h = $connect->(@_);
        setsockopt($h->{fh}, Socket::IPPROTO_TCP(), Socket::TCP_NODELAY(), 1)
            if $h && $h->{fh};
        return $h;
    };
}

sub ka_client {
    return HTTP::Tiny->new(keep_alive => 1, timeout => 10);
}


sub period_calls {
    my ($t, $account) = @_;

    my $keys = $t->redis('KEYS', "aihub:period:$account:*") // [];
    return 0 unless @$keys;

    return $t->redis('HGET', $keys->[0], 'calls') // 0;
}


1;
