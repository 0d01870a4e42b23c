"""xks_certs - every server certificate a test of kmsd's XKS client needs, made
with the openssl command line in one temporary directory.

kmsd must refuse an XKS proxy whose certificate is expired, names another
host or chains to a CA it does not trust (XKS_PROXY_INVALID_TLS_CONFIGURATION),
and accept the right one.  make_certs() makes each kind once:

    certs = make_certs(hostname="xks.example.com")
    certs.ca             CA certificate to trust (kmsd --xks-ca-bundle)
    certs.good           (cert, key): DNS:<hostname>, IP:127.0.0.1, by `ca`
    certs.expired        the same names, by `ca`, valid 2020-01-01..2021-01-01
    certs.not_yet_valid  the same names, by `ca`, valid from 2045
    certs.wrong_host     DNS:<wrong_hostname> only, by `ca`
    certs.untrusted      the right names, by another CA (`certs.other_ca`)
    certs.self_signed    the right names, signed by its own key
    certs.client         (cert, key) for mTLS: CN and DNS cks.kms.<region>.amazonaws.com,
                         extendedKeyUsage clientAuth, by `ca`
    certs.cleanup()      removes the directory (kept when KMSD_KEEP_TMP is set)

Dates in the past or future come from `openssl ca -startdate/-enddate`: the
OpenSSL 3.0 of this machine's image has no `x509 -not_before/-not_after`
(3.4 added them), and `openssl ca` takes explicit dates on every version, so
no faked clock is needed.  Keys are EC P-256 (fast to make; ECDHE-ECDSA
suites exist from TLS 1.0 to 1.3, so one certificate serves every protocol
version a test forces).
"""

import os
import shutil
import subprocess
import tempfile

DEFAULT_HOSTNAME = "xks.example.com"
DEFAULT_WRONG_HOSTNAME = "not-the-proxy.example.net"
DEFAULT_REGION = "us-east-1"

_CA_CONF = """\
[ ca ]
default_ca = test_ca

[ test_ca ]
dir = {dir}
database = {dir}/index.txt
serial = {dir}/serial
new_certs_dir = {dir}/issued
certificate = {cert}
private_key = {key}
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
email_in_dn = no

[ anything ]
commonName = supplied
organizationName = optional
"""


def _openssl(*args):
    p = subprocess.run(["openssl"] + list(args), capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (" ".join(args[:2]), p.stderr[-2000:]))
    return p.stdout


def _new_key_args(key):
    return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key]


class _CA:
    """A certificate authority: key, self-signed certificate, `openssl ca` state."""

    def __init__(self, root, name):
        self.dir = os.path.join(root, name)
        os.makedirs(os.path.join(self.dir, "issued"))
        self.key = os.path.join(self.dir, "ca.key")
        self.cert = os.path.join(self.dir, "ca.pem")
        _openssl("req", "-x509", *_new_key_args(self.key), "-out", self.cert, "-days", "3650",
                 "-subj", "/O=kmsd xks stand-in tests/CN=%s" % name,
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        open(os.path.join(self.dir, "index.txt"), "w").close()
        with open(os.path.join(self.dir, "serial"), "w") as f:
            f.write("%016X\n" % (int.from_bytes(os.urandom(7), "big") | 1))
        self.conf = os.path.join(self.dir, "ca.cnf")
        with open(self.conf, "w") as f:
            f.write(_CA_CONF.format(dir=self.dir, cert=self.cert, key=self.key))

    def issue(self, out_dir, name, cn, extensions, start=None, end=None):
        """Key and certificate for `cn` with the openssl extension lines
        `extensions`; start/end as YYYYMMDDHHMMSSZ (default now + 10 years).
        Returns (cert, key) paths."""
        key = os.path.join(out_dir, name + ".key")
        csr = os.path.join(out_dir, name + ".csr")
        cert = os.path.join(out_dir, name + ".pem")
        ext = os.path.join(out_dir, name + ".ext")
        with open(ext, "w") as f:
            f.write("[ext]\n" + extensions)
        _openssl("req", "-new", *_new_key_args(key), "-out", csr,
                 "-subj", "/O=kmsd xks stand-in tests/CN=%s" % cn)
        dates = ["-startdate", start] if start else []
        dates += ["-enddate", end] if end else ["-days", "3650"]
        _openssl("ca", "-batch", "-config", self.conf, "-in", csr, "-out", cert, "-notext",
                 "-extfile", ext, "-extensions", "ext", *dates)
        return cert, key


def _server_ext(names):
    return ("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
            "extendedKeyUsage=serverAuth\nsubjectAltName=%s\n" % ",".join(names))


def _client_ext(dns_name):
    return ("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
            "extendedKeyUsage=clientAuth\nsubjectAltName=DNS:%s\n" % dns_name)


class CertSet:
    """The certificates of one make_certs() call; see the module docstring."""

    def __init__(self, directory, hostname, wrong_hostname, region):
        self.dir = directory
        self.hostname = hostname
        self.wrong_hostname = wrong_hostname
        self.client_subject = "cks.kms.%s.amazonaws.com" % region
        main = _CA(directory, "xks-standin-ca")
        other = _CA(directory, "xks-standin-untrusted-ca")
        self.ca, self.ca_key = main.cert, main.key
        self.other_ca = other.cert
        right = ["DNS:%s" % hostname, "IP:127.0.0.1"]
        self.good = main.issue(directory, "good", hostname, _server_ext(right))
        self.expired = main.issue(directory, "expired", hostname, _server_ext(right),
                                  start="20200101000000Z", end="20210101000000Z")
        self.not_yet_valid = main.issue(directory, "not-yet-valid", hostname, _server_ext(right),
                                        start="20450101000000Z", end="20460101000000Z")
        self.wrong_host = main.issue(directory, "wrong-host", wrong_hostname,
                                     _server_ext(["DNS:%s" % wrong_hostname]))
        self.untrusted = other.issue(directory, "untrusted", hostname, _server_ext(right))
        ss_cert = os.path.join(directory, "self-signed.pem")
        ss_key = os.path.join(directory, "self-signed.key")
        _openssl("req", "-x509", *_new_key_args(ss_key), "-out", ss_cert, "-days", "3650",
                 "-subj", "/O=kmsd xks stand-in tests/CN=%s" % hostname,
                 "-addext", "subjectAltName=%s" % ",".join(right),
                 "-addext", "extendedKeyUsage=serverAuth")
        self.self_signed = (ss_cert, ss_key)
        self.client = main.issue(directory, "client", self.client_subject,
                                 _client_ext(self.client_subject))

    def server_kinds(self):
        """{kind: (cert, key)} of every server certificate, for loops over kinds."""
        return {"good": self.good, "expired": self.expired, "not_yet_valid": self.not_yet_valid,
                "wrong_host": self.wrong_host, "untrusted": self.untrusted,
                "self_signed": self.self_signed}

    def cleanup(self):
        if not os.environ.get("KMSD_KEEP_TMP"):
            shutil.rmtree(self.dir, ignore_errors=True)


def make_certs(directory=None, hostname=DEFAULT_HOSTNAME, wrong_hostname=DEFAULT_WRONG_HOSTNAME,
               region=DEFAULT_REGION):
    """Make every kind of certificate under `directory` (default: a new
    temporary directory; the caller removes it with cleanup()).  Raises
    RuntimeError with openssl's message when a command fails."""
    if directory is None:
        directory = tempfile.mkdtemp(prefix="xks-certs-")
    return CertSet(directory, hostname, wrong_hostname, region)
