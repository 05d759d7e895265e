package webhook

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRequestReadsAsNetHTTPWritesIt: what a line writes for a message
// reads back, with net/http's own reader, as the request net/http's
// Request.Write makes of the same message: line, Host, every header and
// the body. An endpoint's header cannot replace one Send sets.
func TestRequestReadsAsNetHTTPWritesIt(t *testing.T) {
	m := Message{ID: "evt_1", Body: []byte(`{"eventId":"evt_1"}`), ReplayID: "rpl_1"}
	for _, tc := range []struct {
		url     string
		headers map[string]string
	}{
		{"http://example.com/hook", nil},
		{"https://example.com:8443/a/b%20c?token=t0k&x=1", map[string]string{"authorization": "Bearer t0k", "X-Tenant": " acme "}},
		{"http://[fe80::1%25en0]:8080/", map[string]string{"Content-Type": "text/plain", "webhook-id": "forged", "Host": "elsewhere"}},
		{"http://bücher.example/hook", map[string]string{"X-Empty": ""}},
		{"http://example.com", nil},
	} {
		pre, err := newPreamble(tc.url, tc.headers, "hindsight/test")
		require.NoError(t, err, tc.url)
		var ours bytes.Buffer
		w := bufio.NewWriter(&ours)
		(&request{pre: &pre, m: &m, timestamp: 1700000000, signature: "v1,c2ln"}).writeTo(w)
		require.NoError(t, w.Flush())

		want, err := http.NewRequestWithContext(context.Background(), http.MethodPost, tc.url, bytes.NewReader(m.Body))
		require.NoError(t, err, tc.url)
		for name, value := range tc.headers {
			want.Header.Set(name, value)
		}
		want.Header.Set("Content-Type", "application/json")
		want.Header.Set("User-Agent", "hindsight/test")
		want.Header["Webhook-Id"] = []string{m.ID}
		want.Header["Webhook-Timestamp"] = []string{strconv.Itoa(1700000000)}
		want.Header["Webhook-Signature"] = []string{"v1,c2ln"}
		want.Header["Hindsight-Replay-Id"] = []string{m.ReplayID}
		var theirs bytes.Buffer
		require.NoError(t, want.Write(&theirs), tc.url)

		got, exp := readRequest(t, &ours), readRequest(t, &theirs)
		assert.Equal(t, exp.Method, got.Method, tc.url)
		assert.Equal(t, exp.RequestURI, got.RequestURI, tc.url)
		assert.Equal(t, exp.Host, got.Host, tc.url)
		assert.Equal(t, exp.ContentLength, got.ContentLength, tc.url)
		assert.Equal(t, exp.Header, got.Header, tc.url)
		assert.Equal(t, m.Body, readAll(t, got.Body), tc.url)
		assert.Equal(t, []string{"evt_1"}, got.Header["Webhook-Id"], "%s: an endpoint's header never replaces Send's", tc.url)
	}
}

func readRequest(t *testing.T, b *bytes.Buffer) *http.Request {
	t.Helper()
	req, err := http.ReadRequest(bufio.NewReader(b))
	require.NoError(t, err)
	return req
}

func readAll(t *testing.T, r io.Reader) []byte {
	t.Helper()
	b, err := io.ReadAll(r)
	require.NoError(t, err)
	return b
}

// TestRequestRefusesWhatCannotBeSent: a URL or header that would break the
// request's framing fails to build rather than being sent.
func TestRequestRefusesWhatCannotBeSent(t *testing.T) {
	for _, tc := range []struct {
		url     string
		headers map[string]string
	}{
		{"ftp://example.com/hook", nil},
		{"http:///hook", nil},
		{"http://example.com/hook", map[string]string{"X-Bad": "a\r\nInjected: 1"}},
		{"http://example.com/hook", map[string]string{"Bad Name": "a"}},
		{"http://exa mple.com/hook", nil},
	} {
		_, err := newPreamble(tc.url, tc.headers, "hindsight/test")
		assert.Error(t, err, "%s %v", tc.url, tc.headers)
	}
}

// TestRequestLeavesOutReservedHeaders: an endpoint header the API refuses
// (ReservedHeader), should a stored endpoint carry one, is not sent.
func TestRequestLeavesOutReservedHeaders(t *testing.T) {
	pre, err := newPreamble("http://example.com/hook", map[string]string{"Connection": "close", "proxy-authorization": "x", "X-Tenant": "acme"}, "hindsight/test")
	require.NoError(t, err)
	head := string(pre.bytes)
	assert.Contains(t, head, "X-Tenant: acme\r\n")
	assert.NotContains(t, head, "Connection")
	assert.NotContains(t, head, "Proxy-Authorization")
}

// TestLineRebuildsItsPreambleWhenTheEndpointChanges: a slot's line sends
// each attempt with the endpoint's headers of that attempt.
func TestLineRebuildsItsPreambleWhenTheEndpointChanges(t *testing.T) {
	var got []string
	srv, _ := receiver(t, func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Get("X-Tenant"))
		w.WriteHeader(http.StatusNoContent)
	})
	s := NewSender(Policy{AllowPrivate: true}, "test")
	l := s.NewLine(context.Background())
	defer l.Close()
	m := testMessage(t)
	for _, tenant := range []string{"a", "a", "b", ""} {
		m.Headers = map[string]string{"X-Tenant": tenant}
		if tenant == "" {
			m.Headers = nil
		}
		a := l.Send(srv.URL+"/hook", m)
		require.Equal(t, Delivered, a.Outcome, a.Err)
	}
	assert.Equal(t, []string{"a", "a", "b", ""}, got)
}
