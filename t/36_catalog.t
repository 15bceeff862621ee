#!/usr/bin/perl

# A truthful catalog, from the real one (sql/, synced by the worker):
#   - GET /v1/models and /api/v1/developer/models list only the models this
#     node can serve: their provider declared here, with a credential (a
#     provider whose key_env is unset serves nothing), and that the key's
#     plan allows; "created" is the catalog's publication time, "kind" its
#     kind;
#   - GET /v1/models/{id} (and the developer twin) answers that object, the
#     id with slashes as the rest of the path or %2F-encoded; 404
#     model_not_found for an unknown model, one the plan does not allow and
#     one this node cannot serve;
#   - with only the mock provider configured, every listed model answers
#     200 when called (chat models on chat completions, embedding models on
#     embeddings), and the worker stores each call's event with the usage
#     the client saw.

use strict;
use warnings;

use Test::More;
use JSON::PP;

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);

my $t = Aihub->new;
$t->skip_unless_built;
$t->start_redis;
$t->start_mariadb;
$t->start_mock;
$t->migrate;

my $pro = $t->create_key(account => 'catalog-pro', plan => 'pro');
my $free = $t->create_key(account => 'catalog-free', plan => 'free');

# the catalog as MySQL has it: id -> created (unix), kind
my %catalog = map { $_->[0] => { created => $_->[1], kind => $_->[2],
                                 provider => $_->[3] } }
              $t->sql('SELECT public_id, UNIX_TIMESTAMP(created_at), kind, '
                      . 'provider FROM models');
ok(scalar(grep { $_->{provider} ne 'mock' } values %catalog) >= 7,
   'the catalog holds models of providers this node does not declare');

