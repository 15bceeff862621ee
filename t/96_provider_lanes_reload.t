#!/usr/bin/perl

# Each provider's lane (capacity, saturation, breaker) has one of the
# shared zone's 16 places, and the zone outlives a reload.  Sixteen
# providers served, then a reload that renames them all: the new ones must
# get places (those of the old names, idle and no longer declared), or a
# provider's capacity= is silently not kept.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);

my $t = Aihub->new;
$t->skip_unless_built;
$t->start_redis;
$t->start_mock;

my %models;
for my $set (qw(a b)) {
    for my $n (1 .. 16) {
        $models{"l$set-$n"} = { provider => "p$set$n", upstream => 'mock-basic',
                                tier => 'basic', price_in => 1000000,
                                price_out => 2000000 };
    }
}
seed_models($t, %models);

my $free = seed_full_key($t, account => 961, plan => 'free', priority => 0,
                         models => '*');

sub conf {
    my ($set, $first) = @_;

    return gateway_conf(
        url => '%%MOCK_URL%%', redis_timeout => '2s',
        extra => 'aihub_pass_request_header x-mock-*;',
        providers => join "\n    ", map {
            "aihub_provider p$set$_ url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY"
            . ($_ == 1 ? " $first" : '') . ';'
        } 1 .. 16);
}

$t->nginx(conf('a', ''));
$t->start_nginx;
ok(wait_ready($t, $free), 'gateway ready');

is(scalar(grep { $t->chat($free, model => "la-$_")->{status} == 200 } 1 .. 16),
   16, 'sixteen providers served: every place of the zone taken');

# the same sixteen places, sixteen new names; the first with capacity=1
$t->nginx(conf('b', 'capacity=1 free_share=100%'));
$t->reload_nginx;

is($t->chat($free, model => 'lb-2')->{status}, 200,
   'after the reload: a renamed provider serves');

# two calls at once to the provider of capacity 1: the second is refused
my @r = parallel_chat($t, 2, $free, model => 'lb-1',
                      headers => { 'x-mock-delay-ms' => 800 });
my @status = sort map { $_->{status} // 0 } @r;
is_deeply(\@status, [ 200, 429 ],
          'capacity=1 kept after the reload: one call served, the other '
          . 'refused at once') or diag(explain(\@status));
unlike($t->error_log, qr/no room for the lane/,
       'no provider went without a lane');

$t->done;
