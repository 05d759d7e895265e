package webhook

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPolicyCheckIP(t *testing.T) {
	for _, tc := range []struct {
		ip                   string
		strict, allowPrivate bool // allowed under each policy
	}{
		{"93.184.216.34", true, true},
		{"2606:4700::1111", true, true},
		{"127.0.0.1", false, true},
		{"127.8.9.10", false, true},
		{"::1", false, true},
		{"10.1.2.3", false, true},
		{"172.16.0.1", false, true},
		{"172.31.255.255", false, true},
		{"172.32.0.1", true, true},
		{"192.168.1.1", false, true},
		{"100.64.0.1", false, true},
		{"100.127.255.254", false, true},
		{"fd00::1", false, true},
		{"::ffff:127.0.0.1", false, true},
		{"::ffff:10.0.0.1", false, true},
		{"64:ff9b::7f00:1", false, true}, // NAT64 of 127.0.0.1
		{"169.254.169.254", false, false},
		{"::ffff:169.254.169.254", false, false},
		{"fe80::1", false, false},
		{"224.0.0.1", false, false},
		{"ff02::1", false, false},
		{"0.0.0.0", false, false},
		{"0.1.2.3", false, false},
		{"::", false, false},
		{"255.255.255.255", false, false},
		{"240.0.0.1", false, false},
		// Special-purpose ranges: never a webhook.
		{"198.18.0.1", false, false},
		{"198.19.255.254", false, false},
		{"192.0.0.8", false, false},
		{"192.0.2.10", false, false},
		{"203.0.113.5", false, false},
		{"fec0::1", false, false},
		{"2001:db8::1", false, false},
		// IPv6 forms that carry an IPv4 address are judged by it.
		{"2002:7f00:1::", false, true},                        // 6to4 of 127.0.0.1
		{"2002:a9fe:a9fe::1", false, false},                   // 6to4 of 169.254.169.254
		{"2002:5db8:d822::1", true, true},                     // 6to4 of 93.184.216.34
		{"2001:0:4136:e378:8000:63bf:80ff:fffe", false, true}, // Teredo, client 127.0.0.1
		{"2001:0:a9fe:a9fe::1", false, false},                 // Teredo, server 169.254.169.254
		{"::127.0.0.1", false, true},                          // IPv4-compatible
		{"::169.254.169.254", false, false},                   // IPv4-compatible
		{"64:ff9b:1:a9fe:a9:fe00::", false, false},            // local-use NAT64 of 169.254.169.254
		{"64:ff9b:1:7f00:0:100::", false, true},               // local-use NAT64 of 127.0.0.1
		{"64:ff9b::a9fe:a9fe", false, false},                  // NAT64 of 169.254.169.254
		// Metadata services outside link-local: refused in every mode.
		{"fd00:ec2::254", false, false},
		{"100.100.100.200", false, false},
		{"168.63.129.16", false, false},
	} {
		ip := netip.MustParseAddr(tc.ip)
		assert.Equal(t, tc.strict, Policy{}.CheckIP(ip) == nil, "%s strict", tc.ip)
		assert.Equal(t, tc.allowPrivate, Policy{AllowPrivate: true}.CheckIP(ip) == nil, "%s allow-private", tc.ip)
	}
}

func TestValidateURL(t *testing.T) {
	lookup := func(_ context.Context, host string) ([]netip.Addr, error) {
		if host == "internal.test" {
			return []netip.Addr{netip.MustParseAddr("10.0.0.5")}, nil
		}
		return []netip.Addr{netip.MustParseAddr("93.184.216.34")}, nil
	}
	ctx := context.Background()
	for _, ok := range []string{"https://example.com/webhooks/alerts", "http://example.com:8080/x?y=1", "https://[2606:4700::1111]/hook"} {
		_, err := Policy{}.ValidateURL(ctx, ok, lookup)
		assert.NoError(t, err, ok)
	}
	for _, bad := range []string{"ftp://example.com/x", "example.com/x", "https://", "https://user:pw@example.com/",
		"http://127.0.0.1/x", "http://[::1]/x", "http://169.254.169.254/latest/meta-data", "http://[::ffff:169.254.169.254]/",
		"http://10.0.0.1/", "http://internal.test/hook", "javascript:alert(1)", "http://%zz/"} {
		_, err := Policy{}.ValidateURL(ctx, bad, lookup)
		assert.Error(t, err, bad)
	}
	_, err := Policy{AllowPrivate: true}.ValidateURL(ctx, "http://127.0.0.1:3000/hook", lookup)
	assert.NoError(t, err, "dev allows a receiver on loopback")
	_, err = Policy{AllowPrivate: true}.ValidateURL(ctx, "http://169.254.169.254/", lookup)
	assert.Error(t, err, "but never link-local")
}

