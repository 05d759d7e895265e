package host

import (
	"fmt"
	"net"
	"net/http"
	"time"

	"golang.org/x/net/netutil"
)

// ServerConfig bounds what one client can hold of the HTTP server: how
// long a request may take to arrive, a response to be written, an idle
// connection to stay open, and how many connections are open at once.
type ServerConfig struct {
	// ReadHeaderTimeout bounds the request line and headers. Default 10 s.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds the whole request, body included: a request that
	// declares a body and never sends it is dropped. Default 30 s.
	ReadTimeout time.Duration
	// WriteTimeout bounds a response, counted from the end of the request's
	// headers; it must exceed the slowest query. Default 2 min.
	WriteTimeout time.Duration
	// IdleTimeout closes keep-alive connections that carry no request.
	// Default 2 min.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds request headers. Default 64 KiB.
	MaxHeaderBytes int
	// MaxConns bounds open connections; more wait to be accepted. Default
	// 1,024.
	MaxConns int
}

// ApplyDefaults fills zero fields.
func (c *ServerConfig) ApplyDefaults() {
	if c.ReadHeaderTimeout == 0 {
		c.ReadHeaderTimeout = 10 * time.Second
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = 30 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 2 * time.Minute
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 2 * time.Minute
	}
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = 64 << 10
	}
	if c.MaxConns == 0 {
		c.MaxConns = 1024
	}
}

// Listen opens addr and returns a server for h that honours cfg, and the
// listener to serve it on.
func Listen(addr string, h http.Handler, cfg ServerConfig) (*http.Server, net.Listener, error) {
	cfg.ApplyDefaults()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen for http on %s: %w", addr, err)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
	}
	return srv, netutil.LimitListener(ln, cfg.MaxConns), nil
}
