"""A Dask cluster over SSH: sshpipe.dask.SSHCluster with a distributed.Client.

The first host runs the scheduler, each other host a worker. The hosts need an
environment with dask and distributed (``remote_python=``, here this very
interpreter, since the "remote hosts" are a throw-away local sshd); SSH is
sshpipe's: the ssh config as ``ssh -G`` reads it, host keys checked strictly,
and closing (or the caller dying) leaves no process behind.
"""
import dask.bag as db
from distributed import Client

from sshpipe.dask import SSHCluster
from sshpipe.testing import LocalSSHServer, descendants, process_name


def main() -> None:
    with LocalSSHServer() as server:
        alias = server.alias  # with real hosts: ["sched-host", "worker1", "worker2"]
        with SSHCluster([alias, alias, alias], config=server.config_path,
                        worker_options={"nthreads": 2}, silence_logs=40) as cluster:
            with Client(cluster) as client:
                client.wait_for_workers(2, timeout=60)
                print("scheduler at", cluster.scheduler_address,
                      "| workers:", len(client.scheduler_info()["workers"]))
                total = db.from_sequence(range(1000), npartitions=8).map(
                    lambda x: x * x).sum().compute()
                print("sum of squares below 1000:", total)
        # sshd's own processes aside: with the OpenSSH transport the caller's shared
        # master connection stays open for reuse until its idle time or this
        # program ends.
        left = [p for p in descendants(server.process)
                if not process_name(p).startswith("sshd")]
        print("processes left on the host:", len(left))


if __name__ == "__main__":
    main()
