"""A caller process for the 'caller killed' case: starts a pipe whose agent spawns a
child, prints the pids as JSON, then waits (optionally with the handler busy)."""
import json
import multiprocessing
import sys
import time

from sshpipe import SSHPipe

if __name__ == "__main__":
    method, alias, config, python, agent_script, busy = sys.argv[1:7]
    multiprocessing.set_start_method(method, force=True)
    pipe = SSHPipe(alias, [python, agent_script], config=config, heartbeat=0.5,
                   ready_timeout=30)
    pipe.start()
    pipe.send(("cmd", "spawn"))
    agent, child = pipe.recv(timeout=30)
    if busy == "busy":
        # The reply to the first comes once the agent handled it: it is then on its
        # way into handle() of the second (the agent handles messages in order).
        pipe.send(("cmd", "reply", "next: busy"))
        pipe.send(("cmd", "sleep", 600))
        assert pipe.recv(timeout=30) == "next: busy"
    print(json.dumps({"agent": agent, "child": child, "pipe_child": pipe.pid}), flush=True)
    time.sleep(600)  # not synchronisation: this caller waits to be killed (the fault)