// receiver counts requests and answers with fn.
func receiver(t *testing.T, fn http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		fn(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func testMessage(t *testing.T) Message {
	secret, err := NewSecret()
	require.NoError(t, err)
	return Message{ID: "evt_1", Body: []byte(`{"eventId":"evt_1","type":"platform.test"}`), ReplayID: "rpl_1", Secrets: []string{secret}}
}

func TestSendHeadersAndSignature(t *testing.T) {
	m := testMessage(t)
	var got *http.Request
	var body []byte
	srv, _ := receiver(t, func(w http.ResponseWriter, r *http.Request) {
		got = r.Clone(context.Background())
		body, _ = io.ReadAll(r.Body)
		w.WriteHeader(http.StatusNoContent)
	})
	s := NewSender(Policy{AllowPrivate: true}, "1.2.3")
	a := s.Send(context.Background(), srv.URL+"/hook", m)
	require.Equal(t, Delivered, a.Outcome, a.Err)
	assert.Equal(t, http.StatusNoContent, a.Status)
	assert.Equal(t, m.Body, body, "the original bytes, as they are")
	assert.Equal(t, "application/json", got.Header.Get("Content-Type"))
	assert.Equal(t, "hindsight/1.2.3", got.Header.Get("User-Agent"))
	assert.Equal(t, "evt_1", got.Header.Get("webhook-id"))
	assert.Equal(t, "rpl_1", got.Header.Get("Hindsight-Replay-Id"))
	wh, err := standardwebhooks.NewWebhook(m.Secrets[0])
	require.NoError(t, err)
	assert.NoError(t, wh.Verify(body, got.Header), "the reference library verifies the delivery")
}

func TestSendOutcomes(t *testing.T) {
	s := NewSender(Policy{AllowPrivate: true}, "test")
	for status, want := range map[int]Outcome{
		200: Delivered, 201: Delivered, 204: Delivered,
		408: Retry, 429: Retry, 500: Retry, 502: Retry, 503: Retry,
		400: Failed, 401: Failed, 404: Failed, 410: Failed, 422: Failed,
		301: Failed, 302: Failed, 307: Failed, 308: Failed,
	} {
		srv, _ := receiver(t, func(w http.ResponseWriter, r *http.Request) {
			if status >= 300 && status < 400 {
				w.Header().Set("Location", "/elsewhere")
			}
			w.WriteHeader(status)
		})
		a := s.Send(context.Background(), srv.URL, testMessage(t))
		assert.Equal(t, want, a.Outcome, "HTTP %d", status)
		assert.Equal(t, status, a.Status)
	}
	// Nothing listens: a connection error is retried.
	srv, _ := receiver(t, func(http.ResponseWriter, *http.Request) {})
	url := srv.URL
	srv.Close()
	assert.Equal(t, Retry, s.Send(context.Background(), url, testMessage(t)).Outcome)
}

func TestSendRetryAfter(t *testing.T) {
	srv, _ := receiver(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "42")
		w.WriteHeader(http.StatusTooManyRequests)
	})
	a := NewSender(Policy{AllowPrivate: true}, "test").Send(context.Background(), srv.URL, testMessage(t))
	assert.Equal(t, Retry, a.Outcome)
	assert.Equal(t, 42*time.Second, a.RetryAfter)

	d, ok := RetryDelay(nil, 0, 42*time.Second)
	assert.True(t, ok)
	assert.Equal(t, 42*time.Second, d)
	d, _ = RetryDelay(nil, 0, 3*time.Hour)
	assert.Equal(t, 10*time.Minute, d, "Retry-After is held to the schedule's bounds")
	d, _ = RetryDelay(nil, 0, 10*time.Millisecond)
	assert.Equal(t, time.Second, d)
	for n, step := range Backoff {
		d, ok := RetryDelay(nil, n, 0)
		require.True(t, ok)
		assert.InDelta(t, float64(step), float64(d), 0.2*float64(step)+1, "retry %d: %s ±20%%", n, step)
	}
	_, ok = RetryDelay(nil, len(Backoff), 0)
	assert.False(t, ok, "after the last retry the delivery fails")
	assert.Equal(t, time.Duration(0), retryAfter("soon", time.Now()))
	assert.InDelta(t, float64(time.Minute), float64(retryAfter(time.Now().Add(time.Minute).UTC().Format(http.TimeFormat), time.Now())), float64(2*time.Second))
}