# gemini is declared but has no credential here: it serves nothing
$t->nginx(<<'END')->start_nginx;
    aihub_redis %%REDIS%%;
    aihub_redis_timeout 300ms;
    aihub_cache_zone aihub:8m;
    aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
    aihub_provider gemini url=http://%%MOCK%%/v1beta/openai kind=gemini
                   key_env=AIHUB_TEST_UNSET_GEMINI_KEY;

    server {
        listen 127.0.0.1:%%PORT%%;

        location /v1/ {
            aihub on;
            proxy_pass $aihub_proxy_url;
            proxy_set_header Host $aihub_provider_host;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }

        location /api/v1/developer/ {
            aihub on;
            proxy_pass $aihub_proxy_url;
            proxy_set_header Host $aihub_provider_host;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
END

ok(wait_ready($t, $pro), 'gateway ready');


# --- the lists ---------------------------------------------------------------

my $r = $t->http(GET => '/v1/models', key => $pro);
is($r->{status}, 200, 'GET /v1/models: 200');

my @listed = map { $_->{id} } @{ $r->{json}{data} // [] };
my @mock = sort grep { $catalog{$_}{provider} eq 'mock' } keys %catalog;

is_deeply([ sort @listed ], \@mock,
          'pro: exactly the models of the mock provider are listed')
    or diag("listed: @listed");
ok(scalar(@mock) >= 3, 'chat and embedding models among them (@mock)');

for my $m (@{ $r->{json}{data} // [] }) {
    is($m->{created}, $catalog{ $m->{id} }{created},
       "$m->{id}: created is the catalog's ($m->{created})");
    ok($m->{created} > 1600000000, "$m->{id}: created is a real time");
    is($m->{kind}, $catalog{ $m->{id} }{kind}, "$m->{id}: kind");
}

is_deeply($t->http(GET => '/api/v1/developer/models', key => $pro)->{json},
          $r->{json}, 'the developer path lists the same');

my $fr = $t->http(GET => '/v1/models', key => $free);
my @free = sort map { $_->{id} } @{ $fr->{json}{data} // [] };
ok(!(grep { $_ eq 'mock-premium' } @free), 'free: no premium model')
    or diag("free lists @free");
ok((grep { $_ eq 'mock-basic' } @free), 'free: mock-basic listed');


# --- the lookup --------------------------------------------------------------

for my $id (@listed) {
    my $one = $t->http(GET => "/v1/models/$id", key => $pro);
    is($one->{status}, 200, "GET /v1/models/$id: 200");
    my ($in_list) = grep { $_->{id} eq $id } @{ $r->{json}{data} };
    is_deeply($one->{json}, $in_list, "... the object the list has");
}

# ids with slashes: the rest of the path, or encoded as the SDKs send them
my $SLASHED = 'openai/gpt-4o-mini';

seed_model_provider($t, $SLASHED, 'mock');

ok($t->wait_for(sub {
    $t->http(GET => "/v1/models/$SLASHED", key => $pro)->{status} == 200 }),
   "a model with a slash in its id, moved to the mock: 200");
is($t->http(GET => "/v1/models/openai%2Fgpt-4o-mini", key => $pro)
   ->{json}{id}, $SLASHED, '... and %2F-encoded');
is($t->http(GET => "/api/v1/developer/models/$SLASHED", key => $pro)
   ->{json}{id}, $SLASHED, '... and on the developer path');

is_error($t->http(GET => '/v1/models/openai/gpt-4o', key => $pro), 404,
         'model_not_found', 'a model of an undeclared provider: 404');
is_error($t->http(GET => '/v1/models/google/gemini-2.0-flash', key => $pro),
         404, 'model_not_found',
         'a model of a provider without a credential: 404');
is_error($t->http(GET => '/v1/models/mock-premium', key => $free), 404,
         'model_not_found', 'a model the plan does not allow: 404');
is_error($t->http(GET => '/v1/models/no-such-model', key => $pro), 404,
         'model_not_found', 'an unknown model: 404');
is_error($t->http(GET => '/v1/models/mock-basic'), 401, 'invalid_api_key',
         'no key: 401');
is_error($t->http(POST => '/v1/models/mock-basic', key => $pro,
                  body => {}), 405, 'method_not_allowed', 'POST: 405');
is($t->http(GET => '/v1/models/', key => $pro)->{status}, 404,
   'no id: 404');


# --- every listed model answers -----------------------------------------------

my $before = mock_count($t);
my %usage;      # request id -> the usage the client saw
@listed = map { $_->{id} }
          @{ $t->http(GET => '/v1/models', key => $pro)->{json}{data} };

for my $id (@listed) {
    my $call = $catalog{$id}{kind} eq 'embedding'
        ? $t->http(POST => '/v1/embeddings', key => $pro,
                   body => { model => $id, input => 'hello' })
        : $t->chat($pro, model => $id);

    is($call->{status}, 200, "$id ($catalog{$id}{kind}) answers 200")
        or diag($call->{content});
    $usage{ $call->{headers}{'x-request-id'} } = $call->{json}{usage};
}

is(mock_count($t) - $before, scalar @listed,
   'each listed model reached the provider once');

# the worker drains their events into MySQL, as the client saw them
$t->start_worker('--consumer', 'c36', '--block-ms', '100');

my $ids = join ',', map { "'$_'" } sort keys %usage;
ok($t->wait_for(sub {
    ($t->sql_value("SELECT COUNT(*) FROM usage_events WHERE event_id IN "
                   . "($ids)") // 0) == keys %usage }, timeout => 10),
   'the worker stored every call\'s event');

for my $row ($t->sql('SELECT event_id, model, prompt_tokens, '
                     . 'completion_tokens, total_tokens, estimated FROM '
                     . "usage_events WHERE event_id IN ($ids)"))
{
    my ($eid, $model, $p, $c, $tot, $est) = @$row;
    my $u = $usage{$eid};

    is_deeply([ $p, $c, $tot, $est ],
              [ $u->{prompt_tokens}, $u->{completion_tokens} // 0,
                $u->{total_tokens}, 0 ],
              "$model: the stored event is the usage the client saw");
}

$t->done;


# the model's provider changed in the ledger and synced, as an operator does

sub seed_model_provider {
    my ($t, $id, $provider) = @_;

    $t->sql("UPDATE models SET provider = '$provider', upstream_id = "
            . "'mock-basic' WHERE public_id = '$id'");
    my ($rc, $out, $err) = $t->worker('sync');
    is($rc, 0, 'aihub-worker sync') or diag("$out$err");
    $catalog{$id}{provider} = $provider;
}
