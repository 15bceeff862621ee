#!/usr/bin/perl

# Keys: every way of not having a valid one is a 401 in the OpenAI error
# shape with nothing forwarded; a valid one (Bearer or x-api-key) reaches
# the provider with the provider's credential only, and the client gets
# the provider's answer unchanged.

use strict;
use warnings;

use Test::More;
use MIME::Base64 ();

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);
use AihubStream ();

plan(skip_all => 'module not built') unless Aihub::have_module();

my $t = Aihub->new(redis => 1, mock => 1);

seed_models($t);
my $key = seed_full_key($t, account => 11);
my $revoked = seed_full_key($t, account => 11, status => 'revoked');
my $expired = seed_full_key($t, account => 11, expires => time - 60);

$t->nginx(<<'END')->start_nginx;
    aihub_redis %%REDIS%%;
    aihub_redis_timeout 300ms;
    aihub_cache_zone aihub:8m;
    aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;

    server {
        listen 127.0.0.1:%%PORT%%;

        location /v1/ {
            aihub on;
            aihub_failure_mode closed;
            proxy_pass $aihub_proxy_url;
            proxy_set_header Host $aihub_provider_host;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }

        location /api/v1/developer/ {
            aihub on;
            aihub_failure_mode closed;
            proxy_pass $aihub_proxy_url;
            proxy_set_header Host $aihub_provider_host;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }

        location = /plain {
            return 200 "plain\n";
        }
    }
END

ok(wait_ready($t, $key), 'catalog loaded');

my $chat = { model => 'test-basic',
             messages => [ { role => 'user', content => 'hello' } ] };


# the commands Redis ran (MONITOR's lines, scripts' own commands
# included) while $code ran: read up to a mark echoed after it
sub redis_heard {
    my ($code) = @_;

    my $m = $t->redis_connect;
    my $buf = '';
    print $m Aihub::resp_encode('MONITOR');
    Aihub::resp_read($m, \$buf);

    $code->();

    my $mark = "t11-mark-$$-" . int(rand(1e9));
    $t->redis('ECHO', $mark);

    my @heard;
    while (index(my $line = Aihub::resp_read($m, \$buf), $mark) < 0) {
        push @heard, $line;
    }
    close $m;

    return @heard;
}

# a key record read: the lookup script's HGETALL of aihub:key:<sha256>
sub key_reads {
    return scalar grep { /"HGETALL" "aihub:key:[0-9a-f]{64}"/i } @_;
}


# --- refused keys -----------------------------------------------------------

my $good = Aihub::make_key();
(my $bad_check = $good) =~ s/(.)$/$1 eq 'A' ? 'B' : 'A'/e;

my @refused = (
    [ 'no key',                   {} ],
    [ 'malformed key',            { authorization => 'Bearer ai-hub-short' } ],
    [ 'foreign key shape',        { authorization => 'Bearer sk-' . 'x' x 45 } ],
    [ 'right shape, bad checksum', { authorization => "Bearer $bad_check" } ],
    [ 'bad alphabet',
      { authorization => 'Bearer ai-hub-' . ('-' x 32) . 'AAAAAA' } ],
    [ 'key too long',             { authorization => "Bearer ${good}x" } ],
    [ 'Authorization without Bearer', { authorization => $good } ],
    [ 'Authorization Basic',
      { authorization => 'Basic dXNlcjpwYXNzd29yZA==' } ],
    [ 'empty Bearer',             { authorization => 'Bearer ' } ],
    [ 'Bearer and spaces only',   { authorization => 'Bearer     ' } ],
    [ 'bad key in x-api-key',     { 'x-api-key' => $bad_check } ],
);

my @heard = redis_heard(sub {
    for my $case (@refused) {
        my ($name, $h) = @$case;
        my $r = $t->http(POST => '/v1/chat/completions', headers => $h,
                         body => $chat);
        is_error($r, 401, 'invalid_api_key', $name);
        is($r->{json}{error}{type}, 'invalid_request_error', "$name: type");
    }
});

# counted by the key record read, not by all HGETALLs: a catalog load
# (the subscription made, a refresh) reads the models' hashes meanwhile
is(key_reads(@heard), 0,
   'refused without touching Redis: no key record read for any of them');

# and the watch sees a lookup when there is one: a well-formed key that
# has no record is looked up (and refused after)
my $unknown = Aihub::make_key();
my @looked = redis_heard(sub {
    $t->http(POST => '/v1/chat/completions', key => $unknown, body => $chat);
});
is(key_reads(@looked), 1,
   'a well-formed key is looked up once (the watch above sees lookups)');

