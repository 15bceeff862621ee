#!/usr/bin/perl

# The request path end to end into the ledger: a key made by
# "aihub-worker key create", one call through nginx, and with
# "aihub-worker run" draining the usage stream, exactly one usage_events
# row with the right account, model and tokens within 2 s; the same stream
# entry added again inserts nothing.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use Aihub;
use AihubFixtures qw(:all);
use AihubStream qw(usage_events);

plan(skip_all => 'module not built') unless Aihub::have_module();
plan(skip_all => 'aihub-worker not built') unless Aihub::have_worker();

my $t = Aihub->new(redis => 1, mariadb => 1, mock => 1);

$t->migrate;
my $key = $t->create_key(account => 'ledger-co', plan => 'free');
like($key, qr/^ai-hub-[0-9A-Za-z]{38}$/, 'key create printed a key');

my $account = $t->sql_value("SELECT id FROM accounts WHERE name = 'ledger-co'");
ok($account, "account ledger-co has id $account");
is($t->redis('HGET', 'aihub:key:' . Aihub::key_hash($key), 'account'),
   $account, 'the key record in Redis names that account');
is($t->sql_value("SELECT COUNT(*) FROM api_keys WHERE key_hash = '"
                 . Aihub::key_hash($key) . "'"), 1,
   'MySQL holds the key by its hash');
is($t->sql_value("SELECT COUNT(*) FROM api_keys"
                 . " WHERE key_hash = '$key' OR prefix = '$key'"), 0,
   'and not the key itself');

$t->nginx(<<'END')->start_nginx;
    aihub_redis %%REDIS%%;
    aihub_redis_timeout 300ms;
    aihub_cache_zone aihub:8m;
    aihub_provider mock url=%%MOCK_URL%% key_env=AIHUB_MOCK_KEY;
    aihub_pass_request_header x-mock-*;    # the mock's test controls

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

ok(wait_ready($t, $key), 'catalog loaded (synced by migrate)');
$t->start_worker;

# the worker stores and deletes the event's entry within milliseconds: a
# second connection blocked in XREAD sees the entry as it is written, so
# the replay below has the event as written
my $tap = $t->redis_connect;
print $tap Aihub::resp_encode('XREAD', 'BLOCK', 5000, 'STREAMS',
                              'aihub:usage', '$');
$t->wait_for(sub { $t->redis('CLIENT', 'LIST') =~ /cmd=xread/ });

my $start = time;
my $r = $t->chat($key, model => 'mock-basic', content => 'abcdefgh',
                 headers => { 'x-mock-completion-tokens' => 9 });
is($r->{status}, 200, 'one call: 200');
is_deeply($r->{json}{usage}, { prompt_tokens => 5, completion_tokens => 9,
                               total_tokens => 14 }, 'the mock usage');
my ($rid) = grep { /^[0-9a-f]{32}$/ }
            ref $r->{headers}{'x-request-id'}
            ? @{ $r->{headers}{'x-request-id'} }
            : ($r->{headers}{'x-request-id'} // ());

my $row = $t->wait_for(sub {
    my @rows = $t->sql('SELECT event_id, account, key_prefix, plan, model, '
                       . 'provider, prompt_tokens, completion_tokens, '
                       . 'total_tokens, cost_micros, status, streamed '
                       . 'FROM usage_events');
    return @rows ? \@rows : undef;
}, timeout => 2, interval => 0.05);
my $took = time - $start;

ok($row, sprintf('a usage_events row within 2 s (%.2f s)', $took));
$row //= [];
is(scalar @$row, 1, 'exactly one row');
my %got;
@got{qw(event_id account key_prefix plan model provider prompt completion
        total cost status streamed)} = @{ $row->[0] // [] };

is($got{account}, $account, 'row: the account');
is($got{model}, 'mock-basic', 'row: the model');
is($got{provider}, 'mock', 'row: the provider');
is($got{key_prefix}, Aihub::key_prefix($key), 'row: the key prefix');
is($got{plan}, 'free', 'row: the plan');
is_deeply([ @got{qw(prompt completion total)} ], [ 5, 9, 14 ],
          'row: token counts as the provider reported them');
# mock-basic: 150000 in, 600000 out per 1M: 5 * 0.15 + 9 * 0.6 = 6.15 -> 6
is($got{cost}, 6, 'row: cost in micro-dollars');
is($got{status}, 200, 'row: status');
is($got{streamed}, 0, 'row: not streamed');
is($got{event_id}, $rid, 'row: the event id is the x-request-id');

# the same event again, as written: nothing new (an entry may carry
# several events: the event, not its entry, is replayed)
my $tapbuf = '';
my $tapped = eval { Aihub::resp_read($tap, \$tapbuf) } // [];
my @written;
for my $entry (map { @{ $_->[1] } } @$tapped) {
    my $f = $entry->[1] // [];
    push @written, map { $f->[2 * $_ + 1] } grep { $f->[2 * $_] eq 'event' }
                   0 .. @$f / 2 - 1;
    push @written, map { split /\n/, $f->[2 * $_ + 1] }
                   grep { $f->[2 * $_] eq 'events' } 0 .. @$f / 2 - 1;
}
my ($event) = grep { /\Q$rid\E/ } @written, usage_events($t, raw => 1);

SKIP: {
    skip 'the drained event is no longer in the stream', 3 unless $event;

    $t->redis('XADD', 'aihub:usage', '*', 'event', $event);
    my $last = $t->redis('XADD', 'aihub:usage', '*', 'event', $event);

    ok($t->wait_for(sub {
        my $p = $t->redis('XPENDING', 'aihub:usage', 'aihub-drain');
        my $len = $t->redis('XINFO', 'GROUPS', 'aihub:usage');
        my %g = @{ $len->[0] // [] };
        return $p->[0] == 0 && ($g{'last-delivered-id'} // '') eq $last;
    }, timeout => 3), 'the replayed entries were read and acknowledged');

    is($t->sql_value('SELECT COUNT(*) FROM usage_events'), 1,
       'replay: still exactly one row');
    is($t->sql_value('SELECT COUNT(*) FROM usage_events WHERE event_id = '
                     . "'$rid'"), 1, 'replay: the one row for the event');
}

# a second call: a second row
$r = $t->chat($key, model => 'mock-basic');
is($r->{status}, 200, 'a second call');
ok($t->wait_for(sub {
    $t->sql_value('SELECT COUNT(*) FROM usage_events') == 2
}, timeout => 2), 'a second row within 2 s');

# a refused call leaves nothing in the ledger
is_error($t->chat($key, model => 'mock-premium'), 403, 'model_not_allowed',
         'free key, premium model');
sleep 0.5;
is($t->sql_value('SELECT COUNT(*) FROM usage_events'), 2,
   'the refused call is not in the ledger');

$t->done;
