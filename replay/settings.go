package replay

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/dodev/hindsight/replay/webhook"
)

// Limits of an endpoint's own delivery settings.
const (
	MaxHeaders        = 20
	MaxHeaderValueLen = 1024
	MaxRetries        = 10
	MaxRetryDelay     = 24 * time.Hour
)

// headerName is an HTTP token (RFC 9110), at most 64 characters.
var headerName = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")

// ValidateHeaders checks an endpoint's custom headers: at most MaxHeaders,
// names that are HTTP tokens and not reserved, each once whatever its case,
// values of printable ASCII (tabs allowed) up to MaxHeaderValueLen bytes.
func ValidateHeaders(h map[string]string) error {
	if len(h) > MaxHeaders {
		return fmt.Errorf("%d headers, at most %d", len(h), MaxHeaders)
	}
	seen := map[string]bool{}
	for name, value := range h {
		if !headerName.MatchString(name) {
			return fmt.Errorf("%q is not a header name", name)
		}
		if webhook.ReservedHeader(name) {
			return fmt.Errorf("%s is set by Hindsight and cannot be overridden", name)
		}
		if lower := strings.ToLower(name); seen[lower] {
			return fmt.Errorf("%s is given twice", name)
		} else {
			seen[lower] = true
		}
		if len(value) > MaxHeaderValueLen {
			return fmt.Errorf("the value of %s is longer than %d bytes", name, MaxHeaderValueLen)
		}
		for i := 0; i < len(value); i++ {
			if c := value[i]; (c < ' ' || c > '~') && c != '\t' {
				return fmt.Errorf("the value of %s holds a byte (0x%02x) a header cannot carry", name, c)
			}
		}
	}
	return nil
}

// ParseSchedule reads a retry schedule in seconds: 1 to MaxRetries delays,
// each from 1 s to MaxRetryDelay. An empty list is the default (nil).
func ParseSchedule(secs []int64) ([]time.Duration, error) {
	if len(secs) == 0 {
		return nil, nil
	}
	if len(secs) > MaxRetries {
		return nil, fmt.Errorf("%d delays, at most %d", len(secs), MaxRetries)
	}
	out := make([]time.Duration, len(secs))
	for i, s := range secs {
		if s < 1 || time.Duration(s)*time.Second > MaxRetryDelay {
			return nil, fmt.Errorf("delay %d is %d s; want 1 to %d seconds", i+1, s, int(MaxRetryDelay/time.Second))
		}
		out[i] = time.Duration(s) * time.Second
	}
	return out, nil
}
