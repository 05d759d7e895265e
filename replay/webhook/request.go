package webhook

import (
	"bufio"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// A request is written by hand: the start of its head is built once per
// endpoint URL and header set (a preamble), and each message adds its own
// headers and body. net/http's Request.Write parses the URL, validates and
// sorts every header again for each request, which cost a delivery a sixth
// of the worker's CPU. A preamble holds what Request.Write would write.

// preamble is the start of a request's head for one URL and set of
// endpoint headers: the request line, Host, User-Agent, Content-Type and
// the endpoint's headers, each line ended by CRLF.
type preamble struct {
	url     string
	headers map[string]string
	u       *url.URL
	bytes   []byte
}

// ReservedHeader reports a header an endpoint may not set: the ones a
// delivery's meaning or signature rests on (those Send sets), and those
// that would change how the request is framed or routed. A request never
// carries an endpoint's header of these names.
func ReservedHeader(name string) bool {
	n := strings.ToLower(name)
	switch n {
	case "host", "content-type", "content-length", "content-encoding", "user-agent", "transfer-encoding",
		"connection", "keep-alive", "te", "trailer", "upgrade", "expect":
		return true
	}
	return strings.HasPrefix(n, "webhook-") || strings.HasPrefix(n, "hindsight-") || strings.HasPrefix(n, "proxy-")
}

// preambleFor returns the preamble of requests to rawURL with headers: the
// line's last one when both are the same.
func (l *Line) preambleFor(rawURL string, headers map[string]string) (*preamble, error) {
	if l.pre.u != nil && l.pre.url == rawURL && maps.Equal(l.pre.headers, headers) {
		return &l.pre, nil
	}
	p, err := newPreamble(rawURL, headers, l.s.userAgent)
	if err != nil {
		return nil, err
	}
	l.pre = p
	return &l.pre, nil
}

func newPreamble(rawURL string, headers map[string]string, userAgent string) (preamble, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return preamble{}, err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return preamble{}, fmt.Errorf("unsupported scheme %q", u.Scheme)
	}
	if u.Host == "" {
		return preamble{}, errors.New("no host in the URL")
	}
	host, err := httpguts.PunycodeHostPort(u.Host)
	if err != nil {
		return preamble{}, err
	}
	if !httpguts.ValidHostHeader(host) {
		return preamble{}, fmt.Errorf("invalid host %q", host)
	}
	host = removeZone(host)
	uri := u.RequestURI()
	if strings.ContainsFunc(uri, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return preamble{}, errors.New("a control character in the URL")
	}
	b := make([]byte, 0, 256)
	b = append(b, "POST "...)
	b = append(b, uri...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\nUser-Agent: "...)
	b = append(b, userAgent...)
	b = append(b, "\r\nContent-Type: application/json\r\n"...)
	for _, name := range slices.Sorted(maps.Keys(headers)) {
		if ReservedHeader(name) {
			continue
		}
		key := http.CanonicalHeaderKey(name)
		value := textproto.TrimString(headers[name])
		if !httpguts.ValidHeaderFieldName(key) || !httpguts.ValidHeaderFieldValue(value) {
			return preamble{}, fmt.Errorf("the header %q cannot be sent", name)
		}
		b = append(append(append(append(b, key...), ": "...), value...), "\r\n"...)
	}
	return preamble{url: rawURL, headers: maps.Clone(headers), u: u, bytes: b}, nil
}

// request is one attempt's request: its preamble, and the message's own
// headers and body.
type request struct {
	pre       *preamble
	m         *Message
	timestamp int64
	signature string
}

// writeTo writes the request to w; w's error, if any, comes from its Flush.
func (r *request) writeTo(w *bufio.Writer) {
	var n [20]byte
	w.Write(r.pre.bytes)
	w.WriteString("Webhook-Id: ")
	w.WriteString(r.m.ID)
	w.WriteString("\r\nWebhook-Timestamp: ")
	w.Write(strconv.AppendInt(n[:0], r.timestamp, 10))
	w.WriteString("\r\nWebhook-Signature: ")
	w.WriteString(r.signature)
	if r.m.ReplayID != "" {
		w.WriteString("\r\nHindsight-Replay-Id: ")
		w.WriteString(r.m.ReplayID)
	}
	w.WriteString("\r\nContent-Length: ")
	w.Write(strconv.AppendInt(n[:0], int64(len(r.m.Body)), 10))
	w.WriteString("\r\n\r\n")
	w.Write(r.m.Body)
}

// removeZone drops an IPv6 literal's zone from host: it names an interface
// of the sender's, not of the receiver's (net/http's rule).
func removeZone(host string) string {
	if !strings.HasPrefix(host, "[") {
		return host
	}
	i := strings.LastIndex(host, "]")
	if i < 0 {
		return host
	}
	j := strings.LastIndex(host[:i], "%")
	if j < 0 {
		return host
	}
	return host[:j] + host[i:]
}
