import os
import multiprocessing as mp
from sshpipe import SSHPipe

def run():
    # The seed's example with only the host and directory changed: both come from
    # the environment so the test suite can point them at its own sshd.
    agent_dir = os.environ.get("SSHPIPE_AGENT_DIR", os.path.dirname(os.path.abspath(__file__)))
    agentpy = os.path.join(agent_dir, "sshremotehandler.py")
    host = os.environ.get("SSHPIPE_HOST", "ubuntud01_eventor")  # SSH config host name of remote server.

    sshagent = SSHPipe(host, agentpy)
    sshagent.start()

    if not sshagent.is_alive():
        print("Agent not alive", sshagent.response())
        exit(1)

    sshagent.send("This is life.\n")
    sshagent.send("This is also life.\n")
    sshagent.send("This is yet another life.\n")
    sshagent.send("That is all, life.\n")
    sshagent.send("TERM")

    if not sshagent.is_alive():
        print(sshagent.response())
        exit()

    response = sshagent.close()
    if response:
        exitcode, stdout, stderr = response
    print('Response: ', response)

if __name__ == '__main__':
    mp.set_start_method('spawn')
    run()