// TestHostileEndpoints: none of them holds the sender longer than its
// limits, or makes it read more than 64 KiB.
func TestHostileEndpoints(t *testing.T) {
	s := NewSender(Policy{AllowPrivate: true}, "test")
	s.timeout = 300 * time.Millisecond

	slow, _ := receiver(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(time.Second):
		case <-r.Context().Done():
		}
	})
	a := s.Send(context.Background(), slow.URL, testMessage(t))
	assert.Equal(t, Retry, a.Outcome, "a timeout is retried")
	assert.Less(t, a.Latency, 2*time.Second)

	var written atomic.Int64
	huge, _ := receiver(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		chunk := bytes.Repeat([]byte("x"), 1<<20)
		for range 1024 { // 1 GiB if anyone read it all
			n, err := w.Write(chunk)
			written.Add(int64(n))
			if err != nil {
				return
			}
		}
	})
	a = s.Send(context.Background(), huge.URL, testMessage(t))
	assert.Equal(t, Delivered, a.Outcome, a.Err)
	assert.Less(t, written.Load(), int64(64<<20), "the sender stopped reading long before the end")

	var headWritten atomic.Int64
	hugeHead, _ := receiver(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		// Headers without end: 1 GiB if anyone read them all.
		hj, _ := w.(http.Hijacker)
		conn, buf, err := hj.Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = buf.WriteString("HTTP/1.1 200 OK\r\n")
		line := "X-Pad: " + strings.Repeat("x", 1<<16) + "\r\n"
		for range 1 << 14 {
			n, err := buf.WriteString(line)
			headWritten.Add(int64(n))
			if err != nil || buf.Flush() != nil {
				return
			}
		}
	})
	a = s.Send(context.Background(), hugeHead.URL, testMessage(t))
	assert.Equal(t, Retry, a.Outcome, "an answer whose head never ends is no answer")
	assert.Contains(t, a.Err, "head longer than", "refused for its size, not left to the time limit")
	assert.Less(t, headWritten.Load(), int64(16<<20), "the sender stopped reading the head after MaxResponseHead")

	var bomb bytes.Buffer
	zw := gzip.NewWriter(&bomb)
	_, _ = zw.Write(make([]byte, 256<<20)) // 256 MiB of zeros, ~256 KiB compressed
	zw.Close()
	gz, _ := receiver(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Encoding", "gzip")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(bomb.Bytes())
	})
	a = s.Send(context.Background(), gz.URL, testMessage(t))
	assert.Equal(t, Delivered, a.Outcome, "a gzip bomb is never inflated: %s", a.Err)

	internal, internalHits := receiver(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	redirect, _ := receiver(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, internal.URL+"/admin", http.StatusMovedPermanently)
	})
	a = s.Send(context.Background(), redirect.URL, testMessage(t))
	assert.Equal(t, Failed, a.Outcome)
	assert.Contains(t, a.Err, "not followed")
	assert.Zero(t, internalHits.Load(), "the redirect to loopback was not followed")
}

// TestDNSRebinding: the name resolved to a public address when the endpoint
// was created and resolves to loopback when the delivery connects.
func TestDNSRebinding(t *testing.T) {
	srv, hits := receiver(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	port := srv.URL[strings.LastIndex(srv.URL, ":")+1:]
	var calls atomic.Int64
	lookup := func(context.Context, string) ([]netip.Addr, error) {
		if calls.Add(1) == 1 {
			return []netip.Addr{netip.MustParseAddr("93.184.216.34")}, nil
		}
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}
	s := newSender(Policy{}, "test", lookup)
	url := "http://rebind.test:" + port + "/hook"
	_, err := s.ValidateURL(context.Background(), url)
	require.NoError(t, err, "at creation the name looks public")
	a := s.Send(context.Background(), url, testMessage(t))
	assert.Equal(t, Failed, a.Outcome)
	assert.Contains(t, a.Err, "forbidden address")
	assert.Zero(t, hits.Load(), "nothing reached the loopback receiver")

	// A literal loopback URL, whatever the DNS says, is refused by the dialer too.
	a = newSender(Policy{}, "test", lookup).Send(context.Background(), srv.URL, testMessage(t))
	assert.Equal(t, Failed, a.Outcome)
	assert.Zero(t, hits.Load())
}

func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{"0", "120", "Wed, 21 Oct 2015 07:28:00 GMT", "-1", "soon", "99999999999999999999"} {
		f.Add(s)
	}
	now := time.Now()
	f.Fuzz(func(t *testing.T, in string) {
		d := retryAfter(in, now)
		if d < 0 || d > 24*time.Hour+time.Second && !strings.Contains(in, ",") {
			t.Fatalf("%q gave %s", in, d)
		}
		// With a Retry-After the wait is held to [1 s, 10 min]; without one it
		// is the first step, 1 s, with its ±20% jitter.
		wait, ok := RetryDelay(nil, 0, d)
		lo := time.Second
		if d == 0 {
			lo = 800 * time.Millisecond
		}
		if !ok || wait < lo || wait > 10*time.Minute {
			t.Fatalf("%q: wait %s outside the schedule's bounds", in, wait)
		}
	})
}

