use strict; use warnings;
use Mail::DKIM::Signer; use Mail::DKIM::Signature; use Mail::DKIM::PrivateKey;
my ($keyfile, $canon, $len, $msgfile) = @ARGV;
my $msg = do { open(my $fh, "<:raw", $msgfile) or die; local $/; <$fh> };
my $signer = Mail::DKIM::Signer->new(
  Policy => sub {
    my $s = shift;
    my %o = (Algorithm => 'rsa-sha256', Method => $canon, Domain => 'football.example.com', Selector => 'test',
             Headers => 'from:to:subject:date:message-id', Timestamp => 1700000000, Key => Mail::DKIM::PrivateKey->load(File => $keyfile));
    my $sig = Mail::DKIM::Signature->new(%o);
    $sig->body_count($len) if $len ne 'none';
    $s->add_signature($sig);
    return;
  },
  KeyFile => $keyfile);
$signer->PRINT($msg); $signer->CLOSE;
print $signer->signature->as_string, "\r\n";
