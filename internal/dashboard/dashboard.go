// Package dashboard is the web page the binary serves at /: sign in with an
// API key, then see a service's totals, series, rates and groups. Its files
// are embedded (nothing is fetched at run time) and it talks only to the
// public /v1 API, with the key the user gave, kept in the browser's session
// storage.
package dashboard

import (
	"embed"
	"io/fs"
	"net/http"

	"github.com/gin-gonic/gin"
)

//go:embed static
var files embed.FS

// Register serves the page at / and its files under /ui/.
func Register(r gin.IRoutes) {
	static, err := fs.Sub(files, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	index, err := fs.ReadFile(static, "index.html")
	if err != nil {
		panic(err)
	}
	server := http.StripPrefix("/ui/", http.FileServer(http.FS(static)))
	r.GET("/", func(c *gin.Context) {
		secure(c)
		c.Header("Cache-Control", "no-cache")
		c.Data(http.StatusOK, "text/html; charset=utf-8", index)
	})
	r.GET("/ui/*file", func(c *gin.Context) {
		secure(c)
		server.ServeHTTP(c.Writer, c.Request)
	})
}

// secure sets the headers that keep the page to itself: its own scripts
// and styles only, talking to its own origin, never framed.
func secure(c *gin.Context) {
	c.Header("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	c.Header("X-Content-Type-Options", "nosniff")
	c.Header("Referrer-Policy", "no-referrer")
	c.Header("X-Frame-Options", "DENY")
}
