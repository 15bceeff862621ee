#!/usr/bin/perl

# aihub-worker model and plan commands, through a real nginx: a model added
# is served within a second, a price change mid-month splits the invoice by
# price, a removed model is 404; a plan change reaches the keys of its
# accounts at once.  Bad input is refused with a clear message and exit 2
# (usage) or 1 (runtime), and changes nothing.

use strict;
use warnings;

use Test::More;
use IO::Select;
use JSON::PP;
use Time::HiRes qw(time sleep);
use Time::Local qw(timegm);

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);

plan skip_all => 'module or aihub-worker not built'
    unless Aihub::have_module() && Aihub::have_worker();

my $t = Aihub->new(redis => 1, mariadb => 1, mock => 1);
$t->migrate;

my $json = JSON::PP->new;

my $pro = $t->create_key(account => 'cat', plan => 'pro');
my $acct = $t->sql_value("SELECT id FROM accounts WHERE name = 'cat'");

# every call of this account is billed: no included calls
my ($rc, $out, $err) = $t->worker('account', 'override', 'cat',
                                  '--included', 0);
is($rc, 0, 'override: no included calls') or diag($err);

$t->start_worker;

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
    }
END

ok(wait_ready($t, $pro), 'catalog loaded');

# a subscriber on the invalidation channel

my $sub = $t->redis_connect;
my $subbuf = '';
print $sub Aihub::resp_encode('SUBSCRIBE', 'aihub:invalidate');
Aihub::resp_read($sub, \$subbuf);

sub invalidations {
    my @m;
    while (length $subbuf || IO::Select->new($sub)->can_read(0.5)) {
        my $m = Aihub::resp_read($sub, \$subbuf);
        push @m, $m->[2];
    }
    return @m;
}

# the first answer with the wanted status within a second of now

sub status_within_a_second {
    my ($model, $want) = @_;
    return status_within_a_second_for($pro, $model, $want);
}

sub status_within_a_second_for {
    my ($key, $model, $want) = @_;

    my $deadline = time + 1;
    my $r;

    do {
        $r = $t->chat($key, model => $model, timeout => 2);
        return $r if $r->{status} == $want;
        sleep 0.05;
    } while (time < $deadline);

    return $r;
}

sub models_count {
    return $t->sql_value('SELECT COUNT(*) FROM models');
}

sub wait_events {
    my ($n) = @_;
    return $t->wait_for(sub {
        $t->sql_value("SELECT COUNT(*) FROM usage_events WHERE model = "
                      . "'acme/chat-1'") == $n
    }, timeout => 10);
}

# --- bad input: refused, nothing changed -----------------------------------

my $before = models_count();

