package app

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/parleychat/parley/server/internal/transport"
	"github.com/parleychat/parley/web"
)

// uiContentSecurityPolicy lets the page load only its own scripts and styles
// and talk only to its own origin (grpc-web and its WebSocket).
const uiContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// uiHandler serves the embedded web app: index.html at / (revalidated on
// every load) and its content-hashed assets under /assets/ (cached for a
// year), and the REST API's OpenAPI document at /openapi.json. Anything
// else is 404: the app routes with the URL fragment.
func uiHandler() http.Handler {
	u := newUI(web.Dist())
	u.add("/openapi.json", transport.OpenAPI, "application/json")
	return u
}

type uiFile struct {
	data        []byte
	etag        string
	contentType string
}

type ui struct {
	files map[string]uiFile // by URL path
}

func newUI(dist fs.FS) *ui {
	u := &ui{files: map[string]uiFile{}}
	_ = fs.WalkDir(dist, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(dist, p)
		if err != nil {
			return err
		}
		ct := mime.TypeByExtension(path.Ext(p))
		if ct == "" {
			ct = http.DetectContentType(data)
		}
		u.add("/"+p, data, ct)
		return nil
	})
	if f, ok := u.files["/index.html"]; ok {
		u.files["/"] = f
	}
	return u
}

// add serves data at urlPath with an ETag of its content.
func (u *ui) add(urlPath string, data []byte, contentType string) {
	sum := sha256.Sum256(data)
	u.files[urlPath] = uiFile{data: data, etag: `"` + hex.EncodeToString(sum[:12]) + `"`, contentType: contentType}
}

func (u *ui) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f, ok := u.files[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h := w.Header()
	h.Set("Content-Type", f.contentType)
	h.Set("ETag", f.etag)
	h.Set("X-Content-Type-Options", "nosniff")
	if strings.HasPrefix(r.URL.Path, "/assets/") {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "no-cache")
		h.Set("Content-Security-Policy", uiContentSecurityPolicy)
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
	}
	http.ServeContent(w, r, path.Base(r.URL.Path), time.Time{}, bytes.NewReader(f.data))
}
