"""An HTTPS proxy that answers for Intuit's QuickBooks hosts from a local qbo-sim.

Some connectors hard-code https://quickbooks.api.intuit.com and Intuit's token URL and
offer no setting for another base. They all speak HTTP through Python's `requests`, which
honours the standard HTTPS_PROXY and REQUESTS_CA_BUNDLE variables. This proxy accepts
`CONNECT host:443` for the Intuit hosts only, ends TLS with a certificate for them signed
by a throwaway CA (made by the bench under target/peers/tls/, trusted by the peer through
REQUESTS_CA_BUNDLE / SSL_CERT_FILE only), and relays the plain HTTP to the simulator.
The connector's code and configuration stay as they ship.

usage: intuit_proxy.py SIM_HOST:SIM_PORT CERT.pem KEY.pem
Prints `PORT=<n>` once it listens on 127.0.0.1; runs until killed.
"""

import socket
import ssl
import sys
import threading

HOSTS = {
    "quickbooks.api.intuit.com",
    "sandbox-quickbooks.api.intuit.com",
    "oauth.platform.intuit.com",
}


def pump(src, dst):
    try:
        while True:
            chunk = src.recv(262144)
            if not chunk:
                break
            dst.sendall(chunk)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve(conn, upstream, ctx):
    try:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(4096)
            if not chunk:
                conn.close()
                return
            head += chunk
            if len(head) > 65536:
                conn.close()
                return
        line = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        if len(line) < 2 or line[0] != "CONNECT":
            conn.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            conn.close()
            return
        host = line[1].rsplit(":", 1)[0].lower()
        if host not in HOSTS:
            sys.stderr.write(f"intuit_proxy: refused CONNECT {line[1]}\n")
            conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            conn.close()
            return
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        tls = ctx.wrap_socket(conn, server_side=True)
        up = socket.create_connection(upstream)
        up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t = threading.Thread(target=pump, args=(up, tls), daemon=True)
        t.start()
        pump(tls, up)
        t.join()
    except (OSError, ssl.SSLError) as e:
        sys.stderr.write(f"intuit_proxy: {e}\n")
        try:
            conn.close()
        except OSError:
            pass


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    host, port = sys.argv[1].rsplit(":", 1)
    upstream = (host, int(port))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[2], sys.argv[3])
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    print(f"PORT={srv.getsockname()[1]}", flush=True)
    while True:
        conn, _ = srv.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=serve, args=(conn, upstream, ctx), daemon=True).start()


if __name__ == "__main__":
    main()