for my $case (
    [ 'no prices', [ 'acme/x', '--provider', 'mock' ], qr/--price-in/ ],
    [ 'a malformed id', [ 'acme x', '--provider', 'mock', '--price-in', 1,
                          '--price-out', 1 ], qr/model ID/ ],
    [ 'a malformed provider', [ 'acme/x', '--provider', 'Mock!',
                                '--price-in', 1, '--price-out', 1 ],
      qr/invalid provider "Mock!".*aihub_provider/ ],
    [ 'a negative price', [ 'acme/x', '--provider', 'mock', '--price-in',
                            '-1', '--price-out', 1 ],
      qr/invalid --price-in "-1"/ ],
    [ 'a malformed price', [ 'acme/x', '--provider', 'mock', '--price-in',
                             '1', '--price-out', '2,50' ],
      qr/invalid --price-out "2,50"/ ],
    [ 'a price below a micro-dollar', [ 'acme/x', '--provider', 'mock',
                                        '--price-in', '0.0000001',
                                        '--price-out', 1 ],
      qr/at most six decimals/ ],
    [ 'an unknown tier', [ 'acme/x', '--provider', 'mock', '--price-in', 1,
                           '--price-out', 1, '--tier', 'gold' ],
      qr/invalid tier "gold"/ ],
    [ 'an unknown kind', [ 'acme/x', '--provider', 'mock', '--price-in', 1,
                           '--price-out', 1, '--kind', 'image' ],
      qr/invalid kind "image"/ ],
    [ 'an unknown fallback', [ 'acme/x', '--provider', 'mock', '--price-in',
                               1, '--price-out', 1, '--fallbacks',
                               'mock-basic,no-such-model' ],
      qr/fallback "no-such-model" is not in the catalog/ ],
    [ 'a fallback of another tier', [ 'acme/x', '--provider', 'mock',
                                      '--price-in', 1, '--price-out', 1,
                                      '--fallbacks', 'mock-premium' ],
      qr/fallback mock-premium is of tier premium/ ],
    [ 'a fallback of another kind', [ 'acme/x', '--provider', 'mock',
                                      '--price-in', 1, '--price-out', 1,
                                      '--fallbacks', 'mock-embed' ],
      qr/fallback mock-embed is of kind embedding/ ],
    [ 'itself as fallback', [ 'acme/x', '--provider', 'mock',
                              '--price-in', 1, '--price-out', 1,
                              '--fallbacks', 'acme/x' ],
      qr/its own fallback/ ],
    [ 'a repeated fallback', [ 'acme/x', '--provider', 'mock',
                               '--price-in', 1, '--price-out', 1,
                               '--fallbacks', 'mock-basic, mock-basic' ],
      qr/"mock-basic" is malformed or repeated/ ])
{
    my ($name, $args, $msg) = @$case;

    ($rc, $out, $err) = $t->worker('model', 'add', @$args);
    is($rc, 2, "model add with $name: exit 2");
    like($err, $msg, "model add with $name: says so") or diag($err);
}

is(models_count(), $before, 'the refused adds changed nothing');
is($t->sql_value("SELECT COUNT(*) FROM model_prices WHERE model = "
                 . "'acme/x'"), 0, 'and wrote no price');

($rc, $out, $err) = $t->worker('model', 'add', 'mock-basic', '--provider',
                               'mock', '--price-in', 1, '--price-out', 1);
is($rc, 1, 'model add of an existing model: exit 1');
like($err, qr/model "mock-basic" exists/, 'and says so');

($rc, $out, $err) = $t->worker('model', 'set', 'no-such-model',
                               '--price-in', 1);
is($rc, 1, 'model set of an unknown model: exit 1');
like($err, qr/no model "no-such-model"/, 'and says so');

($rc, $out, $err) = $t->worker('model', 'set', 'mock-basic');
is($rc, 2, 'model set with nothing to set: exit 2');

($rc, $out, $err) = $t->worker('model', 'set', 'mock-basic', '--price-in',
                               'free');
is($rc, 2, 'model set with a malformed price: exit 2');

($rc, $out, $err) = $t->worker('model', 'remove', 'no-such-model');
is($rc, 1, 'model remove of an unknown model: exit 1');

is(models_count(), $before, 'still nothing changed');
invalidations();

# --- add: served within a second -------------------------------------------

my $r = $t->chat($pro, model => 'acme/chat-1');
is_error($r, 404, 'model_not_found', 'before add');

($rc, $out, $err) = $t->worker('model', 'add', 'acme/chat-1', '--provider',
                               'mock', '--upstream', 'mock-basic',
                               '--price-in', '1', '--price-out', '2');
is($rc, 0, 'model add: exit 0') or diag($err);
like($out, qr{^model acme/chat-1 added: provider mock, tier basic, \$1\.00/\$2\.00}m,
     'model add: says what it added');
is_deeply([ invalidations() ], [ 'models' ], 'model add: "models" published');
is($t->sql_value("SELECT COUNT(*) FROM model_prices WHERE model = "
                 . "'acme/chat-1' AND valid_from <= UTC_TIMESTAMP() - "
                 . "INTERVAL 5 SECOND"), 1,
   'model add: a call stamped 5 s before (a node whose clock is behind '
   . "MySQL's) has a price");

$r = status_within_a_second('acme/chat-1', 200);
is($r->{status}, 200, 'the added model is served within a second')
    or diag($r->{content});
my $sent = eval { $json->decode(($t->mock_log)[-1]{body}) } // {};
is($sent->{model}, 'mock-basic', 'the provider gets the upstream id');