my @dbrefused = (
    [ 'unknown key (valid checksum, no record)', Aihub::make_key() ],
    [ 'revoked key', $revoked ],
    [ 'expired key', $expired ],
);

for my $case (@dbrefused) {
    my ($name, $k) = @$case;
    my $r = $t->http(POST => '/v1/chat/completions', key => $k,
                     body => $chat);
    is_error($r, 401, 'invalid_api_key', $name);
}

like($t->http(POST => '/v1/chat/completions', key => $revoked,
              body => $chat)->{json}{error}{message}, qr/revoked/,
     'revoked key: the message says so');

# the other endpoints are guarded the same way
for my $path ('/v1/models', '/api/v1/developer/usage',
              '/api/v1/developer/models', '/api/v1/developer/api-keys') {
    is_error($t->http(GET => $path), 401, 'invalid_api_key',
             "GET $path without a key");
}

is(mock_count($t), 0, 'nothing at all was forwarded to the provider');


# --- a valid key -------------------------------------------------------------

my $r = $t->http(POST => '/v1/chat/completions', key => $key,
                 body => $chat);
is($r->{status}, 200, 'valid key: 200');

my @log = $t->mock_log;
is(scalar @log, 1, 'valid key: exactly one request reached the provider');
my $seen = $log[0];

is($seen->{authorization}, 'Bearer ' . $t->mock_key,
   'the provider got its own credential');
ok(!exists $seen->{headers}{'x-api-key'}, 'no x-api-key sent upstream');
unlike(JSON::PP->new->canonical->encode($seen), qr/\Q$key\E/,
       'the client key appears nowhere in what the provider received');
unlike(JSON::PP->new->canonical->encode($seen),
       qr/\Q${\ Aihub::key_hash($key)}\E/, 'nor its hash');

# the answer is the provider's, unchanged
is($r->{json}{object}, 'chat.completion', 'answer: object');
like($r->{json}{id}, qr/^chatcmpl-mock/, 'answer: the provider id');
is($r->{json}{model}, 'mock-basic', 'answer: the provider model');
is_deeply($r->{json}{usage}, $seen->{usage},
          'answer: usage exactly as the provider sent it');
is($r->{json}{choices}[0]{message}{content}, join(' ', ('tok') x 7),
   'answer: content exactly as the provider sent it');
is($r->{headers}{'content-length'}, length $r->{content},
   'answer: Content-Length matches the body');

