package webhook

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"time"
)

// A Line is one connection to an endpoint, for one caller at a time: a
// replay's delivery slot keeps one for its job, and Sender.Send opens one
// for its attempt. The caller writes each request and reads its answer
// itself. net/http's client hands both to two goroutines of the
// connection's, which cost a delivery about as much CPU as everything else
// it does; a slot sends one attempt at a time, so it needs neither them nor
// a pool of connections to share.
//
// Every attempt on a line is made under its ctx: when ctx ends, the
// connection is closed, which ends the attempt on it at once.
type Line struct {
	s   *Sender
	ctx context.Context

	addr   string // scheme://host:port of conn
	conn   net.Conn
	head   io.LimitedReader // conn, limited to MaxResponseHead while a head is read
	br     *bufio.Reader    // reads head
	bw     *bufio.Writer
	reused bool        // conn has answered a request before
	unwind func() bool // stops closing conn when ctx ends
	pre    preamble    // of the URL and headers sent last
}

// NewLine returns a Line whose attempts are made under ctx; it connects
// when first used. Close it when done.
func (s *Sender) NewLine(ctx context.Context) *Line {
	return &Line{s: s, ctx: ctx}
}

// roundTrip writes req on the line's connection, dialing one if it has
// none for req's host, and reads the answer's head. The deadline bounds it
// all, the body's reading included. A connection kept from an earlier
// attempt that ends before the answer's first byte (a server drops idle
// connections when it likes) gets the request again on a new one, as
// net/http does.
func (l *Line) roundTrip(req *request, deadline time.Time) (*http.Response, error) {
	for {
		if err := l.connect(req.pre.u, deadline); err != nil {
			return nil, err
		}
		reused := l.reused
		resp, err := l.exchange(req, deadline)
		if err == nil {
			return resp, nil
		}
		l.Close()
		if !reused || l.ctx.Err() != nil || !errors.Is(err, errUnanswered) {
			return nil, err
		}
	}
}

// errUnanswered is a connection that ended before the answer's first byte:
// refused the request's bytes, or closed or reset without a word.
var errUnanswered = errors.New("connection closed before an answer")

func unanswered(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return fmt.Errorf("%w: %w", errUnanswered, err)
	}
	return err
}

// connect makes sure the line has a connection to u's host.
func (l *Line) connect(u *url.URL, deadline time.Time) error {
	port := u.Port()
	switch {
	case port != "":
	case u.Scheme == "https":
		port = "443"
	default:
		port = "80"
	}
	hostPort := net.JoinHostPort(u.Hostname(), port)
	addr := u.Scheme + "://" + hostPort
	if l.conn != nil && l.addr == addr {
		return nil
	}
	l.Close()
	ctx, cancel := context.WithDeadline(l.ctx, deadline)
	defer cancel()
	conn, err := l.s.dialer.DialContext(ctx, "tcp", hostPort)
	if err != nil {
		return err
	}
	if u.Scheme == "https" {
		tc := tls.Client(conn, &tls.Config{ServerName: u.Hostname(), RootCAs: l.s.roots, NextProtos: []string{"http/1.1"}})
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return err
		}
		conn = tc
	}
	l.addr, l.conn, l.reused = addr, conn, false
	l.head = io.LimitedReader{R: conn}
	l.br, l.bw = bufio.NewReader(&l.head), bufio.NewWriter(conn)
	l.unwind = context.AfterFunc(l.ctx, func() { conn.Close() })
	return nil
}

// exchange writes req and reads the head of its answer, skipping
// informational (1xx) answers as net/http does, at most five. The heads
// read are MaxResponseHead bytes at most, all five included; the body is
// the caller's to limit.
func (l *Line) exchange(req *request, deadline time.Time) (*http.Response, error) {
	if err := l.conn.SetDeadline(deadline); err != nil {
		return nil, err
	}
	req.writeTo(l.bw)
	if err := l.bw.Flush(); err != nil {
		return nil, unanswered(err)
	}
	l.head.N = MaxResponseHead - int64(l.br.Buffered())
	// ReadResponse reads an end before the first byte as a cut answer.
	if _, err := l.br.Peek(1); err != nil {
		return nil, unanswered(err)
	}
	for n := 0; ; n++ {
		resp, err := http.ReadResponse(l.br, post)
		if err != nil {
			if l.head.N <= 0 {
				err = fmt.Errorf("answer's head longer than %d bytes", MaxResponseHead)
			}
			return nil, err
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols || n == 5 {
			l.head.N = math.MaxInt64
			return resp, nil
		}
	}
}

// done ends an attempt whose answer's body was read to its end (whole) or
// not: the connection stays for the next request only if the answer was
// whole, final and did not ask to close.
func (l *Line) done(resp *http.Response, whole bool) {
	if !whole || resp.Close || resp.StatusCode < 200 {
		l.Close()
		return
	}
	resp.Body.Close()
	l.reused = true
}

// Close closes the line's connection, if it has one; the line dials again
// if used after.
func (l *Line) Close() {
	if l.conn == nil {
		return
	}
	l.unwind()
	l.conn.Close()
	l.conn, l.br, l.bw, l.addr = nil, nil, nil, ""
}

// post is what http.ReadResponse is told each answer answers: a POST (only
// a HEAD's answer would be read differently).
var post = &http.Request{Method: http.MethodPost}