my %rec = @{ $t->redis('HGETALL', 'aihub:model:acme/chat-1') };
is_deeply({ map { $_ => $rec{$_} } qw(provider upstream tier kind api
                                      price_in price_out fallbacks) },
          { provider => 'mock', upstream => 'mock-basic', tier => 'basic',
            kind => 'chat', api => 'chat', price_in => 1000000,
            price_out => 2000000, fallbacks => '' },
          'Redis: the model record');
ok(abs($rec{created} - time) < 60, 'Redis: created is now');

($rc, $out) = $t->worker('model', 'list');
is($rc, 0, 'model list: exit 0');
like($out, qr/^MODEL\s+PROVIDER\s+UPSTREAM\s+TIER\s+KIND\s+API\s+IN\/M\s+OUT\/M/,
     'model list: a header');
like($out, qr{^acme/chat-1\s+mock\s+mock-basic\s+basic\s+chat\s+chat\s+1\.00\s+2\.00\s+yes\s+-$}m,
     'model list: the row');

($rc, $out) = $t->worker('model', 'list', '--json');
my ($m) = grep { $_->{id} eq 'acme/chat-1' } @{ $json->decode($out) };
is_deeply($m, { id => 'acme/chat-1', provider => 'mock',
                upstream => 'mock-basic', tier => 'basic', kind => 'chat',
                api => 'chat', price_in_micros => 1000000,
                price_out_micros => 2000000, enabled => JSON::PP::true,
                fallbacks => [], created => $rec{created} },
          'model list --json: the model');

# three calls at the first price

for (1 .. 2) {
    is($t->chat($pro, model => 'acme/chat-1')->{status}, 200, 'a call');
}
ok(wait_events(3), 'three calls in the ledger');

# --- a price change mid-month ------------------------------------------------

($rc, $out, $err) = $t->worker('model', 'set', 'acme/chat-1', '--price-in',
                               '3', '--price-out', '4.5');
is($rc, 0, 'model set price: exit 0') or diag($err);
like($out, qr{^model acme/chat-1: \$1\.00/\$2\.00 -> \$3\.00/\$4\.50 per M},
     'model set: says the change');
is_deeply([ invalidations() ], [ 'models' ], 'model set: "models" published');
is($t->sql_value("SELECT GROUP_CONCAT(CONCAT(price_in_micros, '/', "
                 . "price_out_micros) ORDER BY valid_from) FROM model_prices "
                 . "WHERE model = 'acme/chat-1'"), '1000000/2000000,3000000/4500000',
   'the price history has both prices');

ok($t->wait_for(sub {
    $t->redis('HGET', 'aihub:model:acme/chat-1', 'price_in') == 3000000
}, timeout => 1), 'Redis has the new price');

for (1 .. 2) {
    is($t->chat($pro, model => 'acme/chat-1')->{status}, 200,
       'a call at the new price');
}
ok(wait_events(5), 'five calls in the ledger');

# the invoice: the five calls and both price rows moved back to last month
# by the same number of seconds (their order kept), then the month closed

my @g = gmtime;
my ($py, $pm) = ($g[5] + 1900, $g[4]);
if ($pm == 0) { $pm = 12; $py-- }
my $P = sprintf '%04d-%02d', $py, $pm;
my $shift = time - timegm(0, 0, 0, 1, $g[4], $g[5] + 1900) + 3 * 86400;
$shift = int $shift;

$t->sql("UPDATE usage_events SET ts = ts - INTERVAL $shift SECOND "
        . "WHERE model = 'acme/chat-1'");
$t->sql("UPDATE model_prices SET valid_from = valid_from - INTERVAL $shift "
        . "SECOND WHERE model = 'acme/chat-1'");
$t->sql("UPDATE accounts SET created_at = '2000-01-01'");
$t->sql("UPDATE subscriptions SET started_at = '2000-01-01'");

