"""Fault-matrix agent: echoes, and misbehaves on command.

argv[1] (optional) names a hook that ends the process: ``atstart:os_exit``,
``atexit:os_exit``, ``atstart:sys_exit`` ... ; ``none`` for no fault. Any further
words are echoed back by ("argv",).
"""
import os
import subprocess
import sys
import time

from sshpipe import SSHPipeHandler

FAULT = sys.argv[1] if len(sys.argv) > 1 else "none"


def _die(how, code):
    if how == "os_exit":
        os._exit(code)
    raise SystemExit(code)


class FaultAgent(SSHPipeHandler):
    def atstart(self, received):
        hook, _, how = FAULT.partition(":")
        if hook == "atstart":
            _die(how, 12)

    def atexit(self, received):
        hook, _, how = FAULT.partition(":")
        if hook == "atexit":
            _die(how, 14)

    def handle(self, received):
        if isinstance(received, tuple) and received and received[0] == "cmd":
            return getattr(self, "cmd_" + received[1])(*received[2:])
        self.reply(received)

    # -- commands -----------------------------------------------------------
    def cmd_pid(self):
        self.reply(os.getpid())

    def cmd_spawn(self):
        child = subprocess.Popen(["sleep", "300"])
        self.reply((os.getpid(), child.pid))

    def cmd_slow_echo(self, value, seconds):
        time.sleep(seconds)
        self.reply(value)

    def cmd_sink(self, seconds, blob):
        time.sleep(seconds)

    def cmd_sleep(self, seconds):
        time.sleep(seconds)

    def cmd_exit(self, how, code):
        _die(how, code)

    def cmd_spawn_exit(self, how, code):
        child = subprocess.Popen(["sleep", "300"])
        self.reply((os.getpid(), child.pid))
        time.sleep(0.3)  # let the reply go out before the process ends
        _die(how, code)

    def cmd_log_debug(self):
        import logging
        logging.getLogger("fault_agent").debug("debug record from the agent")

    def cmd_argv(self):
        self.reply((sys.argv[2:], os.getcwd()))

    def cmd_bytes(self, size):
        self.reply(b"r" * size)

    def cmd_reply_unpicklable(self):
        self.reply(x for x in range(3))

    def cmd_reply(self, obj):
        self.reply(obj)

    def cmd_print(self, size):
        """Print to sys.stdout, to fd 1 and from a child process; bytes that look
        like frames and like the sync marker included."""
        from sshpipe import protocol
        print("via print")
        sys.stdout.write("via sys.stdout\n")
        os.write(1, b"fd1:" + protocol.SYNC + protocol.encode(protocol.FrameKind.EXIT, b"{}")
                 + b"\n")
        subprocess.run(["echo", "from a child"], check=True)
        chunk = b"z" * 1000 + b"\n"
        for _ in range(size // len(chunk)):
            os.write(1, chunk)
        self.reply("printed")


if __name__ == "__main__":
    tolerance = int(os.environ.get("FAULT_TOLERANCE", "0"))
    FaultAgent(tolerance=tolerance).service_loop()
