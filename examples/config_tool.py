"""Load an OpenSSH client config, resolve a host, edit it, write it back.

Run:  python examples/config_tool.py [CONFIG]

Without an argument it works on a small sample config in a temporary
directory, so it never touches your own ~/.ssh/config.
"""
from __future__ import annotations

import os
import sys
import tempfile

import sshpipe

SAMPLE = """\
# sample config
Host web
    HostName web.example.com
    User deploy
    Port 2222

Host *
    ServerAliveInterval 30
"""


def main(argv: list) -> int:
    if len(argv) > 1:
        return edit(argv[1])
    with tempfile.TemporaryDirectory(prefix="sshpipe-example-") as directory:
        path = os.path.join(directory, "config")
        with open(path, "w") as f:
            f.write(SAMPLE)
        return edit(path)


def edit(path: str) -> int:
    config = sshpipe.load(path)                      # lossless parse
    settings = config.resolve("web")                 # what `ssh -G web` would print
    print("web ->", settings["user"] + "@" + settings["hostname"] + ":" + settings["port"])
    print("keepalive:", settings["serveraliveinterval"],
          "identity files:", len(settings["identityfile"]))
    for release in ("9.2", "10.0"):                  # as that OpenSSH release would print it
        print(f"OpenSSH {release}: ipqos", config.resolve("web", openssh=release)["ipqos"])

    config.set("web", "Port", 2200)                  # edit one value in place
    # new blocks go before "Host *" so that its defaults do not win over them
    before = "*" if ["*"] in config.hosts() else None
    config.add_host("db", {"HostName": "db.example.com", "User": "dba"}, before=before)
    print("db  ->", config.get("db", "User") + "@" + config.get("db", "HostName"))

    sshpipe.dump(config, path)                       # everything else is byte-identical
    print("hosts:", " | ".join(" ".join(p) for p in config.hosts()))
    print(sshpipe.dumps(config), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
