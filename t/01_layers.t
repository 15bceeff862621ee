#!/usr/bin/perl

# Layers (issue 9): the house keeps its arrows pointing one way and its
# rooms small.
#
#   - no dependency loop between object files, in the module and in the
#     worker: every undefined ngx_http_aihub_* / aihub_* / aw_* symbol of
#     an object is an arrow to the object defining it (the module struct
#     ngx_http_aihub_module left out), and tsort must find no loop;
#   - no glue file (ngx_aihub_module/ngx_http_aihub_*.c, worker/*.c) over
#     700 lines, no function in one over 150 lines;
#   - Redis key names ("period:", "rl:", "key:", ...) spelled only in
#     ngx_aihub_module/aihub_protocol.h, never as a literal in the glue
#     (those .c files and their own headers).
#
# The first tests check the checks themselves on small fixtures (a loop
# that must be found, a file and a function one line too long, a key name
# spelled by hand), so that none of them can pass by never firing.
#
# Against another tree (a fixture, or a refactor in progress):
#
#   perl t/01_layers.t [--src DIR] [--module-objs DIR] [--worker-objs DIR]
#   prove t/01_layers.t :: --src DIR ...
#
# --src holds ngx_aihub_module/ and worker/ (default: this repository);
# the object directories default to where ./build.sh build puts them
# (build/nginx-src/objs/addon/ngx_aihub_module, build/obj/worker).  An
# object whose source file is gone (left over by an earlier build) is
# ignored, and named.

use strict;
use warnings;

use File::Basename qw(basename dirname);
use File::Temp qw(tempdir);
use Getopt::Long qw(GetOptions);
use Test::More;

use lib 't/lib';
use Aihub;


my $MAX_FILE_LINES = 700;
my $MAX_FUNCTION_LINES = 150;

# Functions allowed over $MAX_FUNCTION_LINES: byte-level scanners, where
# one state machine over the input reads best as one function.  The ones
# this project has live in the engine files (aihub_sse.c: the SSE event
# scanner, aihub_usage_json.c: the usage JSON scanner), which this test
# does not measure; none of the glue is such a scanner today.  Add a
# name here only for a scanner, with the reason.
my %LONG_FUNCTION_OK = (
);

# Redis key names that end in ':' (a key is <prefix><name><id>): every
# AIHUB_RK_* of aihub_protocol.h that ends in ':' is added to these, and
# "rl:" and "plan:" are listed because they have no macro yet
my @KEY_NAMES = qw(key: model: period: account-keys: rl: plan: usage:dead);

# key names without ':' (streams, sets, channels): only counted after a
# prefix inside the literal ("%susage", "%Vmodels", "aihub:invalidate"),
# since "usage" or "models" alone is as often a JSON member
my @KEY_WORDS = qw(usage models invalidate admin);


my %opt = (src => Aihub->root);

GetOptions(\%opt, 'src=s', 'module-objs=s', 'worker-objs=s')
    or die "usage: $0 [--src DIR] [--module-objs DIR] [--worker-objs DIR]\n";


# --- the checks ---------------------------------------------------------------

sub slurp_lines {
    my ($file) = @_;

    open my $fh, '<', $file or die "$file: $!\n";
    my @lines = <$fh>;
    chomp @lines;
    return @lines;
}


sub rel {
    my ($file) = @_;

    (my $r = $file) =~ s{^\Q$opt{src}\E/}{};
    return $r;
}


# the ngx_http_aihub_* / aihub_* / aw_* symbols nm lists for $obj with
# @flags, the module struct left out

sub nm_symbols {
    my ($obj, @flags) = @_;

    open my $nm, '-|', 'nm', @flags, $obj or die "nm $obj: $!\n";
    my @syms;

    while (<$nm>) {
        my @f = split;
        my $name = $f[-1];
        next unless $name =~ /^(?:ngx_http_aihub_|aihub_|aw_)/;
        next if $name eq 'ngx_http_aihub_module';
        # defined: address, type, name; global types only
        next if @f == 3 && $f[1] !~ /^[TDBRVWC]$/;
        push @syms, $name;
    }

    close $nm or die "nm $obj failed\n";
    return @syms;
}


# the arrows between objects: { user => { definer => [symbols] } }

