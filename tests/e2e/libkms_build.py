"""libkms_build - use libkms the way its users do: `cmake --install` the build
into a temporary prefix, then compile a C program with
`pkg-config --cflags --libs libkms` and run it against a kmsd.

Shared by the suites that drive libkms's typed API (test_kms_typed,
test_sdk_example)."""

import glob
import os
import shutil
import subprocess
import tempfile

import kmsd_harness as h


def build_dir():
    return os.environ.get("KMSD_BUILD_DIR") or os.path.join(h.REPO_ROOT, "build")


def _sanitized(build):
    """True when the build was configured with KMSD_SANITIZE: its libkms then
    needs the sanitizer runtimes in the program too."""
    try:
        with open(os.path.join(build, "CMakeCache.txt")) as f:
            return any(line.strip().upper() in ("KMSD_SANITIZE:BOOL=ON", "KMSD_SANITIZE:BOOL=TRUE")
                       for line in f)
    except OSError:
        return False


class InstalledLibkms:
    """The build's libkms installed under a fresh prefix; cleanup() removes it."""

    def __init__(self):
        self.build = build_dir()
        self.prefix = tempfile.mkdtemp(prefix="libkms-prefix-")
        proc = subprocess.run(["cmake", "--install", self.build, "--prefix", self.prefix],
                              capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise AssertionError("cmake --install failed:\n%s%s" % (proc.stdout, proc.stderr))
        pcs = glob.glob(os.path.join(self.prefix, "**", "pkgconfig", "libkms.pc"), recursive=True)
        if len(pcs) != 1:
            raise AssertionError("cmake --install put %d libkms.pc under %s" % (len(pcs), self.prefix))
        self.pc_dir = os.path.dirname(pcs[0])
        self.lib_dir = os.path.dirname(self.pc_dir)

    def pkg_config(self, *packages):
        env = dict(os.environ, PKG_CONFIG_PATH=self.pc_dir)
        proc = subprocess.run(["pkg-config", "--cflags", "--libs"] + list(packages),
                              capture_output=True, text=True, env=env, check=True)
        return proc.stdout.split()

    def compile(self, source, output, packages=()):
        """cc -std=c11 -Wall -Wextra -Werror SOURCE $(pkg-config --cflags --libs libkms PACKAGES)."""
        cmd = [os.environ.get("CC", "cc"), "-std=c11", "-D_POSIX_C_SOURCE=200809L", "-Wall", "-Wextra",
               "-Werror", source, "-o", output]
        if _sanitized(self.build):
            cmd += ["-fsanitize=address,undefined"]
        cmd += self.pkg_config("libkms", *packages)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise AssertionError("%s failed:\n%s" % (" ".join(cmd), proc.stderr))
        return output

    def env(self, server, **extra):
        """The environment of a program using libkms against `server`: the aws
        CLI's (only the test credentials, no user files) plus the endpoint and
        the installed library's directory."""
        env = h.aws_env(server)
        env["AWS_ENDPOINT_URL"] = server.endpoint
        env["LD_LIBRARY_PATH"] = self.lib_dir
        env.update(extra)
        return env

    def cleanup(self):
        shutil.rmtree(self.prefix, ignore_errors=True)
