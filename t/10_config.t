#!/usr/bin/perl

# Configuration: the module loads into the stock nginx, and "nginx -t"
# refuses every bad directive value with a message naming file and line.

use strict;
use warnings;

use Test::More;

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);
use AihubStream qw(:all);

plan(skip_all => 'module not built') unless Aihub::have_module();

my $t = Aihub->new(redis => 1, mock => 1);

my $GOOD_TOP = <<'END';
    aihub_redis %%REDIS%%;
    aihub_cache_zone aihub:1m;
    aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
END

my $LOC = <<'END';
    server {
        listen 127.0.0.1:%%PORT%%;
        location /v1/ {
            aihub on;
            proxy_pass $aihub_proxy_url;
        }
    }
END

my $seq = 0;


# nginx -t on http{} contents; the line carrying "#BAD" is the one the
# error must name (any line when there is no marker)

sub conf_fails {
    my ($http, $msg_re, $name) = @_;

    my $inst = 'c' . ++$seq;
    $t->nginx($http, name => $inst);

    my $file = $t->nginx_dir($inst) . '/nginx.conf';
    my @lines = split /\n/, Aihub::read_file($file);
    my ($line) = grep { $lines[$_ - 1] =~ /#BAD/ } 1 .. @lines;
    my $where = defined $line ? qr/ in \Q$file\E:$line\b/
                              : qr/ in \Q$file\E:\d+\b/;

    my ($ok, $out) = $t->nginx_test($inst);

    ok(!$ok, "$name: nginx -t fails");
    like($out, qr/\[emerg\].*$msg_re.*$where/, "$name: message and line")
        or diag($out);
}


# --- the module loads into the stock nginx ------------------------------------

$t->nginx(<<'END');
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

my ($ok, $out) = $t->nginx_test;
ok($ok, 'the standard aihub configuration passes nginx -t') or diag($out);
like($out, qr/syntax is ok/, 'nginx -t: syntax is ok');
unlike($out, qr/\[warn\]/, 'nginx -t: no warning (the provider is an IP address)');

$t->start_nginx;
my $r = $t->http(GET => '/plain');
is($r->{status}, 200, 'nginx with the module serves a plain location');
is($r->{content}, "plain\n", 'plain location body');

my @w = $t->nginx_worker_pids;
is(scalar @w, 1, 'one worker process running');
my $maps = Aihub::read_file("/proc/$w[0]/maps");
like($maps, qr/ngx_http_aihub_module\.so/,
     'the worker process has the module mapped');

# the module without "aihub on" anywhere needs none of its directives
$t->nginx(<<'END', name => 'bare');
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { return 204; }
    }
END
($ok, $out) = $t->nginx_test('bare');
ok($ok, 'module loaded, no aihub directives: nginx -t passes') or diag($out);


# --- aihub_redis ------------------------------------------------------------

conf_fails(<<"END" . $LOC, qr/Redis address "127\.0\.0\.1:99999"/,
    aihub_redis 127.0.0.1:99999;   #BAD
    aihub_cache_zone aihub:1m;
    aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
END
    'aihub_redis with a bad port');

conf_fails(<<"END" . $LOC, qr/Redis address/,
    aihub_redis 127.0.0.1:6379/db;   #BAD
    aihub_cache_zone aihub:1m;
    aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
END
    'aihub_redis with a path');

conf_fails(<<"END" . $LOC, qr/Redis address "unix:"/,
    aihub_redis unix:;   #BAD
    aihub_cache_zone aihub:1m;
    aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
END
    'aihub_redis unix: without a path');

conf_fails(<<"END" . $LOC, qr/"aihub_redis" directive is duplicate/,
    aihub_redis %%REDIS%%;
    aihub_redis %%REDIS%%;   #BAD
    aihub_cache_zone aihub:1m;
    aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
END
    'aihub_redis twice');


# --- aihub_cache_zone -------------------------------------------------------

