"""A model provider that breaks in the ways a real one cannot be made to on
demand, chosen by the request's model name:

  cut      streams two chunks (the second with half an SSN), then hangs up
           in the middle of an event
  stall    streams one chunk, then says nothing more (the connection open)
  garbage  streams one chunk, then an event whose data is not JSON
  html     answers 200 with an HTML page instead of JSON
  huge     answers with a body of 40 MiB

Usage: faulty_model_server.py --port P   (prints "ready" when listening)
"""

import argparse
import json
import socketserver
import sys
import time
from http.server import BaseHTTPRequestHandler


def chunk(content):
    return "data: " + json.dumps({
        "id": "chatcmpl-faulty", "object": "chat.completion.chunk", "model": "faulty",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}],
    }) + "\n\n"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        mode = body.get("model", "")
        if mode == "html":
            page = b"<html><body>502 from a proxy, patient 123-45-6789</body></html>"
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
            return
        if mode == "huge":
            self.send_response(200)
            self.send_header("content-type", "application/json")
            size = 40 << 20
            self.send_header("content-length", str(size))
            self.end_headers()
            block = b" " * (1 << 20)
            try:
                for _ in range(40):
                    self.wfile.write(block)
            except OSError:
                pass
            return
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("connection", "close")
        self.end_headers()
        self.wfile.write(chunk("The SSN is 123-45-").encode())
        self.wfile.flush()
        if mode == "cut":
            self.wfile.write(chunk("6789 and").encode())
            self.wfile.write(b'data: {"id": "chatcmpl-faulty", "choi')
            self.wfile.flush()
            self.close_connection = True
            return
        if mode == "stall":
            time.sleep(30)
            return
        if mode == "garbage":
            self.wfile.write(b"data: {this is not json}\n\n")
            self.wfile.flush()
            time.sleep(1)
            return


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    a = p.parse_args()
    with Server(("127.0.0.1", a.port), Handler) as server:
        print("ready", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
