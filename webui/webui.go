// Package webui is idsync's web console: a settings screen for ID Sync
// connections (list, edit with a live preview, history with diffs and
// restore, the destination catalog), as static files embedded in the
// binary. The page signs in with an admin token and talks only to the admin
// API (package admin); it holds no rules of its own and no second source of
// truth. It is plain ES modules without a build step or third-party code,
// so a Go engineer can change a screen with an editor and a browser.
//
// Security: every response carries a strict Content-Security-Policy (no
// inline script or style, no frames, connections to the same origin only);
// the scripts build the page with DOM calls and textContent, never HTML
// strings, because identifiers, names and ids from the API are hostile
// input. The token lives in the tab's sessionStorage, never in a URL.
package webui

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

// Prefix is the path the console is served under.
const Prefix = "/ui/"

// ContentSecurityPolicy is sent with every console response.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

//go:embed static
var static embed.FS

// Handler serves the console's files under Prefix. Paths that are not
// files get 404; "/ui" redirects to Prefix.
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree always has "static"
	}
	files := http.StripPrefix(Prefix, http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if r.URL.Path == strings.TrimSuffix(Prefix, "/") {
			http.Redirect(w, r, Prefix, http.StatusMovedPermanently)
			return
		}
		// No directory listings: a path ending in / other than the root is
		// not a page.
		if strings.HasSuffix(r.URL.Path, "/") && r.URL.Path != Prefix {
			http.NotFound(w, r)
			return
		}
		files.ServeHTTP(w, r)
	})
}

// Mount returns a handler serving the console under Prefix, a redirect from
// "/" to it, and api for every other path.
func Mount(api http.Handler) http.Handler {
	mux := http.NewServeMux()
	ui := Handler()
	mux.Handle(Prefix, ui)
	mux.Handle(strings.TrimSuffix(Prefix, "/"), ui)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, Prefix, http.StatusFound)
	})
	mux.Handle("/", api)
	return mux
}
