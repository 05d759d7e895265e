package webhook

import (
	"bufio"
	"context"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// rawReceiver answers each request on a connection with answer(i), i
// counting requests over all connections, and closes the connection when
// answer says so. It returns its URL and counts of connections and
// requests.
func rawReceiver(t *testing.T, answer func(i int64) (string, bool)) (string, *atomic.Int64, *atomic.Int64) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	var conns, reqs atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					out, closeAfter := answer(reqs.Add(1))
					if _, err := io.WriteString(c, out); err != nil || closeAfter {
						return
					}
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String() + "/hook", &conns, &reqs
}

// TestLineKeepsItsConnection: a slot's attempts go over one connection,
// to whichever host the endpoint names now.
func TestLineKeepsItsConnection(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	other, otherHits := receiver(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })

	l := NewSender(Policy{AllowPrivate: true}, "test").NewLine(context.Background())
	defer l.Close()
	for range 20 {
		a := l.Send(srv.URL+"/hook", testMessage(t))
		require.Equal(t, Delivered, a.Outcome, a.Err)
	}
	assert.EqualValues(t, 1, conns.Load(), "twenty attempts, one connection")
	a := l.Send(other.URL, testMessage(t))
	require.Equal(t, Delivered, a.Outcome, a.Err)
	assert.EqualValues(t, 1, otherHits.Load(), "the endpoint's new host got the attempt")
}

// TestLineSendsAgainOnADroppedIdleConnection: a receiver that closes a kept
// connection without saying so (as servers do when it idles past their
// keep-alive timeout) gets the next attempt on a new connection instead
// of failing it; a new connection that closes unanswered is not tried
// again.
func TestLineSendsAgainOnADroppedIdleConnection(t *testing.T) {
	url, conns, reqs := rawReceiver(t, func(int64) (string, bool) {
		return "HTTP/1.1 204 No Content\r\n\r\n", true // keep-alive claimed, then closed
	})
	l := NewSender(Policy{AllowPrivate: true}, "test").NewLine(context.Background())
	defer l.Close()
	a := l.Send(url, testMessage(t))
	require.Equal(t, Delivered, a.Outcome, a.Err)
	time.Sleep(100 * time.Millisecond) // the close reaches us
	a = l.Send(url, testMessage(t))
	require.Equal(t, Delivered, a.Outcome, a.Err)
	assert.EqualValues(t, 2, reqs.Load())
	assert.EqualValues(t, 2, conns.Load())

	silent, conns, _ := rawReceiver(t, func(int64) (string, bool) { return "", true })
	a = l.Send(silent, testMessage(t))
	assert.Equal(t, Retry, a.Outcome)
	assert.Contains(t, a.Err, "connection closed before an answer")
	assert.EqualValues(t, 1, conns.Load(), "a fresh connection closed unanswered is an answer: no second try")

	// An answer cut short on a kept connection was begun: the receiver had
	// the request, and it is not sent again at once.
	cut, _, reqs := rawReceiver(t, func(i int64) (string, bool) {
		if i == 1 {
			return "HTTP/1.1 204 No Content\r\n\r\n", false
		}
		return "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n", true
	})
	require.Equal(t, Delivered, l.Send(cut, testMessage(t)).Outcome)
	a = l.Send(cut, testMessage(t))
	assert.Equal(t, Retry, a.Outcome)
	assert.EqualValues(t, 2, reqs.Load())
}

// TestLineSkipsInformationalAnswers: a 103 Early Hints before the answer
// is not the answer.
func TestLineSkipsInformationalAnswers(t *testing.T) {
	url, _, _ := rawReceiver(t, func(int64) (string, bool) {
		return "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok", false
	})
	l := NewSender(Policy{AllowPrivate: true}, "test").NewLine(context.Background())
	defer l.Close()
	for range 2 {
		a := l.Send(url, testMessage(t))
		assert.Equal(t, Delivered, a.Outcome, a.Err)
		assert.Equal(t, http.StatusAccepted, a.Status)
		assert.Equal(t, "ok", a.Response)
	}
}

// TestLineEndsWithItsContext: stopping a job ends its attempts in flight
// at once, not when the receiver answers.
func TestLineEndsWithItsContext(t *testing.T) {
	hang, _ := receiver(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // then the server sees the close
		select {
		case <-time.After(10 * time.Second):
		case <-r.Context().Done():
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	l := NewSender(Policy{AllowPrivate: true}, "test").NewLine(ctx)
	defer l.Close()
	time.AfterFunc(200*time.Millisecond, cancel)
	a := l.Send(hang.URL, testMessage(t))
	assert.Equal(t, Retry, a.Outcome)
	assert.Contains(t, a.Err, "cancelled")
	assert.Less(t, a.Latency, 5*time.Second)
}

// TestSendOverTLS: https endpoints are verified against the roots trusted
// and delivered to when they pass.
func TestSendOverTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	t.Cleanup(srv.Close)
	s := NewSender(Policy{AllowPrivate: true}, "test")
	a := s.Send(context.Background(), srv.URL+"/hook", testMessage(t))
	assert.Equal(t, Retry, a.Outcome, "a certificate nobody trusts")
	assert.Contains(t, a.Err, "certificate")

	s.roots = x509.NewCertPool()
	s.roots.AddCert(srv.Certificate())
	a = s.Send(context.Background(), srv.URL+"/hook", testMessage(t))
	assert.Equal(t, Delivered, a.Outcome, a.Err)
}