sub object_edges {
    my (@objs) = @_;

    my (%def, %edges);

    for my $o (@objs) {
        push @{ $def{$_} }, basename($o)
            for nm_symbols($o, '--defined-only', '-g');
    }

    for my $o (@objs) {
        my $user = basename($o);
        for my $sym (nm_symbols($o, '-u')) {
            for my $d (@{ $def{$sym} // [] }) {
                next if $d eq $user;
                push @{ $edges{$user}{$d} }, $sym;
            }
        }
    }

    return \%edges;
}


# tsort on "user definer" lines: the loops it reports, each a list of
# objects in the order of the arrows

sub tsort_loops {
    my ($edges, $tmp) = @_;

    my $file = "$tmp/edges";
    open my $fh, '>', $file or die "$file: $!\n";
    for my $u (sort keys %$edges) {
        print $fh "$u $_\n" for sort keys %{ $edges->{$u} };
    }
    close $fh;

    my $out = `tsort '$file' 2>&1 >/dev/null`;
    my (@loops, $cur);

    for (split /\n/, $out) {
        if (/input contains a loop/) {
            push @loops, $cur = [];
        } elsif ($cur && /^tsort: (\S+)$/) {
            push @$cur, $1;
        } else {
            die "tsort: $_\n";
        }
    }

    return @loops;
}


# problems: "loop: a.o -> b.o (symbols) -> ... -> a.o (symbols)", one for
# each loop, the symbols being the ones the arrow stands for

sub object_loops {
    my ($objs, $tmp) = @_;

    my $edges = object_edges(@$objs);
    my @problems;

    for my $loop (tsort_loops($edges, $tmp)) {
        my @l = (@$loop, $loop->[0]);
        my $s = $l[0];
        for my $i (1 .. $#l) {
            my $syms = $edges->{ $l[$i - 1] }{ $l[$i] } // [];
            my %seen;
            my @u = grep { !$seen{$_}++ } @$syms;
            my $via = @u ? ' (' . join(', ', @u[0 .. ($#u < 2 ? $#u : 2)])
                           . (@u > 3 ? ', ...' : '') . ')'
                         : '';
            $s .= " -> $l[$i]$via";
        }
        push @problems, "loop: $s";
    }

    return @problems;
}


sub long_files {
    my (@files) = @_;

    my @problems;

    for my $f (@files) {
        my $n = () = slurp_lines($f);
        push @problems, rel($f) . ": $n lines (at most $MAX_FILE_LINES)"
            if $n > $MAX_FILE_LINES;
    }

    return @problems;
}


# functions in nginx style: a return type on its own line, then the name
# at column 0 followed by "(", the body from "{" to the next "}" at
# column 0; returns [name, first line, lines] (the name's line to "}")

sub functions {
    my ($file) = @_;

    my @l = slurp_lines($file);
    my @fn;

    for (my $i = 1; $i < @l; $i++) {
        my ($name) = $l[$i] =~ /^([A-Za-z_]\w*)\(/ or next;
        my $type = $l[$i - 1];

        next unless $type =~ /^[A-Za-z_]/
                    && $type !~ /^#/
                    && $type !~ /[;{},=]\s*$/;

        # the body opens at column 0 before any ";" (else: a prototype)
        my $j = $i;
        $j++ while $j < @l && $l[$j] !~ /^\{/ && $l[$j] !~ /;\s*$/;
        next unless $j < @l && $l[$j] =~ /^\{/;

        my $k = $j + 1;
        $k++ while $k < @l && $l[$k] !~ /^\}/;
        last unless $k < @l;

        push @fn, [ $name, $i + 1, $k - $i + 1 ];
        $i = $k;
    }

    return @fn;
}


sub long_functions {
    my (@files) = @_;

    my @problems;

    for my $f (@files) {
        for my $fn (functions($f)) {
            my ($name, $line, $n) = @$fn;
            next if $n <= $MAX_FUNCTION_LINES || $LONG_FUNCTION_OK{$name};
            push @problems, rel($f) . ":$line $name(): $n lines"
                            . " (at most $MAX_FUNCTION_LINES)";
        }
    }

    return @problems;
}


# the string literals of a C file, comments left out: [line, contents]

sub c_strings {
    my ($file) = @_;

    my $text = join "\n", slurp_lines($file);
    my ($line, @s) = (1);

    while ($text =~ m{ \G (?: ( /\* .*? \*/ | // [^\n]* )
                            | " ( (?: [^"\\\n] | \\. )* ) "
                            | ' (?: [^'\\\n] | \\. )* '
                            | ( [^"'/]+ | / ) ) }gsx)
    {
        if (defined $2) {
            push @s, [ $line, $2 ];
        }
        my $m = substr($text, $-[0], $+[0] - $-[0]);
        $line += $m =~ tr/\n//;
    }

    return @s;
}


sub protocol_key_names {
    my ($header) = @_;

    my @names;

    return () unless -f $header;

    for (slurp_lines($header)) {
        push @names, $1 if /^#define\s+AIHUB_RK_\w+\s+"([^"]*:)"/;
    }

    return @names;
}


# where a key name may start inside a literal: its beginning, after a
# quote (a Lua script), after a printf conversion (%s, %V, %.*s), after a
# prefix ending in ':'

my $KEY_AT = qr/(?:^|(?<=')|(?<=%[sV])|(?<=\*s)|(?<=:))/;


sub key_literals {
    my ($header, @files) = @_;

    my %seen;
    my @names = grep { !$seen{$_}++ } @KEY_NAMES,
                                      protocol_key_names($header);
    my $names = join '|', map { quotemeta } sort { length $b <=> length $a }
                                                 @names;
    my $words = join '|', map { quotemeta } @KEY_WORDS;
    my @problems;

    for my $f (@files) {
        for my $s (c_strings($f)) {
            my ($line, $str) = @$s;

            # "period:" "rl:%s" "%Vkey:%s" 'key:' .. h, not "usage: ..."
            if ($str =~ /$KEY_AT($names)(?!\s)/
                # "%susage", "%Vmodels", "aihub:invalidate"
                || $str =~ /(?:(?<=%[sV])|(?<=\*s)|(?<=:))($words)(?![\w:-])/)
            {
                push @problems, rel($f) . ":$line \"$str\": Redis key name"
                                . " \"$1\" (spell it with aihub_protocol.h)";
            }
        }
    }

    return @problems;
}


sub report {
    my ($name, @problems) = @_;

    local $Test::Builder::Level = $Test::Builder::Level + 1;

    ok(!@problems, $name) or diag(join "\n", @problems);
}


# --- the checks can fail -------------------------------------------------------

my $tmp = tempdir('aihub-layers-XXXXXX', TMPDIR => 1, CLEANUP => 1);

sub write_fixture {
    my ($file, $text) = @_;

    mkdir dirname($file);
    open my $fh, '>', $file or die "$file: $!\n";
    print $fh $text;
    close $fh or die "$file: $!\n";
    return $file;
}


SKIP: {
    skip 'no cc for the loop fixture', 2
        unless system('cc --version >/dev/null 2>&1') == 0;

    my %c = (
        # a -> b -> c -> a: a loop
        'loop/a' => "void aw_b(void);\nvoid aw_a(void) { aw_b(); }\n",
        'loop/b' => "void aw_c(void);\nvoid aw_b(void) { aw_c(); }\n",
        'loop/c' => "void aw_a(void);\nvoid aw_c(void) { aw_a(); }\n",
        # a -> b -> c, a -> c: no loop; c uses the module struct that a
        # defines, which is no arrow
        'tree/a' => "int ngx_http_aihub_module;\n"
                    . "void aw_b(void); void aw_c(void);\n"
                    . "void aw_a(void) { aw_b(); aw_c(); }\n",
        'tree/b' => "void aw_c(void);\nvoid aw_b(void) { aw_c(); }\n",
        'tree/c' => "extern int ngx_http_aihub_module;\n"
                    . "int *aw_m(void) { return &ngx_http_aihub_module; }\n"
                    . "void aw_c(void) { }\n",
    );

    my %objs;

    for my $name (sort keys %c) {
        my $src = write_fixture("$tmp/$name.c", $c{$name});
        (my $obj = $src) =~ s/\.c$/.o/;
        system('cc', '-c', '-o', $obj, $src) == 0
            or die "cc $src failed\n";
        push @{ $objs{ dirname($name) } }, $obj;
    }

    my @p = object_loops($objs{loop}, $tmp);
    is("@p", 'loop: a.o -> b.o (aw_b) -> c.o (aw_c) -> a.o (aw_a)',
       'checker: a loop between three objects is found and named');

    @p = object_loops($objs{tree}, $tmp);
    ok(!@p, 'checker: arrows one way (and the module struct) pass')
        or diag(join "\n", @p);
}

{
    my $line = "int x;\n";
    my @long = (write_fixture("$tmp/files/long.c",
                              $line x ($MAX_FILE_LINES + 1)),
                write_fixture("$tmp/files/fits.c", $line x $MAX_FILE_LINES));
    my @p = long_files(@long);

    ok(@p == 1 && $p[0] =~ /long\.c: 701 lines/,
       'checker: a file of 701 lines is too long, one of 700 is not')
        or diag(join "\n", @p);

    my $body = "    x++;\n";
    my $f = write_fixture("$tmp/funcs/f.c",
        "static ngx_int_t ngx_http_proto(ngx_http_request_t *r);\n\n"
        . "static ngx_int_t\nngx_http_long(ngx_http_request_t *r,\n"
        . "    ngx_uint_t n)\n{\n"
        . $body x ($MAX_FUNCTION_LINES - 3) . "}\n\n\n"
        . "int\nfits(void)\n{\n"
        . $body x ($MAX_FUNCTION_LINES - 3) . "}\n\n\n"
        . "static void\nscanner(void)\n{\n"
        . $body x $MAX_FUNCTION_LINES . "}\n");

    local $LONG_FUNCTION_OK{scanner} = 1;
    my @fn = functions($f);
    is(join(' ', map { "$_->[0]:$_->[1]:$_->[2]" } @fn),
       'ngx_http_long:4:151 fits:158:150 scanner:311:153',
       'checker: functions measured from the name to the "}"');

    @p = long_functions($f);
    ok(@p == 1 && $p[0] =~ /f\.c:4 ngx_http_long\(\): 151 lines/,
       'checker: a function of 151 lines is too long; 150 and an allowed'
       . ' scanner pass')
        or diag(join "\n", @p);

    my $h = write_fixture("$tmp/keys/aihub_protocol.h",
        "#define AIHUB_RK_NEW    \"new:\"\n");
    my $bad = write_fixture("$tmp/keys/bad.c", <<'END');
static char *s1 = "period:";
static size_t n = sizeof("rl:") - 1;
/* "plan:" in a comment is fine */
static char *s3 = "%Vkey:%*s";
static char *lua = "redis.call('PUBLISH', ARGV[1], 'key:' .. h)";
static char *s5 = "XADD %susage * event %s";
static char *s6 = "aihub:usage:dead";
static char *s7 = "new:%s";
END
    my $good = write_fixture("$tmp/keys/good.c", <<'END');
static char *u = "usage: aihub-worker key create --plan free";
static char *m = "model";                     /* a JSON member */
static char *o = "aihub: invalid key record \"%*s\" in redis";
static char *k = AIHUB_RK_PERIOD "%V:%*s";
static char *e = "the key: %s, the plan: %s";
static char *j = "{\"object\":\"usage\",\"models\":[]}";
static char c = '"';
static char *x = "x-api-key";
END

    @p = key_literals($h, $bad, $good);
    my @lines = map { /bad\.c:(\d+) / ? $1 : "[$_]" } @p;
    is("@lines", '1 2 4 5 6 7 8',
       'checker: key names spelled by hand are found, other strings not')
        or diag(join "\n", @p);
}


# --- the tree ----------------------------------------------------------------

my $src = $opt{src};
my $mod = "$src/ngx_aihub_module";
my @glue = (sort(glob "$mod/ngx_http_aihub_*.c"), sort(glob "$src/worker/*.c"));

ok(@glue, 'glue files found under ' . $src) or BAIL_OUT("no sources");


# the object files of a build whose source still exists; without a
# directory given, the default one built last (undef when none is)

sub newest_o {
    my ($dir) = @_;

    my ($t) = sort { $b <=> $a } map { (stat)[9] } glob "$dir/*.o";
    return $t // 0;
}


sub build_objects {
    my ($what, $given, $sources, @default_dirs) = @_;

    my ($dir) = defined $given ? ($given)
                : sort { newest_o($b) <=> newest_o($a) }
                  grep { newest_o($_) } @default_dirs;

    return undef unless defined $dir;

    my (@objs, @stale);

    for my $o (sort glob "$dir/*.o") {
        my $b = basename($o, '.o');
        next if $b =~ /^test_/;
        if (grep { -f "$_/$b.c" || -f "$_/aihub_$b.c" } @$sources) {
            push @objs, $o;
        } else {
            push @stale, basename($o);
        }
    }

    diag("$what: objects without a source left out: @stale") if @stale;

    return ($dir, \@objs);
}


my $build = Aihub->build;

for my $part (
    [ 'module', $opt{'module-objs'}, Aihub::have_module(), [ $mod ],
      "$build/nginx-src/objs/addon/ngx_aihub_module",
      "$build/nginx-src-custom/objs/addon/ngx_aihub_module" ],
    [ 'worker', $opt{'worker-objs'}, Aihub::have_worker(),
      [ "$src/worker", $mod ], "$build/obj/worker" ])
{
    my ($what, $given, $built, $sources, @dirs) = @$part;

    SKIP: {
        my ($dir, $objs) = build_objects($what, $given, $sources, @dirs);

        unless (defined $dir) {
            # built, but the objects are not where this test looks
            ok(!$built, "$what: object files found")
                or diag("no $what objects in: @dirs");
            skip "no $what objects", 1;
        }

        unless (@$objs) {
            fail("$what: object files in $dir");
            next;
        }

        report("$what: no dependency loop between its "
                  . scalar(@$objs) . ' object files',
               object_loops($objs, $tmp));
    }
}

report("no glue file over $MAX_FILE_LINES lines", long_files(@glue));

report("no glue function over $MAX_FUNCTION_LINES lines",
       long_functions(@glue));

# the glue's own headers too: a name moved into one is still spelled twice
report('Redis key names only in aihub_protocol.h',
       key_literals("$mod/aihub_protocol.h", @glue,
                    sort(glob "$mod/ngx_http_aihub_*.h"),
                    sort(glob "$src/worker/*.h")));

done_testing();
