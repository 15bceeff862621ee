#!/usr/bin/perl

# ./build.sh deb: both packages install with apt-get on this machine; the
# module is enabled through /etc/nginx/modules-enabled and the system
# nginx passes "nginx -t" with aihub_* directives added; the system nginx
# binary with the enabled modules serves and meters a call through the
# test's Redis and MariaDB; the installed aihub-worker migrates from
# /usr/share/aihub/sql and drains; systemd-analyze accepts the unit.
# remove disables the module the way Debian's module packages do, purge
# leaves no file behind, and the system nginx still passes "nginx -t".
#
# This installs into the real system: root only, skipped when either
# package is installed already, and everything is purged at the end even
# when a check fails.

use strict;
use warnings;

use Test::More;
use File::Find;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use Aihub;

plan skip_all => 'installs Debian packages into the system: run as root'
    if $> != 0;
plan skip_all => 'module or aihub-worker not built'
    unless Aihub::have_module() && Aihub::have_worker();
plan skip_all => "the system nginx only (AIHUB_NGINX is $Aihub::NGINX)"
    if $Aihub::NGINX ne '/usr/sbin/nginx';

for my $tool (qw(dpkg-deb dpkg-shlibdeps dpkg-gencontrol apt-get)) {
    plan skip_all => "$tool is not installed"
        unless grep { -x "$_/$tool" } split /:/, $ENV{PATH};
}

my @PKGS = qw(libnginx-mod-http-aihub aihub-worker);

sub pkg_status {
    my ($p) = @_;
    my $s = `dpkg-query -W -f='\${Status}' $p 2>/dev/null`;
    return $s // '';
}

for my $p (@PKGS) {
    plan skip_all => "$p is already on this system (" . pkg_status($p)
                     . "): not touching it"
        if pkg_status($p) =~ /installed|config-files|unpacked/;
}

my $LINK = '/etc/nginx/modules-enabled/50-mod-http-aihub.conf';
my $AVAIL = '/usr/share/nginx/modules-available/mod-http-aihub.conf';
my $SNIPPET = '/etc/nginx/conf.d/zz-aihub-t91.conf';

# every file and link under the places the packages touch

my @WATCH = qw(/etc/nginx /etc/aihub /usr/lib/nginx /usr/share/nginx
               /usr/share/aihub /usr/share/doc/libnginx-mod-http-aihub
               /usr/share/doc/aihub-worker /usr/bin/aihub-worker
               /lib/systemd/system /etc/systemd/system
               /usr/share/man/man1 /var/log/aihub);

sub snapshot {
    my %f;
    for my $w (grep { -e $_ || -l $_ } @WATCH) {
        if (-d $w && !-l $w) {
            find({ wanted => sub { $f{$File::Find::name} = 1 },
                   no_chdir => 1 }, $w);
        } else {
            $f{$w} = 1;
        }
    }
    return \%f;
}

my $t = Aihub->new(redis => 1, mariadb => 1, mock => 1);

my $user_before = getpwnam('aihub') ? 1 : 0;
my $before = snapshot();
my $installed = 0;

my ($rc, $out, $err) = $t->run_cmd([ 'nginx', '-t' ]);
my $system_nginx_ok = $rc == 0;
diag("the system nginx -t fails before the test: its checks are skipped\n"
     . $err) unless $system_nginx_ok;

sub apt {
    return $t->run_cmd([ 'apt-get', '-y', '-q', '-o',
                         'DPkg::Lock::Timeout=120', @_ ],
                       env => { DEBIAN_FRONTEND => 'noninteractive' },
                       timeout => 300);
}

sub cleanup {
    unlink $SNIPPET;
    if (grep { pkg_status($_) ne '' && pkg_status($_) !~ /not-installed/ }
        @PKGS)
    {
        apt('purge', @PKGS);
    }
    system("deluser --system --quiet aihub >/dev/null 2>&1")
        if !$user_before && getpwnam('aihub');
}

# --- build -------------------------------------------------------------------

($rc, $out, $err) = $t->run_cmd([ $t->root . '/packaging/deb/build-deb.sh',
                                  $t->root, $t->build ], timeout => 300);
is($rc, 0, 'build-deb.sh: exit 0') or diag("$out\n$err");

