#!/usr/bin/perl

# The developer API's OpenAPI document (docs/openapi.yaml) tells the truth:
#   - it passes Redocly CLI's linter, "recommended" rules, with no error
#     (./build.sh docs, which also writes the JSON and the HTML page);
#   - the gateway serves it at /v1/openapi.json (and .yaml) and the page at
#     /docs/, without a key;
#   - contract: every answer this test gets from the developer endpoints,
#     successes and errors, validates against the document (status,
#     headers, content type, body; the stream's every chunk) with Ajv,
#     docs/test/contract.mjs, and the checker itself fails on a wrong one;
#   - the page renders in headless Chromium (playwright-core) with no
#     console error and no request leaving the gateway, and shows every
#     path and every operation.
# Node and the packages pinned in docs/package-lock.json (installed by
# ./build.sh test) and /usr/bin/chromium are needed; without them it skips.

use strict;
use warnings;

use Test::More;
use JSON::PP;
use Time::HiRes qw(sleep);

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);

my $root = Aihub->root;
my $docs = "$root/docs";
my $chromium = $ENV{CHROMIUM} // '/usr/bin/chromium';

my $node = `node --version 2>/dev/null` // '';
plan skip_all => 'node 20 or later is not installed (./build.sh deps)'
    unless $node =~ /^v(\d+)/ && $1 >= 20;
plan skip_all => 'npm is not installed (./build.sh deps)'
    unless `npm --version 2>/dev/null`;
plan skip_all => "chromium is not installed at $chromium (./build.sh deps)"
    unless -x $chromium;
plan skip_all => 'module not built' unless Aihub::have_module();

my $t = Aihub->new(redis => 1, mock => 1);
my $JSON = JSON::PP->new->utf8->canonical;


# --- the linter, the JSON, the page ----------------------------------------

# ./build.sh docs runs "npm ci" in docs/ when the packages are missing
my $out = $t->dir . '/docs';
my ($rc, $o, $e) = $t->run_cmd([ 'bash', "$root/build.sh", 'docs', $out ],
                               timeout => 180);
my $lint = "$o$e";
is($rc, 0, './build.sh docs: lint, bundle and page') or diag($lint);
like($lint, qr/openapi\.yaml: validated/, 'redocly lint ran');
unlike($lint, qr/\berror\b/i, 'redocly lint: no error');
unlike($lint, qr/warning/i, 'redocly lint: no warning either');
ok(-s "$out/$_", "build wrote $_")
    for qw(openapi.json openapi.yaml index.html redoc.standalone.js);

my $spec = eval { $JSON->decode(Aihub::read_file("$out/openapi.json")) }
           // {};
is($spec->{openapi}, '3.1.0', 'an OpenAPI 3.1 document');


# --- the gateway -----------------------------------------------------------

seed_models($t, %MODELS,
            'test-embed' => { provider => 'mock', upstream => 'mock-embed',
                              tier => 'basic', kind => 'embedding',
                              price_in => 20000, price_out => 0 },
            'test-resp' => { provider => 'mock', upstream => 'mock-basic',
                             tier => 'basic', api => 'responses',
                             price_in => 1000000, price_out => 2000000 });
my $admin = seed_full_key($t, account => 2801, plan => 'pro', models => '*',
                          scopes => 'chat,admin', included => 100,
                          overage => 1, rpm => 600, tpm => 500000);
my $chat = seed_full_key($t, account => 2801, plan => 'pro', models => '*',
                         scopes => 'chat');
my $key_admin = seed_full_key($t, account => 2801, plan => 'pro',
                              models => '*', scopes => 'admin');
my $free = seed_full_key($t, account => 2802, plan => 'free',
                         max_tokens => 100);
my $spent = seed_full_key($t, account => 2803, plan => 'free',
                          included => 0);
my $slow = seed_full_key($t, account => 2804, plan => 'free', rpm => 1);
my $other = seed_full_key($t, account => 2805, scopes => 'chat,admin');

my $aihub = <<'END';
            aihub on;
            aihub_failure_mode closed;
            aihub_body_max 16k;
            client_body_buffer_size 16k;
            client_max_body_size 64k;
            proxy_pass $aihub_proxy_url;
            proxy_set_header Host $aihub_provider_host;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 1s;
END

