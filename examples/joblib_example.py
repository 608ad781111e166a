"""joblib.Parallel on remote hosts over SSH: the "sshpipe" backend.

The hosts need only sshd and Python 3.9+ (neither joblib nor sshpipe): the
worker agent and the batches travel over SSH. Here the "remote host" is a
throw-away local sshd; with real hosts, pass their ssh config aliases (and drop
``config=`` to use ~/.ssh/config).
"""
import math

from joblib import Parallel, delayed, parallel_config

import sshpipe.joblib  # noqa: F401  (registers the "sshpipe" backend)
from sshpipe.testing import LocalSSHServer


def is_prime(n: int) -> bool:
    return n > 1 and all(n % d for d in range(2, math.isqrt(n) + 1))


def check(n: int) -> int:
    if n == 13:
        raise ValueError(f"unlucky {n}")
    return n


def main() -> None:
    with LocalSSHServer() as server:
        with parallel_config(backend="sshpipe", hosts=[server.alias], slots=2,
                             config=server.config_path) as config:
            # n_jobs=-1: every remote slot; joblib batches the calls itself.
            flags = Parallel(n_jobs=-1)(delayed(is_prime)(n) for n in range(10_000))
            print("primes below 10000:", sum(flags))
            # The hosts stay up between calls in one parallel_config block.
            squares = Parallel(n_jobs=-1, return_as="generator")(
                delayed(lambda x: x * x)(x) for x in range(5))
            print("squares:", list(squares))
            try:
                Parallel(n_jobs=-1)(delayed(check)(n) for n in range(20))
            except ValueError as exc:
                # The remote traceback is the exception's cause.
                print("raised:", exc, "| remote traceback:", "check" in str(exc.__cause__))
            config["backend"].close()  # or leave it: closed when collected or idle


if __name__ == "__main__":
    main()
