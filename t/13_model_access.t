#!/usr/bin/perl

# Model access per plan: free keys get the basic tier, pro keys every
# model, unknown models are 404; the model id is rewritten to the
# catalog's upstream id; the model lists show exactly what a key may use;
# max_tokens is capped per key.  Nothing rejected is forwarded or counted.

use strict;
use warnings;

use Test::More;

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);

plan(skip_all => 'module not built') unless Aihub::have_module();

my $t = Aihub->new(redis => 1, mock => 1);

seed_models($t);
my $free = seed_full_key($t, account => 1301, plan => 'free',
                         models => 'tier:basic', max_tokens => 100);
my $pro = seed_full_key($t, account => 1302, plan => 'pro', models => '*');
my $listed = seed_full_key($t, account => 1303, plan => 'enterprise',
                           models => 'test-premium');

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

ok(wait_ready($t, $free), 'catalog loaded');

sub bytes_len { my $s = shift; utf8::encode($s); length $s }

my $period_free = 'aihub:period:1301:' . period_id();

# --- rejections ---------------------------------------------------------------

my $r = $t->chat($free, model => 'test-premium');
is_error($r, 403, 'model_not_allowed', 'free key, premium model');
like($r->{json}{error}{message}, qr/test-premium.*free/,
     'the message names the model and the plan');

is_error($t->chat($free, model => 'no-such-model'), 404, 'model_not_found',
         'free key, unknown model');
is_error($t->chat($pro, model => 'no-such-model'), 404, 'model_not_found',
         'pro key, unknown model');
is_error($t->chat($pro, model => 'mock-basic'), 404, 'model_not_found',
         'an upstream id is not a public model id');
is_error($t->chat($listed, model => 'test-basic'), 403, 'model_not_allowed',
         'explicit model list, model not in it');

is_error($t->chat($free, model => 'test-basic', extra => { max_tokens => 101 }),
         400, 'max_tokens_exceeded', 'max_tokens above the key cap');
is_error($t->chat($free, model => 'test-basic',
                  extra => { max_completion_tokens => 5000 }),
         400, 'max_tokens_exceeded', 'max_completion_tokens above the cap');
is_error($t->chat($free, model => 'test-basic',
                  extra => { max_completion_tokens => 50,
                             max_tokens => 5000 }),
         400, 'max_tokens_exceeded',
         'max_tokens above the cap beside max_completion_tokens within it '
         . '(a provider may read max_tokens only)');

is(mock_count($t), 0, 'no rejected request reached the provider');
is($t->redis('HGET', $period_free, 'calls'), undef,
   'no rejected request was counted');


# --- allowed ------------------------------------------------------------------

$r = $t->chat($free, model => 'test-basic', extra => { max_tokens => 100 });
is($r->{status}, 200, 'free key, basic model, max_tokens at the cap');

$r = $t->chat($pro, model => 'test-basic');
is($r->{status}, 200, 'pro key, basic model');

$r = $t->chat($pro, model => 'test-premium', content => "\x{e9}" x 10);
is($r->{status}, 200, 'pro key, premium model');
is($r->{json}{model}, 'mock-premium', 'the provider answered for upstream');

$r = $t->chat($listed, model => 'test-premium');
is($r->{status}, 200, 'explicit model list, model in it');

my @log = $t->mock_log;
is(scalar @log, 4, 'four requests forwarded');

my @upstream = map { JSON::PP->new->decode($_->{body})->{model} } @log;
is_deeply(\@upstream, [ qw(mock-basic mock-basic mock-premium mock-premium) ],
          'the provider received the catalog upstream ids');

for my $i (0 .. $#log) {
    is($log[$i]{headers}{'content-length'}, bytes_len($log[$i]{body}),
       "request $i: Content-Length matches the rewritten body");
    unlike($log[$i]{body}, qr/test-(basic|premium)/,
           "request $i: the public id is gone from the body");
}

my $b0 = JSON::PP->new->decode($log[0]{body});
is($b0->{max_tokens}, 100, 'other members survive the rewrite');
is($b0->{messages}[0]{content}, 'hello', 'messages survive the rewrite');
my $b2 = JSON::PP->new->decode($log[2]{body});
is($b2->{messages}[0]{content}, "\x{e9}" x 10,
   'non-ASCII content survives the rewrite');

calls_settle($t, 1301, 1, 'the one free call was counted');


# --- model lists --------------------------------------------------------------

sub ids {
    my ($r) = @_;
    return [ sort map { $_->{id} } @{ $r->{json}{data} // [] } ];
}

for my $path ('/v1/models', '/api/v1/developer/models') {
    $r = $t->http(GET => $path, key => $free);
    is($r->{status}, 200, "$path free: 200");
    is($r->{json}{object}, 'list', "$path: list shape");
    is_deeply(ids($r), [ 'test-basic' ], "$path free: the basic model only");
    is($r->{json}{data}[0]{object}, 'model', "$path: model objects");

    is_deeply(ids($t->http(GET => $path, key => $pro)),
              [ qw(test-basic test-premium) ], "$path pro: every model");
    is_deeply(ids($t->http(GET => $path, key => $listed)),
              [ 'test-premium' ], "$path listed: exactly its list");
}

is_error($t->http(POST => '/v1/models', key => $pro, body => '{}'),
         405, 'method_not_allowed', 'POST /v1/models');


# --- a catalog change reaches nginx through pub/sub ----------------------------

seed_models($t, %MODELS,
            'test-new' => { provider => 'mock', upstream => 'mock-basic',
                            tier => 'basic', price_in => 1, price_out => 1 });

ok($t->wait_for(sub {
    grep { $_ eq 'test-new' } @{ ids($t->http(GET => '/v1/models',
                                             key => $free)) };
}, timeout => 1), 'a model added and published is listed within 1 s');
is($t->chat($free, model => 'test-new')->{status}, 200,
   'and can be used at once');

seed_models($t);
ok($t->wait_for(sub {
    $t->chat($free, model => 'test-new')->{status} == 404
}, timeout => 1), 'a model removed is 404 within 1 s');

$t->done;
