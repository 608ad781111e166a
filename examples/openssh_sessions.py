"""Three remote commands through one OpenSSH master, the caller's own pipes
handed to it: sshd sees one login, no Python process relays a byte.

This uses the OpenSSH transport's building blocks (``sshpipe._openssh``), which
``SSHPipe(transport="openssh")`` is built on. The "remote host" is a throw-away
local sshd, so the script runs anywhere ``sshd`` is installed.
"""
import os
import tempfile

from sshpipe._openssh import Target, list_masters, open_session, stop_masters
from sshpipe.testing import LocalSSHServer


def run(target: Target, command: str, data: bytes, control_dir: str):
    """Run ``command`` with our pipes as its stdio; return (status, output, master)."""
    stdin_r, stdin_w = os.pipe()
    stdout_r, stdout_w = os.pipe()
    session = open_session(target, command, stdin=stdin_r, stdout=stdout_w, stderr=stdout_w,
                           control_dir=control_dir, timeout=60)
    for fd in (stdin_r, stdout_w):  # the master holds its own copies now
        os.close(fd)
    os.write(stdin_w, data)
    os.close(stdin_w)
    output = b""
    while True:
        chunk = os.read(stdout_r, 65536)
        if not chunk:
            break
        output += chunk
    os.close(stdout_r)
    return session.wait(timeout=30), output, session.master_pid


def main() -> None:
    control_dir = tempfile.mkdtemp(prefix="sshpipe-example-")
    with LocalSSHServer() as server:
        target = Target(server.alias, config=server.config_path)
        logins_before = server.read_log().count("Accepted publickey")
        masters = set()
        for command, data in (("tr a-z A-Z", b"hello\n"), ("wc -c", b"x" * 1000),
                              ("cat; exit 3", b"bye\n")):
            status, output, master = run(target, command, data, control_dir)
            masters.add(master)
            print(f"{command!r}: status {status}, output {output.decode().strip()!r}")
        logins = server.read_log().count("Accepted publickey") - logins_before
        print(f"sessions: 3, ssh masters: {len(masters)}, sshd logins: {logins}")
        print("masters listed:", len(list_masters(control_dir)))
        print("masters stopped:", len(stop_masters(control_dir)))
        print("masters left:", len(list_masters(control_dir)))
    os.rmdir(control_dir)


if __name__ == "__main__":
    main()