my @debs = sort glob($t->build . '/deb/*.deb');
is(scalar @debs, 2, 'two packages in build/deb/') or diag("@debs");
unlike("$out\n$err", qr/^E: /m, 'lintian: no errors');

my ($abi) = `dpkg-query -W -f='\${Provides}' nginx` =~ /(nginx-abi-[^\s,]+)/;
ok($abi, "the installed nginx provides $abi");
my ($mod_deb) = grep { m{/libnginx-mod-http-aihub_} } @debs;
my $depends = `dpkg-deb -f '$mod_deb' Depends`;
like($depends, qr/(^|, )\Q$abi\E(,|$)/m, 'the module depends on that ABI');
like($depends, qr/libhiredis/, 'and on the libraries it links');

# --- install -----------------------------------------------------------------

# the packages' paths, and which of them the system had before

my @paths = grep { length }
            map { s{^\./?}{/}r =~ s{/$}{}r }
            map { split /\n/, `dpkg-deb --fsys-tarfile '$_' | tar -t` } @debs;
my %had = map { $_ => (-e $_ || -l $_) ? 1 : 0 } @paths;
ok(scalar(grep { !$had{$_} } @paths) > 10, 'the packages bring new files');

($rc, $out, $err) = apt('install', @debs);
$installed = 1;
is($rc, 0, 'apt-get install ./build/deb/*.deb: exit 0')
    or diag("$out\n$err");
like(pkg_status($_), qr/install ok installed/, "$_ is installed") for @PKGS;

my @files = map { split /\n/, `dpkg -L $_` } @PKGS;
ok(scalar(grep { $_ eq '/usr/bin/aihub-worker' } @files),
   'dpkg -L: the worker is in /usr/bin');

is(readlink($LINK), $AVAIL, 'modules-enabled links the module');
like(Aihub::read_file($AVAIL), qr{^load_module modules/ngx_http_aihub_module\.so;$}m,
     'modules-available loads it');
ok(-f '/usr/lib/nginx/modules/ngx_http_aihub_module.so',
   'the module is in /usr/lib/nginx/modules');
