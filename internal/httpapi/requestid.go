package httpapi

import (
	"crypto/rand"
	"encoding/hex"

	"github.com/gin-gonic/gin"
)

// RequestIDHeader carries a request's id, in the request (a proxy's, kept
// when sane) and in every answer.
const RequestIDHeader = "X-Request-Id"

const requestIDKey = "hindsight.request_id"

// RequestIDs is middleware giving each request an id: the caller's
// X-Request-Id when it is 1 to 64 of [A-Za-z0-9._-], else 16 random hex
// digits. The answer carries it, and the logs of the request name it.
func RequestIDs(c *gin.Context) {
	id := c.GetHeader(RequestIDHeader)
	if !saneID(id) {
		var b [8]byte
		_, _ = rand.Read(b[:])
		id = hex.EncodeToString(b[:])
	}
	c.Set(requestIDKey, id)
	c.Header(RequestIDHeader, id)
	c.Next()
}

// RequestID is the request's id ("" outside RequestIDs).
func RequestID(c *gin.Context) string { return c.GetString(requestIDKey) }

func saneID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}
