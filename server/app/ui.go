package app

import (
	"net/http"
)

// uiHandler serves the landing page at /.
func uiHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(landingPage))
	})
}

const landingPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Parley</title></head>
<body style="font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;line-height:1.5">
<h1>Parley is running</h1>
<p>This port serves <code>parley.v1.ChatService</code> over native gRPC, grpc-web and REST.</p>
<ul>
<li><code>GET /v1/rooms</code> lists rooms (send <code>Authorization: Bearer &lt;token&gt;</code>)</li>
<li><code>GET /healthz</code> tells whether the server is serving</li>
<li><code>grpcurl -plaintext HOST:PORT list</code> shows the services through reflection</li>
</ul>
</body></html>
`