my @rid = ref $r->{headers}{'x-request-id'}
          ? @{ $r->{headers}{'x-request-id'} }
          : ($r->{headers}{'x-request-id'} // ());
ok((grep { /^[0-9a-f]{32}$/ } @rid), 'x-request-id: 32 lowercase hex')
    or diag("x-request-id: @rid");
is(scalar @rid, 1, 'exactly one x-request-id header (the provider\'s own '
                   . 'is not passed through next to ours)')
    or diag("x-request-id: @rid");

# x-api-key
$r = $t->http(POST => '/v1/chat/completions',
              headers => { 'x-api-key' => $key }, body => $chat);
is($r->{status}, 200, 'x-api-key: 200');
@log = $t->mock_log;
is(scalar @log, 2, 'x-api-key: forwarded once');
is($log[1]{authorization}, 'Bearer ' . $t->mock_key,
   'x-api-key: provider credential upstream');
ok(!exists $log[1]{headers}{'x-api-key'},
   'x-api-key: the client key header is not forwarded');
unlike(JSON::PP->new->encode($log[1]), qr/\Q$key\E/,
       'x-api-key: the client key appears nowhere upstream');

# an Authorization header that is not a Bearer credential leaves the key
# to x-api-key: a gateway behind nginx's auth_basic (the Basic credential
# is nginx's) is called with the key there.  Before, the Basic header hid
# it: 401.
$r = $t->http(POST => '/v1/chat/completions',
              headers => { authorization => 'Basic Zm9vOmJhcg==',
                           'x-api-key' => $key }, body => $chat);
is($r->{status}, 200, 'Basic Authorization + good x-api-key: the key is '
   . 'read from x-api-key');
$r = $t->http(POST => '/v1/chat/completions',
              headers => { authorization => 'Basic Zm9vOmJhcg==' },
              body => $chat);
is_error($r, 401, 'invalid_api_key', 'Basic Authorization alone');

# Bearer is case-insensitive, extra spaces are tolerated
$r = $t->http(POST => '/v1/chat/completions',
              headers => { authorization => "bearer   $key" }, body => $chat);
is($r->{status}, 200, 'lowercase "bearer" with extra spaces: 200');

is(mock_count($t), 4, 'four requests forwarded in all');

# Each worker process keeps the hashes of the keys it served (under a
# keyed hash of the key): a key one character away from one just served,
# with a valid checksum, is its own key, unknown here; and keys served in
# turns are each billed to their own account, call after call: 150 keys
# in turns share slots of the table (some ten pairs of them).
my $near = substr($key, 7, 32);
substr($near, 20, 1) = substr($near, 20, 1) eq 'a' ? 'b' : 'a';
$near = Aihub::make_key($near);
isnt($near, $key, 'a look-alike key (one character changed, valid checksum)');

for my $round (1 .. 3) {
    is($t->http(POST => '/v1/chat/completions', key => $key,
                body => $chat)->{status}, 200, "round $round: the key: 200");
    is_error($t->http(POST => '/v1/chat/completions', key => $near,
                      body => $chat), 401, 'invalid_api_key',
             "round $round: its look-alike, right after it: 401");
}

my %account_of = ($key => 11);
$account_of{ seed_full_key($t, account => 100 + $_) } = 100 + $_ for 1 .. 149;
my @turns = ((sort keys %account_of) x 2);
my %want;

for my $k (@turns) {
    my $r = $t->http(POST => '/v1/chat/completions', key => $k,
                     body => $chat);
    $want{ $r->{headers}{'x-request-id'} } = $account_of{$k}
        if $r->{status} == 200;
}

is(scalar keys %want, scalar @turns, 'keys in turns: every call 200');

my %got;
$t->wait_for(sub {
    %got = map { $_->{id} => $_->{account} } AihubStream::usage_events($t);
    !grep { !exists $got{$_} } keys %want;
});
is(scalar(grep { ($got{$_} // -1) == $want{$_} } keys %want),
   scalar @turns, 'keys in turns: every call billed to its own account');

# the full key is never written to nginx's logs
for my $f (qw(error.log access.log)) {
    my $text = Aihub::read_file($t->nginx_dir . "/$f");
    unlike($text, qr/\Q$key\E/, "$f does not contain the key");
}

# --- behind nginx's auth_basic ----------------------------------------------
#
# The operator gates the gateway with its own credential: the client sends
# it (Authorization: Basic) and its key in x-api-key.  auth_basic reads
# Authorization after our phase: left as it came, it passes.  Its refusal
# is nginx's 401 in the OpenAI shape, with WWW-Authenticate, and gives the
# key's rate limit slot back.  Before, the 401 came out as 502 "the
# provider could not be reached", and each took a slot.
{
    Aihub::write_file($t->dir . '/htpasswd', "ops:{PLAIN}s3cret\n");
    my $gated = seed_full_key($t, account => 12, rpm => 2);
    $t->nginx(gateway_conf(url => '%%MOCK_URL%%', loc =>
                  'auth_basic "gateway"; auth_basic_user_file '
                  . $t->dir . '/htpasswd;'), name => 'gated');
    $t->start_nginx('gated');
    my $basic = 'Basic ' . MIME::Base64::encode_base64('ops:s3cret', '');
    my %both = (authorization => $basic, 'x-api-key' => $gated);

    my $r = $t->http(POST => '/v1/chat/completions', name => 'gated',
                     headers => \%both, body => $chat);
    is($r->{status}, 200, 'behind auth_basic: its credential, the key in '
       . 'x-api-key: 200') or diag($r->{content});

    for my $i (1 .. 3) {
        $r = $t->http(POST => '/v1/chat/completions', name => 'gated',
                      headers => { 'x-api-key' => $gated }, body => $chat);
        is_error($r, 401, 'unauthorized',
                 "behind auth_basic, without its credential ($i)");
    }
    like($r->{headers}{'www-authenticate'} // '', qr/^Basic realm="gateway"/,
         "auth_basic's refusal keeps its WWW-Authenticate");
    like($r->{headers}{'x-request-id'} // '', qr/^[0-9a-f]{32}$/,
         'and has a request id');

    $r = $t->http(POST => '/v1/chat/completions', name => 'gated',
                  headers => \%both, body => $chat);
    is($r->{status}, 200, 'the refusals took no slot of the key\'s 2 a '
       . 'minute');
    $t->allow_log(qr/no user\/password was provided for basic/);
}

$t->done;
