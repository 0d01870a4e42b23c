"""test_crash - what kmsd acknowledged survives a SIGKILL.

The durability promise of the service: once a client has received the reply
to CreateKey or Encrypt, that key exists and that ciphertext decrypts, even if
the process is killed the next instant.  The test hammers kmsd from several
threads, kills it at a random (seeded, logged) moment, restarts it on the same
data directory and checks every acknowledged result.  Set KMSD_CRASH_SEED to
replay a run, KMSD_CRASH_ROUNDS to change the number of rounds.
"""

import concurrent.futures
import os
import random
import sys
import threading
import time
import unittest

import botocore.exceptions

import kmsd_harness as h

THREADS = 6
ROUNDS = int(os.environ.get("KMSD_CRASH_ROUNDS", "3"))


class Burst:
    """Acknowledged results of one round, filled by the worker threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.keys = []            # key ids whose CreateKey returned
        self.ciphertexts = []     # (key id, context, plaintext, blob) whose Encrypt returned
        self.unexpected = []      # failures before the kill: these fail the test
        self.killing = threading.Event()


def worker(kms, base_key, burst, rng, round_no, worker_no):
    n = 0
    while not burst.killing.is_set():
        n += 1
        try:
            if rng.random() < 0.3:
                key_id = kms.create_key(Description="crash r%d w%d n%d" % (
                    round_no, worker_no, n))["KeyMetadata"]["KeyId"]
                with burst.lock:
                    burst.keys.append(key_id)
            else:
                with burst.lock:
                    candidates = burst.keys[-8:] + [base_key]
                key_id = rng.choice(candidates)
                plaintext = rng.randbytes(rng.randint(1, 4096))
                context = {"round": str(round_no), "worker": str(worker_no), "n": str(n)}
                blob = kms.encrypt(KeyId=key_id, Plaintext=plaintext,
                                   EncryptionContext=context)["CiphertextBlob"]
                with burst.lock:
                    burst.ciphertexts.append((key_id, context, plaintext, blob))
        except Exception as e:  # connection errors are expected once the kill starts
            if not burst.killing.is_set():
                with burst.lock:
                    burst.unexpected.append("worker %d call %d: %r" % (worker_no, n, e))
            return


class CrashTest(h.KmsdBaseTestCase):
    def setUp(self):
        seed = int(os.environ.get("KMSD_CRASH_SEED", random.SystemRandom().randrange(1 << 32)))
        sys.stderr.write("\ncrash test seed %d (replay with KMSD_CRASH_SEED=%d)\n" % (seed, seed))
        self.rng = random.Random(seed)
        self.server = self.start_server()

    def verify(self, keys, ciphertexts):
        """Every acknowledged key is described and every ciphertext decrypts, in parallel."""
        clients = [h.kms_client(self.server) for _ in range(4)]

        def check_key(i_key):
            i, key_id = i_key
            meta = clients[i % 4].describe_key(KeyId=key_id)["KeyMetadata"]
            return None if meta["KeyId"] == key_id else "DescribeKey(%s) -> %s" % (key_id, meta)

        def check_blob(i_item):
            i, (key_id, context, plaintext, blob) = i_item
            try:
                out = clients[i % 4].decrypt(CiphertextBlob=blob, EncryptionContext=context)
            except botocore.exceptions.ClientError as e:
                return "Decrypt of a ciphertext under %s failed: %s" % (key_id, e)
            if out["Plaintext"] != plaintext:
                return "Decrypt under %s returned other bytes" % key_id
            if not out["KeyId"].endswith(key_id):
                return "Decrypt named key %s, expected %s" % (out["KeyId"], key_id)
            return None

        def guarded(fn):
            def run(item):
                try:
                    return fn(item)
                except Exception as e:
                    return "%s #%d: %r" % (fn.__name__, item[0], e)
            return run

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            problems = [p for p in pool.map(guarded(check_key), enumerate(keys)) if p]
            problems += [p for p in pool.map(guarded(check_blob), enumerate(ciphertexts)) if p]
        return problems

    def test_acknowledged_writes_survive_sigkill(self):
        all_keys, all_blobs = [], []
        base_key = h.kms_client(self.server).create_key(
            Description="crash base")["KeyMetadata"]["KeyId"]
        all_keys.append(base_key)
        for round_no in range(1, ROUNDS + 1):
            burst = Burst()
            clients = [h.kms_client(self.server) for _ in range(THREADS)]
            rngs = [random.Random(self.rng.randrange(1 << 32)) for _ in range(THREADS)]
            delay = self.rng.uniform(0.5, 1.5)
            threads = [threading.Thread(target=worker, daemon=True,
                                        args=(clients[i], base_key, burst, rngs[i], round_no, i))
                       for i in range(THREADS)]
            for t in threads:
                t.start()
            time.sleep(delay)
            burst.killing.set()
            self.server.kill()
            for t in threads:
                t.join(60)
                self.assertFalse(t.is_alive(), "a worker hung after the kill")
            sys.stderr.write("round %d: SIGKILL after %.3fs with %d keys and %d ciphertexts "
                             "acknowledged\n" % (round_no, delay, len(burst.keys),
                                                 len(burst.ciphertexts)))
            self.assertEqual(burst.unexpected, [], "calls failed before the kill")
            self.assertGreater(len(burst.keys) + len(burst.ciphertexts), 0,
                               "nothing was acknowledged before the kill: the round tested nothing")
            all_keys += burst.keys
            all_blobs += burst.ciphertexts

            self.server.start()
            problems = self.verify(all_keys, all_blobs)
            self.assertEqual(problems[:20], [], "round %d: %d acknowledged results lost after "
                             "SIGKILL (first 20 shown)" % (round_no, len(problems)))
        self.assertGreater(len(all_keys), 1, "no CreateKey was acknowledged in any round")
        self.assertGreater(len(all_blobs), 0, "no Encrypt was acknowledged in any round")


if __name__ == "__main__":
    unittest.main()
