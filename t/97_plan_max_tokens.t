#!/usr/bin/perl

# A plan's max_tokens cap bounds every call, not only the calls that ask a
# limit: a body that asks none is sent the cap (max_tokens for a chat
# completion, or max_completion_tokens for a provider declared with
# max_tokens_as=max_completion_tokens, as OpenAI's reasoning models need;
# max_output_tokens for the Responses API, and max_tokens once a Responses
# call is translated into a chat completion).  A limit the body asked is
# forwarded as it came; a key without a cap is forwarded untouched; an
# embedding gets no cap.  The mock stops a chat answer at the limit it is
# sent, as a real model does (finish_reason "length").

use strict;
use warnings;

use Test::More;
use JSON::PP;

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);

plan(skip_all => 'module not built') unless Aihub::have_module();

my $t = Aihub->new(redis => 1, mock => 1);

my %models = (
    %MODELS,
    'test-resp'  => { provider => 'mock', upstream => 'mock-basic',
                      tier => 'basic', api => 'responses',
                      price_in => 1000000, price_out => 2000000 },
    'test-o'     => { provider => 'openai', upstream => 'o3-mini',
                      tier => 'basic', price_in => 1000000,
                      price_out => 2000000 },
    'test-o-old' => { provider => 'mock', upstream => 'o3-mini',
                      tier => 'basic', price_in => 1000000,
                      price_out => 2000000 },
    'test-embed' => { provider => 'mock', upstream => 'mock-embed',
                      tier => 'basic', kind => 'embedding',
                      price_in => 100000, price_out => 0 },
);
seed_models($t, %models);

my $CAP = 5;
my $capped = seed_full_key($t, account => 9701, plan => 'free',
                           max_tokens => $CAP, scopes => 'chat,embeddings');
my $open = seed_full_key($t, account => 9702, plan => 'pro', models => '*');

$t->nginx(gateway_conf(url => '%%MOCK_URL%%',
    providers => "aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;\n"
                 . "    aihub_provider openai url=%%MOCK_URL%% "
                 . 'key_env=AIHUB_MOCK_KEY max_tokens_as=max_completion_tokens;',
    extra => 'aihub_pass_request_header x-mock-*;'))->start_nginx;

ok(wait_ready($t, $capped), 'catalog loaded');

my $LONG = { 'x-mock-completion-tokens' => 50 };

# the body the provider got for the last call
sub sent {
    my @log = $t->mock_log;
    return @log ? JSON::PP->new->decode($log[-1]{body}) : {};
}

# the member names of the body the provider got, sorted
sub sent_names { join ',', sort keys %{ sent() } }


# --- chat completions -----------------------------------------------------

my $r = $t->chat($capped, model => 'test-basic', headers => $LONG);
is($r->{status}, 200, 'no max_tokens asked: 200');
is($r->{json}{usage}{completion_tokens}, $CAP,
   'the answer stopped at the plan\'s cap (the model was to write 50)');
is($r->{json}{choices}[0]{finish_reason}, 'length',
   '... finish_reason "length", as a real model says');
is(sent()->{max_tokens}, $CAP, 'the provider was sent max_tokens: the cap');
is(sent_names(), 'max_tokens,messages,model', '... and no other member');

$r = $t->chat($capped, model => 'test-basic', headers => $LONG,
              stream => 1);
is($r->{status}, 200, 'a stream: 200');
is((($t->mock_log)[-1])->{usage}{completion_tokens}, $CAP,
   'a stream stopped at the cap too (the usage the provider sent)');
is(sent()->{max_tokens}, $CAP, '... the provider was sent the cap');

$r = $t->chat($capped, model => 'test-basic', headers => $LONG,
              extra => { max_tokens => undef });
is($r->{status}, 200, '"max_tokens": null: 200');
is(sent()->{max_tokens}, $CAP, '... the cap in place of the null');
is(scalar(() = $t->mock_log ? ($t->mock_log)[-1]{body} =~ /"max_tokens"/g
                            : ()), 1,
   '... one max_tokens member, not two');
is($r->{json}{usage}{completion_tokens}, $CAP, '... and the answer stopped');

$r = $t->chat($capped, model => 'test-basic', headers => $LONG,
              extra => { max_completion_tokens => undef });
is($r->{status}, 200, '"max_completion_tokens": null: 200');
is(sent()->{max_tokens}, $CAP, '... the cap added as max_tokens');
ok(exists sent()->{max_completion_tokens}
   && !defined sent()->{max_completion_tokens},
   '... the null as it came');

$r = $t->chat($capped, model => 'test-basic', headers => $LONG,
              extra => { max_tokens => 3 });
is($r->{json}{usage}{completion_tokens}, 3,
   'a limit under the cap: the body\'s own');
is(sent()->{max_tokens}, 3, '... forwarded as it came');

$r = $t->chat($open, model => 'test-basic', headers => $LONG);
is($r->{json}{usage}{completion_tokens}, 50, 'a key without a cap: 50');
is(sent_names(), 'messages,model', '... nothing added');


# --- a provider that reads max_completion_tokens --------------------------

$r = $t->chat($capped, model => 'test-o', headers => $LONG);
is($r->{status}, 200, 'max_tokens_as=max_completion_tokens, a reasoning '
                      . 'model: 200');
is(sent()->{max_completion_tokens}, $CAP,
   '... sent max_completion_tokens: the cap');
ok(!exists sent()->{max_tokens}, '... and no max_tokens');
is($r->{json}{usage}{completion_tokens}, $CAP, '... the answer stopped');

$r = $t->chat($capped, model => 'test-o-old', headers => $LONG);
is($r->{status}, 400, 'without the option, OpenAI\'s reasoning model '
                      . 'refuses max_tokens: 400 (why the option exists)');
like($r->{json}{error}{message}, qr/max_completion_tokens/,
     '... its message says so');


# --- the Responses API ----------------------------------------------------

$r = $t->http(POST => '/v1/responses', key => $capped, headers => $LONG,
              body => { model => 'test-resp', input => 'hello' });
is($r->{status}, 200, 'Responses, no max_output_tokens: 200');
is(sent()->{max_output_tokens}, $CAP,
   '... the provider was sent max_output_tokens: the cap');

$r = $t->http(POST => '/v1/responses', key => $capped, headers => $LONG,
              body => { model => 'test-basic', input => 'hello' });
is($r->{status}, 200, 'Responses translated into a chat completion: 200');
is(sent()->{max_tokens}, $CAP, '... the provider was sent max_tokens');
ok(exists sent()->{messages}, '... in a chat completion');
is($r->{json}{usage}{output_tokens}, $CAP, '... the answer stopped');


# --- embeddings -----------------------------------------------------------

$r = $t->http(POST => '/v1/embeddings', key => $capped,
              body => { model => 'test-embed', input => 'hello' });
is($r->{status}, 200, 'an embedding: 200');
is(sent_names(), 'input,model', '... no cap added');

done_testing();