conf_fails(<<"END" . $LOC, qr/invalid zone "aihub", expected NAME:SIZE/,
    aihub_redis %%REDIS%%;
    aihub_cache_zone aihub;   #BAD
    aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
END
    'aihub_cache_zone without a size');

conf_fails(<<"END" . $LOC, qr/invalid zone size "aihub:lots"/,
    aihub_redis %%REDIS%%;
    aihub_cache_zone aihub:lots;   #BAD
    aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
END
    'aihub_cache_zone with a bad size');

conf_fails(<<"END" . $LOC, qr/zone "aihub:4k" is too small/,
    aihub_redis %%REDIS%%;
    aihub_cache_zone aihub:4k;   #BAD
    aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
END
    'aihub_cache_zone too small');


# --- "aihub on" without what it needs ----------------------------------------

conf_fails(<<"END" . $LOC, qr/"aihub on" requires "aihub_redis"/,
    aihub_cache_zone aihub:1m;
    aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
END
    'aihub on without aihub_redis');

conf_fails(<<"END" . $LOC, qr/"aihub on" requires "aihub_cache_zone"/,
    aihub_redis %%REDIS%%;
    aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
END
    'aihub on without aihub_cache_zone');

conf_fails(<<"END" . $LOC, qr/"aihub on" requires at least one "aihub_provider"/,
    aihub_redis %%REDIS%%;
    aihub_cache_zone aihub:1m;
END
    'aihub on without a provider');

conf_fails($GOOD_TOP . <<'END', qr/invalid value "maybe"/,
    server {
        listen 127.0.0.1:%%PORT%%;
        location /v1/ {
            aihub maybe;   #BAD
        }
    }
END
    'aihub with a value that is not on/off');


# --- aihub_provider ---------------------------------------------------------

conf_fails(<<"END" . $LOC, qr/aihub provider "mock" has no "url="/,
    aihub_redis %%REDIS%%;
    aihub_cache_zone aihub:1m;
    aihub_provider mock key_env=AIHUB_MOCK_KEY;   #BAD
END
    'aihub_provider without url');

conf_fails(<<"END" . $LOC, qr/invalid parameter "colour=blue" of aihub provider "mock"/,
    aihub_redis %%REDIS%%;
    aihub_cache_zone aihub:1m;
    aihub_provider mock url=%%MOCK_URL%% colour=blue;   #BAD
END
    'aihub_provider with an unknown parameter');

conf_fails(<<"END" . $LOC, qr/invalid parameter "max_tokens_as=max_outpu/,
    aihub_redis %%REDIS%%;
    aihub_cache_zone aihub:1m;
    aihub_provider mock url=%%MOCK_URL%% max_tokens_as=max_output_tokens; #BAD
END
    'aihub_provider with max_tokens_as= neither chat name');

conf_fails(<<"END" . $LOC, qr/invalid parameter "url=ftp:\/\/example.com\/v1"/,
    aihub_redis %%REDIS%%;
    aihub_cache_zone aihub:1m;
    aihub_provider mock url=ftp://example.com/v1 key_env=AIHUB_MOCK_KEY; #BAD
END
    'aihub_provider with a url that is not http(s)');

conf_fails(<<"END" . $LOC, qr/"url=https:\/\/example.com\/openai\?api-version=1" has a query string/,
    aihub_redis %%REDIS%%;
    aihub_cache_zone aihub:1m;
    aihub_provider mock url=https://example.com/openai?api-version=1 key_env=AIHUB_MOCK_KEY; #BAD
END
    'aihub_provider with a query string in its url');

conf_fails(<<"END" . $LOC, qr/aihub provider name "OpenAI": only a-z, 0-9, "_" and "-"/,
    aihub_redis %%REDIS%%;
    aihub_cache_zone aihub:1m;
    aihub_provider OpenAI url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY; #BAD
END
    'aihub_provider named with a capital (no catalog model can name it)');