ok(getpwnam('aihub'), 'the aihub system user exists');
my @st = stat '/etc/aihub/worker.conf';
is(sprintf('%04o', ($st[2] // 0) & 07777), '0640',
   'worker.conf: mode 0640');
is(scalar getgrgid($st[5] // 0), 'aihub', 'worker.conf: group aihub');
like(`dpkg-query -W -f='\${Conffiles}' aihub-worker`, qr{/etc/aihub/worker\.conf},
     'worker.conf is a conffile');
ok(-f '/usr/share/aihub/sql/001_schema.sql', 'the migrations are installed');
ok(`man -w aihub-worker 2>/dev/null` =~ /aihub-worker\.1/, 'man aihub-worker');

($rc, $out, $err) = $t->run_cmd([ 'systemd-analyze', 'verify',
                                  '/lib/systemd/system/aihub-worker.service' ]);
is($rc, 0, 'systemd-analyze verify accepts the unit') or diag("$out\n$err");

# --- the system nginx with only aihub_* directives added ----------------------

SKIP: {
    skip 'the system nginx -t failed before the test', 2
        unless $system_nginx_ok;

    Aihub::write_file($SNIPPET, "aihub_redis " . $t->redis_addr . ";\n"
                                . "aihub_cache_zone aihub_t91:1m;\n");
    ($rc, $out, $err) = $t->run_cmd([ 'nginx', '-t' ]);
    is($rc, 0, 'nginx -t: the system configuration plus aihub_* directives')
        or diag($err);
    unlink $SNIPPET;

    ($rc, $out, $err) = $t->run_cmd([ 'nginx', '-t' ]);
    is($rc, 0, 'nginx -t without them') or diag($err);
}

# --- the installed worker: migrate, a key, the drain -------------------------

sub installed_worker {
    return $t->run_cmd([ '/bin/sh', '-c', 'cd / && exec "$@"', 'sh',
                         '/usr/bin/aihub-worker', $t->worker_flags, @_ ],
                       timeout => 120);
}

($rc, $out, $err) = installed_worker('migrate');
is($rc, 0, 'installed aihub-worker migrate: exit 0') or diag("$out\n$err");
like($out, qr/applied 001_schema\.sql/, 'it applied the installed migrations');
is($t->sql_value('SELECT COUNT(*) FROM schema_migrations'),
   scalar(() = glob('/usr/share/aihub/sql/*.sql')),
   'every file of /usr/share/aihub/sql is recorded');

($rc, $out, $err) = installed_worker('key', 'create', '--account', 'debco',
                                     '--plan', 'pro');
is($rc, 0, 'installed aihub-worker key create: exit 0') or diag($err);
my ($key) = split /\n/, $out;

$t->spawn('worker', [ '/usr/bin/aihub-worker', $t->worker_flags, 'run' ],
          out => $t->dir . '/worker.log');

# --- a call through the system nginx binary and the enabled modules ----------

$t->nginx(<<'END', no_module => 1,
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
          main => 'include /etc/nginx/modules-enabled/*.conf;');

# the system nginx's own prefix: modules-enabled names "modules/..."
# relative to it; every other path of the configuration is absolute

my $nd = $t->nginx_dir;
$t->spawn('nginx:nginx', [ '/usr/sbin/nginx', '-p', '/usr/share/nginx/',
                           '-c', "$nd/nginx.conf", '-e', "$nd/error.log" ],
          env => $t->nginx_env, out => "$nd/stderr.log");
$t->{nginx}{nginx}{started} = 1;
ok($t->wait_port('nginx:nginx', $t->port, 10), 'the system nginx starts')
    or diag(Aihub::tail("$nd/stderr.log", 20));

my $r;
$t->wait_for(sub {
    $r = $t->chat($key, model => 'mock-basic', timeout => 2);
    $r->{status} == 200;
}, timeout => 5);
is($r->{status}, 200, 'a call through the packaged module is answered')
    or diag($r->{content});

ok($t->wait_for(sub {
    $t->sql_value("SELECT COUNT(*) FROM usage_events e JOIN accounts a ON "
                  . "a.id = e.account WHERE a.name = 'debco' AND e.model = "
                  . "'mock-basic' AND e.status = 200") == 1
}, timeout => 10), 'and metered: the installed worker stored its event');

$t->stop_nginx('nginx');
$t->stop_worker;

# --- remove, then purge ------------------------------------------------------

($rc, $out, $err) = apt('remove', @PKGS);
is($rc, 0, 'apt-get remove: exit 0') or diag("$out\n$err");
ok(!-e '/usr/lib/nginx/modules/ngx_http_aihub_module.so',
   'remove: the module is gone');
ok(!-e $LINK && -l "$LINK.removed",
   'remove: the module is disabled, its link kept as .removed');
ok(-f '/etc/aihub/worker.conf', 'remove: the configuration stays');

($rc, $out, $err) = apt('purge', @PKGS);
is($rc, 0, 'apt-get purge: exit 0') or diag("$out\n$err");
is(pkg_status($_), '', "$_ is purged") for @PKGS;
$installed = 0;

my @left = grep { !$had{$_} && (-e $_ || -l $_) } @paths,
           $LINK, "$LINK.removed", '/etc/aihub', '/var/log/aihub';
is_deeply(\@left, [], 'purge: no file of the packages is left')
    or diag(join "\n", @left);

my $after = snapshot();
is_deeply([ grep { !$before->{$_} } sort keys %$after ], [],
          'purge: nothing new under the places they touched');
is_deeply([ grep { !$after->{$_} } sort keys %$before ], [],
          'purge: nothing of the system removed');

SKIP: {
    skip 'the system nginx -t failed before the test', 1
        unless $system_nginx_ok;
    ($rc, $out, $err) = $t->run_cmd([ 'nginx', '-t' ]);
    is($rc, 0, 'the system nginx still passes nginx -t') or diag($err);
}

# the aihub user stays after purge, as Debian's packages leave theirs; the
# test removes the one it made

ok(getpwnam('aihub'), 'purge keeps the aihub system user (Debian custom)');
cleanup();
ok($user_before || !getpwnam('aihub'), 'the test removed the user it made');

$t->done;

END {
    # a skip_all exits before $SNIPPET is set: nothing to clean then
    cleanup() if $installed || (defined $SNIPPET && -e $SNIPPET);
}
