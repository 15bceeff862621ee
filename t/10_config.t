#!/usr/bin/perl

# Configuration: the module loads into the stock nginx, and "nginx -t"
# refuses every bad directive value with a message naming file and line.

use strict;
use warnings;

use Test::More;

use lib 't/lib';
use Aihub;

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
