"""A file server on 127.0.0.1 for download tests: serves in-memory bytes, answers HTTP Range
requests with 206, and can cut a response short to simulate a dropped connection."""
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FileServer:
    """`files`: {"/path": bytes}. `cut_next` = N makes the next response stop after N body bytes
    (it still announces the full length). `ranges` records each request's Range header;
    `honour_ranges` False answers every request with the whole file (200), as some servers do."""

    def __init__(self, files, honour_ranges=True):
        self.files, self.cut_next, self.ranges, self.honour_ranges = dict(files), None, [], honour_ranges
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                owner.handle(self)

            def log_message(self, *args):
                pass  # keep the test output clean

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def handle(self, request):
        body = self.files.get(request.path)
        if body is None:
            request.send_error(404)
            return
        wanted = request.headers.get("Range")
        self.ranges.append(wanted)
        wanted = wanted if self.honour_ranges else None
        start = int(re.match(r"bytes=(\d+)-", wanted).group(1)) if wanted else 0
        if start >= len(body) and wanted:
            request.send_response(416)
            request.send_header("Content-Range", f"bytes */{len(body)}")
            request.send_header("Content-Length", "0")
            request.end_headers()
            return
        request.send_response(206 if wanted else 200)
        if wanted:
            request.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        request.send_header("Content-Length", str(len(body) - start))
        request.end_headers()
        part = body[start:]
        if self.cut_next is not None:
            part, self.cut_next = part[:self.cut_next], None
            request.close_connection = True
        request.wfile.write(part)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