# each provider's lane and breaker live in the shared zone's 16 places
conf_fails(<<"END" . $LOC, qr/too many aihub providers: at most 16/,
    aihub_redis %%REDIS%%;
    aihub_cache_zone aihub:1m;
    aihub_provider p1 url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
    aihub_provider p2 url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
    aihub_provider p3 url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
    aihub_provider p4 url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
    aihub_provider p5 url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
    aihub_provider p6 url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
    aihub_provider p7 url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
    aihub_provider p8 url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
    aihub_provider p9 url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
    aihub_provider p10 url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
    aihub_provider p11 url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
    aihub_provider p12 url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
    aihub_provider p13 url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
    aihub_provider p14 url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
    aihub_provider p15 url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
    aihub_provider p16 url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
    aihub_provider p17 url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY; #BAD
END
    'a 17th aihub_provider');


conf_fails(<<"END" . $LOC, qr/aihub provider "mock": "free_share=" and "queue=" shape a lane, which only "capacity=" gives/,
    aihub_redis %%REDIS%%;
    aihub_cache_zone aihub:1m;
    aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY queue=8; #BAD
END
    'aihub_provider with queue= but no capacity= (no lane: ignored)');

conf_fails(<<"END" . $LOC, qr/"user=worker" needs "password_env="/,
    aihub_redis %%REDIS%% user=worker; #BAD
    aihub_cache_zone aihub:1m;
    aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
END
    'aihub_redis with a user and no password (no AUTH would be sent)');

# --- a provider resolved on each call, and no resolver -----------------------

# "proxy_pass $aihub_proxy_url" resolves a host that is neither an upstream
# block nor an IP address on each call, with the location's resolver; with
# none, each such call would get 502 ("no resolver defined"): nginx -t
# says so once a provider (a warning: it may serve no model yet)

# $LOC and the developer API's location
my $TWO_LOCS = $LOC;
$TWO_LOCS =~ s{(\n    \}\n)\z}{
        location /api/v1/developer/ {
            aihub on;
            proxy_pass \$aihub_proxy_url;
        }$1} or die 'no server block in $LOC';