my %tok;
for my $row ($t->sql("SELECT e.prompt_tokens, e.completion_tokens, "
                     . "(SELECT mp.price_in_micros FROM model_prices mp "
                     . "WHERE mp.model = e.model AND mp.valid_from <= e.ts "
                     . "ORDER BY mp.valid_from DESC LIMIT 1) FROM "
                     . "usage_events e WHERE e.model = 'acme/chat-1'"))
{
    $tok{ $row->[2] }{calls}++;
    $tok{ $row->[2] }{in} += $row->[0];
    $tok{ $row->[2] }{out} += $row->[1];
}

is_deeply([ sort keys %tok ], [ 1000000, 3000000 ],
          'every call has a price in force');
is($tok{1000000}{calls}, 3, 'three calls at the old price');
is($tok{3000000}{calls}, 2, 'two calls at the new price');

($rc, $out, $err) = $t->worker('invoice', 'close', '--period', $P,
                               '--force');
is($rc, 0, "invoice close $P: exit 0") or diag("$out\n$err");

($rc, $out) = $t->worker('invoice', 'show', '--period', $P, '--account',
                         'cat', '--json');
my $invs = eval { $json->decode($out) } // [];
my ($inv) = @$invs;
my @lines = sort { $a->{price_in_micros} <=> $b->{price_in_micros} }
            grep { ($_->{model} // '') eq 'acme/chat-1' }
            @{ $inv->{lines} // [] };

is(scalar @lines, 2, 'the invoice has one line per price') or diag($out);

for my $p ([ 0, 1000000, 2000000 ], [ 1, 3000000, 4500000 ]) {
    my ($i, $pin, $pout) = @$p;
    my $l = $lines[$i] // {};
    my $u = $tok{$pin};
    # tokens x micro-dollars per M tokens: 10^10 of them make a cent
    my $cents = int(($u->{in} * $pin + $u->{out} * $pout + 5e9) / 1e10);

    is_deeply({ map { $_ => $l->{$_} } qw(price_in_micros price_out_micros
                                          calls prompt_tokens
                                          completion_tokens) },
              { price_in_micros => $pin, price_out_micros => $pout,
                calls => $u->{calls},
                prompt_tokens => $u->{in}, completion_tokens => $u->{out} },
              "invoice line at $pin/$pout: calls and tokens");
    is($l->{amount_cents}, $cents, "invoice line at $pin/$pout: $cents "
       . 'cents') or diag($json->encode($l));
}

# --- fallbacks, and remove ---------------------------------------------------

($rc, $out, $err) = $t->worker('model', 'add', 'acme/chat-2', '--provider',
                               'mock', '--upstream', 'mock-basic',
                               '--price-in', '0.5', '--price-out', '0.75',
                               '--fallbacks', 'acme/chat-1, mock-basic');
is($rc, 0, 'model add with fallbacks: exit 0') or diag($err);
is($t->redis('HGET', 'aihub:model:acme/chat-2', 'fallbacks'),
   'acme/chat-1,mock-basic', 'Redis: the fallbacks');
invalidations();

($rc, $out, $err) = $t->worker('model', 'remove', 'acme/chat-1');
is($rc, 1, 'remove of a model named as a fallback: exit 1');
like($err, qr{model acme/chat-2: fallback "acme/chat-1" is not in the catalog},
     'and says which model names it');
is($t->sql_value("SELECT COUNT(*) FROM models WHERE public_id = "
                 . "'acme/chat-1'"), 1, 'the model stays');

($rc, $out, $err) = $t->worker('model', 'set', 'acme/chat-1', '--tier',
                               'premium');
is($rc, 1, 'a tier change that breaks a fallback: exit 1');
like($err, qr/fallback acme\/chat-1 is of tier premium/, 'and says so');

($rc, $out, $err) = $t->worker('model', 'set', 'acme/chat-2', '--fallbacks',
                               'none');
is($rc, 0, 'fallbacks cleared') or diag($err);
is($t->redis('HGET', 'aihub:model:acme/chat-2', 'fallbacks'), '',
   'Redis: no fallbacks');
invalidations();

($rc, $out, $err) = $t->worker('model', 'remove', 'acme/chat-1');
is($rc, 0, 'model remove: exit 0') or diag($err);
is_deeply([ invalidations() ], [ 'models' ],
          'model remove: "models" published');

$r = status_within_a_second('acme/chat-1', 404);
is_error($r, 404, 'model_not_found', 'the removed model within a second');
is($t->redis('EXISTS', 'aihub:model:acme/chat-1'), 0,
   'Redis: the record is gone');
is($t->redis('SISMEMBER', 'aihub:models', 'acme/chat-1'), 0,
   'Redis: not in the catalog set');
is($t->sql_value("SELECT COUNT(*) FROM model_prices WHERE model = "
                 . "'acme/chat-1'"), 2, 'the price history stays');

($rc, $out, $err) = $t->worker('invoice', 'check', '--period', $P);
is($rc, 0, 'invoice check after the removal: the invoice still adds up')
    or diag("$out\n$err");

($rc, $out, $err) = $t->worker('model', 'set', 'acme/chat-2', '--enabled',
                               'off');
is($rc, 0, 'model set --enabled off: exit 0') or diag($err);
$r = status_within_a_second('acme/chat-2', 404);
is_error($r, 404, 'model_not_found', 'a disabled model');
($rc, $out) = $t->worker('model', 'list');
like($out, qr{^acme/chat-2\s.*\sno\s+-$}m, 'model list: shown as disabled');

# --- plans -------------------------------------------------------------------

for my $case (
    [ 'a negative rpm', [ 'add', 'team', '--rpm', '-5' ],
      qr/invalid --rpm "-5"/ ],
    [ 'a malformed fee', [ 'add', 'team', '--base-fee', '9.999' ],
      qr/invalid --base-fee "9.999"/ ],
    [ 'a fee beyond 64 bits of micro-dollars',
      [ 'add', 'team', '--base-fee', '10000000000000' ],
      qr/invalid --base-fee "10000000000000"/ ],
    [ 'a bad overage', [ 'add', 'team', '--overage', 'maybe' ],
      qr/invalid --overage "maybe"/ ],
    [ 'a bad model tier', [ 'add', 'team', '--model-tier', 'premium' ],
      qr/invalid --model-tier "premium"/ ],
    [ 'a malformed name', [ 'add', 'Team A' ], qr/plan NAME/ ],
    [ 'nothing to set', [ 'set', 'pro' ], qr/nothing to set/ ])
{
    my ($name, $args, $msg) = @$case;

    ($rc, $out, $err) = $t->worker('plan', @$args);
    is($rc, 2, "plan $args->[0] with $name: exit 2");
    like($err, $msg, "plan $args->[0] with $name: says so") or diag($err);
}

is($t->sql_value("SELECT COUNT(*) FROM plans WHERE name = 'team'"), 0,
   'the refused plan adds changed nothing');

($rc, $out, $err) = $t->worker('plan', 'add', 'team', '--base-fee', '49.90',
                               '--included', 100, '--rpm', 2, '--tpm', 50000,
                               '--model-tier', 'all', '--overage', 'on',
                               '--max-tokens', 512, '--priority', 1);
is($rc, 0, 'plan add: exit 0') or diag($err);

($rc, $out, $err) = $t->worker('plan', 'add', 'team');
is($rc, 1, 'plan add of an existing plan: exit 1');
like($err, qr/plan "team" exists/, 'and says so');

($rc, $out, $err) = $t->worker('plan', 'set', 'no-such-plan', '--rpm', 1);
is($rc, 1, 'plan set of an unknown plan: exit 1');

($rc, $out) = $t->worker('plan', 'list');
like($out, qr/^PLAN\s+BASE_FEE\s+INCLUDED\s+RPM\s+TPM\s+MODELS\s+OVERAGE/,
     'plan list: a header');
like($out, qr/^team\s+49\.90\s+100\s+2\s+50000\s+all\s+on\s+on\s+512\s+1\s+0$/m,
     'plan list: the row') or diag($out);

my $team = $t->create_key(account => 'teamco', plan => 'team');
my $hash = Aihub::key_hash($team);
is($t->redis('HGET', "aihub:key:$hash", 'rpm'), 2,
   'the key record has the plan\'s rpm');
is($t->redis('HGET', 'aihub:plan:team', 'base_fee_cents'), 4990,
   'Redis: the plan record');
is($t->redis('HGET', "aihub:key:$hash", 'models'), '*',
   'model tier all: every model');

# a plan that names its models

($rc, $out, $err) = $t->worker('plan', 'set', 'team', '--models',
                               'mock-basic, no-such-model');
is($rc, 2, 'plan set --models with an unknown model: exit 2');
like($err, qr/no model "no-such-model" in the catalog/, 'and says so');
($rc, $out, $err) = $t->worker('plan', 'set', 'team', '--models',
                               'tier:gold');
is($rc, 2, 'plan set --models with an unknown tier: exit 2');

($rc, $out, $err) = $t->worker('plan', 'set', 'team', '--models',
                               'mock-basic, tier:premium');
is($rc, 0, 'plan set --models: exit 0') or diag($err);
is($t->redis('HGET', "aihub:key:$hash", 'models'), 'mock-basic,tier:premium',
   'the key records carry the plan\'s models');
($rc) = $t->worker('model', 'set', 'acme/chat-2', '--enabled', 'on');
is($rc, 0, 'acme/chat-2 enabled again');
is_error(status_within_a_second_for($team, 'acme/chat-2', 403), 403,
         'model_not_allowed', 'a basic model the plan does not name');
is($t->sql_value("SELECT models FROM plans WHERE name = 'team'"),
   'mock-basic,tier:premium', 'MySQL: the list');

($rc, $out, $err) = $t->worker('plan', 'set', 'team', '--models', 'default');
is($rc, 0, 'plan set --models default: exit 0') or diag($err);
is($t->redis('HGET', "aihub:key:$hash", 'models'), '*',
   'back to the model tier');
invalidations();

($rc, $out, $err) = $t->worker('plan', 'set', 'team', '--rpm', 1,
                               '--max-tokens', 0);
is($rc, 0, 'plan set: exit 0') or diag($err);
is_deeply([ invalidations() ], [ 'all' ], 'plan set: "all" published');
is($t->redis('HGET', "aihub:key:$hash", 'rpm'), 1,
   'the key record of the plan\'s account follows');
is($t->redis('HGET', 'aihub:plan:team', 'rpm'), 1, 'and the plan record');

my @st = map { $t->chat($team, model => 'mock-basic')->{status} } 1 .. 2;
is_deeply(\@st, [ 200, 429 ], 'nginx applies the new rpm at once');

($rc, $out) = $t->worker('plan', 'list', '--json');
my ($tp) = grep { $_->{name} eq 'team' } @{ $json->decode($out) };
is_deeply($tp, { name => 'team', base_fee_cents => 4990,
                 included_calls => 100, rpm => 1, tpm => 50000,
                 model_tier => 'all', models => undef,
                 overage => JSON::PP::true,
                 hard_quota => JSON::PP::true, max_tokens => 0,
                 priority => 1, accounts => 1 },
          'plan list --json: the plan');

($rc, $out, $err) = $t->worker('plan', 'remove', 'team');
is($rc, 1, 'plan remove of a plan with accounts: exit 1');
like($err, qr/plan "team" has 1 account: move it/, 'and says so');

($rc, $out, $err) = $t->worker('account', 'plan', 'teamco', '--plan', 'pro');
($rc, $out, $err) = $t->worker('plan', 'remove', 'team');
is($rc, 1, 'plan remove of a plan in the subscription history: exit 1');
like($err, qr/subscription history/, 'and says so');

($rc, $out, $err) = $t->worker('plan', 'add', 'trial', '--included', 10);
is($rc, 0, 'plan add trial');
($rc, $out, $err) = $t->worker('plan', 'remove', 'trial');
is($rc, 0, 'plan remove of an unused plan: exit 0') or diag($err);
is($t->sql_value("SELECT COUNT(*) FROM plans WHERE name = 'trial'"), 0,
   'MySQL: gone');
is($t->redis('EXISTS', 'aihub:plan:trial'), 0, 'Redis: gone');

$t->done;