// TestSendUnbuildableRequestFailsAtOnce: an eventId that cannot be a header
// value fails the attempt for good instead of being retried for minutes.
func TestSendUnbuildableRequestFailsAtOnce(t *testing.T) {
	calls := 0
	srv, _ := receiver(t, func(w http.ResponseWriter, r *http.Request) { calls++ })
	s := NewSender(Policy{AllowPrivate: true}, "test")
	m := testMessage(t)
	m.ID = "evt\n1"
	a := s.Send(context.Background(), srv.URL, m)
	assert.Equal(t, Failed, a.Outcome)
	assert.Contains(t, a.Err, "cannot be sent as a webhook-id header")
	assert.Zero(t, calls)
}

// TestSendErrorsHideURLsAndPorts: a delivery error never carries the
// endpoint's query string (tokens live there), and every failure to connect
// reads the same, so endpoints cannot map which ports are open.
func TestSendErrorsHideURLsAndPorts(t *testing.T) {
	s := NewSender(Policy{AllowPrivate: true}, "test")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := ln.Addr().String()
	ln.Close()
	a := s.Send(context.Background(), "http://"+closed+"/hook?token=s3cret", testMessage(t))
	assert.Equal(t, Retry, a.Outcome)
	assert.Equal(t, "connection failed", a.Err)

	redirect, _ := receiver(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://127.0.0.1:1/x?token=s3cret", http.StatusFound)
	})
	a = s.Send(context.Background(), redirect.URL+"/hook?token=s3cret", testMessage(t))
	assert.Equal(t, Failed, a.Outcome)
	assert.NotContains(t, a.Err, "s3cret")

	slow, _ := receiver(t, func(w http.ResponseWriter, r *http.Request) { time.Sleep(2 * time.Second) })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	a = s.Send(ctx, slow.URL+"/hook?token=s3cret", testMessage(t))
	assert.NotContains(t, a.Err, "s3cret")
	assert.Equal(t, "POST "+slow.URL+"/hook: EOF", redactURLError(&url.Error{Op: "POST", URL: slow.URL + "/hook?token=s3cret#f", Err: io.EOF}))
}

// FuzzCheckIP: any 16 bytes are judged without panicking, strict mode never
// allows what permissive mode refuses, and an IPv6 form is never allowed
// where the IPv4 address it carries is not.
func FuzzCheckIP(f *testing.F) {
	for _, s := range []string{"127.0.0.1", "2002:7f00:1::", "2001:0:4136:e378:8000:63bf:80ff:fffe", "64:ff9b:1:7f00:0:100::", "93.184.216.34", "fd00:ec2::254"} {
		a := netip.MustParseAddr(s).As16()
		f.Add(a[:])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) != 16 {
			return
		}
		ip := netip.AddrFrom16([16]byte(b))
		strict, loose := Policy{}.CheckIP(ip), Policy{AllowPrivate: true}.CheckIP(ip)
		if strict == nil && loose != nil {
			t.Fatalf("%s allowed strictly but refused permissively: %v", ip, loose)
		}
		for _, v4 := range embeddedIPv4(ip.Unmap()) {
			if err := (Policy{}).CheckIP(v4); err != nil && strict == nil {
				t.Fatalf("%s allowed though it carries %s", ip, v4)
			}
		}
	})
}

func TestRetryDelayOwnSchedule(t *testing.T) {
	schedule := []time.Duration{2 * time.Second, 10 * time.Second}
	d, ok := RetryDelay(schedule, 0, time.Hour)
	assert.True(t, ok)
	assert.Equal(t, 10*time.Second, d, "Retry-After within the schedule's longest delay")
	d, _ = RetryDelay(schedule, 1, time.Second)
	assert.Equal(t, 2*time.Second, d, "and its shortest")
	d, _ = RetryDelay(schedule, 1, 0)
	assert.InDelta(t, float64(10*time.Second), float64(d), float64(2*time.Second))
	_, ok = RetryDelay(schedule, 2, 0)
	assert.False(t, ok, "two retries, then the delivery fails")
}
