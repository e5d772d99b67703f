package httpapi

import (
	"embed"
	"io/fs"
	"net/http"
)

// uiFiles are the web UI's assets: one page, its script and its style, written by hand, with no
// build step and nothing fetched from elsewhere at run time.
//
//go:embed ui
var uiFiles embed.FS

// uiHandler serves the UI under /ui/. Every path that is not an asset serves the page, whose
// script routes by the URL's fragment.
func uiHandler() http.Handler {
	sub, _ := fs.Sub(uiFiles, "ui")
	files := http.FileServerFS(sub)
	return http.StripPrefix("/ui", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'")
		files.ServeHTTP(w, r)
	}))
}
