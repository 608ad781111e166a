"""ProxyCommand for the quoting test: record argv as JSON, then relay stdin/stdout to
127.0.0.1:<port> (the last argument)."""
import json
import os
import selectors
import socket
import sys

log, port = sys.argv[1], int(sys.argv[-1])
with open(log, "a", encoding="utf-8") as out:
    out.write(json.dumps(sys.argv[2:]) + "\n")
sock = socket.create_connection(("127.0.0.1", port))
sel = selectors.DefaultSelector()
sel.register(0, selectors.EVENT_READ)
sel.register(sock, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        if key.fileobj == 0:
            data = os.read(0, 65536)
            if not data:
                sock.shutdown(socket.SHUT_WR)
                sel.unregister(0)
                continue
            sock.sendall(data)
        else:
            data = sock.recv(65536)
            if not data:
                sys.exit(0)
            os.write(1, data)