$t->nginx(<<"END")->start_nginx;
    aihub_redis %%REDIS%%;
    aihub_redis_timeout 300ms;
    aihub_cache_zone aihub:8m;
    aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
    aihub_pass_request_header x-mock-*;    # the mock's test controls

    server {
        listen 127.0.0.1:%%PORT%%;

        # the reference, as conf/nginx.conf serves it: no key needed
        location = /v1/openapi.json {
            types { application/json json; }
            alias $out/openapi.json;
        }

        location = /v1/openapi.yaml {
            types { application/yaml yaml; }
            alias $out/openapi.yaml;
        }

        location /docs/ {
            types { text/html html; application/javascript js;
                    application/json json; application/yaml yaml; }
            charset utf-8;
            alias $out/;
        }

        location /v1/ {
$aihub        }

        location /api/v1/developer/ {
$aihub        }
    }
END

ok(wait_ready($t, $admin), 'gateway ready');

my $r = $t->http(GET => '/v1/openapi.json');
is($r->{status}, 200, 'GET /v1/openapi.json without a key');
like($r->{headers}{'content-type'} // '', qr{^application/json},
     '... as application/json');
is_deeply($r->{json}, $spec, '... the document');
$r = $t->http(GET => '/v1/openapi.yaml');
is($r->{status}, 200, 'GET /v1/openapi.yaml');
like($r->{content}, qr/^openapi: 3\.1\.0$/m, '... the YAML source');
$r = $t->http(GET => '/docs/');
is($r->{status}, 200, 'GET /docs/');
like($r->{content}, qr{<script src="redoc\.standalone\.js"></script>},
     '... the page');


# --- contract: every answer against the document ---------------------------

my @exchanges;

# one call, recorded; %o: the http() options plus check_request (the
# request body must match the document's request schema) and
# bad_path_param (the path parameter is wrong on purpose)

sub call {
    my ($name, $method, $path, %o) = @_;

    my $check = delete $o{check_request};
    my $bad_param = delete $o{bad_path_param};
    my $body = $o{body};
    $body = $JSON->encode($body) if ref $body;

    my $r = $t->http($method => $path, %o);
    my %h;

    for my $n (keys %{ $r->{headers} }) {
        my $v = $r->{headers}{$n};
        # a header sent twice can match no single-value schema
        $h{ lc $n } = ref $v ? join(', ', @$v) : $v;
    }

    push @exchanges, {
        name => $name, method => $method, path => $path,
        status => $r->{status}, headers => \%h, body => $r->{content} // '',
        request_body => $body, check_request => $check ? \1 : \0,
        ($bad_param ? (expect_path_params_valid => \0) : ()),
    };

    return $r;
}

sub chat_body {
    my (%o) = @_;

    return { model => 'test-basic',
             messages => [ { role => 'user', content => 'hello' } ], %o };
}

# chat completions, JSON and streamed, both paths, both schemes
$r = call('chat', POST => '/v1/chat/completions', key => $admin,
          body => chat_body(max_tokens => 50), check_request => 1);
is($r->{status}, 200, 'chat: 200');
ok($r->{headers}{'x-ratelimit-limit-requests'},
   'chat: the rate-limit headers are in this answer');

$r = call('chat, stream', POST => '/v1/chat/completions', key => $admin,
          body => chat_body(stream => JSON::PP::true), check_request => 1);
is($r->{status}, 200, 'stream: 200');

$r = call('chat, stream with usage', POST => '/v1/chat/completions',
          key => $admin, check_request => 1,
          body => chat_body(stream => JSON::PP::true,
                            stream_options => { include_usage =>
                                                JSON::PP::true }));
