"""The backend for instructions.sh: HTTP/1.1 keep-alive, answers `hello`."""
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length","5"); self.end_headers(); self.wfile.write(b"hello")
    def log_message(self,*a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
