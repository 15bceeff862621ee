package AihubJSON;

# The tests' JSON codec: JSON::XS where it is installed (Debian's
# libjson-xs-perl, which ./build.sh deps installs), else JSON::PP.  Both
# read and write the same JSON with the same options, and both take
# JSON::PP::true and JSON::PP::false.  JSON::XS reads a usage event 80 times
# faster (1.3 µs, not 109), which a test that reads every usage event of a
# load (tens of thousands, each poll) needs: with JSON::PP such reads took
# about half of t/35's and t/88's time.

use strict;
use warnings;

use Exporter qw(import);
use JSON::PP ();

our @EXPORT_OK = qw(json_codec);


sub json_codec {
    my $codec = eval { require JSON::XS; JSON::XS->new } // JSON::PP->new;

    return $codec->utf8->canonical;
}

1;