my $RESOLVER_WARN = qr/\[warn\] aihub provider "(\w+)": its host "([^"]+)" is neither an "upstream" block nor an IP address( \(an upstream block is named by a url without a port\))?, and location "([^"]+)" has "aihub on" and no "resolver": each call given to it would fail with 502/;

sub resolver_warnings {
    my ($http, $name) = @_;

    my $inst = 'r' . ++$seq;
    $t->nginx($http, name => $inst);
    my ($ok, $out) = $t->nginx_test($inst);
    ok($ok, "$name: nginx -t passes") or diag($out);

    my @w;
    while ($out =~ /$RESOLVER_WARN/g) {
        push @w, "$1 $2 $4" . ($3 ? ' (port)' : '');
    }
    return \@w;
}

my $TOP = <<'END';
    aihub_redis %%REDIS%%;
    aihub_cache_zone aihub:1m;
    aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
    aihub_provider ext url=https://API.example.com/v1 key_env=AIHUB_MOCK_KEY;
    aihub_provider portly url=http://stub:8080/v1 key_env=AIHUB_MOCK_KEY;
    aihub_provider named url=http://stub/v1 key_env=AIHUB_MOCK_KEY;
    aihub_provider six url=http://[::1]:9/v1 key_env=AIHUB_MOCK_KEY;
    upstream stub {
        server 127.0.0.1:9;
    }
END

is_deeply(resolver_warnings($TOP . $TWO_LOCS, 'no resolver'),
          [ 'ext API.example.com /v1/', 'portly stub /v1/ (port)' ],
          'no resolver: a warning for each host that needs one, once a '
          . 'provider (not for an IP, nor for an upstream block by name; '
          . 'an upstream named without a port is no match for a url with '
          . 'one, as nginx matches it)');

is_deeply(resolver_warnings($TOP . "    resolver 127.0.0.1;\n" . $TWO_LOCS,
                            'a resolver in http{}'),
          [], 'a resolver in http{}: no warning');

my $ONE_WITH = $TWO_LOCS;
$ONE_WITH =~ s{(location /v1/ \{\n)}{$1            resolver 127.0.0.1;\n};
is_deeply(resolver_warnings($TOP . $ONE_WITH, 'a resolver in one location'),
          [ 'ext API.example.com /api/v1/developer/',
            'portly stub /api/v1/developer/ (port)' ],
          'a resolver in one location: the other one is named');

is_deeply(resolver_warnings($TOP . <<'END' . $TWO_LOCS, 'an upstream block'),
    upstream api.example.com {
        server 127.0.0.1:9;
    }
END
          [ 'portly stub /v1/ (port)' ],
          'an upstream block named as the host (in another case): no '
          . 'warning for it');


# what the warning says: the provider whose url names the upstream block
# with a port is resolved, and without a resolver its calls get 502; the
# one that names it without a port is served

{
    my $mp = $t->{mock_port};

    seed_models($t,
        'test-port' => { provider => 'portly', upstream => 'mock-basic',
                         tier => 'basic', price_in => 1, price_out => 1 },
        'test-named' => { provider => 'named', upstream => 'mock-basic',
                          tier => 'basic', price_in => 1, price_out => 1 });
    my $key = seed_full_key($t, account => 1001, plan => 'pro',
                            models => '*');

    $t->nginx(gateway_conf(
        url => '%%MOCK_URL%%',
        providers => 'aihub_provider named url=http://mockup/v1 '
                     . 'key_env=AIHUB_MOCK_KEY; aihub_provider portly '
                     . "url=http://mockup:$mp/v1 key_env=AIHUB_MOCK_KEY;",
        extra => "upstream mockup { server 127.0.0.1:$mp; }"),
        name => 'resolved');
    my ($ok, $out) = $t->nginx_test('resolved');
    like($out, qr/aihub provider "portly": its host "mockup"/,
         'the gateway: nginx -t warns of the provider with a port');
    unlike($out, qr/aihub provider "named"/, 'and not of the other');

    $t->allow_log(qr/no resolver defined to resolve mockup/);
    $t->start_nginx('resolved');
    ok(wait_ready($t, $key, name => 'resolved'), 'the gateway is ready');

    my $r = raw_request($t, name => 'resolved', key => $key, timeout => 5,
                        body => chat_body(model => 'test-named'));
    is($r->{status}, 200, 'the upstream block named without a port: 200');
    $r = raw_request($t, name => 'resolved', key => $key, timeout => 5,
                     body => chat_body(model => 'test-port'));
    is($r->{status}, 502, 'named with a port: 502, as the warning said');
    like(Aihub::read_file($t->nginx_dir('resolved') . '/error.log'),
         qr/no resolver defined to resolve mockup/,
         'nginx: "no resolver defined to resolve mockup"');
    $t->stop_nginx('resolved');
}


# --- values with which nothing works ------------------------------------------

for my $case (
    [ 'aihub_event_buffer 0;', qr/value must be equal to or greater than 1/,
      'aihub_event_buffer 0 (every call 503)' ],
    [ 'aihub_lease_calls 0;', qr/value must be equal to or greater than 1/,
      'aihub_lease_calls 0' ],
    [ 'aihub_redis_timeout 0;',
      qr/"aihub_redis_timeout" directive must be at least 1ms/,
      'aihub_redis_timeout 0 (no reply in time, ever)' ],
    [ 'aihub_lease_time 500ms;',
      qr/"aihub_lease_time" directive must be at least 1s/,
      'aihub_lease_time 500ms (leases reclaimed under their calls)' ],
    [ 'aihub_body_max 0;', qr/value must be equal to or greater than 1/,
      'aihub_body_max 0 (every body 413)' ],
) {
    my ($line, $re, $name) = @$case;
    conf_fails(<<"END" . $LOC, $re, $name);
    aihub_redis %%REDIS%%;
    aihub_cache_zone aihub:1m;
    aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
    $line   #BAD
END
}

Aihub::write_file($t->dir . '/provider.key', "secret\n");

conf_fails(<<"END" . $LOC, qr/has both "key_env=" and "key_file="/,
    aihub_redis %%REDIS%%;
    aihub_cache_zone aihub:1m;
    aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY key_file=${\ $t->dir}/provider.key; #BAD
END
    'aihub_provider with both key_env and key_file');

conf_fails(<<"END" . $LOC, qr/cannot open key file ".*no-such\.key"/,
    aihub_redis %%REDIS%%;
    aihub_cache_zone aihub:1m;
    aihub_provider mock url=%%MOCK_URL%% key_file=${\ $t->dir}/no-such.key; #BAD
END
    'aihub_provider with a missing key_file');

Aihub::write_file($t->dir . '/empty.key', "\n");

conf_fails(<<"END" . $LOC, qr/key file ".*empty\.key" of aihub provider "mock" is empty/,
    aihub_redis %%REDIS%%;
    aihub_cache_zone aihub:1m;
    aihub_provider mock url=%%MOCK_URL%% key_file=${\ $t->dir}/empty.key; #BAD
END
    'aihub_provider with an empty key_file');

# a key file that exists is fine
$t->nginx(<<"END" . $LOC, name => 'keyfile');
    aihub_redis %%REDIS%%;
    aihub_cache_zone aihub:1m;
    aihub_provider mock url=%%MOCK_URL%% key_file=${\ $t->dir}/provider.key;
END
($ok, $out) = $t->nginx_test('keyfile');
ok($ok, 'aihub_provider with a readable key_file passes') or diag($out);


# --- location directives ----------------------------------------------------

conf_fails($GOOD_TOP . <<'END', qr/invalid value "ajar"/,
    server {
        listen 127.0.0.1:%%PORT%%;
        location /v1/ {
            aihub on;
            aihub_failure_mode ajar;   #BAD
            proxy_pass $aihub_proxy_url;
        }
    }
END
    'bad aihub_failure_mode');

conf_fails($GOOD_TOP . <<'END', qr/invalid value "galactic"/,
    server {
        listen 127.0.0.1:%%PORT%%;
        location /v1/ {
            aihub on;
            aihub_rate_limit galactic;   #BAD
            proxy_pass $aihub_proxy_url;
        }
    }
END
    'bad aihub_rate_limit');

conf_fails($GOOD_TOP . <<'END', qr/"aihub_body_max" directive invalid value/,
    server {
        listen 127.0.0.1:%%PORT%%;
        location /v1/ {
            aihub on;
            aihub_body_max huge;   #BAD
            proxy_pass $aihub_proxy_url;
        }
    }
END
    'bad aihub_body_max');

conf_fails(<<'END' . $LOC, qr/"aihub_redis_timeout" directive invalid value/,
    aihub_redis %%REDIS%%;
    aihub_redis_timeout soon;   #BAD
    aihub_cache_zone aihub:1m;
    aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
END
    'bad aihub_redis_timeout');

# the password is never written in nginx.conf: password_env= names it
conf_fails(<<'END' . $LOC, qr/invalid parameter "password=hunter2"/,
    aihub_redis %%REDIS%% password=hunter2;   #BAD
    aihub_cache_zone aihub:1m;
    aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
END
    'aihub_redis with an inline password');

conf_fails(<<'END' . $LOC, qr/"aihub_exit_flush_timeout" directive invalid/,
    aihub_redis %%REDIS%%;
    aihub_exit_flush_timeout forever;   #BAD
    aihub_cache_zone aihub:1m;
    aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
END
    'bad aihub_exit_flush_timeout');

conf_fails(<<'END', qr/"aihub_redis" directive is not allowed here/,
    server {
        listen 127.0.0.1:%%PORT%%;
        aihub_redis 127.0.0.1:6379;   #BAD
    }
END
    'aihub_redis inside a server block');

$t->done;