ok((grep { ref $_ && $_->{usage} } @{ $r->{events} // [] }),
   'stream with usage: the usage chunk is in this answer');

$r = call('developer/chat, x-api-key', POST => '/api/v1/developer/chat',
          headers => { 'x-api-key' => $free }, check_request => 1,
          body => chat_body(model => 'test-basic',
                            max_completion_tokens => 100, stream => undef,
                            temperature => 0.2));
is($r->{status}, 200, 'developer/chat with x-api-key: 200');

# chat errors
my %errors = (
    'no key'             => [ 401, { body => chat_body() } ],
    'malformed key'      => [ 401, { key => 'ai-hub-nope',
                                     body => chat_body() } ],
    'Authorization not Bearer'
                         => [ 401, { headers => { authorization => 'Basic x' },
                                     body => chat_body() } ],
    'chat with an admin-only key'
                         => [ 403, { key => $key_admin,
                                     body => chat_body() } ],
    'model not in the plan'
                         => [ 403, { key => $free,
                                     body => chat_body(model =>
                                                       'test-premium') } ],
    'unknown model'      => [ 404, { key => $free,
                                     body => chat_body(model => 'nope') } ],
    'not JSON'           => [ 400, { key => $free, body => 'nope',
                                     headers => { 'content-type' =>
                                                  'application/json' } } ],
    'messages missing'   => [ 400, { key => $free,
                                     body => { model => 'test-basic' } } ],
    'max_tokens above the cap'
                         => [ 400, { key => $free,
                                     body => chat_body(max_tokens => 101) } ],
    'body too large'     => [ 413, { key => $free,
                                     body => chat_body(pad => 'x' x 20000) } ],
    'body over client_max_body_size'
                         => [ 413, { key => $free,
                                     body => chat_body(pad => 'x' x 70000) } ],
    'body in a coding not read'
                         => [ 415, { key => $free, body => chat_body(),
                                     headers => { 'content-encoding' =>
                                                  'br' } } ],
    'quota used up'      => [ 429, { key => $spent, body => chat_body() } ],
    'provider 429'       => [ 429, { key => $free, body => chat_body(),
                                     headers => { 'x-mock-status' => 429 } } ],
    'provider 500'       => [ 502, { key => $free, body => chat_body(),
                                     headers => { 'x-mock-status' => 500 } } ],
    'provider too slow'  => [ 504, { key => $free, body => chat_body(),
                                     headers => { 'x-mock-delay-ms' =>
                                                  1500 } } ],
);

for my $name (sort keys %errors) {
    my ($status, $o) = @{ $errors{$name} };
    $r = call("chat, $name", POST => '/v1/chat/completions', %$o);
    is($r->{status}, $status, "chat, $name: $status");
}

call('chat, rate limit: the first call', POST => '/v1/chat/completions',
     key => $slow, body => chat_body());
$r = call('chat, rate limit', POST => '/v1/chat/completions', key => $slow,
          body => chat_body());
is($r->{status}, 429, 'chat over the rate limit: 429');
ok($r->{headers}{'retry-after'}, '... with Retry-After');

# responses, JSON and streamed, both paths
for my $path ('/v1/responses', '/api/v1/developer/responses') {
    $r = call("POST $path", POST => $path, key => $free, check_request => 1,
              body => { model => 'test-resp', input => 'hello',
                        instructions => 'Be brief.' });
    is($r->{status}, 200, "POST $path: 200");
}
$r = call('responses, stream', POST => '/v1/responses', key => $free,
          check_request => 1,
          body => { model => 'test-resp', stream => JSON::PP::true,
                    input => [ { role => 'user', content => 'hello' } ] });
is($r->{status}, 200, 'responses, stream: 200');
$r = call('responses, incomplete', POST => '/v1/responses', key => $free,
          check_request => 1,
          body => { model => 'test-resp', input => 'hello',
                    max_output_tokens => 2 });
is($r->{json}{status}, 'incomplete', 'responses, incomplete: 200');
# responses translated into chat completions (test-basic's provider
# speaks only chat completions), JSON and streamed, and refused
$r = call('responses, translated', POST => '/v1/responses', key => $free,
          check_request => 1,
          body => { model => 'test-basic', input => 'hello',
                    max_output_tokens => 3 });
is($r->{json}{status}, 'incomplete', 'responses, translated: 200');
$r = call('responses, translated stream', POST => '/v1/responses',
          key => $free, check_request => 1,
          body => { model => 'test-basic', input => 'hello',
                    stream => JSON::PP::true });
is($r->{status}, 200, 'responses, translated stream: 200');
$r = call('responses, not translatable', POST => '/v1/responses',
          key => $free, body => { model => 'test-basic', input => 'a',
                                  previous_response_id => 'resp_1' });
is($r->{status}, 400, 'responses, not translatable: 400');
$r = call('responses, an embedding model', POST => '/v1/responses',
          key => $free, body => { model => 'test-embed', input => 'a' });
is($r->{status}, 400, 'responses with an embedding model: 400');
$r = call('responses, over the cap', POST => '/v1/responses',
          key => $free, body => { model => 'test-resp', input => 'a',
                                  max_output_tokens => 101 });
is($r->{status}, 400, 'responses over the max_tokens cap: 400');

# embeddings
for my $path ('/v1/embeddings', '/api/v1/developer/embeddings') {
    $r = call("POST $path", POST => $path, key => $free, check_request => 1,
              body => { model => 'test-embed', input => [ 'a', 'b' ] });
    is($r->{status}, 200, "POST $path: 200");
}
$r = call('embeddings, base64', POST => '/v1/embeddings', key => $free,
          check_request => 1, body => { model => 'test-embed', input => 'a',
                                        encoding_format => 'base64' });
is($r->{status}, 200, 'embeddings, base64: 200');
$r = call('embeddings, a chat model', POST => '/v1/embeddings', key => $free,
          body => { model => 'test-basic', input => 'a' });
is($r->{status}, 400, 'embeddings with a chat model: 400');

# models
for my $path ('/v1/models', '/api/v1/developer/models') {
    is(call("GET $path", GET => $path, key => $free)->{status}, 200,
       "GET $path: 200");
}
is(call('GET /v1/models, no key', GET => '/v1/models')->{status}, 401,
   'GET /v1/models without a key: 401');
for my $path ('/v1/models/test-basic', '/api/v1/developer/models/test-basic')
{
    is(call("GET $path", GET => $path, key => $free)->{status}, 200,
       "GET $path: 200");
}
is(call('GET a model the plan does not allow', GET =>
        '/v1/models/test-premium', key => $free)->{status}, 404,
   'GET /v1/models/test-premium on the free plan: 404');

# usage, once the calls above are settled
ok($t->wait_for(sub {
    ($t->http(GET => '/api/v1/developer/usage', key => $admin)
        ->{json}{calls}{used} // 0) >= 3;
}), 'usage counts the calls');
is(call('usage', GET => '/api/v1/developer/usage', key => $chat)->{status},
   200, 'usage: 200');
is(call('usage, unknown key', GET => '/api/v1/developer/usage',
        key => Aihub::make_key())->{status}, 401,
   'usage with an unknown key: 401');

# API keys
my $keys = '/api/v1/developer/api-keys';

$r = call('create a key', POST => $keys, key => $admin, check_request => 1,
          body => { label => 'ci', scopes => [ 'chat', 'admin' ] });
is($r->{status}, 201, 'create: 201');
my $new = $r->{json}{key} // '';

is(call('create a key, no body', POST => $keys, key => $key_admin,
        check_request => 1)->{status}, 201, 'create without a body: 201');
is(call('create a key, bad scope', POST => $keys, key => $admin,
        body => { scopes => [ 'root' ] })->{status}, 400,
   'create with a bad scope: 400');
is(call('create a key, chat-only key', POST => $keys, key => $chat,
        body => {})->{status}, 403, 'create with a chat key: 403');

is(call('list keys', GET => $keys, key => $admin)->{status}, 200,
   'list: 200');
is(call('list keys, chat-only key', GET => $keys, key => $chat)->{status},
   403, 'list with a chat key: 403');

is(call('revoke a key', DELETE => "$keys/" . Aihub::key_prefix($new),
        key => $admin)->{status}, 200, 'revoke: 200');
is(call('revoke, malformed prefix', DELETE => "$keys/nonsense",
        key => $admin, bad_path_param => 1)->{status}, 404,
   'revoke a malformed prefix: 404');
is(call('revoke, another account', DELETE => "$keys/"
        . Aihub::key_prefix($other), key => $admin)->{status}, 404,
   "revoke another account's key: 404");
is(call('revoke, chat-only key', DELETE => "$keys/"
        . Aihub::key_prefix($admin), key => $chat)->{status}, 403,
   'revoke with a chat key: 403');

# the statuses this test covers, per operation: every documented success
my %seen = map { ("$_->{method} $_->{path}" =~ s{/ai-hub-\w+$}{/{prefix}}r
                  =~ s{/nonsense$}{/{prefix}}r
                  =~ s{/models/.+$}{/models/{model}}r) => 1 } @exchanges;
for my $path (sort keys %{ $spec->{paths} }) {
    for my $m (sort keys %{ $spec->{paths}{$path} }) {
        ok($seen{ uc($m) . " $path" }, "the test calls " . uc($m) . " $path");
    }
}

my $file = $t->dir . '/exchanges.json';
Aihub::write_file($file, $JSON->encode(\@exchanges));

($rc, $o, $e) = $t->run_cmd([ 'node', "$docs/test/contract.mjs",
                              "$out/openapi.json", $file ], timeout => 60);
my @res = map { eval { $JSON->decode($_) } // () } split /\n/, $o;
my ($sum) = grep { exists $_->{validated} } @res;

for my $x (grep { exists $_->{ok} } @res) {
    ok($x->{ok}, "contract: $x->{name}")
        or diag(join "\n", @{ $x->{errors} });
}
is($rc, 0, 'contract.mjs: every answer matches the document') or diag($e);
is($sum->{validated}, scalar @exchanges,
   "contract.mjs validated all " . scalar(@exchanges) . " answers");
diag("contract: $sum->{validated} answers validated, $sum->{failed} failed")
    if $sum;

# the checker fails on answers that do not match
my %by = map { $_->{name} => $_ } @exchanges;
my @wrong = (
    [ 'a usage answer missing a member',
      sub { my $j = decode_json($_[0]{body}); delete $j->{calls}{used};
            $_[0]{body} = encode_json($j) }, 'usage',
      qr/required property 'used'/ ],
    [ 'a model with an undocumented member',
      sub { my $j = decode_json($_[0]{body}); $j->{data}[0]{extra} = 1;
            $_[0]{body} = encode_json($j) }, 'GET /v1/models',
      qr/additional properties/ ],
    [ 'an error code not in the document',
      sub { $_[0]{body} =~ s/"invalid_api_key"/"bad_key"/ }, 'chat, no key',
      qr/allowed values/ ],
    [ 'no x-request-id',
      sub { delete $_[0]{headers}{'x-request-id'} }, 'list keys',
      qr/header x-request-id missing/ ],
    [ 'an undocumented status',
      sub { $_[0]{status} = 418 }, 'usage', qr/status not documented/ ],
    [ 'a stream chunk of the wrong shape',
      sub { $_[0]{body} =~ s/"chat\.completion\.chunk"/"chunk"/ },
      'chat, stream', qr/event 0\/object/ ],
    [ 'a Responses stream ending with [DONE]',
      sub { $_[0]{body} .= "data: [DONE]\n\n" }, 'responses, stream',
      qr/must end with an event/ ],
    [ 'a gateway header not documented for the answer',
      sub { $_[0]{headers}{'retry-after'} = '1' }, 'list keys',
      qr/retry-after sent but not documented/ ],
);

my @mutated;

for my $w (@wrong) {
    my ($what, $mutate, $from) = @$w;
    my $x = $JSON->decode($JSON->encode($by{$from}));
    $mutate->($x);
    $x->{name} = $what;
    push @mutated, $x;
}

Aihub::write_file($file, $JSON->encode(\@mutated));
($rc, $o) = $t->run_cmd([ 'node', "$docs/test/contract.mjs",
                          "$out/openapi.json", $file ], timeout => 60);
my %refused = map { $_->{name} => join("\n", @{ $_->{errors} }) }
              grep { exists $_->{ok} && !$_->{ok} }
              map { eval { $JSON->decode($_) } // () } split /\n/, $o;

is($rc, 1, 'contract.mjs fails on wrong answers');

for my $w (@wrong) {
    my ($what, undef, undef, $expect) = @$w;
    like($refused{$what} // '', $expect, "the checker refuses $what");
}


# --- the page in headless Chromium -----------------------------------------

my $shot = $t->dir . '/docs.png';
($rc, $o, $e) = $t->run_cmd(
    [ 'node', "$docs/test/render.mjs",
      'http://127.0.0.1:' . $t->port . '/docs/', "$out/openapi.json", $shot ],
    env => { CHROMIUM => $chromium }, timeout => 90);
my $page = eval { $JSON->decode((split /\n/, $o)[-1] // '') } // {};

is($rc, 0, 'render.mjs: the page rendered') or diag("$o$e");
is($page->{title}, "$spec->{info}{title} $spec->{info}{version}",
   'page: its title');
is_deeply($page->{console_errors}, [], 'page: no console error');
is_deeply($page->{page_errors}, [], 'page: no page error');
is_deeply($page->{failed_requests}, [], 'page: no failed request');
is_deeply($page->{outside_requests}, [],
          'page: nothing requested beyond the gateway (works offline)');
is_deeply($page->{missing_paths}, [], 'page: shows every path');
is_deeply($page->{missing_summaries}, [], 'page: shows every operation');

my $ops = 0;
$ops += grep { ref $_ eq 'HASH' && $_->{responses} } values %$_
    for values %{ $spec->{paths} };
is($page->{operations}, $ops, "page: $ops operations rendered");
ok(-s $shot, 'page: screenshot taken');

$t->done;
